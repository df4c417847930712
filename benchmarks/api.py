"""The API under concurrent load at 100,000 candidates: p50/p99 latency and throughput of its reads.

Fills a SQLite database (and PostgreSQL with --postgres) with one search of 100,000 candidates (the same
filling as benchmarks/store.py: a realistic rejection funnel, lineage, evaluations on 3 architectures),
starts the service with uvicorn in its own process, and drives each read from a separate load-generator
process over loopback: `--concurrency` connections, each sending its next request as soon as the previous
answer arrived, for `--seconds` after a warm-up. Baselines measured in the same run: /healthz (the HTTP
stack alone, no database), and the status and Pareto reads with the read cache off (every request reads the
database).

Targets: p99 <= 50 ms for status and Pareto reads; >= 500 requests/s for status on this machine.
Writes benchmarks/results/api-<machine>.md.

    python benchmarks/api.py [--candidates N] [--concurrency C] [--seconds S] [--postgres SERVER_URL]
    python benchmarks/api.py --database URL     # an already filled database (e.g. kept from benchmarks/store.py)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
from _common import markdown_table, write_result

TARGET_P99_MS = 50.0
TARGET_STATUS_RPS = 500.0
API = "/api/v1"


@dataclass(frozen=True)
class Scenario:
    name: str
    paths: tuple[str, ...]  # requests cycle through these
    target: str  # which target applies: "status", "pareto" or ""
    cached: bool = True  # False: served by a server with the read cache off


@dataclass(frozen=True)
class Measured:
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


# -- the load generator (a separate process) -----------------------------------------------------------


async def _drive(base: str, paths: list[str], concurrency: int, warmup: float, seconds: float) -> dict:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    measuring = False
    stop_at = time.monotonic() + warmup + seconds

    async def worker(offset: int, session: aiohttp.ClientSession) -> None:
        nonlocal errors
        i = offset
        while time.monotonic() < stop_at:
            path = paths[i % len(paths)]
            i += 1
            started = time.perf_counter()
            async with session.get(base + path) as response:
                await response.read()
                ok = response.status == 200
            if measuring:
                latencies.append(time.perf_counter() - started)
                errors += not ok

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        tasks = [asyncio.create_task(worker(k, session)) for k in range(concurrency)]
        await asyncio.sleep(warmup)
        measuring = True
        began = time.monotonic()
        await asyncio.gather(*tasks)
        elapsed = time.monotonic() - began
    latencies.sort()
    return {
        "requests": len(latencies),
        "errors": errors,
        "seconds": elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] * 1000,
    }


def load_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="api.py load")
    parser.add_argument("base")
    parser.add_argument("--paths", required=True, help="JSON list of paths")
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--warmup", type=float, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    args = parser.parse_args(argv)
    result = asyncio.run(_drive(args.base, json.loads(args.paths), args.concurrency, args.warmup, args.seconds))
    print(json.dumps(result))


def run_load(base: str, scenario: Scenario, concurrency: int, warmup: float, seconds: float) -> Measured:
    command = [
        sys.executable,
        __file__,
        "load",
        base,
        "--paths",
        json.dumps(list(scenario.paths)),
        "--concurrency",
        str(concurrency),
        "--warmup",
        str(warmup),
        "--seconds",
        str(seconds),
    ]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return Measured(**json.loads(done.stdout))


# -- the server (another process) ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`uvicorn --factory service.app:create_app` over `url`, one worker process."""

    def __init__(self, url: str, *, read_cache_seconds: float, extra_env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        env = {
            **os.environ,
            "EVONORM_DATABASE_URL": url,
            "EVONORM_LAUNCHER": "none",
            "EVONORM_READ_CACHE_SECONDS": str(read_cache_seconds),
            **(extra_env or {}),
        }
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "service.app:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--log-level",
            "warning",
            "--no-access-log",
        ]
        self.process = subprocess.Popen(command, env=env)
        self.base = f"http://127.0.0.1:{self.port}"
        self._wait_ready()

    def _wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("the server exited while starting")
            try:
                if httpx.get(f"{self.base}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError("the server did not become ready")

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(30)


# -- the run -------------------------------------------------------------------------------------------


def fill_database(url: str, candidates: int, seed: int) -> int:
    from store import fill  # benchmarks/store.py: the store benchmark's bulk filling

    from evonorm_search import store as st

    with st.open_store(url) as store:
        return fill(store, candidates, seed)


def newest_search(url: str) -> int:
    from evonorm_search import store as st

    with st.open_store(url) as store, store.session(readonly=True) as s:
        return st.list_searches(s, limit=1).items[0].id


def scenarios(base: str, search_id: int) -> list[Scenario]:
    search = f"{API}/searches/{search_id}"
    evaluated = httpx.get(f"{base}{search}", timeout=60).json()["counts"]["evaluated"]
    depth = min(25_000, evaluated // 2 // 500 * 500)  # halfway down the sorted list, at most 25,000 rows
    deep = _cursor_after(base, f"{search}/candidates?sort=accuracy_resnet&limit=500", pages=depth // 500)
    late = httpx.get(f"{base}{search}/candidates?status=evaluated&order=desc&limit=200", timeout=60).json()["items"]
    return [
        Scenario("/healthz (HTTP stack, no database)", ("/healthz",), ""),
        Scenario("status of the search", (search,), "status"),
        Scenario("status of the search, read cache off", (search,), "status", cached=False),
        Scenario("candidate page: 50 best by accuracy_resnet", (f"{search}/candidates?sort=accuracy_resnet",), ""),
        Scenario(
            f"candidate page: 50 by accuracy_resnet after {depth:,} rows",
            (f"{search}/candidates?sort=accuracy_resnet&cursor={deep}",),
            "",
        ),
        Scenario("candidate page: 50 rejected at quality", (f"{search}/candidates?reason=quality",), ""),
        Scenario("Pareto front, 3 objectives", (f"{search}/pareto",), "pareto"),
        Scenario("Pareto front, 3 objectives, read cache off", (f"{search}/pareto",), "pareto", cached=False),
        Scenario(
            "Pareto front, 2 of 3 objectives",
            (f"{search}/pareto?objective=accuracy_resnet&objective=accuracy_mobilenetv2",),
            "pareto",
        ),
        Scenario(
            "Pareto front across searches", (f"{API}/pareto?architecture=resnet&architecture=efficientnet",), "pareto"
        ),
        Scenario(
            "candidate detail (200 different candidates)",
            tuple(f"{API}/candidates/{c['id']}" for c in late),
            "",
        ),
    ]


def _cursor_after(base: str, path: str, pages: int) -> str:
    cursor = None
    for _ in range(pages):
        suffix = f"&cursor={cursor}" if cursor else ""
        cursor = httpx.get(f"{base}{path}{suffix}", timeout=60).json()["next_cursor"]
    return cursor


def verdict(scenario: Scenario, measured: Measured) -> str:
    if scenario.target == "status":
        ok = measured.p99_ms <= TARGET_P99_MS and measured.rps >= TARGET_STATUS_RPS
        return f"p99 <= {TARGET_P99_MS:.0f} ms and >= {TARGET_STATUS_RPS:.0f}/s: {'yes' if ok else 'NO'}"
    if scenario.target == "pareto":
        return f"p99 <= {TARGET_P99_MS:.0f} ms: {'yes' if measured.p99_ms <= TARGET_P99_MS else 'NO'}"
    return "-"


def measure(url: str, search_id: int, args: argparse.Namespace) -> list[tuple[Scenario, Measured]]:
    results = []
    cached = Server(url, read_cache_seconds=1.0)
    try:
        plan = scenarios(cached.base, search_id)
        for scenario in [s for s in plan if s.cached]:
            results.append((scenario, run_load(cached.base, scenario, args.concurrency, args.warmup, args.seconds)))
            print(f"  {scenario.name}: {results[-1][1]}", flush=True)
    finally:
        cached.close()
    uncached = Server(url, read_cache_seconds=0.0)
    try:
        for scenario in [s for s in plan if not s.cached]:
            results.append((scenario, run_load(uncached.base, scenario, args.concurrency, args.warmup, args.seconds)))
            print(f"  {scenario.name}: {results[-1][1]}", flush=True)
    finally:
        uncached.close()
    return results


def report(backend: str, results: list[tuple[Scenario, Measured]], fill_seconds: float | None, args) -> str:
    floor = next(m for s, m in results if s.name.startswith("/healthz"))
    rows = []
    for scenario, m in results:
        rows.append(
            [
                backend,
                scenario.name,
                f"{m.p50_ms:.2f}",
                f"{m.p99_ms:.2f}",
                f"{m.rps:,.0f}",
                f"{m.rps / floor.rps:.2f}",
                m.errors,
                verdict(scenario, m),
            ]
        )
    headers = ["backend", "request", "p50 ms", "p99 ms", "requests/s", "throughput vs /healthz", "errors", "target"]
    filled = (
        ""
        if fill_seconds is None
        else (
            f"\n\n{backend}: filled {args.candidates:,} candidates and built the derived data in {fill_seconds:.0f} s."
        )
    )
    return markdown_table(headers, rows) + filled


def measure_filled(backend: str, url: str, args: argparse.Namespace) -> str:
    print(f"{backend}: filling {args.candidates:,} candidates", flush=True)
    started = time.perf_counter()
    search_id = fill_database(url, args.candidates, args.seed)
    return report(backend, measure(url, search_id, args), time.perf_counter() - started, args)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "load":
        load_main(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidates", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=8, help="connections the load generator keeps busy")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per request kind")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each measurement")
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="also measure PostgreSQL: a database created on this server for the run, dropped after it",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--database",
        metavar="URL",
        help="measure this already filled database (its newest search) instead of filling one",
    )
    args = parser.parse_args()

    sections = []
    if args.database:
        name = "SQLite (WAL)" if args.database.startswith("sqlite") else "PostgreSQL"
        sections.append(report(name, measure(args.database, newest_search(args.database), args), None, args))
    else:
        with tempfile.TemporaryDirectory() as directory:
            sections.append(measure_filled("SQLite (WAL)", f"sqlite:///{Path(directory) / 'api.db'}", args))
    if args.postgres:
        from store import temporary_postgres_database  # benchmarks/store.py

        url, drop = temporary_postgres_database(args.postgres)
        try:
            sections.append(measure_filled("PostgreSQL", url, args))
        finally:
            drop()

    body = (
        f"One search of {args.candidates:,} candidates (3 objectives: accuracy per architecture). Server: "
        "`uvicorn --factory service.app:create_app`, one worker process, default settings (read cache 1 s). "
        f"Load: a separate process on loopback keeping {args.concurrency} connections busy (aiohttp; each sends "
        f"its next request when the previous answer arrives), {args.warmup:g} s warm-up then {args.seconds:g} s "
        "measured per request kind; latency is the client's, from sending to the last byte. Server and load "
        "generator share this machine's cores (with other jobs: see the load average). Baselines: /healthz (the "
        "HTTP stack alone) and the rows 'read cache off' (a server with EVONORM_READ_CACHE_SECONDS=0: every request "
        "reads the database).\n\n" + "\n\n".join(sections)
    )
    path = write_result("api", f"The API under load at {args.candidates:,} candidates", body)
    print(body)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
