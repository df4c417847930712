"""Baselines in every search: the reference layers a search's results are read against.

When a controller starts, `prepare_baselines` stores each layer of `config.baselines` that the search
does not hold yet (role `baseline`, outside the budget, counters, population, duplicate index and
fronts; see `store/baselines.py`) and returns the ones still to evaluate, so the controller queues them
ahead of its first proposals. They train under the search's own proxies through the same evaluator,
with the quality rejection off (a reference is scored, never rejected). A resumed controller finds
evaluated baselines done and re-queues unfinished ones with their next attempt: none is evaluated twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from .. import store as db
from ..store import CandidateStatus
from ..symbolic import canonical_hash
from .config import SearchConfig, resolve_layer
from .objectives import mean_accuracy


@dataclass(frozen=True)
class PendingBaseline:
    candidate_id: int
    attempt: int


def prepare_baselines(s: Session, search_id: int, config: SearchConfig) -> list[PendingBaseline]:
    """Store the config's baselines the search lacks; queue and return those not finished yet."""
    stored = {c.label: c for c in db.baselines_of(s, search_id)}
    pending = []
    for index, name in enumerate(config.baselines):
        candidate = stored.get(name)
        if candidate is None:
            graph = resolve_layer(name)
            candidate = db.add_baseline(
                s,
                search_id,
                index=index,
                label=name,
                graph=graph.to_dict(),
                dsl=graph.to_text(),
                canonical_hash=canonical_hash(graph),
            )
        if candidate.status in (CandidateStatus.QUEUED, CandidateStatus.RUNNING):
            candidate = db.requeue_candidate(s, candidate.id)  # the previous controller's attempt is lost
        if candidate.status is CandidateStatus.PENDING:
            db.mark_status(s, candidate.id, CandidateStatus.QUEUED)
            pending.append(PendingBaseline(candidate.id, candidate.attempt))
    return pending


# -- comparisons -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Difference:
    """A layer minus a baseline: in mean accuracy, and per objective (positive: the layer is higher)."""

    label: str
    mean: float | None
    per_objective: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        return {"mean": self.mean, "per_objective": self.per_objective}


def differences(objectives: Mapping[str, float] | None, baselines: Sequence[Any]) -> list[Difference]:
    """A layer's objectives against each evaluated baseline (stored candidates with `label`, `objectives`)."""
    out = []
    for baseline in baselines:
        if baseline.objectives is None or objectives is None:
            continue
        mine, theirs = mean_accuracy(objectives), mean_accuracy(baseline.objectives)
        out.append(
            Difference(
                baseline.label,
                None if mine is None or theirs is None else mine - theirs,
                {k: v - baseline.objectives[k] for k, v in objectives.items() if k in baseline.objectives},
            )
        )
    return out
