"""Derived data, kept consistent with the candidates in the same transaction as every change.

- counters: candidates per bucket, shifted by one on every status change (`shift_bucket`);
- the objective index: one `candidate_objectives` row per objective of each evaluated original;
- Pareto fronts: for each tracked objective subset (bit mask), the candidates no other dominates. A new
  evaluated candidate either is dominated (nothing changes) or joins and evicts what it dominates, which
  is exactly the front of the enlarged set. Candidates never leave `evaluated`, so fronts only grow
  that way. `complete_candidate` locks the search row first, so concurrent completions of one search
  update its fronts one after another.

`rebuild_derived` recomputes all of it from the candidates (a full scan): the repair tool, and the
reference the tests compare the incremental path against.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
from sqlalchemy import Select, bindparam, case, delete, event, func, insert, select, update
from sqlalchemy.orm import Session, SessionTransaction

from ..enums import CandidateRole, CandidateStatus, RejectionStage
from .models import Candidate, CandidateObjective, ParetoMember, Search, SearchCounter
from .objectives import Objective, dominated_by, full_mask, hypervolume, mask_indices, non_dominated, tracked_masks

DUPLICATE_HITS = "duplicate_hits"


def bucket_of(status: CandidateStatus, stage: RejectionStage | None = None) -> str:
    if status is not CandidateStatus.REJECTED:
        return status.value
    if stage is None:
        raise ValueError("a rejected candidate is counted under its rejection stage; got none")
    return f"rejected:{stage.value}"


def all_buckets() -> list[str]:
    statuses = [s for s in CandidateStatus if s is not CandidateStatus.REJECTED]
    return (
        [bucket_of(s) for s in statuses]
        + [bucket_of(CandidateStatus.REJECTED, r) for r in RejectionStage]
        + [DUPLICATE_HITS]
    )


def init_counters(session: Session, search_id: int) -> None:
    session.execute(insert(SearchCounter), [{"search_id": search_id, "bucket": b, "count": 0} for b in all_buckets()])


def shift_bucket(session: Session, search_id: int, old: str | None, new: str | None) -> None:
    """Move one candidate from bucket `old` to bucket `new` (None: no bucket)."""
    if old != new:
        shift_buckets(session, search_id, {b: d for b, d in ((old, -1), (new, +1)) if b is not None})


def shift_buckets(session: Session, search_id: int, deltas: Mapping[str, int]) -> None:
    """Add `deltas` to the search's counters in one statement (a group of changes at once)."""
    changed = {bucket: delta for bucket, delta in sorted(deltas.items()) if delta}
    if changed:
        session.execute(
            update(SearchCounter)
            .where(SearchCounter.search_id == search_id, SearchCounter.bucket.in_(list(changed)))
            .values(count=SearchCounter.count + case(changed, value=SearchCounter.bucket))
        )


def counts(session: Session, search_id: int) -> dict[str, int]:
    return dict(session.execute(_counts_query(), {"search_id": search_id}).all())


@cache
def _counts_query() -> Select:
    """Built once (the status page reads it on every request; building costs more than running it)."""
    return select(SearchCounter.bucket, SearchCounter.count).where(SearchCounter.search_id == bindparam("search_id"))


# -- evaluated candidates: the objective index and the fronts -----------------------------------------


def add_objective_rows(session: Session, candidates: Sequence[Candidate]) -> None:
    """The objective index's rows of newly evaluated candidates (their `objectives` set), in one statement."""
    rows = [
        {"candidate_id": c.id, "search_id": c.search_id, "name": n, "value": v, "birth": c.birth}
        for c in candidates
        for n, v in (c.objectives or {}).items()
    ]
    if rows:
        session.execute(insert(CandidateObjective), rows)


def _maximise(objectives: Sequence[Objective]) -> np.ndarray:
    return np.array([o.direction == "max" for o in objectives])


def _vector(objectives: Sequence[Objective], values: Mapping[str, float] | None) -> np.ndarray:
    if values is None:  # fronts hold evaluated candidates only, and those have values
        raise ValueError("a candidate on a Pareto front has no objective values")
    return np.array([float(values[o.name]) for o in objectives])


