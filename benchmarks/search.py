"""The search, measured on the target task: the rejection funnel, evolution against random search with
every run's best layer validated, and the time of `evonorm-search run CONFIG` (default
`examples/quick.yaml`). Writes benchmarks/results/search-<machine>.md (search-transformer-<machine>.md
for `--config examples/transformer.yaml`) and a PNG plot beside it.

1. Rejection funnel: N random candidates of the quick.yaml search space go through the cheap checks
   (static, duplicate, numeric, stability) and, when they pass, the quality check (short training on
   each proxy). Share rejected and median time per stage; the median cheap-rejection time
   (static + numeric + stability) against the 50 ms target.
2. Evolution against random search at equal budget, `--seeds` seeds each (search seeds 0, 1, ...), every
   run a complete search through the controller and a SQLite store. Each run's best layer (highest mean
   proxy accuracy) is re-trained on the target task with the validation seeds (which no search uses)
   and reported as mean and std; medians per mode with a bootstrap 95% interval; the share of each
   run's top-10 layers that normalize (contain an aggregation).
3. The baselines and the controls on the target task (the same seeds), served from the score cache
   this script shares with the fidelity benchmark (`scores-<machine>.json`) when it holds them for the
   same settings, data, seeds, package version and training code (the section says how many), and the
   verdicts: evolution's median best validated score above random search's; the configuration's own
   search's best validated layer above every control and within one std of the reference baseline
   (gn_relu; rmsnorm for transformers) or better.
4. `evonorm-search run CONFIG` as a user runs it (local Ray, SQLite), timed by this script.

The machine is shared: the 1-minute load average is sampled throughout and reported.

    python benchmarks/search.py                 # the full run (about an hour on 2 cores)
    python benchmarks/search.py --config examples/transformer.yaml --top 2
    python benchmarks/search.py --smoke         # a few minutes, to check the script
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from _common import RESULTS, machine_slug, markdown_table, one_line, write_result
from fidelity import (
    CONTROLS,
    describe_architecture,
    family_of,
    score_target,
    served_from_cache,
    smoke_config,
    statistic,
)

import evonorm_search as es
from evonorm_search import statistics as decide
from evonorm_search.search import DuplicateIndex, EvaluationTask, InProcessEvaluator, SearchConfig, evaluate_task
from evonorm_search.search.controller import build_checks, create_search, run_search
from evonorm_search.search.objectives import mean_accuracy
from evonorm_search.search.pareto import hypervolume
from evonorm_search.search.pool import ProcessPoolEvaluator
from evonorm_search.search.rejection import STAGES
from evonorm_search.search.score_cache import CachedScores
from evonorm_search.search.scoring import LayerToScore
from evonorm_search.search.space import random_graph
from evonorm_search.store import CandidateStatus, Objective, list_candidates, list_searches, open_store

QUICK = Path(__file__).resolve().parents[1] / "examples" / "quick.yaml"
CHEAP_TARGET_MS = 50.0


class LoadSampler(threading.Thread):
    """Samples the 1-minute load average every few seconds while the benchmark runs."""

    def __init__(self, every: float = 5.0):
        super().__init__(daemon=True)
        self.every, self.samples, self.done = every, [os.getloadavg()[0]], threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.every):
            self.samples.append(os.getloadavg()[0])

    def summary(self) -> str:
        s = self.samples
        return f"1-minute load average over the run: median {statistics.median(s):.2f}, max {max(s):.2f} ({len(s)} samples)"


def quick_config(smoke: bool = False, path: Path = QUICK, **updates) -> SearchConfig:
    """The configuration's search without its fidelity ladder (these arms validate their best afterwards);
    `updates` replace top-level settings."""
    base = SearchConfig.from_yaml(path)
    if smoke:
        base = smoke_config(base)
    return SearchConfig.from_mapping({**base.model_dump(mode="json"), "fidelities": None, **updates})


# --------------------------------------------------------------------------------------------------
# 1. The rejection funnel
# --------------------------------------------------------------------------------------------------


def quality_spec(config: SearchConfig):
    """The worker spec cut to the quality prefix: training stops where the quality check scores."""
    spec = config.evaluation_spec()
    return spec.model_copy(update={"training": spec.training.model_copy(update={"steps": spec.quality.steps})})


def funnel(config: SearchConfig, n: int, seed: int) -> str:
    space = config.build_space()
    index = DuplicateIndex()
    chain = build_checks(config, index)
    spec = quality_spec(config)
    rng = random.Random(seed)
    rejected = dict.fromkeys(STAGES, 0)
    seconds: dict[str, list[float]] = {stage: [] for stage in STAGES}
    cheap = []
    for i in range(n):
        graph = random_graph(space, rng)
        verdict = chain.run(graph)
        cheap.append(verdict.cheap_seconds)
        for stage, s in verdict.seconds.items():
            seconds[stage].append(s)
        if verdict.rejection is not None:
            rejected[verdict.rejection.stage] += 1
            continue
        index.add(i, verdict.facts.canonical_hash, verdict.facts.fingerprint)
        outcome = evaluate_task(EvaluationTask(0, i, graph.to_dict(), spec))
        seconds["quality"].append(sum(r.duration for r in outcome.records if r.phase == "quality"))
        if outcome.status != "evaluated":
            rejected["quality"] += 1
    rows, reaching = [], n
    for stage in STAGES:
        share = rejected[stage] / n
        times = seconds[stage]
        rows.append(
            [
                stage,
                reaching,
                rejected[stage],
                f"{share:.1%}",
                f"{statistics.median(times) * 1e3:.2f}" if times else "-",
                f"{max(times) * 1e3:.1f}" if times else "-",
            ]
        )
        reaching -= rejected[stage]
    median_cheap = statistics.median(cheap) * 1e3
    verdict = "meets" if median_cheap <= CHEAP_TARGET_MS else "misses"
    table = markdown_table(["stage", "candidates reaching it", "rejected", "share of all", "median ms", "max ms"], rows)
    return (
        f"## 1. Rejection funnel: {n} random candidates\n\n"
        f"Space of `{config.name}` (max {config.space.max_ops} ops, axes {', '.join(space.axes)}); probes of shape "
        f"(8, 8, 4, 4); stability: {config.rejection.stability.steps} ascent steps, threshold "
        f"{config.rejection.stability.threshold:g}; quality: {config.rejection.quality.steps} steps on each "
        f"proxy, threshold {config.rejection.quality.threshold:.0%}. Times are per candidate that reached the "
        f"stage (quality: the training of the short run, up to the first failing architecture).\n\n{table}\n\n"
        f"Survivors (evaluated in a search): {reaching} of {n} ({reaching / n:.1%}).\n\n"
        f"**Median cheap-rejection time** (static + numeric + stability, per candidate): **{median_cheap:.2f} ms**; "
        f"90th percentile {sorted(cheap)[int(0.9 * len(cheap))] * 1e3:.2f} ms. Target <= {CHEAP_TARGET_MS:.0f} ms: "
        f"{verdict}.\n"
    )


# --------------------------------------------------------------------------------------------------
# 2. Evolution against random search, validated on the target
# --------------------------------------------------------------------------------------------------


@dataclass
class RunResult:
    mode: str
    seed: int
    seconds: float
    candidates: list  # store rows of the search's own candidates (baselines left out), by birth
    objectives: list[Objective]
    reused: bool = False  # read from an earlier run's SQLite file (--workdir), not searched in this run

    def originals(self, upto: int | None = None) -> list:
        return [
            c
            for c in self.candidates
            if c.status is CandidateStatus.EVALUATED and c.duplicate_of is None and (upto is None or c.birth < upto)
        ]

    def vectors(self, upto: int | None = None) -> list[list[float]]:
        return [[c.objectives[o.name] for o in self.objectives] for c in self.originals(upto)]

    def best_mean(self, upto: int | None = None) -> float:
        """The best mean proxy accuracy over the architectures (other objectives, such as cost, left out)."""
        return max((proxy_accuracy(c) for c in self.originals(upto)), default=0.0)

    def hypervolume(self, upto: int | None = None) -> float:
        return hypervolume(self.vectors(upto), self.objectives, [0.0] * len(self.objectives))

    def ranked(self) -> list:
        return sorted(self.originals(), key=lambda c: -proxy_accuracy(c))

    def normalizing_share(self, top: int = 10) -> float:
        best = self.ranked()[:top]
        return sum(bool(es.Graph.from_dict(c.graph).axes) for c in best) / len(best) if best else 0.0


def proxy_accuracy(candidate) -> float:
    """A stored candidate's mean accuracy over the proxy architectures (0 where it has none)."""
    return mean_accuracy(candidate.objectives) or 0.0


