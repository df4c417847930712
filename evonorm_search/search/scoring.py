"""Scoring given layers outside a search: the proxy score a search would record (`evaluate`) and the
target task's score over fresh seeds (`validate`), through any `Evaluator` (in-process or Ray).

A layer's score on one seed is the mean accuracy over the spec's architectures; its reported score is
the mean and sample standard deviation of that over seeds, with each architecture's mean beside it.
Every (layer, seed) pair is one `EvaluationTask`, so Ray spreads them over a cluster like a search's
candidates, and the same worker body trains them.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..enums import EvaluationPhase
from ..ir import Graph
from .config import EvaluationSpec
from .evaluator import EvaluationOutcome, EvaluationRecord, EvaluationTask, Evaluator
from .objectives import accuracies

SCORING_SEARCH_ID = 0  # tasks outside any search carry this search id


@dataclass(frozen=True)
class LayerToScore:
    """A layer and how to call it in reports: a library name, a file name, or `candidate 42`."""

    graph: Graph
    label: str | None = None

    @property
    def dsl(self) -> str:
        return self.graph.to_text()


@dataclass(frozen=True)
class SeedRun:
    """One seed of one layer: accuracy per architecture, or the error that stopped it."""

    seed: int
    accuracies: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0
    records: tuple[EvaluationRecord, ...] = ()  # the worker's full-training records (metrics per architecture)

    @property
    def score(self) -> float:
        """Mean accuracy over architectures (NaN when the run failed)."""
        return statistics.fmean(self.accuracies.values()) if self.accuracies and self.error is None else math.nan


@dataclass(frozen=True)
class LayerScore:
    """A layer's scores over seeds: `mean` and `std` of the per-seed scores, and each architecture's mean."""

    layer: str
    label: str | None
    runs: tuple[SeedRun, ...]

    @property
    def succeeded(self) -> tuple[SeedRun, ...]:
        return tuple(r for r in self.runs if r.error is None)

    @property
    def mean(self) -> float:
        scores = [r.score for r in self.succeeded]
        return statistics.fmean(scores) if scores else math.nan

    @property
    def std(self) -> float:
        """Sample standard deviation over seeds (0 with one seed, NaN with none)."""
        scores = [r.score for r in self.succeeded]
        if not scores:
            return math.nan
        return statistics.stdev(scores) if len(scores) > 1 else 0.0

    @property
    def per_architecture(self) -> dict[str, float]:
        names = [name for run in self.succeeded for name in run.accuracies]
        return {
            name: statistics.fmean(r.accuracies[name] for r in self.succeeded if name in r.accuracies)
            for name in dict.fromkeys(names)
        }

    @property
    def errors(self) -> list[str]:
        return [f"seed {r.seed}: {r.error}" for r in self.runs if r.error is not None]

    def to_json(self) -> dict[str, Any]:
        """The `--json` form: layer (DSL text), mean, std, per_architecture, plus label, seeds and runs."""
        return {
            "layer": self.layer,
            "label": self.label,
            "mean": finite_or_none(self.mean),
            "std": finite_or_none(self.std),
            "per_architecture": self.per_architecture,
            "seeds": [r.seed for r in self.runs],
            "runs": [{"seed": r.seed, "accuracies": r.accuracies, "error": r.error} for r in self.runs],
        }


def finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def seed_run(outcome: EvaluationOutcome, seed: int) -> SeedRun:
    """The scores of one (layer, seed) task from its outcome, or the error that stopped it."""
    if outcome.error is not None:
        return SeedRun(seed, error=outcome.error, seconds=outcome.duration)
    if outcome.rejection is not None:  # scoring turns the quality rejection off; say so if it ever happens
        return SeedRun(seed, error=f"rejected: {outcome.rejection.reason}", seconds=outcome.duration)
    records = tuple(r for r in outcome.records if r.phase is EvaluationPhase.PROXY)
    return SeedRun(seed, accuracies(outcome.objectives), seconds=outcome.duration, records=records)


def score_layers(
    layers: Sequence[LayerToScore],
    specs: Sequence[EvaluationSpec],
    evaluator: Evaluator,
    *,
    poll_interval: float = 0.5,
    on_run: Callable[[LayerToScore, SeedRun], None] | None = None,
) -> list[LayerScore]:
    """Train every layer under every spec (one spec per seed) and collect the scores, in input order.

    Tasks are submitted as the evaluator's capacity allows; `on_run` is called as each run finishes."""
    runs = run_jobs([(layer, spec) for layer in layers for spec in specs], evaluator,
                    poll_interval=poll_interval, on_run=on_run)  # fmt: skip
    per_layer = len(specs)  # jobs are layer-major: each layer's runs are one slice
    return [
        LayerScore(layer=layer.dsl, label=layer.label, runs=tuple(runs[i * per_layer : (i + 1) * per_layer]))
        for i, layer in enumerate(layers)
    ]


def run_jobs(
    jobs: Sequence[tuple[LayerToScore, EvaluationSpec]],
    evaluator: Evaluator,
    *,
    poll_interval: float = 0.5,
    on_run: Callable[[LayerToScore, SeedRun], None] | None = None,
) -> list[SeedRun]:
    """Train each (layer, spec) pair once, as the evaluator's capacity allows; the runs in job order.
    `score_layers` runs every pair of its product; `validate` runs only the seeds not stored yet."""
    layers = [layer for layer, _ in jobs]
    tasks = {
        k: EvaluationTask(SCORING_SEARCH_ID, k, layer.graph.to_dict(), spec) for k, (layer, spec) in enumerate(jobs)
    }
    runs: dict[int, SeedRun] = {}
    pending = list(tasks)
    in_flight = 0
    while len(runs) < len(tasks):
        while pending and in_flight < max(1, evaluator.capacity()):
            evaluator.submit(tasks[pending.pop(0)])
            in_flight += 1
        for outcome in evaluator.poll(poll_interval):
            k = outcome.candidate_id
            if k in runs or k not in tasks:
                continue
            in_flight -= 1
            runs[k] = seed_run(outcome, tasks[k].spec.seed)
            if on_run is not None:
                on_run(layers[k], runs[k])
    return [runs[k] for k in range(len(jobs))]
