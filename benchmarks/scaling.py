"""Throughput of evaluations on Ray with 1, 2 (and more) worker processes, and the Ray path's overhead.

The workload is the evaluation the controller hands out: `evaluate_task` on library layers (cycled),
with the evaluation settings of a search configuration (default examples/quick.yaml: digits, three
small proxies, a quality check, one thread each). Everything runs in one local Ray session whose
workers are warm (imports, data), as they are after a search's first minute, and at the priority of
this process (RAY_worker_niceness=0; Ray's default, nice 15, would let any other work on a shared
machine starve them and the comparison would measure the scheduler, not Ray).

- Overhead per evaluation: `--overhead-pairs` paired runs (at least 5), each the same task in this
  process and through a `RayEvaluator` (submit, poll until its outcome is back) back to back, the order
  alternating from pair to pair (so drift in the machine's load favours neither path); per pair the
  ratio of the two wall times; the median over pairs with its spread (quartiles, range, and a bootstrap
  95% interval of the median). When that interval reaches past 0 the spread is larger than the effect,
  and the table says so.
- Scaling: `--rounds` rounds (at least 5) of `--tasks` evaluations with the evaluator kept full, as the
  controller does, at 1, 2, ... evaluations in flight (`max_in_flight`: that many worker processes
  busy), the counts alternating within every round (each round pairs them); efficiency = time with 1 /
  (N x time with N), per round, with the median, range and best round (the one other processes on the
  machine disturbed least).

    python benchmarks/scaling.py                  # writes benchmarks/results/scaling-<machine>.md
    python benchmarks/scaling.py --tasks 16 --rounds 5 --workers 1,2,4,8
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from itertools import count, cycle, islice
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import markdown_table, write_result

import evonorm_search as es
from evonorm_search.search import EvaluationTask, SearchConfig, evaluate_task

MIN_PAIRS = 5  # a comparison is the median of at least this many paired runs
BOOTSTRAP = 2000  # resamples for the interval of a median
LAYERS = ["evonorm_s0", "gn_silu", "evonorm_b0", "layernorm", "bn_relu", "evonorm_s1", "rmsnorm", "gn_relu"]
_ids = count(1)


def make_tasks(config: SearchConfig, number: int) -> list[EvaluationTask]:
    """`number` tasks over the library layers, each with a fresh candidate id (the evaluator wants unique ones)."""
    spec = config.evaluation_spec()
    return [
        EvaluationTask(0, next(_ids), es.library.get(name).to_dict(), spec) for name in islice(cycle(LAYERS), number)
    ]


def fresh(tasks: list[EvaluationTask]) -> list[EvaluationTask]:
    return [EvaluationTask(0, next(_ids), t.graph, t.spec) for t in tasks]


def run_full(evaluator, tasks: list[EvaluationTask]) -> float:
    """Keep the evaluator full until every task is back, as the controller does; wall seconds."""
    pending, outstanding = list(tasks), 0
    started = time.perf_counter()
    while pending or outstanding:
        while pending and outstanding < evaluator.capacity():
            evaluator.submit(pending.pop(0))
            outstanding += 1
        for outcome in evaluator.poll(timeout=0.5):
            assert outcome.error is None, outcome.error
            outstanding -= 1
    return time.perf_counter() - started


def timed_in_process(task: EvaluationTask) -> float:
    started = time.perf_counter()
    outcome = evaluate_task(task)
    assert outcome.error is None, outcome.error
    return time.perf_counter() - started


def load() -> float:
    return os.getloadavg()[0]


def measure_overhead(evaluator, tasks: list[EvaluationTask]) -> list[tuple[str, str, float, float, float]]:
    """(layer, which ran first, in-process s, Ray s, load) per pair: the same task both ways, back to back,
    in-process first in even pairs and Ray first in odd ones."""
    rows = []
    for number, task in enumerate(tasks):
        if number % 2 == 0:
            first = "in-process"
            local = timed_in_process(task)
            remote = run_full(evaluator, fresh([task]))
        else:
            first = "Ray"
            remote = run_full(evaluator, fresh([task]))
            local = timed_in_process(task)
        rows.append((_layer_name(task), first, local, remote, load()))
        print(f"  {rows[-1][0]}: in-process {local:.2f} s, Ray {remote:.2f} s (load {rows[-1][4]:.2f})", flush=True)
    return rows


def median_interval(values: list[float], seed: int = 0) -> tuple[float, float]:
    """A bootstrap 95% interval of the median of `values` (percentile method)."""
    rng = random.Random(seed)
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(BOOTSTRAP))
    return medians[int(0.025 * BOOTSTRAP)], medians[int(0.975 * BOOTSTRAP) - 1]


def spread(values: list[float], percent: bool = True) -> str:
    """Quartiles and range of `values`, as the tables print them."""
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else (values * 3)
    form = "{:+.1%}" if percent else "{:.0%}"
    return (
        f"quartiles {form.format(q1)} to {form.format(q3)}, range {form.format(min(values))} to "
        f"{form.format(max(values))}"
    )


def measure_scaling(evaluators: dict[int, object], tasks: list[EvaluationTask], rounds: int) -> list[dict]:
    """Per round: {workers: (seconds, load)}, the worker counts alternating within the round."""
    results = []
    for number in range(1, rounds + 1):
        found = {}
        for workers, evaluator in evaluators.items():
            seconds = run_full(evaluator, fresh(tasks))
            found[workers] = (seconds, load())
            print(f"  round {number}, {workers} worker(s): {seconds:.1f} s (load {found[workers][1]:.2f})", flush=True)
        results.append(found)
    return results


def _layer_name(task: EvaluationTask) -> str:
    graph = es.Graph.from_dict(task.graph)
    return next((name for name in LAYERS if es.library.get(name) == graph), "?")


def default_counts(cores: int) -> list[int]:
    counts = [1]
    while counts[-1] * 2 <= cores:
        counts.append(counts[-1] * 2)
    return counts


def report(args, config: SearchConfig, overhead: list, scaling: list[dict], counts: list[int], loads: str) -> str:
    ratios = [remote / local - 1 for _, _, local, remote, _ in overhead]
    extra_ms = [1000 * (remote - local) for _, _, local, remote, _ in overhead]
    low, high = median_interval(ratios)
    overhead_table = markdown_table(
        ["pair", "layer", "ran first", "in-process (s)", "through Ray (s)", "overhead", "load average (1 min)"],
        [
            [number, name, first, f"{a:.2f}", f"{b:.2f}", f"{b / a - 1:+.1%}", f"{ld:.2f}"]
            for number, (name, first, a, b, ld) in enumerate(overhead, start=1)
        ]
        + [
            [
                "**median**",
                "",
                "",
                "",
                "",
                f"**{statistics.median(ratios):+.1%}** ({statistics.median(extra_ms):+.0f} ms)",
                "",
            ]
        ],
    )
    overhead_summary = (
        f"Median of {len(ratios)} paired runs: **{statistics.median(ratios):+.1%}** "
        f"({statistics.median(extra_ms):+.0f} ms per evaluation); {spread(ratios)}; bootstrap 95% interval of the "
        f"median {low:+.1%} to {high:+.1%}."
        + (
            " The interval reaches past 0: the spread between pairs is larger than the effect, so these runs "
            "cannot tell the Ray path's overhead from none."
            if low <= 0 <= high
            else ""
        )
    )
    rows = []
    for workers in counts:
        seconds = [r[workers][0] for r in scaling]
        efficiencies = [r[1][0] / (workers * r[workers][0]) for r in scaling]
        rows.append(
            [
                workers,
                ", ".join(f"{s:.1f}" for s in seconds),
                f"{60 * args.tasks / statistics.median(seconds):.1f}",
                f"{60 * args.tasks / min(seconds):.1f}",
                ", ".join(f"{e:.0%}" for e in efficiencies),
                f"{statistics.median(efficiencies):.0%}",
                f"{max(efficiencies):.0%}",
            ]
        )
    scaling_table = markdown_table(
        [
            "worker processes",
            f"seconds for {args.tasks} evaluations, per round",
            "candidates / minute (median)",
            "candidates / minute (best)",
            "efficiency per round",
            "efficiency (median)",
            "efficiency (best round)",
        ],
        rows,
    )
    verdicts = _verdicts(statistics.median(ratios), (low, high), scaling, counts)
    return (
        f"Workload: evaluation settings of `{Path(args.config).name}` ({len(config.architectures)} proxies, "
        f"{config.training.steps} steps, `{config.data.name}` data, {config.training.threads} thread per "
        f"evaluation); layers cycled from {', '.join(LAYERS)}. One local Ray session with {max(counts)} CPUs, "
        f"warm workers at the priority of this process. Load average (1 min) over the run: {loads}.\n\n"
        f"## Overhead per evaluation: through Ray against in-process\n\n"
        f"{len(ratios)} paired runs: each the same task in this process and through a `RayEvaluator` (1 in "
        f"flight) back to back, which one first alternating from pair to pair.\n\n"
        f"{overhead_table}\n\n{overhead_summary}\n\n"
        f"## Scaling: evaluations in flight (worker processes busy)\n\n"
        f"{args.rounds} rounds of {args.tasks} evaluations, the evaluator kept full; within a round the worker "
        f"counts run one after the other.\n\n{scaling_table}\n\n"
        f"## Against the targets\n\n{verdicts}\n"
    )


def _verdicts(overhead: float, interval: tuple[float, float], scaling: list[dict], counts: list[int]) -> str:
    """Each target, met or not, on the median and on the least disturbed round: said plainly."""
    low, high = interval
    met = "met" if overhead <= 0.05 else "NOT met"
    certainty = (
        f"the interval of the median ({low:+.1%} to {high:+.1%}) is wider than the effect"
        if low <= 0 <= high
        else f"interval of the median {low:+.1%} to {high:+.1%}"
    )
    lines = [f"- Overhead per evaluation <= 5%: median {overhead:+.1%}, {met}; {certainty}."]
    if 2 in counts:
        efficiencies = [r[1][0] / (2 * r[2][0]) for r in scaling]
        median, best = statistics.median(efficiencies), max(efficiencies)
        lines.append(
            f"- Efficiency >= 90% from 1 to 2 workers: median of {len(efficiencies)} rounds {median:.0%} "
            f"({'met' if median >= 0.9 else 'NOT met'}; {spread(efficiencies, percent=False)}), best round "
            f"{best:.0%} ({'met' if best >= 0.9 else 'NOT met'}). With 2 cores, 2 workers need both: whatever else "
            "runs on the machine (the load average above counts it) takes from the 2-worker rounds."
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path(__file__).resolve().parents[1] / "examples" / "quick.yaml")
    parser.add_argument("--tasks", type=int, default=8, help="evaluations per scaling round")
    parser.add_argument(
        "--overhead-pairs", type=int, default=10, help=f"paired runs for the overhead (at least {MIN_PAIRS})"
    )
    parser.add_argument("--rounds", type=int, default=MIN_PAIRS, help=f"scaling rounds (at least {MIN_PAIRS})")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="allow fewer pairs and rounds (checks the script; its figures mean nothing)",
    )
    parser.add_argument(
        "--workers", default=None, help="worker processes to compare, comma-separated (default: 1, 2, 4, ... cores)"
    )
    args = parser.parse_args()
    if not args.smoke and min(args.overhead_pairs, args.rounds) < MIN_PAIRS:
        parser.error(f"--overhead-pairs and --rounds must be at least {MIN_PAIRS} (a comparison is a median of them)")
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # a local Ray on loopback only
    os.environ.setdefault("RAY_worker_niceness", "0")  # see the module doc

    from workers import RayEvaluator, WorkerResources, connect

    config = SearchConfig.from_yaml(args.config)
    counts = [int(n) for n in args.workers.split(",")] if args.workers else default_counts(os.cpu_count() or 1)
    if counts[0] != 1:
        parser.error("--workers must start with 1 (efficiency is against one worker)")
    loads = [load()]
    connection = connect(num_cpus=max(counts))
    evaluators = {n: RayEvaluator(WorkerResources(cpus=1), max_in_flight=n) for n in counts}
    try:
        warm = make_tasks(config, max(counts))
        run_full(evaluators[max(counts)], warm)  # every worker process: imports, data set
        for task in warm:
            evaluate_task(task)  # and this process alike
        print("overhead per evaluation:", flush=True)
        overhead = measure_overhead(evaluators[1], make_tasks(config, args.overhead_pairs))
        print("scaling:", flush=True)
        scaling = measure_scaling(evaluators, make_tasks(config, args.tasks), args.rounds)
    finally:
        for evaluator in evaluators.values():
            evaluator.close()
        connection.close()
    loads.append(load())
    loads += [r[4] for r in overhead] + [ld for found in scaling for _, ld in found.values()]
    span = f"{min(loads):.2f} to {max(loads):.2f}"
    body = report(args, config, overhead, scaling, counts, span)
    path = write_result("scaling", "Evaluations on Ray: overhead and scaling", body)
    print(body)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
