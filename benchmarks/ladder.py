"""The fidelity ladder measured: four arms at equal compute, their answers scored on the confirmation split.

Arms (per search seed, all from `--config`, default `examples/quick.yaml`):
- evolution with the ladder: the search promotes its best candidates to the target task while it runs
  (`fidelities:`); its answer is the promoted layer with the best target mean;
- evolution without it: the same search's proxy results, and afterwards its final top `--promotions`
  layers by the same ranking (Pareto rank, then crowding) trained on the target with the same seeds; its
  answer is the best of those;
- random search with and without the ladder, alike.

Equal compute: with `--compute N` every search is bounded by N training examples (`compute_budget`: its
rung-0 runs, quality-rejection prefixes and its own target seeds, `search/ladder.py`), so random search,
whose candidates are rejected more often, proposes more of them for the same training; the arms without
the ladder train as many target runs afterwards as the ladder did while the search ran. Without
`--compute`, each search proposes `budget` candidates and the arms' compute differs (reported). The search
runs once per mode and seed with the ladder on, promoting when rung 0 ends: then the ladder never changes
what the search proposes (no target score reaches parent selection before the last proposal;
tests/search/test_ladder.py checks that a search proposes the same layers with and without it), so the
arm without the ladder is read from the same run, and only its afterwards-picks that the ladder did not
promote train here. Baselines stay out of the searches: they
train once, through the score cache, on the target and on the confirmation split.

Every arm's answer is then scored on the confirmation split (`split: confirm`, seeds from
`--confirm-first-seed`), which no search, rung or design choice reads. Reported: per arm the median
confirmed answer and its spread, the share of seeds whose answer is at or above gn_relu's confirmed mean,
and paired comparisons between arms (Wilcoxon signed-rank and a bootstrap interval of the median
difference; fewer than 8 pairs decide nothing). Also Kendall's tau between the proxy score and the target
score among the layers the searches selected (promoted or picked), where the search operates.

    python benchmarks/ladder.py                       # 8 seeds, the configuration's budget (hours on 2 cores)
    python benchmarks/ladder.py --compute 2400000     # equal compute: 2.4M training examples per search
    python benchmarks/ladder.py --budget 60 --seeds 8 # a reduced run
    python benchmarks/ladder.py --smoke               # a minute, to check the script
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import markdown_table, one_line, write_result
from fidelity import CONTROLS, scores_through_cache, smoke_config
from search import QUICK, LoadSampler, proxy_accuracy, search_run

import evonorm_search as es
from evonorm_search import statistics as decide
from evonorm_search.search import SearchConfig
from evonorm_search.search.ladder import Ladder, own_examples, promotion_ranking, target_examples
from evonorm_search.search.pareto import as_vector
from evonorm_search.search.pool import ProcessPoolEvaluator
from evonorm_search.search.scoring import LayerToScore
from evonorm_search.store import open_store, results_in_commit_order, search_summary, validation_runs

MODES = ("evolution", "random")
ARMS = ("evolution + ladder", "evolution, no ladder", "random + ladder", "random, no ladder")
COMPARISONS = (
    ("evolution + ladder", "random + ladder"),
    ("evolution + ladder", "evolution, no ladder"),
    ("random + ladder", "random, no ladder"),
    ("evolution, no ladder", "random, no ladder"),
)
REFERENCE = "gn_relu"


@dataclass
class Pick:
    """A layer one search selected for the target task: by the ladder, afterwards, or both."""

    label: str  # "<mode>-<search seed>#<candidate id>": ids repeat across the searches' databases
    candidate_id: int
    dsl: str
    proxy: float  # mean proxy accuracy (rung 0)
    promoted: bool
    picked_after: bool
    target: dict[str, float] = field(default_factory=dict)  # seed -> mean over target architectures


@dataclass
class LadderRun:
    mode: str
    seed: int
    seconds: float
    evaluated: int
    rung0_examples: int  # evaluated candidates and quality-rejection prefixes
    proposed: int  # candidates the search proposed, rejected ones included
    picks: list[Pick]
    promoted_after: list[int] = field(default_factory=list)  # rung-0 results the rung held at each promotion

    def answer(self, ladder: bool) -> Pick | None:
        """The arm's answer: its target-validated layer with the best mean over the ladder seeds."""
        chosen = [p for p in self.picks if (p.promoted if ladder else p.picked_after) and p.target]
        return max(chosen, key=lambda p: (statistics.fmean(p.target.values()), -p.candidate_id), default=None)