def search_run(config: SearchConfig, workdir: str) -> RunResult:
    """One complete search in its own SQLite file; a file that already holds the same search completed
    (an earlier run of this script with `--workdir`) is read instead of searched again, and one whose run
    was killed is resumed (the controller's crash-resume: nothing lost or repeated)."""
    torch.set_num_threads(1)
    store = open_store(f"sqlite:///{Path(workdir) / f'{config.mode}-{config.seed}.db'}")
    try:
        with store.session(readonly=True) as s:
            same = [x for x in list_searches(s).items if x.name == config.name]
        same = [x for x in same if SearchConfig.from_mapping(x.config) == config]
        done = [x for x in same if x.state.value == "completed"]
        reused = bool(done)
        if reused:
            search_id = done[0].id
            seconds = (done[0].finished_at - done[0].started_at).total_seconds()
        else:
            search_id = same[0].id if same else create_search(store, config)
            evaluator = InProcessEvaluator()
            start = time.perf_counter()
            try:
                # A search left by a killed run is resumed at once: its controller is gone.
                run_search(store, search_id, evaluator, poll_interval=0.05, stale_after=timedelta(0))
            finally:
                evaluator.close()
            seconds = time.perf_counter() - start
        with store.session(readonly=True) as s:
            rows, cursor = [], None
            while True:
                page = list_candidates(s, search_id, limit=1000, cursor=cursor)
                rows += page.items
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
        # list_candidates pages the search's own candidates: its baselines are left out.
        return RunResult(
            config.mode, config.seed, seconds, sorted(rows, key=lambda c: c.birth), config.objectives_spec(), reused
        )
    finally:
        store.close()