def front_members(
    session: Session, search_id: int, masks: Iterable[int] | None = None, *, columns: Sequence | None = None
) -> dict[int, list[Any]]:
    """The current members of each front of a search: their candidates, or rows of `columns` of them."""
    selected = select(Candidate) if columns is None else select(*columns)
    query = (
        selected.add_columns(ParetoMember.objective_mask)
        .select_from(ParetoMember)
        .join(Candidate, Candidate.id == ParetoMember.candidate_id)
        .where(ParetoMember.search_id == search_id)
    )
    if masks is not None:
        query = query.where(ParetoMember.objective_mask.in_(list(masks)))
    fronts: dict[int, list[Any]] = {}
    for row in session.execute(query).all():
        member = row[0] if columns is None else row
        fronts.setdefault(row[-1], []).append(member)
    return fronts


@dataclass
class _Front:
    """One tracked front's members as admission reads them: ids and their objective vectors, row by row."""

    ids: list[int]
    points: np.ndarray  # len(ids) x number of objectives


_FRONTS = "evonorm.fronts"  # Session.info key: search id -> {mask: _Front}, for the open transaction


@event.listens_for(Session, "after_transaction_end")
def _forget_fronts(session: Session, transaction: SessionTransaction) -> None:
    # The fronts read in a transaction are only known to be current inside it (its search lock held), and
    # a savepoint that ends may have rolled back admissions. Every flush opens and ends a subtransaction
    # too (neither nested nor the root): those change nothing the fronts hold, and forgetting at each one
    # made admission read the fronts again after every flush, that is once per outcome.
    if transaction.parent is None or transaction.nested:
        session.info.pop(_FRONTS, None)


def _fronts(session: Session, search: Search) -> dict[int, _Front]:
    """mask -> the members of every tracked front of `search`, read once per transaction and then kept
    current by `admit_to_fronts` itself: a group of outcomes reads them once, not once per outcome. Read
    per outcome, they became the controller's largest cost as the front grew (3,320 members at 35,000
    candidates: benchmarks/results/paper-scale-long-before-front-cache-cpu2.md and docs/architecture.md).
    Ids and values only, no ORM objects (a front over one objective holds every candidate tied at the
    best value, which can be many)."""
    held = session.info.setdefault(_FRONTS, {})
    if search.id in held:
        return held[search.id]
    objectives = search.objective_specs
    rows = session.execute(
        select(ParetoMember.objective_mask, ParetoMember.candidate_id, Candidate.objectives)
        .join(Candidate, Candidate.id == ParetoMember.candidate_id)
        .where(ParetoMember.search_id == search.id)
    ).all()
    vectors: dict[int, np.ndarray] = {}
    members: dict[int, list[int]] = {mask: [] for mask in tracked_masks(len(objectives))}
    for mask, candidate_id, values in rows:
        if mask not in members:
            continue  # a front no longer tracked is never admitted to
        if candidate_id not in vectors:
            vectors[candidate_id] = _vector(objectives, values)
        members[mask].append(candidate_id)
    held[search.id] = {
        mask: _Front(ids, np.array([vectors[i] for i in ids]).reshape(len(ids), len(objectives)))
        for mask, ids in members.items()
    }
    return held[search.id]


