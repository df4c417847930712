"""Baselines and validation results: the reference layers of a search, and target-task scores.

A baseline is a `candidates` row with role `baseline` and its config name as `label`. It never touches
the search's derived data (counters, objective index, fronts) nor its births: baseline i of a search
sits at birth `BASELINE_BIRTHS + i`, a range no search reaches (budgets stop at 10^8), so the unique
(search_id, birth) index finds a search's baselines with one range probe and the births its own
candidates get from `next_birth` stay 0, 1, 2, ...

Validation results are `evaluations` rows with phase `validation`, one per (candidate, architecture,
seed); their `attempt` holds the seed, so the idempotency key (candidate, architecture, phase, attempt)
keeps one row per seed and a repeated `validate` finds what is already done.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..enums import CandidateRole, CandidateStatus, EvaluationPhase, EvaluationStatus
from .candidates import add_candidate, get_candidate, record_evaluation
from .errors import InvalidInputError
from .models import Candidate, Evaluation
from .searches import get_search

BASELINE_BIRTHS = 2**31 - 1 - 64  # births of baselines: BASELINE_BIRTHS + index, at most 64 per search
MAX_BASELINES = 64


def add_baseline(
    session: Session,
    search_id: int,
    *,
    index: int,
    label: str,
    graph: Mapping[str, Any] | Any,
    dsl: str,
    canonical_hash: str,
    fingerprint: str | None = None,
    now: datetime | None = None,
) -> Candidate:
    """Store baseline `index` (its position in the config's list) of a search, pending; the stored row
    when it exists already (a resumed controller adds nothing twice)."""
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < MAX_BASELINES:
        raise InvalidInputError(f"a baseline's index must be from 0 to {MAX_BASELINES - 1}, got {index!r}")
    if not isinstance(label, str) or not label.strip() or len(label) > 200:
        raise InvalidInputError(f"a baseline needs a label of 1 to 200 characters, got {label!r}")
    get_search(session, search_id, for_update=True)  # one controller at a time adds a search's baselines
    existing = _baseline_at(session, search_id, BASELINE_BIRTHS + index)
    if existing is not None:
        if existing.label != label:
            raise InvalidInputError(
                f"search {search_id} holds baseline {existing.label!r} at index {index}, not {label!r}"
            )
        return existing
    return add_candidate(
        session,
        search_id,
        graph=graph,
        dsl=dsl,
        canonical_hash=canonical_hash,
        fingerprint=fingerprint,
        birth=BASELINE_BIRTHS + index,
        role=CandidateRole.BASELINE,
        label=label,
        now=now,
    )


def _baseline_at(session: Session, search_id: int, birth: int) -> Candidate | None:
    query = select(Candidate).where(Candidate.search_id == search_id, Candidate.birth == birth)
    return session.execute(query.execution_options(populate_existing=True)).scalar_one_or_none()


def baselines_of(session: Session, search_id: int) -> list[Candidate]:
    """A search's baselines in config order (an index range probe, whatever the search's size)."""
    query = (
        select(Candidate)
        .where(
            Candidate.search_id == search_id,
            Candidate.birth >= BASELINE_BIRTHS,
            Candidate.role == CandidateRole.BASELINE,
        )
        .order_by(Candidate.birth)
        .execution_options(populate_existing=True)
    )
    return list(session.execute(query).scalars())


def is_baseline(candidate: Candidate) -> bool:
    return candidate.role is CandidateRole.BASELINE


# -- validation results --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ValidationRun:
    """One seed of a candidate on the target task: accuracy per architecture, seconds in all."""

    seed: int
    accuracies: dict[str, float]
    seconds: float


def record_validation(
    session: Session,
    candidate_id: int,
    *,
    seed: int,
    metrics: Mapping[str, Mapping[str, Any]],
    durations: Mapping[str, float],
    node: str | None = None,
) -> list[Evaluation]:
    """Store one seed of a candidate's target-task training: one `validation` row per architecture
    (`metrics[architecture]` must hold its `accuracy`). Recording a seed again keeps the stored rows."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InvalidInputError(f"a validation seed must be a non-negative integer, got {seed!r}")
    if not metrics:
        raise InvalidInputError("a validation run needs the metrics of at least one architecture")
    candidate = get_candidate(session, candidate_id)
    if candidate.status is not CandidateStatus.EVALUATED:
        raise InvalidInputError(f"candidate {candidate_id} is {candidate.status}; only evaluated layers are validated")
    rows = []
    for architecture, values in metrics.items():
        if not isinstance(values.get("accuracy"), (int, float)) or isinstance(values.get("accuracy"), bool):
            raise InvalidInputError(f"validation metrics of {architecture!r} need a numeric accuracy")
        rows.append(
            record_evaluation(
                session,
                candidate_id,
                architecture=architecture,
                phase=EvaluationPhase.VALIDATION,
                attempt=seed,
                status=EvaluationStatus.SUCCEEDED,
                metrics={**values, "seed": seed},
                duration_seconds=durations.get(architecture, 0.0),
                node=node,
            )
        )
    return rows


