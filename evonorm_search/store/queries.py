"""The service's reads: status summary, candidate pages, candidate detail, Pareto fronts.

Each reads derived data or walks an index; none scans a search's candidates (see derived.py).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache, lru_cache
from typing import Any, TypeVar

import numpy as np
from sqlalchemy import CompoundSelect, Select, bindparam, func, literal, select, tuple_, union_all
from sqlalchemy.orm import Session, aliased

from ..enums import CandidateRole, CandidateStatus, RejectionStage
from .candidates import evaluations_of, get_candidate
from .derived import DUPLICATE_HITS, bucket_of, counts, front_members
from .errors import InvalidInputError, NotFoundError
from .models import Candidate, CandidateObjective, Evaluation, ParetoMember, Search
from .objectives import Direction, Objective, full_mask, mask_indices, mask_of, non_dominated, tracked_masks
from .pages import Page, check_limit, decode_cursor, encode_cursor
from .searches import get_search

MAX_LINEAGE = 10_000
E = TypeVar("E", bound=enum.Enum)
KeyOf = Callable[[Any], list[Any]]  # the sort key of a row, as its page cursor stores it

# Lean projections: the columns a page row, a front point and an ancestor show. Reading whole candidates
# would decode their graph, mutation and check times (JSON) and build ORM objects, which at 50 rows a
# page costs more than the query itself. Rows of these columns carry the same attribute names.
BRIEF_COLUMNS = (
    Candidate.id,
    Candidate.search_id,
    Candidate.birth,
    Candidate.status,
    Candidate.rejection_stage,
    Candidate.rejection_reason,
    Candidate.objectives,
    Candidate.dsl,
    Candidate.canonical_hash,
    Candidate.parent_id,
    Candidate.duplicate_of,
    Candidate.role,
    Candidate.label,
    Candidate.created_at,
    Candidate.finished_at,
)
POINT_COLUMNS = (
    Candidate.id,
    Candidate.search_id,
    Candidate.birth,
    Candidate.objectives,
    Candidate.dsl,
    Candidate.canonical_hash,
)
ANCESTOR_COLUMNS = (
    Candidate.id,
    Candidate.birth,
    Candidate.status,
    Candidate.dsl,
    Candidate.objectives,
    Candidate.mutation,
)


@dataclass(frozen=True)
class BestValue:
    value: float
    candidate_id: int
    birth: int


@dataclass(frozen=True)
class SearchSummary:
    search: Search
    total: int
    by_status: dict[CandidateStatus, int]
    rejected_by_stage: dict[RejectionStage, int]
    evaluated: int
    duplicate_hits: int
    best: dict[str, BestValue | None]  # per objective, honouring its direction
    hypervolume: float | None  # of the full front against the objectives' references
    front_size: int  # candidates on the front over all objectives
    first_finished_at: datetime | None  # the first and last time a candidate reached a final status:
    last_finished_at: datetime | None  # finished / (last - first) is the search's throughput


@dataclass(frozen=True)
class CandidateDetail:
    candidate: Candidate
    evaluations: list[Evaluation]
    lineage: list[Any]  # parent, grandparent, ... towards the root: rows of ANCESTOR_COLUMNS
    lineage_truncated: bool  # the chain goes on beyond lineage_limit


# -- status summary -------------------------------------------------------------------------------------


def search_summary(session: Session, search_id: int) -> SearchSummary:
    """Counts, best values, hypervolume and completion times of a search: four small statements, each
    reading derived data or probing an index (few round trips matter on a busy PostgreSQL server)."""
    search = get_search(session, search_id)
    buckets = counts(session, search_id)
    rejected = {r: buckets.get(bucket_of(CandidateStatus.REJECTED, r), 0) for r in RejectionStage}
    by_status = {
        s: sum(rejected.values()) if s is CandidateStatus.REJECTED else buckets.get(bucket_of(s), 0)
        for s in CandidateStatus
    }
    objectives = search.objective_specs
    first, last, front_size = _completion_and_front(session, search_id, len(objectives))
    return SearchSummary(
        search=search,
        total=sum(by_status.values()),
        by_status=by_status,
        rejected_by_stage=rejected,
        evaluated=by_status[CandidateStatus.EVALUATED],
        duplicate_hits=buckets.get(DUPLICATE_HITS, 0),
        best=_best_values(session, search_id, objectives),
        hypervolume=search.hypervolume,
        front_size=front_size,
        first_finished_at=first,
        last_finished_at=last,
    )


def _completion_and_front(session: Session, search_id: int, objective_count: int) -> tuple[Any, Any, int]:
    """First and last completion, and the size of the full front: three scalar subqueries in one statement."""
    return session.execute(
        _completion_and_front_query(), {"search_id": search_id, "mask": full_mask(objective_count)}
    ).one()


@cache
def _completion_and_front_query() -> Select:
    """Built once, `search_id` and `mask` bound per call: building a statement costs more than running it.
    First and last completion as ORDER BY ... LIMIT 1 over non-null times, each alone in its subquery:
    that is an index probe on (search_id, finished_at) on both backends whatever the planner's statistics
    say, where min()/max() let SQLite, with statistics that predate an index, walk the search's rows of
    another index (ix_candidates_search_role_birth: 0.5 s at 100,000 candidates)."""
    finished = Candidate.finished_at
    in_search = (Candidate.search_id == bindparam("search_id"), finished.is_not(None))
    on_full_front = (ParetoMember.search_id == bindparam("search_id"), ParetoMember.objective_mask == bindparam("mask"))
    return select(
        select(finished).where(*in_search).order_by(finished).limit(1).scalar_subquery(),
        select(finished).where(*in_search).order_by(finished.desc()).limit(1).scalar_subquery(),
        select(func.count()).select_from(ParetoMember).where(*on_full_front).scalar_subquery(),
    )


def _best_values(session: Session, search_id: int, objectives: Sequence[Objective]) -> dict[str, BestValue | None]:
    """Per objective, the best value and the earliest-born candidate reaching it (ties at the top can be many:
    accuracies on a small test set are coarse)."""
    query = _best_values_query(tuple((o.name, o.direction) for o in objectives))
    found = {
        row.name: BestValue(float(row.value), row.candidate_id, row.birth)
        for row in session.execute(query, {"search_id": search_id})
    }
    return {o.name: found.get(o.name) for o in objectives}


@lru_cache(maxsize=256)
def _best_values_query(objectives: tuple[tuple[str, str], ...]) -> CompoundSelect:
    """Two probes of the objective index per objective, all in one statement, built once per list of
    objectives (`search_id` bound per call). ORDER BY ... LIMIT 1 rather than max(): the plan stays an index
    probe even while the planner's statistics still describe a nearly empty table."""
    value = CandidateObjective.value
    parts = []
    for name, direction in objectives:
        rows = (CandidateObjective.search_id == bindparam("search_id"), CandidateObjective.name == name)
        best = select(value).where(*rows).order_by(value.desc() if direction == "max" else value).limit(1)
        earliest = (
            select(CandidateObjective.name, value, CandidateObjective.candidate_id, CandidateObjective.birth)
            .where(*rows, value == best.scalar_subquery())
            .order_by(CandidateObjective.birth)
            .limit(1)
            .subquery()
        )
        parts.append(select(earliest))  # wrapped: SQLite allows no ORDER BY/LIMIT inside a compound SELECT
    return union_all(*parts)