def ladder_config(
    base: SearchConfig,
    *,
    mode: str,
    seed: int,
    budget: int,
    promotions: int,
    seeds: int,
    compute: int | None = None,
) -> SearchConfig:
    # Promotions when rung 0 ends (the default), after the last proposal: no target score reaches parent
    # selection, so the arm without the ladder can be read from the same run (module docstring). With
    # `min_results`, selection would read the target rung while the search runs and the arms would need
    # searches of their own; search-ladder-cpu2.md measured that schedule (min_results 6) before.
    fidelities = {"eta": 3, "max_promotions": promotions, "seeds": seeds}
    mapping = base.model_dump(mode="json")
    mapping |= {"name": f"ladder-{mode}-{seed}", "mode": mode, "seed": seed, "budget": budget}
    mapping |= {"compute_budget": compute}
    mapping |= {"fidelities": fidelities, "baselines": []}
    return SearchConfig.from_mapping(mapping)


def ladder_run(config: SearchConfig, workdir: str) -> LadderRun:
    """One search with its ladder, and what each arm selected from it (target scores of the ladder's picks
    read from the store; the afterwards-picks the ladder did not promote are trained later)."""
    run = search_run(config, workdir)
    assert config.fidelities is not None
    objectives = run.objectives
    architectures = {a.label for a in config.validation.architectures}
    by_id = {c.id: c for c in run.candidates}
    url = f"sqlite:///{Path(workdir) / f'{config.mode}-{config.seed}.db'}"
    with open_store(url, create=False) as store, store.session(readonly=True) as s:
        search_id = next(iter(by_id.values())).search_id if by_id else None
        results = results_in_commit_order(s, search_id) if search_id is not None else []
        vectors = [(cid, as_vector(values, objectives)) for cid, values in results]
        ladder = Ladder(config.fidelities, objectives)
        promoted_after = []
        for cid, vector in vectors:  # `Ladder.replay`, noting when each promotion happened
            promoted_after += [len(ladder.results)] * len(ladder.add_result(cid, vector))
        promoted_after += [len(ladder.results)] * len(ladder.finish())
        ranking = promotion_ranking([v for _, v in vectors], objectives)
        after = [vectors[i][0] for i in ranking[: config.fidelities.max_promotions]]
        stored = validation_runs(s, ladder.promoted)
        summary = search_summary(s, search_id) if search_id is not None else None
        spent = own_examples(s, summary, config) if summary is not None else 0
    picks = []
    for cid in dict.fromkeys([*ladder.promoted, *after]):
        c = by_id[cid]
        target = {
            r.seed: statistics.fmean(r.accuracies[a] for a in architectures)
            for r in stored.get(cid, [])
            if architectures <= set(r.accuracies)
        }
        picks.append(
            Pick(
                f"{config.mode}-{config.seed}#{cid}",
                cid,
                c.dsl,
                proxy_accuracy(c),
                cid in ladder.promoted,
                cid in after,
                target,
            )
        )
    own_target = sum(len(p.target) for p in picks if p.promoted) * target_examples(config)
    return LadderRun(
        config.mode,
        config.seed,
        run.seconds,
        len(results),
        spent - own_target,
        len(run.candidates),
        picks,
        promoted_after,
    )


def run_searches(configs: list[SearchConfig], workdir: Path, workers: int) -> list[LadderRun]:
    with cf.ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(ladder_run, c, str(workdir)) for c in configs]
        runs = []
        for f in futures:
            runs.append(f.result())
            r = runs[-1]
            promoted = sum(p.promoted for p in r.picks)
            print(f"  {r.mode} seed {r.seed}: {r.seconds:.0f}s, {r.evaluated} trained, {promoted} promoted", flush=True)
    return runs