def admit_to_fronts(session: Session, search: Search, candidate: Candidate, values: dict[str, float]) -> None:
    """Update every tracked front of `search` for the newly evaluated `candidate`. The caller holds the search lock."""
    objectives = search.objective_specs
    maximise = _maximise(objectives)
    point = _vector(objectives, values)
    fronts = _fronts(session, search)
    joined = []
    for mask in tracked_masks(len(objectives)):
        front = fronts[mask]
        idx = mask_indices(mask)
        dominated, evicted = dominated_by(point[idx], front.points[:, idx], maximise[idx])
        if dominated:
            continue
        joined.append({"search_id": search.id, "objective_mask": mask, "candidate_id": candidate.id})
        kept_ids = front.ids
        if evicted.any():
            gone = [cid for cid, out in zip(front.ids, evicted, strict=True) if out]
            session.execute(
                delete(ParetoMember).where(
                    ParetoMember.search_id == search.id,
                    ParetoMember.objective_mask == mask,
                    ParetoMember.candidate_id.in_(gone),
                )
            )
            kept_ids = [cid for cid, out in zip(front.ids, evicted, strict=True) if not out]
        fronts[mask] = _Front([*kept_ids, candidate.id], np.vstack([front.points[~evicted], point]))
        if mask == full_mask(len(objectives)):
            search.hypervolume = hypervolume(fronts[mask].points, objectives)
    if joined:
        session.execute(insert(ParetoMember), joined)


# -- rebuilding from scratch -------------------------------------------------------------------------


def rebuild_derived(session: Session, search_id: int) -> None:
    """Recompute counters, the objective index, the fronts and the hypervolume of a search from its candidates."""
    search = session.execute(select(Search).where(Search.id == search_id).with_for_update()).scalar_one()
    session.info.get(_FRONTS, {}).pop(search_id, None)  # rewritten below: read again by the next admission
    _rebuild_counters(session, search_id)
    originals = session.execute(
        select(Candidate.id, Candidate.birth, Candidate.objectives).where(
            Candidate.search_id == search_id,
            Candidate.status == CandidateStatus.EVALUATED,
            Candidate.duplicate_of.is_(None),
            Candidate.role == CandidateRole.CANDIDATE,
        )
    ).all()
    objectives = search.objective_specs
    _rebuild_objective_rows(session, search_id, originals)
    points = np.array([_vector(objectives, row.objectives) for row in originals]).reshape(
        len(originals), len(objectives)
    )
    ids = [row.id for row in originals]
    session.execute(delete(ParetoMember).where(ParetoMember.search_id == search_id))
    maximise = _maximise(objectives)
    members = []
    for mask in tracked_masks(len(objectives)):
        idx = mask_indices(mask)
        on_front = non_dominated(points[:, idx], maximise[idx])
        members += [
            {"search_id": search_id, "objective_mask": mask, "candidate_id": ids[i]} for i in np.flatnonzero(on_front)
        ]
        if mask == full_mask(len(objectives)):
            search.hypervolume = hypervolume(points[on_front], objectives) if len(ids) else None
    if members:
        session.execute(insert(ParetoMember), members)
    session.flush()


def _rebuild_counters(session: Session, search_id: int) -> None:
    by_bucket = dict.fromkeys(all_buckets(), 0)
    grouped = session.execute(
        select(Candidate.status, Candidate.rejection_stage, func.count())
        .where(Candidate.search_id == search_id, Candidate.role == CandidateRole.CANDIDATE)
        .group_by(Candidate.status, Candidate.rejection_stage)
    ).all()
    for status, stage, n in grouped:
        by_bucket[bucket_of(status, stage)] += n
    by_bucket[DUPLICATE_HITS] = session.execute(
        select(func.count()).where(Candidate.search_id == search_id, Candidate.duplicate_of.is_not(None))
    ).scalar_one()
    session.execute(delete(SearchCounter).where(SearchCounter.search_id == search_id))
    session.execute(
        insert(SearchCounter), [{"search_id": search_id, "bucket": b, "count": n} for b, n in by_bucket.items()]
    )


def _rebuild_objective_rows(session: Session, search_id: int, originals: Sequence) -> None:
    session.execute(delete(CandidateObjective).where(CandidateObjective.search_id == search_id))
    rows = [
        {"candidate_id": row.id, "search_id": search_id, "name": name, "value": float(value), "birth": row.birth}
        for row in originals
        for name, value in row.objectives.items()
    ]
    for start in range(0, len(rows), 5000):  # bounded batches keep memory flat at 100,000 candidates
        session.execute(insert(CandidateObjective), rows[start : start + 5000])
