"""Thousands of evaluations in flight through Ray: the real controller and store drive a simulated cluster
whose evaluations are Ray actor calls (`workers/simulated_ray.py`), on a local multi-node Ray cluster
(`ray.cluster_utils.Cluster`: a head without CPUs and `--nodes` nodes, each with its own raylet).

`benchmarks/paper_scale.py` measures the controller and the store against simulated workers in its own
process; this script puts Ray between them: every evaluation is submitted to an actor on some node, sleeps
its drawn duration there (lognormal around 90 s times `--time-factor`) and its outcome comes back through
Ray's object store. Actors are killed with their calls in flight `--kills` times during the run (a worker
process dying); Ray restarts them and runs their calls again. The search is `examples/paper.yaml`'s,
stopped after `--max-seconds` as the API stops a search (everything in flight is cancelled).

Reported: the most evaluations in flight at once and how long the controller took to get there; results
per second once full; Ray's overhead per evaluation (from submit to the outcome in the driver, minus the
drawn duration) for calls whose actor lived and for calls run again after a kill; the driver's memory;
and whether anything was lost (every submitted evaluation came back once or was cancelled, no candidate
failed, none is left queued or running).

    python benchmarks/ray_scale.py                               # 2,000 in flight on 4 nodes, PostgreSQL
    python benchmarks/ray_scale.py --skip-postgres --in-flight 500
    python benchmarks/ray_scale.py --smoke                       # a minute, to check the script
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the workers package

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

from _common import markdown_table, write_result
from paper_scale import MEDIAN_SECONDS, paper_config, rss_mb
from search import LoadSampler
from store import temporary_postgres_database

from evonorm_search import store as st
from evonorm_search.search.controller import create_search, run_search
from evonorm_search.search.simulated import LognormalDelay


@dataclass
class Sample:
    at: float  # seconds since the controller started
    in_flight: int
    collected: int
    rss: float  # the driver's resident set, MiB


@dataclass
class RayRun:
    backend: str
    nodes: int
    slots: int
    seconds: float
    proposed: int
    state: str
    stats: object  # workers.simulated_ray.RayStats
    samples: list[Sample] = field(default_factory=list)
    by_status: dict[str, int] = field(default_factory=dict)


def run(args: argparse.Namespace, url: str, backend: str) -> RayRun:
    from workers.simulated_ray import RaySimulatedCluster

    slots = math.ceil(args.in_flight / args.nodes)
    spacing = max(1, args.kill_every)
    kills = [spacing * (i + 1) for i in range(args.kills)]
    store = st.open_store(url)
    search_id = create_search(store, paper_config(args.budget))
    samples: list[Sample] = []
    started = time.perf_counter()
    stop_sent = False
    with RaySimulatedCluster(
        args.nodes,
        slots,
        delay=LognormalDelay(MEDIAN_SECONDS, args.sigma),
        time_factor=args.time_factor,
        seed=args.seed,
        kill_at=kills,
    ) as evaluator:

        def watch(progress) -> None:
            nonlocal stop_sent
            now = time.perf_counter() - started
            if not samples or now - samples[-1].at >= args.sample_every:
                samples.append(Sample(now, len(evaluator.calls), evaluator.stats.collected, rss_mb()))
            if now > args.max_seconds and not stop_sent:
                stop_sent = True  # as the API stops a search: the controller cancels what is in flight
                with store.session() as s:
                    st.set_search_state(s, search_id, st.SearchState.STOPPING)

        final = run_search(store, search_id, evaluator, progress=watch, poll_interval=args.poll_interval)
        seconds = time.perf_counter() - started
        samples.append(Sample(seconds, len(evaluator.calls), evaluator.stats.collected, rss_mb()))
        stats = evaluator.stats
    with store.session(readonly=True) as s:
        summary = st.search_summary(s, search_id)
    store.close()
    by_status = {str(k): v for k, v in summary.by_status.items()}
    return RayRun(backend, args.nodes, slots, seconds, final.proposed, str(final.state), stats, samples, by_status)


def report(r: RayRun, args: argparse.Namespace) -> str:
    stats = r.stats
    capacity = r.nodes * r.slots
    full = next((s for s in r.samples if s.in_flight >= 0.95 * capacity), None)
    last = r.samples[-2] if len(r.samples) > 1 else r.samples[-1]  # before the stop cancelled everything
    rate = (last.collected - full.collected) / (last.at - full.at) if full and last.at > full.at else float("nan")
    demand = capacity / (MEDIAN_SECONDS * args.time_factor)
    lost = stats.submitted - stats.collected - stats.cancelled  # type: ignore[attr-defined]
    rows = [
        ["store", r.backend],
        ["nodes x concurrent calls per node", f"{r.nodes} x {r.slots} = {capacity:,}"],
        ["most evaluations in flight at once", f"{stats.peak_in_flight:,}"],  # type: ignore[attr-defined]
        ["seconds until 95% of capacity was in flight", "never" if full is None else f"{full.at:.0f}"],
        ["results per second once full (until the stop)", f"{rate:.1f} (the cluster's demand at the median: {demand:.1f})"],
        ["evaluations submitted / came back / cancelled at the stop", f"{stats.submitted:,} / {stats.collected:,} / {stats.cancelled:,}"],  # type: ignore[attr-defined]
        ["lost (submitted, never came back, not cancelled)", f"{lost}"],
        ["actors killed with calls in flight / their calls run again and back", f"{stats.kills} / {stats.rerun}"],  # type: ignore[attr-defined]
        ["errors from Ray / failed candidates", f"{stats.errors} / {r.by_status.get('failed', 0)}"],  # type: ignore[attr-defined]
        ["candidates left queued or running", f"{r.by_status.get('queued', 0) + r.by_status.get('running', 0)}"],
        ["Ray's overhead per evaluation, actor alive: p50 / p99 / max", _percentiles(stats.overheads)],  # type: ignore[attr-defined]
        ["the same, calls run again after a kill: p50 / max", _percentiles(stats.rerun_overheads, p99=False)],  # type: ignore[attr-defined]
        ["driver memory (RSS): start / peak / end", _memory(r.samples)],
        ["candidates proposed; the search's end", f"{r.proposed:,}; {r.state} after {r.seconds:.0f} s"],
    ]  # fmt: skip
    timeline = [
        [f"{s.at:.0f}", f"{s.in_flight:,}", f"{s.collected:,}", f"{s.rss:.0f}"]
        for s in r.samples[:: max(1, len(r.samples) // 12)]
    ]
    return (
        markdown_table(["", "measured"], rows)
        + "\n\nOverhead: from `submit` to the outcome in the driver, minus the evaluation's drawn duration. It holds"
        " Ray's scheduling, the object store round trip, and the wait until the controller's next poll"
        f" (every {args.poll_interval} s, or sooner when it has work); the controller's own write path is in"
        " `paper-scale-*.md`. A call run again after its actor was killed sleeps its whole duration again, so"
        " its overhead is the part it had slept before the kill plus the restart.\n\n"
        + markdown_table(["seconds", "in flight", "came back", "driver RSS (MiB)"], timeline)
    )


def _percentiles(values: list[float], p99: bool = True) -> str:
    if not values:
        return "none"
    ordered = sorted(values)
    p50 = statistics.median(ordered) * 1000
    top = ordered[-1] * 1000
    if not p99:
        return f"{p50:.0f} ms / {top:.0f} ms ({len(ordered)} calls)"
    q99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000
    return f"{p50:.0f} ms / {q99:.0f} ms / {top:.0f} ms ({len(ordered):,} calls)"


def _memory(samples: list[Sample]) -> str:
    rss = [s.rss for s in samples]
    return f"{rss[0]:.0f} / {max(rss):.0f} / {rss[-1]:.0f} MiB"


def start_cluster(nodes: int):
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    for _ in range(nodes):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
    return cluster


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--in-flight", type=int, default=2000, help="evaluations the cluster runs at once")
    parser.add_argument("--nodes", type=int, default=4, help="Ray nodes, one simulated-worker actor each")
    parser.add_argument("--budget", type=int, default=20_000, help="candidates (the stop usually comes first)")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="stop the search after this long")
    parser.add_argument("--time-factor", type=float, default=1.0, help="wall seconds per simulated second")
    parser.add_argument("--sigma", type=float, default=0.5)
    parser.add_argument("--kills", type=int, default=3, help="actors killed with their calls in flight")
    parser.add_argument("--kill-every", type=int, default=1000, help="outcomes between kills")
    parser.add_argument("--poll-interval", type=float, default=0.5)
    parser.add_argument("--sample-every", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--skip-postgres", action="store_true", help="SQLite instead")
    parser.add_argument("--label", default=None, help="results file ray-scale-<label>-<machine>.md")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        args.in_flight, args.nodes, args.budget, args.max_seconds = 40, 2, 400, 20.0
        args.time_factor, args.kills, args.kill_every, args.sample_every = 1 / 60, 2, 30, 1.0
    if args.in_flight < args.nodes or args.nodes < 1:
        parser.error("--nodes must be at least 1 and --in-flight at least --nodes")
    if args.kills < 0 or args.max_seconds <= 0 or args.time_factor <= 0:
        parser.error("--kills must be at least 0; --max-seconds and --time-factor positive")
    sampler = LoadSampler()
    sampler.start()
    cluster = start_cluster(args.nodes)
    drop = None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            if args.skip_postgres:
                url, backend = f"sqlite:///{tmp}/ray-scale.db", "SQLite"
            else:
                url, drop = temporary_postgres_database(args.postgres)
                backend = "PostgreSQL"
            result = run(args, url, backend)
    finally:
        import ray

        ray.shutdown()
        cluster.shutdown()
        if drop is not None:
            drop()
    body = (
        f"`examples/paper.yaml`'s search (population 2,500, tournament 25) on {result.backend}, evaluations as Ray "
        f"actor calls on a local Ray cluster of {args.nodes} nodes (a head without CPUs; `ray.cluster_utils`), "
        f"lognormal durations around {MEDIAN_SECONDS:.0f} s (sigma {args.sigma}) times {args.time_factor:g}, "
        f"{args.kills} actor kills {args.kill_every} outcomes apart, stopped after {args.max_seconds:.0f} s. "
        f"{sampler.summary()}. No cache.\n\n" + report(result, args)
    )
    name = "ray-scale" + (f"-{args.label}" if args.label else "")
    path = write_result(name, "Thousands of evaluations in flight through Ray", body)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