def train_afterwards_picks(config: SearchConfig, runs: list[LadderRun], workers: int) -> tuple[int, int]:
    """Target scores for the afterwards-picks the ladder did not promote (same seeds as the ladder's);
    returns (layers scored, served from the cache)."""
    missing = [p for r in runs for p in r.picks if not p.target]
    if not missing:
        return 0, 0
    layers = [LayerToScore(es.parse(p.dsl), p.label) for p in missing]
    specs = [config.target_spec(seed) for seed in config.ladder_seeds()]
    scores = score(layers, specs, workers)
    for pick, result in zip(missing, scores.scores, strict=True):
        pick.target = {r["seed"]: _mean(r["accuracies"]) for r in result["runs"] if r["error"] is None}
    return len(missing), scores.served


def _mean(accuracies: dict[str, float]) -> float:
    return statistics.fmean(accuracies.values())


def score(layers: list[LayerToScore], specs, workers: int):
    with ProcessPoolEvaluator(workers) as evaluator:
        return scores_through_cache(layers, specs, evaluator, reuse=True)


def references(base: SearchConfig) -> list[str]:
    """The layers every answer is confirmed beside: the configuration's baselines and gn_relu."""
    return list(dict.fromkeys([*base.baselines, REFERENCE]))


def confirm(config: SearchConfig, base: SearchConfig, answers: dict[str, str], seeds: list[int], workers: int):
    """Confirmation-split scores of each distinct answer (label -> DSL), of `base`'s baselines (the searches
    run without theirs) and of the controls that do not normalize (`fidelity.CONTROLS`)."""
    layers = [LayerToScore(es.library.get(name), name) for name in references(base)]
    layers += [LayerToScore(es.parse(text), name) for name, text in CONTROLS.items()]
    layers += [LayerToScore(es.parse(dsl), label) for label, dsl in answers.items()]
    specs = [config.confirmation_spec(seed) for seed in seeds]
    scored = score(layers, specs, workers)
    return {layer.label: result for layer, result in zip(layers, scored.scores, strict=True)}, scored


def arms_of(modes: list[str]) -> list[str]:
    """The arms the searches of `modes` give, in the order of ARMS."""
    return [arm for arm in ARMS if arm.split()[0].rstrip(",") in modes]


def arm_answers(runs: list[LadderRun]) -> dict[str, dict[int, Pick]]:
    """Per arm, per search seed, the arm's answer (seeds without one are left out)."""
    answers: dict[str, dict[int, Pick]] = {arm: {} for arm in arms_of([r.mode for r in runs])}
    for r in runs:
        for ladder in (True, False):
            arm = f"{r.mode} + ladder" if ladder else f"{r.mode}, no ladder"
            if (pick := r.answer(ladder)) is not None:
                answers[arm][r.seed] = pick
    return answers


def fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def arm_compute(runs: list[LadderRun], target_run: int) -> dict[str, list[int]]:
    """Per arm, the training examples of each search seed: rung 0, plus the target runs of its selected
    layers (the ladder's while the search ran, the afterwards-picks' after it)."""
    compute: dict[str, list[int]] = {arm: [] for arm in arms_of([r.mode for r in runs])}
    for r in runs:
        promoted = sum(len(p.target) for p in r.picks if p.promoted)
        after = sum(len(p.target) for p in r.picks if p.picked_after)
        compute[f"{r.mode} + ladder"].append(r.rung0_examples + promoted * target_run)
        compute[f"{r.mode}, no ladder"].append(r.rung0_examples + after * target_run)
    return compute


def promotion_timing(runs: list[LadderRun]) -> str:
    """When the ladder promoted, against the rung's final size: promotions made early pick from the first
    (random) layers a search trains, whatever it finds later."""
    at = [n for r in runs for n in r.promoted_after]
    final = [r.evaluated for r in runs]
    if not at:
        return "The ladder promoted nothing."
    return (
        f"The ladder's promotions came after a median of {statistics.median(at):.0f} rung-0 results "
        f"(range {min(at)} to {max(at)}), of a median of {statistics.median(final):.0f} at the end of a search; "
        "the arms without the ladder pick from the whole rung."
    )


def _median_range(values: list[int]) -> str:
    if not values:
        return "n/a"
    return f"{statistics.median(values):,.0f} [{min(values):,}, {max(values):,}]"


