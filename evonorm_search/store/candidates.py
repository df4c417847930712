"""Repository functions for candidates and evaluations: the search controller's write and read paths.

Every status change goes through `_set_status`, which shifts the search's counters in the same
transaction. Terminal verdicts (evaluated, rejected, failed) are final: a second verdict changes nothing
and returns the candidate as it is (the first one wins), so a retried or duplicated outcome is harmless.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy import text as sql_text
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from ..enums import (
    IN_FLIGHT_STATUSES,
    STATUS_TRANSITIONS,
    TERMINAL_STATUSES,
    UNFINISHED_STATUSES,
    WORKER_STAGES,
    CandidateRole,
    CandidateStatus,
    EvaluationPhase,
    EvaluationStatus,
    RejectionStage,
)
from .derived import DUPLICATE_HITS, add_objective_rows, admit_to_fronts, bucket_of, shift_bucket, shift_buckets
from .errors import ConflictError, InvalidInputError, NotFoundError
from .models import Candidate, Evaluation, Search
from .objectives import objective_values
from .searches import get_search
from .types import json_safe, moment

STAGE_NAMES = frozenset(stage.value for stage in RejectionStage)

_FINISHED_VERDICTS = (CandidateStatus.EVALUATED, CandidateStatus.REJECTED)


# -- births and new candidates --------------------------------------------------------------------------


def next_birth(session: Session, search_id: int) -> int:
    """Allocate the next birth number of a search (0, 1, 2, ...); atomic across sessions."""
    allocated = session.execute(
        update(Search)
        .where(Search.id == search_id)
        .values(next_birth=Search.next_birth + 1)
        .returning(Search.next_birth)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if allocated is None:
        raise NotFoundError(f"no search with id {search_id}")
    return allocated - 1


def add_candidate(
    session: Session,
    search_id: int,
    *,
    graph: Mapping[str, Any] | Any,
    dsl: str,
    canonical_hash: str,
    fingerprint: str | None = None,
    parent_id: int | None = None,
    mutation: Any = None,
    birth: int | None = None,
    status: CandidateStatus = CandidateStatus.PENDING,
    role: CandidateRole = CandidateRole.CANDIDATE,
    label: str | None = None,
    now: datetime | None = None,
) -> Candidate:
    """Store a new candidate (`graph` as a dict or an `es.Graph`); `birth=None` allocates the next birth.
    Baselines are added through `baselines.add_baseline`, which chooses their births."""
    status = CandidateStatus(status)
    role = CandidateRole(role)
    if status not in UNFINISHED_STATUSES:
        raise InvalidInputError(f"a new candidate starts pending, queued or running, not {status}")
    graph_json = _graph_json(graph)
    if not isinstance(dsl, str) or not dsl.strip():
        raise InvalidInputError("a candidate needs its DSL text (graph.to_text())")
    if not isinstance(canonical_hash, str) or not canonical_hash:
        raise InvalidInputError("a candidate needs its canonical hash (es.canonical_hash(graph))")
    if parent_id is not None:
        _check_parent(session, search_id, parent_id)
    if birth is None:
        birth = next_birth(session, search_id)
    elif isinstance(birth, bool) or not isinstance(birth, int) or birth < 0:
        raise InvalidInputError(f"birth must be a non-negative integer, got {birth!r}")
    now = moment(now)
    candidate = Candidate(
        search_id=search_id,
        birth=birth,
        graph=graph_json,
        dsl=dsl,
        canonical_hash=canonical_hash,
        fingerprint=fingerprint,
        parent_id=parent_id,
        mutation=json_safe(mutation, "mutation"),
        status=status,
        check_seconds={},
        attempt=0,
        role=role,
        label=label,
        created_at=now,
        updated_at=now,
        heartbeat_at=now,
    )
    session.add(candidate)
    session.flush()
    if role is CandidateRole.CANDIDATE:
        shift_bucket(session, search_id, None, bucket_of(status))
    return candidate


class CandidateIds:
    """Ids for new candidates, taken before their rows are inserted, so a group inserts all its rows in one
    flush (`CandidateGroup.close`) where inserting each to learn its id cost a round trip and a flush apiece,
    and still hands each candidate its id the moment it is added (the controller's duplicate index and
    later proposals of the same group refer to it).

    PostgreSQL: values of the table's own sequence, one round trip per block: the first block is the size
    the caller expects the group to reach (`expected`), the next ones double up to `MAX_BLOCK`. A sequence
    never gives a value twice; what a group leaves unused is a gap in the ids, as a rolled back insert
    leaves. SQLite: the largest id so far plus one, counted on from there: the group's first
    write (its birth allocation) already holds the database's only write lock, so no other writer can
    insert before it commits."""

    MAX_BLOCK = 64

    def __init__(self, session: Session, expected: int = 1) -> None:
        self.session = session
        self._free: list[int] = []
        self._block = min(max(1, expected), self.MAX_BLOCK)
        self._next_sqlite: int | None = None
        self._sequence = session.get_bind().dialect.name == "postgresql"  # read once: `take` runs per candidate

    def take(self) -> int:
        if not self._sequence:
            if self._next_sqlite is None:
                self.session.flush()  # rows added outside the group (the same transaction) count
                largest = self.session.execute(select(func.max(Candidate.id))).scalar_one_or_none()
                self._next_sqlite = (largest or 0) + 1
            taken, self._next_sqlite = self._next_sqlite, self._next_sqlite + 1
            return taken
        if not self._free:
            self._free = list(
                self.session.connection()  # not `session.execute`: that would insert the group's rows first
                .execute(
                    sql_text("SELECT nextval(pg_get_serial_sequence('candidates', 'id')) FROM generate_series(1, :n)"),
                    {"n": self._block},
                )
                .scalars()
            )[::-1]
            self._block = min(self._block * 2, self.MAX_BLOCK)
        return self._free.pop()


class CandidateGroup:
    """New candidates of one search added in one transaction, each with its verdict so far (the search
    controller's proposals of one fill): one row per candidate, with the status it ends the transaction in
    (queued or running, rejected by a cheap check, or evaluated as a duplicate reusing its original's
    values), where `add_candidate` and the status changes after it cost a dozen statements. Each candidate
    has its id from `add` on (`CandidateIds`, `expected`: the caller's guess of the group's size); the
    rows are inserted together by `close`, which also writes or checks the search's births, its counters
    and the parents' search once for the whole group, and which the transaction must reach before it
    commits.

    Births are the caller's, in order from `first_birth` (the controller holding the search knows them).
    The first `add` allocates the first birth as `next_birth` does and raises ConflictError when another
    process took it; from then on the search row stays locked until the transaction ends, and `close`
    allocates the rest in one statement.
    """

    def __init__(
        self, session: Session, search_id: int, *, first_birth: int, expected: int = 1, now: datetime | None = None
    ) -> None:
        self.session = session
        self.search_id = search_id
        self.first_birth = first_birth
        self.now = moment(now)
        self.candidates: list[Candidate] = []
        self._buckets: Counter[str] = Counter()
        self._related: set[int] = set()
        self._ids = CandidateIds(session, expected)

    def __len__(self) -> int:
        return len(self.candidates)

    def add(
        self,
        *,
        graph: Mapping[str, Any] | Any,
        dsl: str,
        canonical_hash: str,
        fingerprint: str | None = None,
        parent_id: int | None = None,
        mutation: Any = None,
        status: CandidateStatus = CandidateStatus.QUEUED,
        check_seconds: Mapping[str, float] | None = None,
        rejection_stage: RejectionStage | None = None,
        rejection_reason: str | None = None,
        duplicate_of: int | None = None,
        objectives: Mapping[str, float] | None = None,
    ) -> Candidate:
        """Store the next candidate (birth `first_birth + len(self)`). `status` is pending, queued or
        running; rejected with `rejection_stage` and `rejection_reason`; or evaluated with `duplicate_of`
        and `objectives`, its original's stored values."""
        status = CandidateStatus(status)
        stage = None if rejection_stage is None else RejectionStage(rejection_stage)
        _check_new_verdict(status, stage, rejection_reason, duplicate_of, objectives)
        if not isinstance(dsl, str) or not dsl.strip():
            raise InvalidInputError("a candidate needs its DSL text (graph.to_text())")
        if not isinstance(canonical_hash, str) or not canonical_hash:
            raise InvalidInputError("a candidate needs its canonical hash (es.canonical_hash(graph))")
        seconds = {}
        for name, value in (check_seconds or {}).items():
            checked = _check_seconds(value, f"the time of the {name} check")
            if checked is not None:
                seconds[RejectionStage(name).value] = checked
        birth = self.first_birth + len(self.candidates)
        if not self.candidates:
            allocated = next_birth(self.session, self.search_id)
            if allocated != birth:
                raise ConflictError(
                    f"search {self.search_id} is at birth {allocated}, expected {birth}: another process is adding "
                    "candidates to it"
                )
        candidate = Candidate(
            search_id=self.search_id,
            birth=birth,
            graph=_graph_json(graph),
            dsl=dsl,
            canonical_hash=canonical_hash,
            fingerprint=fingerprint,
            parent_id=parent_id,
            mutation=json_safe(mutation, "mutation"),
            status=status,
            rejection_stage=stage,
            rejection_reason=rejection_reason,
            duplicate_of=duplicate_of,
            objectives=None if objectives is None else json_safe(dict(objectives), "objectives"),
            check_seconds=seconds,
            attempt=0,
            role=CandidateRole.CANDIDATE,
            created_at=self.now,
            updated_at=self.now,
            heartbeat_at=self.now,
            finished_at=self.now if status in TERMINAL_STATUSES else None,
        )
        candidate.id = self._ids.take()
        self.session.add(candidate)  # flushed with the others by `close` (or by a query that autoflushes)
        self.candidates.append(candidate)
        self._buckets[bucket_of(status, stage)] += 1
        if duplicate_of is not None:
            self._buckets[DUPLICATE_HITS] += 1
        self._related |= {i for i in (parent_id, duplicate_of) if i is not None}
        return candidate

    def original(self, candidate_id: int) -> Candidate:
        """The candidate a new one duplicates: one of this group's, or one stored before it (read without
        inserting the group's rows first: they are inserted together by `close`)."""
        for candidate in reversed(self.candidates):
            if candidate.id == candidate_id:
                return candidate
        with self.session.no_autoflush:
            return get_candidate(self.session, candidate_id)

    def close(self) -> None:
        """Insert the group's candidates, check the parents and originals named, allocate the group's other
        births, shift its counters."""
        if not self.candidates:
            return
        self.session.flush()
        if self._related:
            found = dict(
                self.session.execute(
                    select(Candidate.id, Candidate.search_id).where(Candidate.id.in_(sorted(self._related)))
                ).all()
            )
            for related in sorted(self._related):
                if related not in found:
                    raise NotFoundError(f"parent candidate {related} does not exist")
                if found[related] != self.search_id:
                    raise InvalidInputError(
                        f"parent candidate {related} belongs to search {found[related]}, not {self.search_id}"
                    )
        rest = len(self.candidates) - 1
        if rest:
            self.session.execute(
                update(Search)
                .where(Search.id == self.search_id)
                .values(next_birth=Search.next_birth + rest)
                .execution_options(synchronize_session=False)
            )
        shift_buckets(self.session, self.search_id, self._buckets)


def _check_new_verdict(
    status: CandidateStatus,
    stage: RejectionStage | None,
    reason: str | None,
    duplicate_of: int | None,
    objectives: Mapping[str, float] | None,
) -> None:
    if status is CandidateStatus.REJECTED:
        if stage is None or not isinstance(reason, str) or not reason.strip():
            raise InvalidInputError("a rejected candidate needs its rejection stage and reason")
    elif stage is not None or reason is not None:
        raise InvalidInputError(f"a {status} candidate has no rejection")
    if status is CandidateStatus.EVALUATED and (duplicate_of is None or objectives is None):
        raise InvalidInputError("a new candidate is evaluated only as a duplicate, with its original's values")
    if status is not CandidateStatus.EVALUATED and objectives is not None:
        raise InvalidInputError(f"a {status} candidate has no objective values")
    if status is CandidateStatus.FAILED:
        raise InvalidInputError("a new candidate cannot have failed")
    if duplicate_of is not None and status not in (CandidateStatus.EVALUATED, CandidateStatus.REJECTED):
        raise InvalidInputError("duplicate_of belongs to duplicates, rejected or evaluated with the original's values")
    if duplicate_of is not None and status is CandidateStatus.REJECTED and stage is not RejectionStage.DUPLICATE:
        raise InvalidInputError(f"duplicate_of belongs to duplicate rejections, not {stage}")


def _graph_json(graph: Mapping[str, Any] | Any) -> dict[str, Any]:
    if hasattr(graph, "to_dict"):
        graph = graph.to_dict()
    if not isinstance(graph, Mapping):
        raise InvalidInputError(f"graph must be an es.Graph or its to_dict(), got {type(graph).__name__}")
    return json_safe(dict(graph), "graph")


def _check_parent(session: Session, search_id: int, parent_id: int) -> None:
    parent_search = session.execute(select(Candidate.search_id).where(Candidate.id == parent_id)).scalar_one_or_none()
    if parent_search is None:
        raise NotFoundError(f"parent candidate {parent_id} does not exist")
    if parent_search != search_id:
        raise InvalidInputError(f"parent candidate {parent_id} belongs to search {parent_search}, not {search_id}")


_KEY_COLUMNS = {"canonical_hash": Candidate.canonical_hash, "fingerprint": Candidate.fingerprint}


def first_candidate_with(session: Session, search_id: int, column: str, key: str) -> int | None:
    """The id of the search's first candidate (by birth; baselines aside) whose `column` (canonical_hash or
    fingerprint) is `key`, or None: the duplicate index's look-up (each column has an index with search_id)."""
    if column not in _KEY_COLUMNS:
        raise InvalidInputError(f"unknown key column {column!r}; choose from {', '.join(_KEY_COLUMNS)}")
    query = (
        select(Candidate.id)
        .where(Candidate.search_id == search_id, Candidate.role == CandidateRole.CANDIDATE, _KEY_COLUMNS[column] == key)
        .order_by(Candidate.birth)
        .limit(1)
    )
    return session.execute(query).scalar_one_or_none()


def get_candidate(session: Session, candidate_id: int, *, for_update: bool = False) -> Candidate:
    query = select(Candidate).where(Candidate.id == candidate_id).execution_options(populate_existing=True)
    if for_update:
        query = query.with_for_update()
    candidate = session.execute(query).scalar_one_or_none()
    if candidate is None:
        raise NotFoundError(f"no candidate with id {candidate_id}")
    return candidate


def find_duplicate(
    session: Session, search_id: int, *, canonical_hash: str | None = None, fingerprint: str | None = None
) -> Candidate | None:
    """The earliest-born finished (evaluated or rejected) candidate of the search with this hash or fingerprint."""
    matches = []
    for column, value in ((Candidate.canonical_hash, canonical_hash), (Candidate.fingerprint, fingerprint)):
        if value is None:
            continue
        query = (
            select(Candidate)
            .where(
                Candidate.search_id == search_id,
                column == value,
                Candidate.status.in_(_FINISHED_VERDICTS),
                Candidate.role == CandidateRole.CANDIDATE,
            )
            .order_by(Candidate.birth)
            .limit(1)
        )
        matches += list(session.execute(query).scalars())
    return min(matches, key=lambda c: c.birth, default=None)


# -- status changes -------------------------------------------------------------------------------------


def _set_status(
    candidate: Candidate,
    session: Session,
    status: CandidateStatus,
    now: datetime,
    stage: RejectionStage | None = None,
    *,
    moved: Counter[str] | None = None,
) -> None:
    """Change a candidate's status and shift the search's counters with it: at once, or into `moved` for
    the caller to write as one statement per bucket (a group of changes)."""
    if candidate.role is CandidateRole.CANDIDATE:  # baselines stay out of the search's counters
        old, new = bucket_of(candidate.status, candidate.rejection_stage), bucket_of(status, stage)
        if moved is None:
            shift_bucket(session, candidate.search_id, old, new)
        elif old != new:
            moved[old] -= 1
            moved[new] += 1
    candidate.status = status
    candidate.rejection_stage = stage
    candidate.updated_at = candidate.heartbeat_at = now
    if status in TERMINAL_STATUSES:
        candidate.finished_at = now


def _check_transition(candidate: Candidate, status: CandidateStatus) -> None:
    if status not in STATUS_TRANSITIONS[candidate.status]:
        raise ConflictError(f"candidate {candidate.id} is {candidate.status}; it cannot become {status}")


def _check_seconds(seconds: float | None, what: str) -> float | None:
    if seconds is None:
        return None
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) or seconds < 0:
        raise InvalidInputError(f"{what} must be a non-negative number of seconds, got {seconds!r}")
    return float(seconds)