def search_objectives(session: Session, search_id: int) -> list[Objective]:
    """A search's objectives, read alone (its config can be large); NotFoundError when it does not exist."""
    found = session.execute(_objectives_query(), {"search_id": search_id}).scalar_one_or_none()
    if found is None:
        raise NotFoundError(f"no search with id {search_id}")
    return [Objective.from_json(o) for o in found]


@cache
def _objectives_query() -> Select:
    return select(Search.objectives).where(Search.id == bindparam("search_id"))


# -- candidate pages ------------------------------------------------------------------------------------


def list_candidates(
    session: Session,
    search_id: int,
    *,
    statuses: Iterable[CandidateStatus] | None = None,
    stages: Iterable[RejectionStage] | None = None,
    sort: str = "birth",
    descending: bool | None = None,
    limit: int = 50,
    cursor: str | None = None,
    role: CandidateRole = CandidateRole.CANDIDATE,
    brief: bool = False,
) -> Page[Any]:
    """A page of a search's candidates, filtered by status and rejection stage, sorted by birth or by an
    objective (then only candidates with that value: evaluated originals), `limit` at a time. Ties on an
    objective are ordered by birth in the same direction as the values. `role`: the search's own
    candidates (default) or its baselines (`baselines.baselines_of` lists those directly).
    Items are Candidates, or with `brief=True` rows of BRIEF_COLUMNS (what a page shows, read lean)."""
    check_limit(limit)
    objectives = search_objectives(session, search_id)
    status_filter = _enum_list(statuses, CandidateStatus, "status")
    stage_filter = _enum_list(stages, RejectionStage, "rejection stage")
    selected = select(*BRIEF_COLUMNS) if brief else select(Candidate)
    if sort == "birth":
        query, ordering, key_of = _by_birth(selected, search_id, bool(descending), cursor)
    else:
        query, ordering, key_of = _by_objective(selected, search_id, objectives, sort, descending, cursor)
    if status_filter is not None:
        query = query.where(Candidate.status.in_(status_filter))
    if stage_filter is not None:
        query = query.where(Candidate.rejection_stage.in_(stage_filter))
    query = query.where(Candidate.role == CandidateRole(role))
    result = session.execute(query.limit(limit + 1))
    rows = list(result.all() if brief else result.scalars())
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, encode_cursor(ordering, key_of(rows[-1])) if more else None)