def arms_table(answers, confirmed: dict[str, dict], reference: float, compute: dict[str, list[int]]) -> str:
    rows = []
    for arm in answers:
        scores = [confirmed[p.label]["mean"] for p in answers[arm].values()]
        scores = [s for s in scores if s is not None]
        if not scores:
            rows.append([arm, 0, "n/a", "n/a", "n/a", _median_range(compute[arm])])
            continue
        spread = f"{min(scores):.3f} to {max(scores):.3f}"
        share = decide.share_at_least(scores, reference)
        rows.append(
            [arm, len(scores), f"{statistics.median(scores):.3f}", spread, f"{share:.0%}", _median_range(compute[arm])]
        )
    headers = [
        "arm", "seeds", "median confirmed answer", "range", f"share >= {REFERENCE}",
        "training examples per search, median [min, max]",
    ]  # fmt: skip
    return markdown_table(headers, rows)


def comparisons(answers, confirmed: dict[str, dict]) -> str:
    lines = []
    for a, b in [(a, b) for a, b in COMPARISONS if a in answers and b in answers]:
        seeds = sorted(set(answers[a]) & set(answers[b]))
        pairs = [
            (
                confirmed[answers[a][s].label]["mean"],
                confirmed[answers[b][s].label]["mean"],
            )
            for s in seeds
        ]
        pairs = [(x, y) for x, y in pairs if x is not None and y is not None]
        if not pairs:
            lines.append(f"- {a} against {b}: no seed has both answers confirmed.")
            continue
        result = decide.paired_comparison([x for x, _ in pairs], [y for _, y in pairs])
        differences = ", ".join(f"{d:+.3f}" for d in result.differences)
        lines.append(f"- **{a}** against **{b}** ({len(pairs)} seeds; differences {differences}): {result.text(a, b)}.")
    return "\n".join(lines)


def selected_tau(runs: list[LadderRun], confirmed: dict[str, dict]) -> str:
    """Kendall tau among the layers the searches selected: rung 0 (proxy) against rung 1 (the target on its
    test split); then, among the answers, each rung against the confirmation split that neither read, so
    the ladder's top rung is shown to rank the top better than rung 0 (or not)."""
    picks = {p.label: p for r in runs for p in r.picks if p.target}
    if len(picks) < 3:
        return "Fewer than 3 selected layers have a target score: no tau."
    lines = [_tau_line("the proxy score (rung 0) and the target score (rung 1, test split)", picks.values(), None)]
    answers = [p for p in picks.values() if confirmed.get(p.label, {}).get("mean") is not None]
    if len(answers) >= 3:
        lines.append(_tau_line("rung 0 and the confirmation split", answers, confirmed, rung=0))
        lines.append(_tau_line("rung 1 and the confirmation split", answers, confirmed, rung=1))
        lines.append(_tau_difference_line(answers, confirmed))
    return "\n".join(f"- {line}" for line in lines)


def _tau_difference_line(answers: list[Pick], confirmed: dict[str, dict]) -> str:
    """Whether the top rung ranks the answers better than rung 0: the difference of the two taus on the
    same answers, with a paired bootstrap interval (two overlapping intervals would decide nothing)."""
    rung1 = [statistics.fmean(p.target.values()) for p in answers]
    difference = decide.kendall_tau_difference(
        rung1, [p.proxy for p in answers], [confirmed[p.label]["mean"] for p in answers], seed=0
    )
    verdict = (
        "the top rung ranks the answers better than rung 0"
        if difference.low is not None and difference.low > 0
        else "that the top rung ranks them better is not established"
    )
    return (
        f"Rung 1's tau less rung 0's, against the confirmation split, on the same {len(answers)} answers: "
        f"**{difference.value:+.2f}** (paired bootstrap 95% interval {fmt(difference.low, 2)} to "
        f"{fmt(difference.high, 2)}): {verdict}."
    )


def reanalysed_tau(raw_file: Path, name: str) -> Path:
    """The fidelity section recomputed from a raw results file (`<name>-<machine>.json`), no training."""
    raw = json.loads(raw_file.read_text(encoding="utf-8"))
    runs = [LadderRun(**{**r, "picks": [Pick(**p) for p in r["picks"]]}) for r in raw["runs"]]
    body = (
        f"Recomputed from `{raw_file.name}` (its searches and scores as they ran; nothing trained or served "
        "from a cache here, and the machine above only recomputed the statistics).\n\n"
        "## Fidelity among the layers the searches selected\n\n" + selected_tau(runs, raw["confirmed"])
    )
    return write_result(f"{name}-tau", "The fidelity ladder: rung 1 against rung 0, recomputed", body)