def validated_candidates(session: Session, search_id: int) -> list[int]:
    """Ids of a search's candidates and baselines with at least one stored target-task (validation) run."""
    query = (
        select(Evaluation.candidate_id)
        .join(Candidate, Candidate.id == Evaluation.candidate_id)
        .where(
            Candidate.search_id == search_id,
            Evaluation.phase == EvaluationPhase.VALIDATION,
            Evaluation.status == EvaluationStatus.SUCCEEDED,
        )
        .distinct()
        .order_by(Evaluation.candidate_id)
    )
    return list(session.execute(query).scalars())


def validation_runs(session: Session, candidate_ids: Sequence[int]) -> dict[int, list[ValidationRun]]:
    """The stored validation seeds of each candidate, by seed (candidates without any map to [])."""
    found: dict[int, dict[int, ValidationRun]] = {cid: {} for cid in candidate_ids}
    if not candidate_ids:
        return {}
    query = (
        select(Evaluation)
        .where(
            Evaluation.candidate_id.in_(list(candidate_ids)),
            Evaluation.phase == EvaluationPhase.VALIDATION,
            Evaluation.status == EvaluationStatus.SUCCEEDED,
        )
        .order_by(Evaluation.candidate_id, Evaluation.attempt, Evaluation.id)
    )
    for row in session.execute(query).scalars():
        runs = found[row.candidate_id]
        run = runs.setdefault(row.attempt, ValidationRun(row.attempt, {}, 0.0))
        run.accuracies[row.architecture] = float(row.metrics["accuracy"])
        runs[row.attempt] = ValidationRun(run.seed, run.accuracies, run.seconds + row.duration_seconds)
    return {cid: [runs[seed] for seed in sorted(runs)] for cid, runs in found.items()}


@dataclass(frozen=True)
class ReusableRun:
    """One stored target-task seed of a baseline, for another search whose target run is the same."""

    candidate_id: int  # the baseline whose run it is
    metrics: dict[str, dict[str, Any]]  # per architecture, as `record_validation` takes them


def reusable_baseline_run(
    session: Session,
    *,
    canonical_hash: str,
    seed: int,
    key: str,
    architectures: Sequence[str],
    exclude: int,
) -> ReusableRun | None:
    """A stored target run of seed `seed` of a baseline with `canonical_hash` (any search but candidate
    `exclude`'s own), complete over `architectures`, whose every row carries `target_key == key` (the
    digest of every setting its score depends on: `search/score_cache.py`), or None. Reused runs are not
    reused again (the original is found directly), so provenance stays one step."""
    query = (
        select(Evaluation)
        .join(Candidate, Candidate.id == Evaluation.candidate_id)
        .where(
            Candidate.role == CandidateRole.BASELINE,
            Candidate.canonical_hash == canonical_hash,
            Candidate.id != exclude,
            Evaluation.phase == EvaluationPhase.VALIDATION,
            Evaluation.status == EvaluationStatus.SUCCEEDED,
            Evaluation.attempt == seed,
        )
        .order_by(Evaluation.candidate_id, Evaluation.id)
    )
    found: dict[int, dict[str, dict[str, Any]]] = {}
    for row in session.execute(query).scalars():
        metrics = dict(row.metrics)
        if metrics.get("target_key") == key and "reused_from" not in metrics:
            found.setdefault(row.candidate_id, {})[row.architecture] = metrics
    for candidate_id, metrics in found.items():
        if set(architectures) <= set(metrics):
            return ReusableRun(candidate_id, {a: metrics[a] for a in architectures})
    return None
