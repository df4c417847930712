"""The validation stage: re-train a search's best layers and its baselines on the target task.

`validate_search` takes the top K layers of a search's Pareto front (ranked by mean proxy accuracy)
and its evaluated baselines, trains each on `config.target_spec(seed)` for the validation seeds, and
stores every finished (layer, seed) run at once as `validation` evaluations (store/baselines.py), so an
interrupted or repeated run re-trains only the seeds not stored yet. `score_given` does the same for
layers named on the command line, storing nothing. Both run through any `Evaluator` (Ray or in-process).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from .. import store as db
from ..ir import Graph
from .config import ConfigError, SearchConfig
from .evaluator import Evaluator
from .objectives import mean_accuracy
from .scoring import LayerScore, LayerToScore, SeedRun, finite_or_none, run_jobs

LAYER, BASELINE = "layer", "baseline"


class TargetValidationError(ValueError):
    """Nothing can be validated on the target task: no such search, no evaluated candidates, or an unusable stored config."""


@dataclass(frozen=True)
class Validated:
    """A layer's target-task score, with where it comes from and how it compares to the baselines."""

    score: LayerScore
    role: str  # LAYER or BASELINE
    candidate_id: int | None = None
    proxy_mean: float | None = None  # the search's mean proxy accuracy of the layer, when it has one
    reused_seeds: tuple[int, ...] = ()  # seeds read from the store rather than trained now

    @property
    def name(self) -> str:
        if self.score.label:
            return self.score.label
        return f"candidate {self.candidate_id}" if self.candidate_id is not None else self.score.layer

    def to_json(self, baselines: Sequence[Validated]) -> dict[str, Any]:
        """`LayerScore.to_json()` plus role, candidate id, proxy mean and the difference to each baseline."""
        return {
            **self.score.to_json(),
            "role": self.role,
            "candidate_id": self.candidate_id,
            "proxy_mean": self.proxy_mean,
            "reused_seeds": list(self.reused_seeds),
            "vs_baselines": {b.name: finite_or_none(difference(self, b)) for b in baselines if b is not self},
        }


def difference(layer: Validated, baseline: Validated) -> float:
    """Target mean of the layer minus the baseline's (NaN when either has no successful seed)."""
    return layer.score.mean - baseline.score.mean


# -- a search's layers ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    candidate_id: int
    layer: LayerToScore
    role: str
    proxy_mean: float | None


def search_targets(store: db.Store, search_id: int, top: int) -> tuple[SearchConfig, list[_Target]]:
    """The stored config, the top `top` front layers by mean proxy accuracy, then the evaluated baselines."""
    with store.session(readonly=True) as s:
        search = db.get_search(s, search_id)
        front = db.pareto_front(s, search_id)
        baselines = [b for b in db.baselines_of(s, search_id) if b.status is db.CandidateStatus.EVALUATED]
        stored_config = search.config
    try:
        config = SearchConfig.from_mapping(stored_config, origin=f"stored configuration of search {search_id}")
    except ConfigError as e:
        raise TargetValidationError(str(e)) from None
    if not front:
        raise TargetValidationError(f"search {search_id} has no evaluated candidates yet: nothing to validate")
    ranked = sorted(front, key=lambda c: (-(mean_accuracy(c.objectives) or 0.0), c.birth))[:top]
    targets = [
        _Target(c.id, LayerToScore(Graph.from_dict(c.graph), None), LAYER, mean_accuracy(c.objectives)) for c in ranked
    ]
    targets += [
        _Target(b.id, LayerToScore(Graph.from_dict(b.graph), b.label), BASELINE, mean_accuracy(b.objectives))
        for b in baselines
    ]
    return config, targets


def validate_search(
    store: db.Store,
    search_id: int,
    evaluator: Evaluator,
    *,
    top: int = 3,
    seeds: int | None = None,
    poll_interval: float = 0.5,
    on_run: Callable[[LayerToScore, SeedRun], None] | None = None,
) -> list[Validated]:
    """Validate a search's top layers and baselines; store each new run; reuse the stored seeds."""
    config, targets = search_targets(store, search_id, top)
    seed_list = config.validation.seed_list(seeds)
    architectures = [a.label for a in config.validation.architectures]
    with store.session(readonly=True) as s:
        stored = db.validation_runs(s, [t.candidate_id for t in targets])
    done = {
        t.candidate_id: {r.seed: r for r in stored[t.candidate_id] if set(architectures) <= set(r.accuracies)}
        for t in targets
    }
    jobs = [(t, seed) for t in targets for seed in seed_list if seed not in done[t.candidate_id]]
    by_layer = {id(t.layer): t for t in targets}

    def keep(layer: LayerToScore, run: SeedRun) -> None:
        if run.error is None:
            store_run(store, by_layer[id(layer)].candidate_id, run)
        if on_run is not None:
            on_run(layer, run)

    fresh = run_jobs(
        [(t.layer, config.target_spec(seed)) for t, seed in jobs], evaluator, poll_interval=poll_interval, on_run=keep
    )
    new_runs = {(t.candidate_id, seed): run for (t, seed), run in zip(jobs, fresh, strict=True)}
    results = []
    for t in targets:
        runs = [
            new_runs.get((t.candidate_id, seed)) or _stored_run(done[t.candidate_id][seed], architectures)
            for seed in seed_list
        ]
        reused = tuple(seed for seed in seed_list if (t.candidate_id, seed) not in new_runs)
        score = LayerScore(t.layer.dsl, t.layer.label, tuple(runs))
        results.append(Validated(score, t.role, t.candidate_id, t.proxy_mean, reused))
    return results