def _tau_line(what: str, picks, confirmed: dict[str, dict] | None, rung: int = 0) -> str:
    picks = list(picks)
    proxy = [p.proxy for p in picks]
    target = [statistics.fmean(p.target.values()) for p in picks]
    if confirmed is None:
        x, y, among = proxy, target, "layers the searches selected (promoted or picked afterwards)"
    else:
        x = proxy if rung == 0 else target
        y = [confirmed[p.label]["mean"] for p in picks]
        among = "answers (the best validated layer of each arm and seed)"
    tau = decide.kendall_tau(x, y, seed=0)
    return (
        f"Kendall tau between {what} among the {len(picks)} {among}: **{tau.value:.2f}** "
        f"(bootstrap 95% interval {fmt(tau.low, 2)} to {fmt(tau.high, 2)})."
    )


def raw_results(runs: list[LadderRun], confirmed: dict[str, dict], args) -> dict:
    """Everything the tables come from, so a reader can recompute them (`search-ladder-<machine>.json`)."""
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    return {"settings": settings, "runs": [asdict(r) for r in runs], "confirmed": confirmed}


def answers_table(runs: list[LadderRun], confirmed: dict[str, dict]) -> str:
    rows = []
    for r in sorted(runs, key=lambda r: (r.mode, r.seed)):
        for ladder in (True, False):
            pick = r.answer(ladder)
            if pick is None:
                continue
            arm = f"{r.mode} + ladder" if ladder else f"{r.mode}, no ladder"
            c = confirmed[pick.label]
            rows.append(
                [arm, r.seed, pick.candidate_id, f"{pick.proxy:.3f}", f"{statistics.fmean(pick.target.values()):.3f}",
                 f"{fmt(c['mean'])} ± {fmt(c['std'])}", f"`{one_line(pick.dsl)}`"]
            )  # fmt: skip
    headers = ["arm", "seed", "candidate", "proxy", "target (test)", "confirmed", "layer"]
    return markdown_table(headers, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=QUICK)
    parser.add_argument("--seeds", type=int, default=8, help="search seeds per mode (paired tests need 8)")
    parser.add_argument(
        "--budget", type=int, default=None, help="candidates per search (default: the config's; 10x with --compute)"
    )
    parser.add_argument(
        "--compute", type=int, default=None, help="training examples per search (equal compute across modes)"
    )
    parser.add_argument("--promotions", type=int, default=2, help="layers each arm trains on the target")
    parser.add_argument("--ladder-seeds", type=int, default=2, help="target seeds per promoted layer")
    parser.add_argument("--confirm-seeds", type=int, default=3)
    parser.add_argument("--confirm-first-seed", type=int, default=3000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--workdir", type=Path, default=None, help="keep the searches' SQLite files here (re-runs reuse them)"
    )
    parser.add_argument("--name", default="search-ladder", help="results file stem (<name>-<machine>.md and .json)")
    parser.add_argument(
        "--modes",
        default=",".join(MODES),
        help="search modes, comma-separated (evolution alone measures the share of its answers, not a comparison)",
    )
    parser.add_argument(
        "--reanalyse",
        type=Path,
        default=None,
        help="recompute the fidelity section from this raw results file (.json) into <name>-tau-<machine>.md",
    )
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    if args.reanalyse is not None:
        if not args.reanalyse.is_file():
            parser.error(f"--reanalyse {args.reanalyse}: no such file")
        print(f"wrote {reanalysed_tau(args.reanalyse, args.name)}")
        return
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or not set(modes) <= set(MODES) or len(set(modes)) != len(modes):
        parser.error(f"--modes takes distinct modes among {', '.join(MODES)}; got {args.modes!r}")
    if args.seeds < 1 or args.promotions < 1 or args.ladder_seeds < 1 or args.confirm_seeds < 1:
        parser.error("--seeds, --promotions, --ladder-seeds and --confirm-seeds must be at least 1")
    base = SearchConfig.from_yaml(args.config)
    if args.smoke:
        base = smoke_config(base)
        args.seeds, args.confirm_seeds, args.ladder_seeds = min(args.seeds, 2), 1, 1
    if args.compute is not None and args.compute < 1:
        parser.error("--compute must be at least 1")
    budget = args.budget or (12 if args.smoke else base.budget) * (10 if args.compute else 1)
    seeds = list(range(args.seeds))
    configs = [
        ladder_config(
            base,
            mode=mode,
            seed=seed,
            budget=budget,
            promotions=args.promotions,
            seeds=args.ladder_seeds,
            compute=args.compute,
        )
        for seed in seeds
        for mode in modes
    ]
    sampler = LoadSampler()
    sampler.start()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        workdir = args.workdir or Path(scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        print(f"{len(configs)} searches of {budget} candidates", flush=True)
        runs = run_searches(configs, workdir, args.workers)
    trained_after, served_after = train_afterwards_picks(configs[0], runs, args.workers)
    answers = arm_answers(runs)
    distinct = {p.label: p.dsl for arm in answers.values() for p in arm.values()}
    confirm_seeds = list(range(args.confirm_first_seed, args.confirm_first_seed + args.confirm_seeds))
    confirmed, confirm_scores = confirm(configs[0], base, distinct, confirm_seeds, args.workers)
    reference = confirmed[REFERENCE]["mean"]
    target_run = target_examples(configs[0])
    compute = arm_compute(runs, target_run)
    proposed = "; ".join(f"{m} {_median_range([r.proposed for r in runs if r.mode == m])}" for m in modes)
    evaluated = "; ".join(f"{m} {_median_range([r.evaluated for r in runs if r.mode == m])}" for m in modes)
    bound = (
        f"every search bounded by {args.compute:,} training examples (`compute_budget`; at most {budget} candidates)"
        if args.compute
        else f"{budget} candidates per search (compute differs between arms: see the last column)"
    )
    baseline_rows = [[name, "control" if name in CONTROLS else "baseline",
                      f"{fmt(confirmed[name]['mean'])} ± {fmt(confirmed[name]['std'])}"]
                     for name in [*references(base), *CONTROLS]]  # fmt: skip
    body = "\n\n".join(
        [
            f"Configuration `{args.config.name}`{' (smoke sizes)' if args.smoke else ''}: {len(seeds)} search seeds per "
            f"mode, {bound}, {args.promotions} layers per arm on the target task with "
            f"{args.ladder_seeds} seed(s) each (seeds {configs[0].ladder_seeds()}; the ladder promotes "
            "when rung 0 ends, eta 3), answers confirmed on the "
            f"confirmation split with seeds {confirm_seeds}. {sampler.summary()}. Wall time "
            f"{time.perf_counter() - started:.0f} s with {args.workers} worker processes.",
            f"Candidates proposed per search, median [min, max]: {proposed}; trained on rung 0: {evaluated}. "
            f"One target run is {target_run:,} training examples. The arms without "
            f"the ladder trained {trained_after} afterwards-picks the ladder had not promoted "
            f"({served_after} served from the score cache); confirmation: {confirm_scores.served} of "
            f"{len(confirmed)} layers served from the cache. {promotion_timing(runs)}",
            "## Arms on the confirmation split\n\n" + arms_table(answers, confirmed, reference, compute),
            "## Baselines and controls on the confirmation split\n\n"
            + markdown_table(["layer", "role", "confirmed mean ± std"], baseline_rows),
            "## Paired comparisons over search seeds\n\n" + comparisons(answers, confirmed),
            "## Fidelity among the layers the searches selected\n\n" + selected_tau(runs, confirmed),
            "## Every answer\n\n" + answers_table(runs, confirmed),
        ]
    )
    title = "The fidelity ladder: " + (
        f"{len(arms_of(modes))} arms at equal compute" if len(modes) > 1 else f"{modes[0]} searches alone"
    )
    path = write_result(args.name, title, body)
    path.with_suffix(".json").write_text(json.dumps(raw_results(runs, confirmed, args), indent=1), encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