def run_searches(
    path: Path, budget: int, seeds: list[int], workdir: Path, smoke: bool, workers: int
) -> list[RunResult]:
    configs = [
        quick_config(smoke, path, name=f"bench-{mode}-{seed}", mode=mode, seed=seed, budget=budget)
        for seed in seeds
        for mode in ("evolution", "random")
    ]
    with cf.ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(search_run, c, str(workdir)) for c in configs]
        runs = []
        for f in futures:
            runs.append(f.result())
            r = runs[-1]
            print(f"  {r.mode} seed {r.seed}: {r.seconds:.0f}s, {len(r.originals())} trained", flush=True)
    return runs


def paired_comparison(runs, validated: dict) -> str:
    """Evolution against random search seed by seed (the same search seed draws both runs' first layers):
    the Wilcoxon signed-rank test and the bootstrap interval of the median difference decide."""
    by_seed: dict[int, dict[str, float]] = {}
    for i, r in enumerate(runs):
        if validated.get(i, {}).get("mean") is not None:
            by_seed.setdefault(r.seed, {})[r.mode] = validated[i]["mean"]
    pairs = [v for v in by_seed.values() if len(v) == 2]
    if not pairs:
        return "No seed has both runs validated."
    comparison = decide.paired_comparison([v["evolution"] for v in pairs], [v["random"] for v in pairs])
    differences = ", ".join(f"{d:+.3f}" for d in comparison.differences)
    return f"Paired by search seed, evolution minus random: {differences}. {comparison.text('evolution', 'random')}."