def _enum_list(values: Iterable[str] | str | None, enum_class: type[E], what: str) -> list[E] | None:
    if values is None:
        return None
    if isinstance(values, str):
        values = [values]
    try:
        return [enum_class(v) for v in values]
    except ValueError:
        allowed = ", ".join(e.value for e in enum_class)
        raise InvalidInputError(f"unknown {what} in {list(values)}; choose from {allowed}") from None


def _by_birth(selected: Select, search_id: int, descending: bool, cursor: str | None) -> tuple[Select, str, KeyOf]:
    ordering = f"birth:{'desc' if descending else 'asc'}"
    query = selected.where(Candidate.search_id == search_id)
    query = query.order_by(Candidate.birth.desc() if descending else Candidate.birth)
    if cursor is not None:
        (birth,) = decode_cursor(cursor, ordering, 1)
        query = query.where(Candidate.birth < birth if descending else Candidate.birth > birth)
    return query, ordering, lambda c: [c.birth]


def _by_objective(
    selected: Select,
    search_id: int,
    objectives: Sequence[Objective],
    name: str,
    descending: bool | None,
    cursor: str | None,
) -> tuple[Select, str, KeyOf]:
    objective = next((o for o in objectives if o.name == name), None)
    if objective is None:
        raise InvalidInputError(
            f"cannot sort by {name!r}: sort by 'birth' or an objective of the search {[o.name for o in objectives]}"
        )
    if descending is None:
        descending = objective.direction == "max"  # best first
    ordering = f"objective:{name}:{'desc' if descending else 'asc'}"
    value_key = tuple_(CandidateObjective.value, CandidateObjective.birth)
    query: Select = selected.join(CandidateObjective, CandidateObjective.candidate_id == Candidate.id).where(
        CandidateObjective.search_id == search_id, CandidateObjective.name == name
    )
    if descending:
        query = query.order_by(CandidateObjective.value.desc(), CandidateObjective.birth.desc())
    else:
        query = query.order_by(CandidateObjective.value, CandidateObjective.birth)
    if cursor is not None:
        value, birth = decode_cursor(cursor, ordering, 2)
        after = tuple_(literal(float(value)), literal(int(birth)))
        query = query.where(value_key < after if descending else value_key > after)
    return query, ordering, lambda c: [float(c.objectives[name]), c.birth]