def record_check(session: Session, candidate_id: int, stage: RejectionStage, seconds: float) -> Candidate:
    """Record the time a rejection check took that the candidate passed."""
    stage = RejectionStage(stage)
    checked = _check_seconds(seconds, f"the time of the {stage} check")
    if checked is None:
        raise InvalidInputError(f"the time of the {stage} check is required (seconds, a non-negative number)")
    candidate = get_candidate(session, candidate_id, for_update=True)
    candidate.check_seconds = {**candidate.check_seconds, stage.value: checked}
    return candidate


def mark_status(
    session: Session,
    candidate_id: int,
    status: CandidateStatus,
    *,
    error: str | None = None,
    now: datetime | None = None,
) -> Candidate:
    """Move a candidate to pending, queued, running, or failed (with `error`)."""
    status = CandidateStatus(status)
    if status in _FINISHED_VERDICTS:
        helper = "complete_candidate" if status is CandidateStatus.EVALUATED else "record_rejection"
        raise InvalidInputError(f"use {helper} to make a candidate {status}")
    if status is CandidateStatus.FAILED and not error:
        raise InvalidInputError("a failed candidate needs an error message saying why")
    candidate = get_candidate(session, candidate_id, for_update=True)
    _check_transition(candidate, status)
    _set_status(candidate, session, status, moment(now))
    if error is not None:
        candidate.error = error
    return candidate


