"""A load probe of the abuse limits: many clients sending oversized layers to /layers/check while /healthz
must keep answering.

Starts the service (`uvicorn --factory service.app:create_app`, one worker process, launcher off) on an
empty SQLite database, then for `--seconds`: `--clients` connections each send a costly layer (a formula
of thousands of operations once written out, seconds of sympy) to POST /api/v1/layers/check as soon as
the previous answer arrived, while one prober (a process of its own) asks /healthz every 50 ms. Two scenarios: the default
settings (the per-client rate limit answers most checks with 429), and the rate limit off, where only the
formula workers and their time limit stand between the checks and the server.

Target: /healthz p99 <= 100 ms with 50 clients, in both scenarios. Writes benchmarks/results/abuse-<machine>.md.

    python benchmarks/abuse.py [--clients 50] [--seconds 10] [--levels 6]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
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
    run: int
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


async def _drive(base: str, clients: int, seconds: float, text: str) -> Counter:
    counts: Counter = Counter()
    limits = httpx.Limits(max_connections=clients + 2)
    async with httpx.AsyncClient(base_url=base, limits=limits) as load:
        stop = time.monotonic() + seconds
        await asyncio.gather(*(_checker(load, text, stop, counts) for _ in range(clients)))
    return counts


async def _probe(base: str, seconds: float) -> dict:
    latencies: list[float] = []
    failures: list[int] = []
    async with httpx.AsyncClient(base_url=base) as probe:
        await _prober(probe, time.monotonic() + seconds, latencies, failures)
    return {"latencies": latencies, "failures": len(failures)}


def probe_main(argv: list[str]) -> None:
    """`abuse.py probe BASE SECONDS`: the /healthz prober, in a process of its own, so that its latencies are
    the server's, not the time the checkers' event loop kept it waiting."""
    base, seconds = argv[0], float(argv[1])
    print(json.dumps(asyncio.run(_probe(base, seconds))))


def run_scenario(
    name: str, run: int, url: str, clients: int, seconds: float, text: str, env: dict[str, str]
) -> Outcome:
    server = Server(url, read_cache_seconds=1.0, extra_env=env)
    try:
        # The formula workers start with the server; wait for them so the probe measures steady state.
        httpx.post(f"{server.base}/api/v1/layers/check", json={"dsl": "relu(x)"}, timeout=300)
        prober = subprocess.Popen(
            [sys.executable, __file__, "probe", server.base, str(seconds)], stdout=subprocess.PIPE, text=True
        )
        counts = asyncio.run(_drive(server.base, clients, seconds, text))
        probed = json.loads(prober.communicate(timeout=seconds + 120)[0])
    finally:
        server.close()
    return Outcome(name, run, clients, counts, probed["latencies"], probed["failures"])


def report(outcomes: list[Outcome], args: argparse.Namespace, formula_ops: int) -> str:
    rows = []
    for o in outcomes:
        p99 = o.percentile(0.99)
        answers = ", ".join(f"{code}: {n}" for code, n in sorted(o.checks.items(), key=lambda kv: str(kv[0])))
        rows.append(
            [
                o.scenario,
                o.run,
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
            "run",
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
        f"out) to POST /api/v1/layers/check back to back for {args.seconds:g} s (one process), while /healthz is "
        f"probed every {PROBE_EVERY * 1000:.0f} ms from another process. Server: uvicorn, one worker process, "
        "launcher off, formula workers EVONORM_FORMULA_WORKERS=2 (default), time limit EVONORM_FORMULA_SECONDS=5 "
        "(default), running at niceness +10 below the server. Server, load generator, prober and formula workers "
        f"share this machine's cores. No cache serves the checks: every layer is checked afresh. {args.runs} runs "
        "of each scenario, the scenarios taking turns.\n\n"
        + (f"{args.note}\n\n" if args.note else "")
        + table
        + "\n\n"
        + verdicts(outcomes)
    )


def verdicts(outcomes: list[Outcome]) -> str:
    """Per scenario: the median of the runs' /healthz p99 and its range."""
    lines = []
    for scenario in dict.fromkeys(o.scenario for o in outcomes):
        p99s = [o.percentile(0.99) for o in outcomes if o.scenario == scenario]
        median = statistics.median(p99s)
        lines.append(
            f"- {scenario}: /healthz p99 median **{median:.1f} ms** over {len(p99s)} runs (range {min(p99s):.1f}-"
            f"{max(p99s):.1f}); target p99 <= {TARGET_HEALTHZ_P99_MS:g} ms: "
            f"{'met' if median <= TARGET_HEALTHZ_P99_MS else 'missed'} on the median, in "
            f"{sum(p <= TARGET_HEALTHZ_P99_MS for p in p99s)} of {len(p99s)} runs."
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["probe"]:
        probe_main(argv[1:])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--levels", type=int, default=6, help="size of the costly layer (about 3^levels operations)")
    parser.add_argument("--runs", type=int, default=5, help="runs of each scenario, taking turns")
    parser.add_argument("--note", default="", help="a sentence for the results file (e.g. what else ran)")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.seconds <= 0 or args.levels < 1 or args.runs < 1:
        parser.error("--clients, --seconds, --levels and --runs must be positive")

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
        for run in range(1, args.runs + 1):  # the scenarios take turns, so a change in load falls on both
            for name, env in scenarios:
                outcome = run_scenario(name, run, url, args.clients, args.seconds, text, env)
                print(
                    f"{name}, run {run}: checks {dict(outcome.checks)}, /healthz p99 {outcome.percentile(0.99):.1f} ms"
                )
                outcomes.append(outcome)
        outcomes.sort(key=lambda o: (o.scenario != scenarios[0][0], o.run))
    path = write_result("abuse", "Abuse limits under load: /healthz while clients send oversized layers", "")
    path.write_text(path.read_text() + report(outcomes, args, formula_ops) + "\n", encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