def results_in_commit_order(session: Session, search_id: int) -> list[tuple[int, dict[str, float]]]:
    """(id, objectives) of a search's evaluated candidates, in the order their results were committed
    (finish time, then id); duplicates, which reuse another's result, and baselines are left out. The
    fidelity ladder replays its promotions from this order."""
    rows = session.execute(
        select(Candidate.id, Candidate.objectives)
        .where(
            Candidate.search_id == search_id,
            Candidate.role == CandidateRole.CANDIDATE,
            Candidate.status == CandidateStatus.EVALUATED,
            Candidate.duplicate_of.is_(None),
        )
        .order_by(Candidate.finished_at, Candidate.id)
    ).all()
    return [(row.id, row.objectives or {}) for row in rows]


def candidate_graphs(session: Session, candidate_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """{id: stored graph} of these candidates (ids that do not exist are left out): what lean reads leave
    out, read for the few rows that need it."""
    ids = sorted(set(candidate_ids))
    if not ids:
        return {}
    return dict(session.execute(select(Candidate.id, Candidate.graph).where(Candidate.id.in_(ids))).all())


# -- candidate detail -----------------------------------------------------------------------------------


def candidate_detail(session: Session, candidate_id: int, *, lineage_limit: int = 100) -> CandidateDetail:
    """A candidate with its evaluations and its chain of ancestors (at most `lineage_limit`)."""
    if isinstance(lineage_limit, bool) or not isinstance(lineage_limit, int) or not 0 <= lineage_limit <= MAX_LINEAGE:
        raise InvalidInputError(f"lineage_limit must be an integer from 0 to {MAX_LINEAGE}, got {lineage_limit!r}")
    candidate = get_candidate(session, candidate_id)
    lineage = _ancestors(session, candidate, lineage_limit + 1)
    return CandidateDetail(
        candidate=candidate,
        evaluations=evaluations_of(session, candidate_id),
        lineage=lineage[:lineage_limit],
        lineage_truncated=len(lineage) > lineage_limit,
    )


@cache
def _lineage_query() -> Select:
    """Parent, grandparent, ...: one recursive query walking parent_id through the primary key. Built once
    (constructing a recursive CTE costs more than running it); `start` and `depth_limit` are bound per call."""
    start = select(Candidate.id, Candidate.parent_id, literal(1).label("depth")).where(
        Candidate.id == bindparam("start")
    )
    chain = start.cte("lineage", recursive=True)
    parent = aliased(Candidate)
    chain = chain.union_all(
        select(parent.id, parent.parent_id, (chain.c.depth + 1).label("depth")).where(
            parent.id == chain.c.parent_id, chain.c.depth < bindparam("depth_limit")
        )
    )
    return select(*ANCESTOR_COLUMNS).join(chain, Candidate.id == chain.c.id).order_by(chain.c.depth)


def _ancestors(session: Session, candidate: Candidate, limit: int) -> list[Any]:
    if candidate.parent_id is None or limit == 0:
        return []
    query = _lineage_query()
    return list(session.execute(query, {"start": candidate.parent_id, "depth_limit": limit}).all())


# -- Pareto fronts --------------------------------------------------------------------------------------


def pareto_front(
    session: Session, search_id: int, objectives: Sequence[str] | None = None, *, brief: bool = False
) -> list[Any]:
    """The candidates of a search no other evaluated original dominates over `objectives` (default: all),
    ordered by the first chosen objective, best first: Candidates, or with `brief=True` rows of
    POINT_COLUMNS (what a front's point shows, read lean)."""
    search = get_search(session, search_id)
    specs = search.objective_specs
    names = list(objectives) if objectives is not None else [o.name for o in specs]
    mask = mask_of(specs, names)
    members = _front_over(session, search, mask, POINT_COLUMNS if brief else None)
    first = next(o for o in specs if o.name == names[0])
    return sorted(members, key=lambda c: (_best_first(c.objectives[first.name], first), c.birth))


def _best_first(value: float, objective: Objective) -> float:
    return -value if objective.direction == "max" else value


def _front_over(session: Session, search: Search, mask: int, columns: Sequence | None = None) -> list[Any]:
    specs = search.objective_specs
    if mask in tracked_masks(len(specs)):
        return front_members(session, search.id, [mask], columns=columns).get(mask, [])
    # An untracked subset (searches with many objectives): every point on it has an equal-valued
    # representative on the full front, so filtering the full front gives its exact set of values.
    full_front = full_mask(len(specs))
    full = front_members(session, search.id, [full_front], columns=columns).get(full_front, [])
    idx = mask_indices(mask)
    chosen = [specs[i] for i in idx]
    keep = non_dominated(_matrix(full, chosen), [o.direction == "max" for o in chosen])
    return [c for c, k in zip(full, keep, strict=True) if k]


def _matrix(candidates: Sequence[Any], objectives: Sequence[Objective]) -> np.ndarray:
    """Candidates or lean rows (both have `objectives`; the rows are never unevaluated here)."""
    rows = [[float(c.objectives[o.name]) for o in objectives] for c in candidates]
    return np.array(rows, dtype=float).reshape(len(candidates), len(objectives))


def pareto_front_across(
    session: Session, objectives: Sequence[str], *, search_ids: Iterable[int] | None = None, brief: bool = False
) -> list[Any]:
    """The front over `objectives` of the candidates of every search that has them all (or of `search_ids`),
    ordered by the first objective, best first. Searches must agree on each objective's direction.
    Candidates, or with `brief=True` rows of POINT_COLUMNS."""
    if isinstance(objectives, str) or not objectives:
        raise InvalidInputError("choose at least one objective (a list of names)")
    names = list(objectives)
    query = select(Search).order_by(Search.id)
    if search_ids is not None:
        query = query.where(Search.id.in_(set(search_ids)))
    candidates_searches = list(session.execute(query).scalars())
    if search_ids is None:
        searches = [s for s in candidates_searches if set(names) <= set(s.objective_names)]
    else:
        searches = _requested(candidates_searches, set(search_ids), names)
    if not searches:
        return []
    directions = _agreed_directions(searches, names)
    columns = POINT_COLUMNS if brief else None
    pooled = [c for s in searches for c in _front_over(session, s, mask_of(s.objective_specs, names), columns)]
    chosen = [Objective(n, directions[n]) for n in names]
    keep = non_dominated(_matrix(pooled, chosen), [o.direction == "max" for o in chosen])
    front = [c for c, k in zip(pooled, keep, strict=True) if k]
    return sorted(front, key=lambda c: (_best_first(c.objectives[names[0]], chosen[0]), c.search_id, c.birth))


def _requested(found: Sequence[Search], wanted: set[int], names: Sequence[str]) -> list[Search]:
    if missing := sorted(wanted - {s.id for s in found}):
        raise NotFoundError(f"no searches with ids {missing}")
    for search in found:
        if lacking := [n for n in names if n not in search.objective_names]:
            raise InvalidInputError(
                f"search {search.id} has no objective {lacking[0]!r} (it has {search.objective_names})"
            )
    return list(found)


def _agreed_directions(searches: Sequence[Search], names: Sequence[str]) -> dict[str, Direction]:
    directions: dict[str, Direction] = {}
    for search in searches:
        for o in search.objective_specs:
            if o.name not in names:
                continue
            if directions.setdefault(o.name, o.direction) != o.direction:
                raise InvalidInputError(
                    f"objective {o.name!r} is maximised in some searches and minimised in others; "
                    "choose searches that agree (search_ids)"
                )
    return directions


__all__ = [
    "ANCESTOR_COLUMNS",
    "BRIEF_COLUMNS",
    "POINT_COLUMNS",
    "BestValue",
    "CandidateDetail",
    "SearchSummary",
    "candidate_detail",
    "candidate_graphs",
    "list_candidates",
    "pareto_front",
    "pareto_front_across",
    "search_summary",
]