def heartbeat_candidates(session: Session, candidate_ids: Iterable[int], *, now: datetime | None = None) -> int:
    """Record a sign of life for in-flight candidates; returns how many were still in flight."""
    ids = list(candidate_ids)
    if not ids:
        return 0
    result: CursorResult[Any] = session.execute(  # type: ignore[assignment]  # an UPDATE's result is a CursorResult
        update(Candidate)
        .where(Candidate.id.in_(ids), Candidate.status.in_(IN_FLIGHT_STATUSES))
        .values(heartbeat_at=moment(now))
        .execution_options(synchronize_session=False)
    )
    return result.rowcount


def requeue_candidate(session: Session, candidate_id: int, *, now: datetime | None = None) -> Candidate:
    """Send a stuck queued/running candidate back to pending for another attempt (attempt + 1)."""
    candidate = get_candidate(session, candidate_id, for_update=True)
    if candidate.status not in IN_FLIGHT_STATUSES:
        raise ConflictError(
            f"candidate {candidate_id} is {candidate.status}; only queued or running ones are re-queued"
        )
    _set_status(candidate, session, CandidateStatus.PENDING, moment(now))
    candidate.attempt += 1
    return candidate


def record_rejection(
    session: Session,
    candidate_id: int,
    *,
    stage: RejectionStage,
    reason: str,
    seconds: float | None = None,
    duplicate_of: int | None = None,
    now: datetime | None = None,
) -> Candidate:
    """Reject a candidate at `stage` for `reason`; `seconds` is the time the failing check took."""
    stage = RejectionStage(stage)
    seconds = _check_seconds(seconds, f"the time of the {stage} check")
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidInputError("a rejection needs a reason")
    if duplicate_of is not None and stage is not RejectionStage.DUPLICATE:
        raise InvalidInputError(f"duplicate_of belongs to duplicate rejections, not {stage}")
    candidate = get_candidate(session, candidate_id, for_update=True)
    if candidate.status in TERMINAL_STATUSES:
        return candidate
    if duplicate_of is not None:
        _mark_duplicate(session, candidate, duplicate_of)
    _set_status(candidate, session, CandidateStatus.REJECTED, moment(now), stage)
    candidate.rejection_reason = reason
    if seconds is not None:
        candidate.check_seconds = {**candidate.check_seconds, stage.value: seconds}
    return candidate