def _stored_run(run: db.ValidationRun, architectures: Sequence[str]) -> SeedRun:
    return SeedRun(run.seed, {a: run.accuracies[a] for a in architectures}, seconds=run.seconds)


def store_run(store: db.Store, candidate_id: int, run: SeedRun, *, extra: dict[str, Any] | None = None) -> None:
    """All architectures of one seed in one transaction: a run is stored whole or not at all. `extra` goes
    into every architecture's metrics (the ladder's `target_key`)."""
    metrics = {r.architecture: {**r.metrics, **(extra or {})} for r in run.records}
    durations = {r.architecture: r.duration for r in run.records}
    node = run.records[0].node if run.records else None
    with store.session() as s:
        db.record_validation(s, candidate_id, seed=run.seed, metrics=metrics, durations=durations, node=node)


# -- given layers -----------------------------------------------------------------------------------


def score_given(
    config: SearchConfig,
    layers: Sequence[LayerToScore],
    baselines: Sequence[LayerToScore],
    evaluator: Evaluator,
    *,
    target: bool,
    seeds: int | None = None,
    poll_interval: float = 0.5,
    on_run: Callable[[LayerToScore, SeedRun], None] | None = None,
) -> list[Validated]:
    """Score `layers` (then `baselines`) on the target task (`target=True`, validation seeds) or on the
    search's proxies (seeds `config.seed`, `config.seed + 1`, ...), storing nothing."""
    if target:
        specs = [config.target_spec(seed) for seed in config.validation.seed_list(seeds)]
    else:
        specs = [config.proxy_spec(config.seed + i) for i in range(seeds or 1)]
    everything = [(layer, LAYER) for layer in layers] + [(b, BASELINE) for b in baselines]
    jobs = [(layer, spec) for layer, _ in everything for spec in specs]
    runs = run_jobs(jobs, evaluator, poll_interval=poll_interval, on_run=on_run)
    out = []
    for index, (layer, role) in enumerate(everything):
        mine = tuple(runs[index * len(specs) : (index + 1) * len(specs)])
        out.append(Validated(LayerScore(layer.dsl, layer.label, mine), role))
    return out


# -- the validated front: what the target task has said, from the store ---------------------------------


def stored_validation(session: Session, search_id: int, config: SearchConfig) -> list[Validated]:
    """Every layer of a search with stored target runs (promoted by the ladder or validated by hand) and
    every baseline with them, best mean first, from the store alone: a `Validated` per layer whose runs
    are the seeds stored so far (`score.runs`), scored on the config's target architectures."""
    ids = db.validated_candidates(session, search_id)
    runs = db.validation_runs(session, ids)
    architectures = [a.label for a in config.validation.architectures]
    found = (stored_validated(db.get_candidate(session, cid), runs[cid], architectures) for cid in ids)
    out = [v for v in found if v is not None]
    return sorted(out, key=lambda v: (-v.score.mean if math.isfinite(v.score.mean) else math.inf, v.candidate_id or 0))


def candidate_validation(session: Session, candidate: db.Candidate) -> Validated | None:
    """One candidate's stored target-task score (None before any complete seed), on its search's target
    architectures; a stored configuration this version cannot read counts every stored run whole."""
    runs = db.validation_runs(session, [candidate.id])[candidate.id]
    stored = db.get_search(session, candidate.search_id).config
    try:
        config = SearchConfig.from_mapping(stored, origin=f"stored configuration of search {candidate.search_id}")
        architectures = [a.label for a in config.validation.architectures]
    except ConfigError:
        architectures = sorted({a for r in runs for a in r.accuracies})
    return stored_validated(candidate, runs, architectures)


def stored_validated(
    candidate: db.Candidate, runs: Sequence[db.ValidationRun], architectures: Sequence[str]
) -> Validated | None:
    """A candidate's `Validated` from its stored runs: only seeds with every target architecture count
    (a seed stored half-way is not a score); None when there is none."""
    complete = [r for r in runs if set(architectures) <= set(r.accuracies)]
    if not complete:
        return None
    baseline = db.is_baseline(candidate)
    score = LayerScore(
        candidate.dsl, candidate.label if baseline else None, tuple(_stored_run(r, architectures) for r in complete)
    )
    role = BASELINE if baseline else LAYER
    return Validated(score, role, candidate.id, mean_accuracy(candidate.objectives), tuple(r.seed for r in complete))