def validate_best(
    config: SearchConfig, runs: list[RunResult], seeds: list[int], workers: int, top: int
) -> tuple[dict[int, dict], CachedScores]:
    """Each run's top `top` layers by mean proxy accuracy re-trained on the target (the paper re-ranked its
    top candidates the same way); per run, the target scores (LayerScore JSON) of the best validated one,
    with its proxy rank and DSL added; and the scores of every pick, with how many the cache served."""
    picks = [(i, rank, c) for i, r in enumerate(runs) for rank, c in enumerate(r.ranked()[:top], 1)]
    layers = [
        LayerToScore(es.Graph.from_dict(c.graph), f"{runs[i].mode}-{runs[i].seed}#{rank}") for i, rank, c in picks
    ]
    with ProcessPoolEvaluator(workers) as evaluator:
        target = score_target(config, layers, seeds, evaluator, reuse=True)
    best: dict[int, dict] = {}
    for (i, rank, c), score in zip(picks, target.scores, strict=True):
        if score.get("mean") is not None and (i not in best or score["mean"] > best[i]["mean"]):
            best[i] = {
                **score,
                "proxy_rank": rank,
                "dsl": c.dsl,
                "proxy_score": proxy_accuracy(c),
            }
    return best, target


def reference_layers(config: SearchConfig) -> list[LayerToScore]:
    """The configuration's baselines, then the controls of the fidelity benchmark."""
    baselines = [LayerToScore(es.library.get(name), name) for name in config.baselines]
    return baselines + [LayerToScore(es.parse(text), name) for name, text in CONTROLS.items()]


def reference_scores(config: SearchConfig, seeds: list[int], workers: int) -> CachedScores:
    """The baselines' and the controls' target scores (in `reference_layers` order)."""
    with ProcessPoolEvaluator(workers) as evaluator:
        return score_target(config, reference_layers(config), seeds, evaluator, reuse=True)


def fmt_score(score: dict | None) -> str:
    if score is None or score.get("mean") is None:
        return "n/a"
    return f"{score['mean']:.4f} ± {score['std']:.4f}"


