"""A load probe of the abuse limits: many clients sending oversized layers to /layers/check while /healthz
must keep answering.

Starts the service (`uvicorn --factory service.app:create_app`, one worker process, launcher off) on an
empty SQLite database, then for `--seconds`: `--clients` connections each send a costly layer (a formula
of thousands of operations once written out, seconds of sympy) to POST /api/v1/layers/check as soon as
the previous answer arrived, while one prober asks /healthz every 50 ms. Two scenarios: the default
settings (the per-client rate limit answers most checks with 429), and the rate limit off, where only the
formula workers and their time limit stand between the checks and the server.

Target: /healthz p99 <= 100 ms with 50 clients, in both scenarios. Writes benchmarks/results/abuse-<machine>.md.

    python benchmarks/abuse.py [--clients 50] [--seconds 10] [--levels 6]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
from _common import markdown_table, write_result
from api import Server

TARGET_HEALTHZ_P99_MS = 100.0
PROBE_EVERY = 0.05


def costly_layer(levels: int) -> str:
    """`levels` lines of `a = sigmoid(a) * a + tanh(a)`: a formula of about 3^levels operations."""
    lines = ["a0 = x"] + [f"a{i + 1} = sigmoid(a{i}) * a{i} + tanh(a{i})" for i in range(levels)]
    return "\n".join(lines)


@dataclass(frozen=True)
class Outcome:
    scenario: str
    clients: int
    checks: Counter
    healthz_ms: list[float]
    healthz_failures: int

    def percentile(self, q: float) -> float:
        ordered = sorted(self.healthz_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def _checker(client: httpx.AsyncClient, text: str, stop: float, counts: Counter) -> None:
    while time.monotonic() < stop:
        try:
            answer = await client.post(
                "/api/v1/layers/check", content=text, headers={"Content-Type": "text/plain"}, timeout=120
            )
            counts[answer.status_code] += 1
        except httpx.HTTPError as e:
            counts[type(e).__name__] += 1


async def _prober(client: httpx.AsyncClient, stop: float, latencies: list[float], failures: list[int]) -> None:
    while time.monotonic() < stop:
        started = time.perf_counter()
        try:
            answer = await client.get("/healthz", timeout=30)
            if answer.status_code != 200:
                failures.append(answer.status_code)
        except httpx.HTTPError:
            failures.append(0)
        latencies.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(max(0.0, PROBE_EVERY - (time.perf_counter() - started)))


async def _drive(base: str, clients: int, seconds: float, text: str) -> tuple[Counter, list[float], int]:
    counts: Counter = Counter()
    latencies: list[float] = []
    failures: list[int] = []
    limits = httpx.Limits(max_connections=clients + 2)
    async with (
        httpx.AsyncClient(base_url=base, limits=limits) as load,
        httpx.AsyncClient(base_url=base) as probe,
    ):
        stop = time.monotonic() + seconds
        await asyncio.gather(
            _prober(probe, stop, latencies, failures), *(_checker(load, text, stop, counts) for _ in range(clients))
        )
    return counts, latencies, len(failures)


def run_scenario(name: str, url: str, clients: int, seconds: float, text: str, env: dict[str, str]) -> Outcome:
    server = Server(url, read_cache_seconds=1.0, extra_env=env)
    try:
        # The formula workers start with the server; wait for them so the probe measures steady state.
        httpx.post(f"{server.base}/api/v1/layers/check", json={"dsl": "relu(x)"}, timeout=300)
        counts, latencies, failures = asyncio.run(_drive(server.base, clients, seconds, text))
    finally:
        server.close()
    return Outcome(name, clients, counts, latencies, failures)


def report(outcomes: list[Outcome], args: argparse.Namespace, formula_ops: int) -> str:
    rows = []
    for o in outcomes:
        p99 = o.percentile(0.99)
        answers = ", ".join(f"{code}: {n}" for code, n in sorted(o.checks.items(), key=lambda kv: str(kv[0])))
        rows.append(
            [
                o.scenario,
                o.clients,
                answers or "none",
                len(o.healthz_ms),
                o.healthz_failures,
                f"{statistics.median(o.healthz_ms):.1f}" if o.healthz_ms else "n/a",
                f"{o.percentile(0.95):.1f}",
                f"{p99:.1f}",
                f"{max(o.healthz_ms):.1f}" if o.healthz_ms else "n/a",
                "met" if p99 <= TARGET_HEALTHZ_P99_MS else "missed",
            ]
        )
    table = markdown_table(
        [
            "scenario",
            "clients",
            "check answers (status: count)",
            "/healthz probes",
            "probe failures",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "max ms",
            f"p99 <= {TARGET_HEALTHZ_P99_MS:g} ms",
        ],
        rows,
    )
    return (
        f"{args.clients} clients each sending a layer of {args.levels} levels ({formula_ops:,} operations written "
        f"out) to POST /api/v1/layers/check back to back for {args.seconds:g} s, while /healthz is probed every "
        f"{PROBE_EVERY * 1000:.0f} ms. Server: uvicorn, one worker process, launcher off, formula workers "
        "EVONORM_FORMULA_WORKERS=2 (default), time limit EVONORM_FORMULA_SECONDS=5 (default). Server, load "
        "generator and formula workers share this machine's cores. No cache serves the checks: every layer is "
        "checked afresh (the read cache holds search reads only).\n\n"
        + (f"{args.note}\n\n" if args.note else "")
        + table
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--levels", type=int, default=6, help="size of the costly layer (about 3^levels operations)")
    parser.add_argument("--note", default="", help="a sentence for the results file (e.g. what else ran)")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.seconds <= 0 or args.levels < 1:
        parser.error("--clients, --seconds and --levels must be positive")

    import evonorm_search as es
    from evonorm_search.symbolic import formula_size

    text = costly_layer(args.levels)
    formula_ops = formula_size(es.parse(text))
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'abuse.db'}"
        scenarios = [
            ("defaults (rate limit on)", {}),
            ("rate limit off", {"EVONORM_FORMULA_RATE_PER_MINUTE": "0"}),
        ]
        outcomes = []
        for name, env in scenarios:
            outcome = run_scenario(name, url, args.clients, args.seconds, text, env)
            print(f"{name}: checks {dict(outcome.checks)}, /healthz p99 {outcome.percentile(0.99):.1f} ms", flush=True)
            outcomes.append(outcome)
    path = write_result("abuse", "Abuse limits under load: /healthz while clients send oversized layers", "")
    path.write_text(path.read_text() + report(outcomes, args, formula_ops) + "\n", encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
