"""A search's fronts at each rung of the fidelity ladder, as JSON rows: one shape for the same thing in
`evonorm-search pareto --json` and the API (`GET /api/v1/searches/{id}/fronts`, candidate detail).

Rung 0 is the proxies every candidate trains on (`proxy` rows: mean of the accuracy objectives, one run
per architecture, so no spread); rung 1 is the target task (`validated` rows: mean and std over the
target seeds stored so far, by the ladder or `evonorm-search validate`). Both row kinds share `candidate`,
`layer` (DSL text), `rung`, `mean`, `std` and `per_architecture`, so a client reads either the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from .. import store as db
from .baselines import differences
from .config import SearchConfig
from .objectives import accuracies, mean_accuracy
from .scoring import finite_or_none
from .validation import BASELINE, LAYER, Validated, difference, stored_validation

PROXY_RUNG, TARGET_RUNG = 0, 1
RUNG_NAMES = {PROXY_RUNG: "proxies", TARGET_RUNG: "target task"}


@dataclass(frozen=True)
class SearchFronts:
    """What a search has found, read from the store: its proxy front (best first on the first
    objective), its evaluated baselines, and every layer and baseline with stored target runs."""

    search: db.Search
    config: SearchConfig
    front: list[db.Candidate]
    baselines: list[db.Candidate]
    validated: list[Validated]

    @property
    def objective_names(self) -> list[str]:
        return self.search.objective_names

    def to_json(self) -> dict[str, Any]:
        return fronts_json(self.search.id, self.objective_names, self.front, self.baselines, self.validated)


def read_fronts(session: Session, search_id: int) -> SearchFronts:
    """A search's fronts from the store. Raises `ConfigError` when its stored configuration cannot be
    read by this version (the target architectures come from it)."""
    search = db.get_search(session, search_id)
    config = SearchConfig.from_mapping(search.config, origin=f"stored configuration of search {search_id}")
    first = search.objective_specs[0]
    sign = -1.0 if first.direction == "max" else 1.0
    front = sorted(db.pareto_front(session, search_id), key=lambda c: (sign * c.objective_values[first.name], c.birth))
    baselines = [b for b in db.baselines_of(session, search_id) if b.objectives is not None]
    return SearchFronts(search, config, front, baselines, stored_validation(session, search_id, config))


def fronts_json(
    search_id: int, names: list[str], front: list[Any], baselines: list[Any], validated: list[Validated]
) -> dict[str, Any]:
    """`validated` (rung 1, the target task) and `proxy` (rung 0) fronts, each row with `candidate`, `layer`
    (its DSL text), `rung`, `mean`, `std` and `per_architecture`; the baselines at both rungs."""
    references = [v for v in validated if v.role == BASELINE]
    return {
        "search": search_id,
        "objectives": names,
        "validated": [validated_row(v, references) for v in validated if v.role == LAYER],
        "proxy": [proxy_row(c, baselines) for c in front],
        "baselines": [proxy_baseline_row(b) for b in baselines],
        "validated_baselines": [validated_row(v, references) for v in references],
    }


def proxy_row(candidate: Any, baselines: Sequence[Any]) -> dict[str, Any]:
    """A layer at rung 0: its proxy objectives, and the difference to each evaluated baseline."""
    return {
        "candidate": candidate.id,
        "birth": candidate.birth,
        "layer": candidate.dsl,
        "rung": PROXY_RUNG,
        "mean": mean_accuracy(candidate.objectives),
        "std": None,  # one proxy run per architecture: no spread over seeds
        "per_architecture": accuracies(candidate.objectives),
        "objectives": candidate.objectives,
        "mutation": candidate.mutation,
        "vs_baselines": {d.label: d.to_json() for d in differences(candidate.objectives, baselines)},
    }


def proxy_baseline_row(baseline: Any) -> dict[str, Any]:
    return {
        "candidate": baseline.id,
        "label": baseline.label,
        "layer": baseline.dsl,
        "objectives": baseline.objectives,
        "mean": mean_accuracy(baseline.objectives),
        "per_architecture": accuracies(baseline.objectives),
    }


def validated_row(v: Validated, references: Sequence[Validated]) -> dict[str, Any]:
    """A layer (or baseline) at rung 1: mean ± std over its stored target seeds, each target network's
    mean, and its mean minus each validated baseline's."""
    return {
        "candidate": v.candidate_id,
        "label": v.score.label,
        "layer": v.score.layer,
        **target_scores(v),
        "vs_baselines": {b.name: finite_or_none(difference(v, b)) for b in references if b is not v},
    }


def target_scores(v: Validated) -> dict[str, Any]:
    """The rung-1 scores of a validated layer (NaN, a mean of no successful seed, as null)."""
    return {
        "rung": TARGET_RUNG,
        "mean": finite_or_none(v.score.mean),
        "std": finite_or_none(v.score.std),
        "per_architecture": v.score.per_architecture,
        "seeds": list(v.reused_seeds),
    }


# -- one candidate across the rungs ----------------------------------------------------------------------


def rung_scores(objectives: dict[str, float] | None, validated: Validated | None) -> list[dict[str, Any]]:
    """A candidate's scores at every rung it has a result at, lowest first: rung 0 its proxy objectives
    (once evaluated), rung 1 its target runs (once one seed is stored whole)."""
    rungs = []
    if objectives is not None:
        rungs.append(
            {
                "rung": PROXY_RUNG,
                "name": RUNG_NAMES[PROXY_RUNG],
                "mean": mean_accuracy(objectives),
                "std": None,
                "per_architecture": accuracies(objectives),
                "seeds": [],
                "objectives": objectives,
            }
        )
    if validated is not None:
        rungs.append({**target_scores(validated), "name": RUNG_NAMES[TARGET_RUNG], "objectives": None})
    return rungs


def highest_rung(rungs: Sequence[dict[str, Any]]) -> int | None:
    """The highest rung with a result (None: no result at any rung yet)."""
    return max((r["rung"] for r in rungs), default=None)