def _mark_duplicate(session: Session, candidate: Candidate, original_id: int) -> None:
    if original_id == candidate.id:
        raise InvalidInputError(f"candidate {candidate.id} cannot duplicate itself")
    _check_parent(session, candidate.search_id, original_id)
    candidate.duplicate_of = original_id
    shift_bucket(session, candidate.search_id, None, DUPLICATE_HITS)


def complete_candidate(
    session: Session,
    candidate_id: int,
    objectives: Mapping[str, float],
    *,
    duplicate_of: int | None = None,
    now: datetime | None = None,
) -> Candidate:
    """Mark a candidate evaluated with its objective values, and update the search's fronts.

    With `duplicate_of`, the values are the original's reused: the candidate joins the population, but
    not the fronts or objective-sorted pages (its original stands for it there). Baselines keep their
    values on their own row only: they are reference points, never members of the search's fronts.
    """
    search_id = session.execute(select(Candidate.search_id).where(Candidate.id == candidate_id)).scalar_one_or_none()
    if search_id is None:
        raise NotFoundError(f"no candidate with id {candidate_id}")
    search = get_search(session, search_id, for_update=True)  # serialises front updates of this search
    values = objective_values(search.objective_specs, objectives)
    candidate = get_candidate(session, candidate_id, for_update=True)
    if candidate.status in TERMINAL_STATUSES:
        return candidate
    if duplicate_of is not None:
        _mark_duplicate(session, candidate, duplicate_of)
    _set_status(candidate, session, CandidateStatus.EVALUATED, moment(now))
    candidate.objectives = values
    session.flush()
    if duplicate_of is None and candidate.role is CandidateRole.CANDIDATE:
        add_objective_rows(session, [candidate])
        admit_to_fronts(session, search, candidate, values)
    return candidate