def compare_section(config, runs, validated, picks: CachedScores, target: CachedScores, seeds, budget, top) -> str:
    """Sections 2 and 3: `picks` holds the target scores of every run's top layers, `target` those of
    the baselines and controls (`reference_layers` order)."""
    layers = reference_layers(config)
    references = {layer.label: score for layer, score in zip(layers, target.scores, strict=True)}
    rows = []
    for i, r in enumerate(runs):
        status = [c.status for c in r.candidates]
        best = validated.get(i)
        rows.append([
            r.mode, r.seed, len(r.candidates), len(r.originals()), status.count(CandidateStatus.REJECTED),
            f"`{one_line(best['dsl'])}`" if best else "(nothing evaluated)",
            best["proxy_rank"] if best else "-", f"{best['proxy_score']:.4f}" if best else "-",
            fmt_score(best), f"{r.normalizing_share():.0%}", f"{r.seconds:.0f}",
        ])  # fmt: skip
    table = markdown_table(
        ["mode", "seed", "candidates", "trained", "rejected", "best validated layer", "proxy rank",
         "proxy score", "target mean ± std", "top-10 that normalize", "seconds"],
        rows,
    )  # fmt: skip
    summary, medians = [], {}
    for mode in ("evolution", "random"):
        scores = [
            validated[i]["mean"]
            for i, r in enumerate(runs)
            if r.mode == mode and validated.get(i, {}).get("mean") is not None
        ]
        shares = [r.normalizing_share() for r in runs if r.mode == mode]
        if scores:
            medians[mode] = decide.median_interval(scores)
            summary.append(
                f"{mode}: median best validated score **{medians[mode].text(4)}** (bootstrap 95% interval of "
                f"the median, {len(scores)} runs); median share of the top-10 that normalize "
                f"{statistics.median(shares):.0%}"
            )
    if len(medians) == 2:
        summary.append(paired_comparison(runs, validated))
    ref_rows = [
        [layer.label, "baseline" if layer.label in config.baselines else "control", statistic(layer), fmt_score(score)]
        for layer, score in zip(layers, target.scores, strict=True)
    ]
    quick = next(
        (
            validated[i]
            for i, r in enumerate(runs)
            if r.mode == "evolution" and r.seed == config.seed and i in validated
        ),
        None,
    )
    checks = []
    if quick is not None and quick.get("mean") is not None:
        controls = {n: s for n, s in references.items() if n in CONTROLS and s.get("mean") is not None}
        above = all(quick["mean"] > s["mean"] for s in controls.values())
        reference = family_of(config).reference
        gn = references.get(reference, {})
        near = gn.get("mean") is not None and quick["mean"] >= gn["mean"] - gn["std"]
        checks = [
            f"The `{config.name}` search's best layer (evolution, seed {config.seed}) scores {fmt_score(quick)} "
            f"on the target: above every control: **{'yes' if above else 'no'}**; within one std of {reference} "
            f"({fmt_score(gn)}) or better: **{'yes' if near else 'no'}**."
        ]
    t = config.validation
    return (
        f"## 2. Evolution against random search ({len(runs) // 2} seeds each, {budget} candidates per run)\n\n"
        f"`{config.name}` with `mode` and `seed` varied (search seeds {sorted({r.seed for r in runs})}); the "
        "budget counts every candidate proposed, rejected ones included. Each run's top "
        f"{top} layers by mean proxy accuracy are re-trained on the target task ({t.data.name} test split; "
        + ", ".join(describe_architecture(a) for a in t.architectures)
        + f"; {t.training.steps} steps) with the validation seeds {seeds}, which no search uses, and the "
        "best of them on the target is the run's best validated layer (the paper re-ranked its top "
        "candidates the same way; `evonorm-search validate ID --top K` does it for any search). "
        "A layer normalizes when it contains an aggregation (mean, var, std, rms over some axis). Target "
        f"scores of the {len(picks.scores)} layers re-trained: {picks.trained} distinct layers trained in this run, "
        + served_from_cache(picks)
        + "\n\n"
        f"{table}\n\n" + "\n".join(f"- {line}" for line in summary) + "\n\n"
        f"![best mean proxy accuracy and hypervolume against candidates]({family_of(config).search}-{machine_slug()}.png)\n\n"
        f"## 3. Baselines and controls on the target task\n\n"
        f"Seeds {seeds}; of {len(target.scores)} layers, {target.trained} trained in this run, "
        + served_from_cache(target)
        + "\n\n"
        + markdown_table(["layer", "kind", "statistic", "target mean ± std"], ref_rows)
        + "\n\n"
        + "\n".join(f"- {line}" for line in checks)
        + "\n"
    )


