"""The API under concurrent load at 100,000 candidates: p50/p99 latency and throughput of every read route,
with the read cache on and off, and the query plans of the slowest ones.

Fills a SQLite database (and PostgreSQL with --postgres) with one search of 100,000 candidates (the same
filling as benchmarks/store.py: a realistic rejection funnel, lineage, evaluations on 3 architectures),
starts the service with uvicorn in its own process, and drives each read from a separate load-generator
process over loopback: `--concurrency` connections, each sending its next request as soon as the previous
answer arrived, for `--seconds` after a warm-up. Every route runs twice: against a server with the read
cache on (EVONORM_READ_CACHE_SECONDS=1, the default: status and Pareto fronts are then served from memory
for up to 1 s) and against one with it off (0: every request reads the database). Candidate pages and
candidate detail are never cached, so their two rows measure the same work twice. Baseline measured in
the same run: /healthz (the HTTP stack alone, no database).

Before that, the "database threads" table: the slowest read of the table before reads got threads of their
own (a candidate page sorted by an objective), read cache off, against one server per EVONORM_DATABASE_THREADS
value, in paired rounds (`--rounds`, `--database-threads`): the table that chose the setting's default.

Then, in this process, each statement the slowest uncached routes send is timed and explained (SQLite
`EXPLAIN QUERY PLAN`, PostgreSQL `EXPLAIN ANALYZE`) into the results file.

Targets: p99 <= 50 ms for every read route, cache on or off; >= 500 requests/s for status.
Writes benchmarks/results/api-<machine>.md; the machine is named with its load average at the start,
and every row with the load average (1 min) when its measurement ended.

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
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
from _common import markdown_table, write_result

TARGET_P99_MS = 50.0
TARGET_STATUS_RPS = 500.0
API = "/api/v1"
READ_CACHE_SECONDS = 1.0  # the service's default
EXPLAINED_ROUTES = 3  # the slowest uncached routes whose statements are timed and explained
# The benchmark's one client address would hit the formula rate limit of candidate detail (a per-client
# abuse limit, not a cost of the read): it is lifted for both servers.
SERVER_ENV = {"EVONORM_FORMULA_RATE_PER_MINUTE": "0"}
THREADS_ROUTE = "candidate page: 50 best by accuracy_resnet"  # the slowest read before reads had threads


@dataclass(frozen=True)
class Route:
    name: str
    paths: tuple[str, ...]  # requests cycle through these
    cacheable: bool  # whether the service's read cache can serve it (status and Pareto fronts)
    status_target: bool = False  # also the >= 500 requests/s target


@dataclass(frozen=True)
class Measured:
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    load: float = float("nan")  # load average (1 min) when the measurement ended

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


def run_load(base: str, route: Route, concurrency: int, warmup: float, seconds: float) -> Measured:
    command = [
        sys.executable,
        __file__,
        "load",
        base,
        "--paths",
        json.dumps(list(route.paths)),
        "--concurrency",
        str(concurrency),
        "--warmup",
        str(warmup),
        "--seconds",
        str(seconds),
    ]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return Measured(**json.loads(done.stdout), load=os.getloadavg()[0])


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
        search_id = fill(store, candidates, seed)
    analyze(url)
    return search_id


def analyze(url: str) -> None:
    """Planner statistics, as autovacuum (PostgreSQL) or `PRAGMA optimize` would leave them after a bulk load."""
    from sqlalchemy import create_engine

    engine = create_engine(url, isolation_level="AUTOCOMMIT") if url.startswith("postgresql") else create_engine(url)
    with engine.connect() as connection:
        connection.exec_driver_sql("ANALYZE")
    engine.dispose()


def newest_search(url: str) -> int:
    from evonorm_search import store as st

    with st.open_store(url) as store, store.session(readonly=True) as s:
        return st.list_searches(s, limit=1).items[0].id


def routes(base: str, search_id: int) -> list[Route]:
    search = f"{API}/searches/{search_id}"
    counts = httpx.get(f"{base}{search}", timeout=60).json()["counts"]
    depth = min(25_000, counts["evaluated"] // 2 // 500 * 500)  # halfway down the sorted list, at most 25,000
    deep = _cursor_after(base, f"{search}/candidates?sort=accuracy_resnet&limit=500", pages=depth // 500)
    birth_depth = counts["total"] // 2 // 500 * 500
    deep_birth = _cursor_after(base, f"{search}/candidates?limit=500", pages=birth_depth // 500)
    late = httpx.get(f"{base}{search}/candidates?status=evaluated&order=desc&limit=200", timeout=60).json()["items"]
    pages = f"{search}/candidates"
    return [
        Route("/healthz (HTTP stack, no database)", ("/healthz",), cacheable=False),
        Route("status of the search", (search,), cacheable=True, status_target=True),
        Route("Pareto front, 3 objectives", (f"{search}/pareto",), cacheable=True),
        Route(
            "Pareto front, 2 of 3 objectives",
            (f"{search}/pareto?objective=accuracy_resnet&objective=accuracy_mobilenetv2",),
            cacheable=True,
        ),
        Route(
            "Pareto front across searches",
            (f"{API}/pareto?architecture=resnet&architecture=efficientnet",),
            cacheable=True,
        ),
        Route("candidate page: 50 best by accuracy_resnet", (f"{pages}?sort=accuracy_resnet",), cacheable=False),
        Route(
            f"candidate page: 50 by accuracy_resnet after {depth:,} rows",
            (f"{pages}?sort=accuracy_resnet{deep}",),
            cacheable=False,
        ),
        Route(
            f"candidate page: 50 by birth after {birth_depth:,} rows",
            (f"{pages}?limit=50{deep_birth}",),
            cacheable=False,
        ),
        Route("candidate page: 50 rejected at quality", (f"{pages}?reason=quality",), cacheable=False),
        Route("candidate page: 50 newest evaluated", (f"{pages}?status=evaluated&order=desc",), cacheable=False),
        Route(
            "candidate detail (200 different candidates)",
            tuple(f"{API}/candidates/{c['id']}" for c in late),
            cacheable=False,
        ),
    ]


def _cursor_after(base: str, path: str, pages: int) -> str:
    """The query-string suffix (`&cursor=...`, or nothing at depth 0) of the page after `pages` pages."""
    cursor = None
    for _ in range(pages):
        suffix = f"&cursor={cursor}" if cursor else ""
        cursor = httpx.get(f"{base}{path}{suffix}", timeout=60).json()["next_cursor"]
    return f"&cursor={cursor}" if cursor else ""


def prime(base: str, route: Route) -> None:
    """Request each path once: formulas of the candidates shown get computed (sympy, seconds each), as a
    running server has them, instead of landing in the warm-up or the measurement."""
    for path in route.paths:
        httpx.get(base + path, timeout=120)


def verdict(route: Route, measured: Measured) -> str:
    if route.name.startswith("/healthz"):
        return "-"
    ok = measured.p99_ms <= TARGET_P99_MS and measured.errors == 0
    if route.status_target:
        ok = ok and measured.rps >= TARGET_STATUS_RPS
        return f"p99 <= {TARGET_P99_MS:.0f} ms and >= {TARGET_STATUS_RPS:.0f}/s: {'yes' if ok else 'NO'}"
    return f"p99 <= {TARGET_P99_MS:.0f} ms: {'yes' if ok else 'NO'}"


Result = tuple[Route, bool, Measured]  # (route, read cache on, measured)


def measure(url: str, search_id: int, args: argparse.Namespace) -> list[Result]:
    """Every route against a server with the read cache on, then against one with it off."""
    results: list[Result] = []
    plan: list[Route] = []
    for cache_on in (True, False):
        server = Server(url, read_cache_seconds=READ_CACHE_SECONDS if cache_on else 0.0, extra_env=SERVER_ENV)
        try:
            plan = plan or routes(server.base, search_id)
            for route in plan:
                prime(server.base, route)
                measured = run_load(server.base, route, args.concurrency, args.warmup, args.seconds)
                results.append((route, cache_on, measured))
                print(f"  cache {'on' if cache_on else 'off'}: {route.name}: {measured}", flush=True)
        finally:
            server.close()
    return results


def served_by(route: Route, cache_on: bool) -> str:
    if not route.cacheable:
        return "database (never cached)" if not route.name.startswith("/healthz") else "no database"
    return f"read cache ({READ_CACHE_SECONDS:g} s)" if cache_on else "database (cache off)"


def report(backend: str, results: list[Result]) -> str:
    floor = next(m for r, _, m in results if r.name.startswith("/healthz"))
    rows = []
    for route, cache_on, m in results:
        rows.append(
            [
                backend,
                route.name,
                served_by(route, cache_on),
                f"{m.p50_ms:.2f}",
                f"{m.p99_ms:.2f}",
                f"{m.rps:,.0f}",
                f"{m.rps / floor.rps:.2f}",
                m.errors,
                f"{m.load:.2f}",
                verdict(route, m),
            ]
        )
    headers = [
        "backend",
        "request",
        "served by",
        "p50 ms",
        "p99 ms",
        "requests/s",
        "throughput vs /healthz",
        "errors",
        "load (1 min)",
        "target",
    ]
    return markdown_table(headers, rows) + "\n\n" + summary(backend, results)


def summary(backend: str, results: list[Result]) -> str:
    """The verdict in words, cache off: the rows the target is about."""
    off = [(r, m) for r, on, m in results if not on and not r.name.startswith("/healthz")]
    missed = [(r, m) for r, m in off if "NO" in verdict(r, m)]
    loads = [m.load for _, _, m in results]
    span = f"load average (1 min) {min(loads):.2f} to {max(loads):.2f} during the measurements"
    worst = max(off, key=lambda x: x[1].p99_ms)
    if not missed:
        return (
            f"{backend}, read cache off: every read route at p99 <= {TARGET_P99_MS:.0f} ms (worst: {worst[0].name}, "
            f"p99 {worst[1].p99_ms:.1f} ms, p50 {worst[1].p50_ms:.1f} ms); {span}."
        )
    names = "; ".join(f"{r.name} (p99 {m.p99_ms:.1f} ms, p50 {m.p50_ms:.1f} ms)" for r, m in missed)
    return (
        f"{backend}, read cache off: the target is **missed** by {names}; {span}. The server, the load "
        "generator and the other jobs share 2 cores, so a load above 2 means requests waited for a core."
    )


# -- query plans of the slowest routes -----------------------------------------------------------------


def explain_slowest(url: str, results: list[Result], repeats: int) -> str:
    """Each statement the slowest uncached routes send, with its time in this process and its plan."""
    off = [(r, m) for r, on, m in results if not on and not r.name.startswith("/healthz")]
    slowest = sorted(off, key=lambda x: -x[1].p99_ms)[:EXPLAINED_ROUTES]
    statements = captured_statements(url, [r for r, _ in slowest])
    parts = []
    for route, measured in slowest:
        parts.append(f"### {route.name} (p99 {measured.p99_ms:.1f} ms under load)\n")
        for sql, parameters in statements[route.name]:
            median_ms, plan = explain(url, sql, parameters, repeats)
            parts.append(f"{median_ms:.3f} ms (median of {repeats}, one client):\n\n```sql\n{sql.strip()}\n```\n")
            parts.append(f"```\n{plan}\n```\n")
    return "\n".join(parts)


def captured_statements(url: str, wanted: list[Route]) -> dict[str, list[tuple[str, Any]]]:
    """The SQL each route sends, captured from one request through the app in this process (cache off)."""
    from fastapi.testclient import TestClient
    from sqlalchemy import event

    from service.app import create_app
    from service.settings import Settings

    settings = Settings(database_url=url, read_cache_seconds=0, launcher="none", formula_rate_per_minute=0)
    app = create_app(settings)
    captured: list[tuple[str, Any]] = []

    def record(_conn, _cursor, statement, parameters, _context, _many) -> None:
        if statement.lstrip().upper().startswith("SELECT") or statement.lstrip().upper().startswith("WITH"):
            captured.append((statement, parameters))

    found: dict[str, list[tuple[str, Any]]] = {}
    with TestClient(app) as client:
        client.get("/readyz")
        engine = app.state.context.store().engine
        event.listen(engine, "before_cursor_execute", record)
        try:
            for route in wanted:
                captured.clear()
                response = client.get(route.paths[0])
                assert response.status_code == 200, response.text[:500]
                found[route.name] = [(sql, params) for sql, params in captured if not _is_ping(sql)]
        finally:
            event.remove(engine, "before_cursor_execute", record)
    return found


def _is_ping(sql: str) -> bool:
    return sql.strip().upper() in ("SELECT 1", "SELECT 1;")


def explain(url: str, sql: str, parameters: Any, repeats: int) -> tuple[float, str]:
    """(median ms of the statement, its plan): SQLite EXPLAIN QUERY PLAN, PostgreSQL EXPLAIN ANALYZE."""
    from sqlalchemy import create_engine

    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            samples = []
            for _ in range(repeats):
                started = time.perf_counter()
                connection.exec_driver_sql(sql, parameters).all()
                samples.append((time.perf_counter() - started) * 1000)
            if engine.dialect.name == "sqlite":
                rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", parameters).all()
                plan = "\n".join(f"{row[0]} {row[1]} {row[3]}" for row in rows)
            else:
                rows = connection.exec_driver_sql(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", parameters).all()
                plan = "\n".join(row[0] for row in rows)
    finally:
        engine.dispose()
    return statistics.median(samples), plan


# -- database threads: the table that chose EVONORM_DATABASE_THREADS ----------------------------------


def measure_threads(url: str, search_id: int, args: argparse.Namespace) -> list[tuple[int, list[Measured]]]:
    """The candidate page route against one server per thread count (read cache off), in `args.rounds`
    rounds; each round measures every count once, in turn, so that a change in the machine's load falls
    on all of them alike."""
    counts = args.database_threads
    servers = {
        n: Server(url, read_cache_seconds=0.0, extra_env={**SERVER_ENV, "EVONORM_DATABASE_THREADS": str(n)})
        for n in counts
    }
    try:
        route = next(r for r in routes(servers[counts[0]].base, search_id) if r.name == THREADS_ROUTE)
        for server in servers.values():
            prime(server.base, route)
        runs: dict[int, list[Measured]] = {n: [] for n in counts}
        for round_ in range(args.rounds):
            for n in counts:
                runs[n].append(run_load(servers[n].base, route, args.concurrency, args.warmup, args.threads_seconds))
                print(f"  threads {n}, round {round_ + 1}: {runs[n][-1]}", flush=True)
    finally:
        for server in servers.values():
            server.close()
    return [(n, runs[n]) for n in counts]


def thread_counts(text: str) -> list[int]:
    """`--database-threads 1,2,4,40`: whole numbers >= 1 (EVONORM_DATABASE_THREADS's own bounds apply too)."""
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected thread counts like 1,2,4,40, got {text!r}") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"thread counts must be >= 1, got {text!r}")
    return counts


def _median_range(values: list[float], digits: int) -> str:
    return f"{statistics.median(values):,.{digits}f} [{min(values):,.{digits}f}-{max(values):,.{digits}f}]"


def threads_report(backend: str, measured: list[tuple[int, list[Measured]]], args: argparse.Namespace) -> str:
    from service.settings import Settings

    default = Settings.model_fields["database_threads"].default
    base = dict(measured).get(default)
    rows = []
    for n, runs in measured:
        paired = (
            _median_range([r.p99_ms / b.p99_ms for r, b in zip(runs, base, strict=True)], 2)
            if base is not None
            else "-"
        )
        rows.append(
            [
                f"{n}{' (default)' if n == default else ''}",
                _median_range([r.p50_ms for r in runs], 1),
                _median_range([r.p99_ms for r in runs], 1),
                _median_range([r.rps for r in runs], 0),
                paired,
                sum(r.errors for r in runs),
                _median_range([r.load for r in runs], 2),
            ]
        )
    headers = [
        "database threads",
        "p50 ms, median [range]",
        "p99 ms, median [range]",
        "requests/s, median [range]",
        f"p99 / p99 at {default}, paired by round",
        "errors",
        "load (1 min)",
    ]
    return (
        f"### {backend}: database threads\n\n{THREADS_ROUTE}, {args.concurrency} clients, read cache off: one "
        f"server per thread count (EVONORM_DATABASE_THREADS), {args.rounds} rounds of {args.warmup:g} s warm-up and "
        f"{args.threads_seconds:g} s measured, each round measuring every count in turn. 40 is the size of "
        "Starlette's general thread pool, which served every read before the database got threads of its own.\n\n"
        + markdown_table(headers, rows)
    )


# -- main ----------------------------------------------------------------------------------------------


def measure_backend(backend: str, url: str, search_id: int, args: argparse.Namespace, filled: str) -> str:
    threads = threads_report(backend, measure_threads(url, search_id, args), args) if args.rounds > 0 else ""
    results = measure(url, search_id, args)
    plans = explain_slowest(url, results, args.explain_repeats)
    return (
        f"## {backend}\n\n{filled}{report(backend, results)}\n\n{threads}\n\n"
        f"### Query plans: the {EXPLAINED_ROUTES} slowest routes with the read cache off\n\n{plans}"
    )


def measure_filled(backend: str, url: str, args: argparse.Namespace) -> str:
    print(f"{backend}: filling {args.candidates:,} candidates", flush=True)
    started = time.perf_counter()
    search_id = fill_database(url, args.candidates, args.seed)
    filled = f"Filled {args.candidates:,} candidates, built the derived data and ANALYZEd in {time.perf_counter() - started:.0f} s.\n\n"
    return measure_backend(backend, url, search_id, args, filled)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "load":
        load_main(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidates", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=8, help="connections the load generator keeps busy")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per route")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each measurement")
    parser.add_argument("--explain-repeats", type=int, default=20, help="timed runs of each explained statement")
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="also measure PostgreSQL: a database created on this server for the run, dropped after it",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--database-threads",
        type=thread_counts,
        default=[1, 2, 4, 40],
        help="thread counts the database-threads table compares (comma-separated)",
    )
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the database-threads table (0: skip it)")
    parser.add_argument(
        "--threads-seconds", type=float, default=5.0, help="measured seconds per thread count and round"
    )
    parser.add_argument(
        "--database",
        metavar="URL",
        help="measure this already filled database (its newest search) instead of filling one",
    )
    args = parser.parse_args()

    sections = []
    if args.database:
        name = "SQLite (WAL)" if args.database.startswith("sqlite") else "PostgreSQL"
        analyze(args.database)
        sections.append(measure_backend(name, args.database, newest_search(args.database), args, ""))
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
        "`uvicorn --factory service.app:create_app`, one worker process, default settings except the read "
        f"cache (on: {READ_CACHE_SECONDS:g} s, the default; off: 0) and the formula rate limit (off: one client "
        f"address sends everything). Load: a separate process on loopback keeping {args.concurrency} connections "
        f"busy (aiohttp; each sends its next request when the previous answer arrives), each path requested once, "
        f"then {args.warmup:g} s warm-up and {args.seconds:g} s measured per route; latency is the client's, from "
        "sending to the last byte. Server and load generator share this machine's cores with whatever else runs "
        "(the load average of each row says how busy it was; above 2, requests waited for a core). 'served by': "
        "the read cache serves status and Pareto fronts for up to 1 s when it is on; candidate pages and detail "
        "always read the database.\n\n" + "\n\n".join(sections)
    )
    path = write_result("api", f"The API under load at {args.candidates:,} candidates", body)
    print(body)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