@dataclass(frozen=True)
class Settlement:
    """How one evaluation attempt of a candidate ended, for `settle_candidates`: its evaluation rows (each
    a mapping of `record_evaluation`'s keyword arguments) and one verdict: evaluated with `objectives`,
    rejected at `rejection_stage` (a stage a worker runs: the quality prefix, or the probes when they run
    there) for `rejection`, or failed with `error`. `check_seconds` (stage -> seconds) are the seconds of
    the checks the worker ran, added to those the controller ran."""

    candidate_id: int
    evaluations: Sequence[Mapping[str, Any]] = ()
    objectives: Mapping[str, float] | None = None
    rejection: str | None = None
    error: str | None = None
    rejection_stage: RejectionStage = RejectionStage.QUALITY
    check_seconds: Mapping[str, float] | None = None


def settle_candidates(
    session: Session, search_id: int, settlements: Sequence[Settlement], *, now: datetime | None = None
) -> list[Candidate]:
    """Store the outcomes of a group of evaluations of one search as `record_evaluations` followed by
    `complete_candidate`, `record_rejection` (at a worker's stage) or `mark_status(failed)` store each, with the
    same rules (a terminal candidate keeps its first verdict; failing one is a conflict), in a handful of
    statements for the whole group: the search and the candidates locked once, one insert of evaluations,
    one of objective rows, one counter update, the candidates' updates in one flush.
    Per candidate, those functions cost about ten statements, the controller's largest write cost
    (benchmarks/results/paper-scale-long-cpu2.md). Everything is checked before anything is written.
    Returns the candidates in the order of `settlements`."""
    ids = [item.candidate_id for item in settlements]
    if len(set(ids)) != len(ids):
        raise InvalidInputError("a group settles each candidate once")
    rows = [_evaluation_row(item.candidate_id, **record) for item in settlements for record in item.evaluations]
    for item in settlements:
        _check_settlement(item)
    if not settlements:
        return []
    search = get_search(session, search_id, for_update=True)  # as complete_candidate: serialises front updates
    values = {
        item.candidate_id: objective_values(search.objective_specs, item.objectives)
        for item in settlements
        if item.objectives is not None
    }
    candidates = _locked_candidates(session, search_id, ids)
    if rows:
        _insert_evaluations(session, rows)
    when, moved, evaluated = moment(now), Counter[str](), []
    for item in settlements:
        candidate = candidates[item.candidate_id]
        if item.check_seconds and candidate.status not in TERMINAL_STATUSES:
            candidate.check_seconds = {
                **candidate.check_seconds,
                **{k: float(v) for k, v in item.check_seconds.items()},
            }
        if item.error is not None:
            _check_transition(candidate, CandidateStatus.FAILED)
            _set_status(candidate, session, CandidateStatus.FAILED, when, moved=moved)
            candidate.error = item.error
        elif candidate.status in TERMINAL_STATUSES:
            continue  # the first verdict wins
        elif item.rejection is not None:
            stage = RejectionStage(item.rejection_stage)
            _set_status(candidate, session, CandidateStatus.REJECTED, when, stage, moved=moved)
            candidate.rejection_reason = item.rejection
        else:
            _set_status(candidate, session, CandidateStatus.EVALUATED, when, moved=moved)
            candidate.objectives = values[candidate.id]
            if candidate.role is CandidateRole.CANDIDATE:
                evaluated.append(candidate)
    shift_buckets(session, search_id, moved)
    session.flush()
    add_objective_rows(session, evaluated)
    for candidate in evaluated:
        admit_to_fronts(session, search, candidate, values[candidate.id])
    return [candidates[i] for i in ids]