def plot(runs: list[RunResult], budget: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [*list(range(1, budget + 1, max(1, budget // 60))), budget]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for mode, color in (("evolution", "tab:blue"), ("random", "tab:orange")):
        rs = [r for r in runs if r.mode == mode]
        for ax, metric in zip(axes, ("best_mean", "hypervolume"), strict=True):
            curves = [[getattr(r, metric)(x) for x in xs] for r in rs]
            med = [statistics.median(v) for v in zip(*curves, strict=True)]
            lo = [min(v) for v in zip(*curves, strict=True)]
            hi = [max(v) for v in zip(*curves, strict=True)]
            ax.plot(xs, med, color=color, label=f"{mode} (median of {len(rs)} seeds)")
            ax.fill_between(xs, lo, hi, color=color, alpha=0.2)
    axes[0].set(
        xlabel="candidates proposed", ylabel="best mean proxy accuracy", title="best mean accuracy across proxies"
    )
    axes[1].set(xlabel="candidates proposed", ylabel="hypervolume (reference 0)", title="hypervolume of accuracies")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------------------------------
# 4. The quick search as a user runs it
# --------------------------------------------------------------------------------------------------


def time_quick_run(smoke: bool, path: Path = QUICK, settings: Sequence[str] = ()) -> str:
    """`evonorm-search run CONFIG [--set KEY=VALUE ...]` in a fresh SQLite file, timed with the load around
    it; with a ladder (`--set 'fidelities={...}'`), when the proxy rung ended and the validated front."""
    shown = " ".join([f"evonorm-search run examples/{path.name}", *(f"--set '{s}'" for s in settings)])
    with tempfile.TemporaryDirectory() as tmp:
        config_path = path
        if smoke:
            config_path = Path(tmp) / "quick.yaml"
            config_path.write_text(quick_config(True, path, budget=6).to_yaml())
        db = f"sqlite:///{tmp}/quick.db"
        command = [sys.executable, "-m", "evonorm_search", "run", str(config_path), "--db", db, "--no-live"]
        command += [part for setting in settings for part in ("--set", setting)]
        load_before = os.getloadavg()[0]
        start = time.perf_counter()
        out = subprocess.run(
            command, capture_output=True, text=True, timeout=3600, env={**os.environ, "EVONORM_HOME": tmp}
        )
        seconds = time.perf_counter() - start
        load_after = os.getloadavg()[0]
        answer = "" if out.returncode != 0 else validated_answer(db)
    if out.returncode != 0:
        return f"## 4. `{shown}`\n\nFailed (exit {out.returncode}):\n\n```\n{out.stderr[-2000:]}\n```\n"
    verdict = "meets" if seconds <= 600 else "misses"
    return (
        f"## 4. `{shown}`\n\n"
        f"Run by this script as a user runs it (local Ray with one evaluation per core, a new SQLite file, "
        f"baselines included, no cache): **{seconds / 60:.1f} minutes** of wall time; 1-minute load average "
        f"{load_before:.2f} before and {load_after:.2f} after. Target <= 10 minutes on 2 cores: {verdict}. "
        f"{checkout()}\n" + answer
    )


def checkout() -> str:
    """Which checkout ran: its path, commit, and whether its tracked files had changes (a fresh clone has none)."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short=12", "HEAD")
    if not commit:
        return f"From {root}, not a git checkout."
    changed = git("status", "--porcelain", "--untracked-files=no")
    return f"From the checkout at {root}, commit {commit}, " + (
        "with uncommitted changes." if changed else "its tracked files as committed."
    )


def validated_answer(db: str) -> str:
    """When the search's proxy rung ended (its last own candidate settled), and its validated front beside
    the validated baselines (mean ± std over the ladder's seeds); empty for a search without a ladder."""
    from evonorm_search.search.fronts import read_fronts
    from evonorm_search.search.validation import LAYER

    with open_store(db) as store, store.session(readonly=True) as s:
        fronts = read_fronts(s, 1)
        own, cursor = [], None
        while True:  # the search's own candidates (list_candidates leaves the baselines out)
            page = list_candidates(s, 1, limit=1000, cursor=cursor)
            own += page.items
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
    if fronts.config.fidelities is None:
        return ""
    search = fronts.search
    settled = [c.finished_at for c in own if c.finished_at is not None]
    rung_end = (max(settled) - search.started_at).total_seconds() if settled and search.started_at else float("nan")
    total = (
        (search.finished_at - search.started_at).total_seconds()
        if search.finished_at and search.started_at
        else float("nan")
    )
    rows = [
        [v.name, "layer" if v.role == LAYER else "baseline", str(len(v.score.runs)), f"{v.score.mean:.3f} ± {v.score.std:.3f}", f"`{one_line(v.score.layer)}`"]
        for v in sorted(fronts.validated, key=lambda v: (v.role != LAYER, -v.score.mean))
    ]  # fmt: skip
    return (
        f"\nThe proxy rung ended {rung_end:.0f} s after the search started; the search finished at {total:.0f} s "
        f"(the rest: the promoted layers' target runs, and the baselines' that were still running).\n\n"
        "Its validated front, on the target task's test split (the search's own figures, not a confirmation):\n\n"
        + markdown_table(["layer", "role", "seeds", "mean ± std", "DSL"], rows)
        + "\n"
    )


# --------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=QUICK, help="the search configuration (default: quick.yaml)")
    parser.add_argument("--funnel", type=int, default=1000, help="random candidates in the funnel")
    parser.add_argument("--budget", type=int, default=None, help="candidates per search (default: the configuration's)")
    parser.add_argument("--seeds", type=int, default=5, help="search seeds per mode")
    parser.add_argument("--workers", type=int, default=2, help="searches (and target trainings) at once")
    parser.add_argument("--top", type=int, default=3, help="layers of each run re-trained on the target")
    parser.add_argument("--workdir", default=None, help="keep the searches' SQLite files here and reuse them")
    parser.add_argument("--skip-quick-run", action="store_true", help="leave section 4 out")
    parser.add_argument(
        "--quick-run-only", action="store_true", help="only section 4, written to quick-run-<machine>.md"
    )
    parser.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="with --quick-run-only: passed to `run --set` (e.g. 'fidelities={eta: 3, max_promotions: 2, seeds: 1}')",
    )
    parser.add_argument("--label", default=None, help="with --quick-run-only: results file <config>-run-<label>")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check the script")
    args = parser.parse_args()
    if args.smoke:
        args.funnel, args.budget, args.seeds, args.workers, args.top = 20, 6, 1, 1, 2
    torch.set_num_threads(1)
    family = family_of(SearchConfig.from_yaml(args.config))
    if (args.settings or args.label) and not args.quick_run_only:
        parser.error("--set and --label go with --quick-run-only")
    if args.label is not None and not re.fullmatch(r"[a-z0-9][a-z0-9-]*", args.label):
        parser.error(f"--label must be lower-case letters, digits and dashes, got {args.label!r}")
    if args.quick_run_only:
        name = f"{args.config.stem}-run" + (f"-{args.label}" if args.label else "")
        body = time_quick_run(args.smoke, args.config, args.settings)
        path = write_result(name, f"The {args.config.stem} search as a user runs it", body)
        print(f"wrote {path}")
        return
    sampler = LoadSampler()
    sampler.start()
    started = time.perf_counter()
    config = quick_config(args.smoke, args.config)
    budget = args.budget or config.budget
    seeds = config.validation.seed_list()
    print("funnel ...", flush=True)
    sections = [funnel(config, args.funnel, seed=12345)]
    print("evolution against random search ...", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(args.workdir) if args.workdir else Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        runs = run_searches(args.config, budget, list(range(args.seeds)), workdir, args.smoke, args.workers)
    print("validating each run's best layer ...", flush=True)
    validated, picks = validate_best(config, runs, seeds, args.workers, args.top)
    references = reference_scores(config, seeds, args.workers)
    sections.append(compare_section(config, runs, validated, picks, references, seeds, budget, args.top))
    RESULTS.mkdir(parents=True, exist_ok=True)
    plot(runs, budget, RESULTS / f"{family.search}-{machine_slug()}.png")
    if not args.skip_quick_run:
        print(f"timing {args.config} ...", flush=True)
        sections.append(time_quick_run(args.smoke, args.config))
    sampler.done.set()
    minutes = (time.perf_counter() - started) / 60
    header = (
        f"Torch {torch.__version__}, 1 intra-op thread per process, float32 on CPU. {sampler.summary()} "
        "(above 2 the machine's 2 cores were shared with other work, so times are upper bounds). "
        f"The whole benchmark took {minutes:.1f} minutes"
        + (
            f"; {sum(r.reused for r in runs)} of {len(runs)} searches were read from an earlier run's SQLite "
            "files (`--workdir`), and their seconds below are that run's wall times"
            if any(r.reused for r in runs)
            else ""
        )
        + ".\n"
    )
    by_name = {layer.label: score for layer, score in zip(reference_layers(config), references.scores, strict=True)}
    raw = {"runs": [{"mode": r.mode, "seed": r.seed, "validated": validated.get(i)} for i, r in enumerate(runs)],
           "references": by_name}  # fmt: skip
    (RESULTS / f"{family.search}-{machine_slug()}.json").write_text(json.dumps(raw, indent=1), encoding="utf-8")
    path = write_result(
        family.search,
        f"Search ({config.name}): rejection funnel, evolution against random search on the target task",
        header + "\n" + "\n".join(sections),
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
