"""The API while a big search commits at full rate: read latency and the delay of progress events, with
100 dashboard clients connected.

One PostgreSQL database (a temporary one on `--postgres`, dropped afterwards) holds `examples/paper.yaml`'s
search. A controller in its own process drives it against `--workers` simulated workers
(`SimulatedCluster`, lognormal around 90 s times `--time-factor`), committing outcomes and proposals as
fast as it can. The service runs with uvicorn in its own process, as deployed (read cache 1 s, events
checked every second). This process then connects `--clients` event streams (`GET .../events`, as the
dashboard does) and, beside them, `--concurrency` connections that read the status, the Pareto front and
a page of candidates in turn, for `--seconds`.

Reported: p50 and p99 of each read route under that load; per progress event, its delay: the time it
arrived minus the time the store says the newest candidate it counts was finished (the N-th candidate by
`finished_at`, for an event whose id, the finished count, is N), over every client; how many events each
client got; the controller's results per second meanwhile.

    python benchmarks/api_under_search.py
    python benchmarks/api_under_search.py --smoke
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
from _common import markdown_table, write_result
from api import Server
from paper_scale import MEDIAN_SECONDS, paper_config
from search import LoadSampler
from store import temporary_postgres_database

from evonorm_search import store as st
from evonorm_search.search.controller import create_search

ROUTES = ("status", "pareto front", "candidates page")


def controller_main(argv: list[str]) -> None:
    """`--controller URL SEARCH_ID WORKERS TIME_FACTOR`: drive the search until stopped."""
    from evonorm_search.search.controller import run_search
    from evonorm_search.search.simulated import LognormalDelay, SimulatedCluster

    url, search_id, workers, time_factor = argv[0], int(argv[1]), int(argv[2]), float(argv[3])
    cluster = SimulatedCluster(workers, delay=LognormalDelay(MEDIAN_SECONDS, 0.5), time_factor=time_factor, seed=0)
    with st.open_store(url) as store:
        run_search(store, search_id, cluster, poll_interval=0.2)


@dataclass
class Observed:
    latencies: dict[str, list[float]] = field(default_factory=lambda: {r: [] for r in ROUTES})
    errors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ROUTES, 0))
    events: list[list[tuple[float, int]]] = field(default_factory=list)  # per client: (arrival, finished count)
    refused_streams: int = 0


async def read_load(base: str, search_id: int, concurrency: int, until: float, seen: Observed) -> None:
    paths = {
        "status": f"/api/v1/searches/{search_id}",
        "pareto front": f"/api/v1/searches/{search_id}/pareto",
        "candidates page": f"/api/v1/searches/{search_id}/candidates?limit=50&sort=accuracy_resnet",
    }

    async def worker(offset: int, client: httpx.AsyncClient) -> None:
        i = offset
        while time.monotonic() < until:
            route = ROUTES[i % len(ROUTES)]
            i += 1
            started = time.perf_counter()
            response = await client.get(base + paths[route])
            seen.latencies[route].append(time.perf_counter() - started)
            seen.errors[route] += response.status_code != 200

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        for path in paths.values():  # unmeasured: the first front starts the formula workers
            await client.get(base + path)
        await asyncio.gather(*(worker(k, client) for k in range(concurrency)))


async def event_client(base: str, search_id: int, until: float, seen: Observed) -> None:
    """One dashboard's stream: each event's arrival (wall clock) and id (the finished count)."""
    got: list[tuple[float, int]] = []
    seen.events.append(got)
    url = f"{base}/api/v1/searches/{search_id}/events"
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(10, read=None)) as client,
        client.stream("GET", url) as response,
    ):
        if response.status_code != 200:
            seen.refused_streams += 1
            return
        event = None
        async for line in response.aiter_lines():
            if time.monotonic() >= until:
                return
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("id:") and event == "progress":
                got.append((time.time(), int(line.split(":", 1)[1])))


async def drive(base: str, search_id: int, args: argparse.Namespace) -> Observed:
    seen = Observed()
    until = time.monotonic() + args.seconds
    clients = [asyncio.create_task(event_client(base, search_id, until, seen)) for _ in range(args.clients)]
    await asyncio.sleep(1.0)  # the streams open before the reads start
    await read_load(base, search_id, args.concurrency, until, seen)
    for task in clients:
        task.cancel()
    await asyncio.gather(*clients, return_exceptions=True)
    return seen


def finish_times(url: str, search_id: int) -> list[float]:
    """Wall-clock seconds at which the 1st, 2nd, ... candidate was finished (the store's `finished_at`)."""
    from sqlalchemy import select

    with st.open_store(url) as store, store.session(readonly=True) as s:
        rows = s.execute(
            select(st.Candidate.finished_at)
            .where(st.Candidate.search_id == search_id, st.Candidate.finished_at.is_not(None))
            .order_by(st.Candidate.finished_at)
        ).scalars()
        return [(t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp() for t in rows]


def delays(seen: Observed, finished: list[float]) -> list[float]:
    out = []
    for client in seen.events:
        for arrival, count in client:
            if 0 < count <= len(finished):
                out.append(arrival - finished[count - 1])
    return out


def quantiles(values: list[float]) -> str:
    if not values:
        return "none"
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return f"{statistics.median(ordered) * 1000:.0f} / {p99 * 1000:.0f} / {ordered[-1] * 1000:.0f} ms"


def report(seen: Observed, finished: list[float], window: tuple[float, float], args: argparse.Namespace) -> str:
    rows = [
        [route, f"{len(seen.latencies[route]):,}", str(seen.errors[route]), quantiles(seen.latencies[route])]
        for route in ROUTES
    ]
    start, end = window
    committed = sum(start <= t <= end for t in finished)
    counts = [len(c) for c in seen.events]
    lag = delays(seen, finished)
    return (
        markdown_table(["route", "requests", "errors", "latency p50 / p99 / max"], rows)
        + f"\n\nProgress events: {args.clients} streams opened, {seen.refused_streams} refused; events per stream "
        f"median {statistics.median(counts) if counts else 0:.0f} (min {min(counts, default=0)}, max "
        f"{max(counts, default=0)}); delay from the newest finished candidate an event counts to its arrival, "
        f"p50 / p99 / max over {len(lag):,} events: {quantiles(lag)}. The stream checks the store every second "
        "through the 1 s read cache, so about 1 to 2 s is the design's own delay.\n\n"
        f"The controller finished {committed:,} candidates in the {end - start:.0f} s measured "
        f"({committed / max(end - start, 1e-9):.1f} a second) against {args.workers:,} simulated workers.\n"
    )


def main() -> None:
    if sys.argv[1:2] == ["--controller"]:
        controller_main(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=100, help="event streams (dashboards) connected")
    parser.add_argument("--concurrency", type=int, default=8, help="connections reading status, front, pages")
    parser.add_argument("--seconds", type=float, default=60.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds the search runs before measuring")
    parser.add_argument("--workers", type=int, default=1000, help="simulated workers")
    parser.add_argument("--time-factor", type=float, default=0.05)
    parser.add_argument("--budget", type=int, default=100_000)
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        args.clients, args.concurrency, args.seconds, args.warmup, args.workers = 5, 2, 8.0, 3.0, 20
    if min(args.clients, args.concurrency, args.workers) < 1 or args.seconds <= 0:
        parser.error("--clients, --concurrency and --workers must be at least 1, --seconds positive")
    sampler = LoadSampler()
    sampler.start()
    url, drop = temporary_postgres_database(args.postgres)
    controller = server = None
    try:
        with st.open_store(url) as store:
            search_id = create_search(store, paper_config(args.budget))
        command = [sys.executable, __file__, "--controller", url, str(search_id), str(args.workers)]
        controller = subprocess.Popen([*command, str(args.time_factor)])
        server = Server(url, read_cache_seconds=1.0, extra_env={"EVONORM_MAX_EVENT_STREAMS": str(args.clients + 10)})
        time.sleep(args.warmup)
        start = time.time()
        seen = asyncio.run(drive(server.base, search_id, args))
        end = time.time()
        finished = finish_times(url, search_id)
    finally:
        if server is not None:
            server.close()
        if controller is not None:
            controller.kill()
            controller.wait(30)
        drop()
    body = (
        f"`examples/paper.yaml`'s search on PostgreSQL, driven by a controller process against {args.workers:,} "
        f"simulated workers (lognormal around {MEDIAN_SECONDS:.0f} s times {args.time_factor:g}); the service "
        f"with uvicorn, one process, read cache 1 s; {args.clients} event streams and {args.concurrency} "
        f"reading connections for {args.seconds:.0f} s after {args.warmup:.0f} s of search. {sampler.summary()}. "
        "No cache beyond the service's own.\n\n" + report(seen, finished, (start, end), args)
    )
    path = write_result("api-under-search", "The API while a big search commits", body)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