def _check_settlement(item: Settlement) -> None:
    verdicts = [v for v in (item.objectives, item.rejection, item.error) if v is not None]
    if len(verdicts) != 1:
        raise InvalidInputError(
            f"candidate {item.candidate_id}: an outcome has one verdict (objectives, a rejection or an error), "
            f"got {len(verdicts)}"
        )
    for text, what in ((item.rejection, "a rejection needs a reason"), (item.error, "a failure needs an error")):
        if text is not None and (not isinstance(text, str) or not text.strip()):
            raise InvalidInputError(f"candidate {item.candidate_id}: {what}")
    if not isinstance(item.rejection_stage, str) or item.rejection_stage not in WORKER_STAGES:
        stages = ", ".join(sorted(WORKER_STAGES))
        raise InvalidInputError(
            f"candidate {item.candidate_id}: an outcome rejects at a stage a worker runs ({stages}), "
            f"not {item.rejection_stage!r}"
        )
    for stage, seconds in (item.check_seconds or {}).items():
        if stage not in STAGE_NAMES:
            raise InvalidInputError(f"candidate {item.candidate_id}: no check stage named {stage!r}")
        _check_seconds(seconds, f"candidate {item.candidate_id}: the time of the {stage} check")


def _locked_candidates(session: Session, search_id: int, ids: Sequence[int]) -> dict[int, Candidate]:
    """The candidates `ids` of `search_id`, read afresh and locked (in id order, so groups never deadlock)."""
    found = {
        c.id: c
        for c in session.execute(
            select(Candidate)
            .where(Candidate.id.in_(sorted(ids)))
            .order_by(Candidate.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).scalars()
    }
    for candidate_id in ids:
        if candidate_id not in found:
            raise NotFoundError(f"no candidate with id {candidate_id}")
        if found[candidate_id].search_id != search_id:
            raise InvalidInputError(
                f"candidate {candidate_id} belongs to search {found[candidate_id].search_id}, not {search_id}"
            )
    return found


# -- evaluations ----------------------------------------------------------------------------------------


def record_evaluation(
    session: Session,
    candidate_id: int,
    *,
    architecture: str,
    phase: EvaluationPhase,
    attempt: int,
    status: EvaluationStatus,
    metrics: Mapping[str, Any],
    duration_seconds: float,
    node: str | None = None,
    started_at: datetime | None = None,
    finished_at: datetime | None = None,
) -> Evaluation:
    """Store one evaluation outcome, once: recording the same (candidate, architecture, phase, attempt)
    again returns the stored row unchanged, also when two sessions race (INSERT ... ON CONFLICT DO NOTHING)."""
    row = _evaluation_row(
        candidate_id,
        architecture=architecture,
        phase=phase,
        attempt=attempt,
        status=status,
        metrics=metrics,
        duration_seconds=duration_seconds,
        node=node,
        started_at=started_at,
        finished_at=finished_at,
    )
    get_candidate(session, candidate_id)
    _insert_evaluations(session, [row])
    key = {k: row[k] for k in _EVALUATION_KEY}
    return session.execute(
        select(Evaluation)
        .where(*(getattr(Evaluation, k) == v for k, v in key.items()))
        .execution_options(populate_existing=True)
    ).scalar_one()


def record_evaluations(session: Session, candidate_id: int, records: Sequence[Mapping[str, Any]]) -> None:
    """Store several evaluation outcomes of one candidate (each a mapping of `record_evaluation`'s keyword
    arguments) in one statement, each once as `record_evaluation` stores it; nothing is read back."""
    rows = [_evaluation_row(candidate_id, **record) for record in records]
    if rows:
        get_candidate(session, candidate_id)
        _insert_evaluations(session, rows)


_EVALUATION_KEY = ("candidate_id", "architecture", "phase", "attempt")


def _evaluation_row(
    candidate_id: int,
    *,
    architecture: str,
    phase: EvaluationPhase,
    attempt: int,
    status: EvaluationStatus,
    metrics: Mapping[str, Any],
    duration_seconds: float,
    node: str | None = None,
    started_at: datetime | None = None,
    finished_at: datetime | None = None,
) -> dict[str, Any]:
    phase, status = EvaluationPhase(phase), EvaluationStatus(status)
    if not isinstance(architecture, str) or not architecture or len(architecture) > 100:
        raise InvalidInputError(f"architecture must be a name of 1 to 100 characters, got {architecture!r}")
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 0:
        raise InvalidInputError(f"attempt must be a non-negative integer, got {attempt!r}")
    if not isinstance(metrics, Mapping):
        raise InvalidInputError(f"metrics must be a mapping, got {type(metrics).__name__}")
    duration = _check_seconds(duration_seconds, "duration_seconds")
    if duration is None:
        raise InvalidInputError("an evaluation needs its duration_seconds")
    return {
        "candidate_id": candidate_id,
        "architecture": architecture,
        "phase": phase,
        "attempt": attempt,
        "status": status,
        "metrics": json_safe(dict(metrics), "metrics"),
        "duration_seconds": duration,
        "node": node,
        "started_at": None if started_at is None else moment(started_at),
        "finished_at": moment(finished_at),
    }


def _insert_evaluations(session: Session, rows: list[dict[str, Any]]) -> None:
    insert = postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    # One statement with the rows as parameters (an executemany, batched by the driver): compiled once and
    # cached, where a VALUES list of the rows was compiled afresh for every group size.
    session.execute(insert(Evaluation).on_conflict_do_nothing(index_elements=list(_EVALUATION_KEY)), rows)


def evaluations_of(session: Session, candidate_id: int) -> list[Evaluation]:
    query = (
        select(Evaluation)
        .where(Evaluation.candidate_id == candidate_id)
        .order_by(Evaluation.phase, Evaluation.architecture, Evaluation.attempt)
    )
    return list(session.execute(query).scalars())


# -- the controller's reads -----------------------------------------------------------------------------


def population(session: Session, search_id: int, size: int) -> list[Candidate]:
    """The aging-evolution population: the `size` most recently born evaluated candidates, oldest first.

    Duplicates (evaluated by reusing their original's objectives) are never members: the population holds
    distinct layers."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise InvalidInputError(f"population size must be a positive integer, got {size!r}")
    query = (
        select(Candidate)
        .where(
            Candidate.search_id == search_id,
            Candidate.status == CandidateStatus.EVALUATED,
            Candidate.role == CandidateRole.CANDIDATE,
            Candidate.duplicate_of.is_(None),
        )
        .order_by(Candidate.birth.desc())
        .limit(size)
    )
    return list(reversed(session.execute(query).scalars().all()))


def unfinished_candidates(session: Session, search_id: int) -> list[Candidate]:
    """Candidates (not baselines) still pending, queued or running (to resume them), by birth."""
    query = (
        select(Candidate)
        .where(
            Candidate.search_id == search_id,
            Candidate.status.in_(UNFINISHED_STATUSES),
            Candidate.role == CandidateRole.CANDIDATE,
        )
        .order_by(Candidate.birth)
    )
    return list(session.execute(query).scalars())


def stuck_candidates(
    session: Session, search_id: int, *, older_than: timedelta, now: datetime | None = None
) -> list[Candidate]:
    """Queued or running candidates with no sign of life (status change or heartbeat) for `older_than`."""
    cutoff = moment(now) - older_than
    query = (
        select(Candidate)
        .where(
            Candidate.search_id == search_id,
            Candidate.status.in_(IN_FLIGHT_STATUSES),
            Candidate.heartbeat_at < cutoff,
        )
        .order_by(Candidate.birth)
    )
    return list(session.execute(query).scalars())
