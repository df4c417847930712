"""The tables, as SQLAlchemy 2 typed models.

`searches`, `candidates` and `evaluations` hold what happened. Three more tables are derived data,
maintained in the same transaction as the change they follow, so the status page, sorted candidate
pages and the Pareto front never scan a search (see "Store" in docs/architecture.md):

- `search_counters`: candidates per status bucket (`pending`, ..., `rejected:<stage>`, `duplicate_hits`);
- `candidate_objectives`: one row per (evaluated candidate, objective) with its value, indexed for sorting;
- `pareto_members`: the current Pareto front of every search over each tracked subset of its objectives.

The schema is created and changed only by the Alembic migrations in `migrations/versions`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, MetaData, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from ..enums import CandidateRole, CandidateStatus, EvaluationPhase, EvaluationStatus, RejectionStage, SearchState
from .objectives import Objective
from .types import JSONValue, UTCDateTime, str_enum

# Deterministic constraint names: migrations can refer to them, on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime()}


class Search(Base):
    __tablename__ = "searches"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    config: Mapped[dict[str, Any]] = mapped_column(JSONValue)
    objectives: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONValue
    )  # [{"name", "direction", "reference"}], in the order objective masks use
    state: Mapped[SearchState] = mapped_column(str_enum(SearchState, "state"), default=SearchState.CREATED)
    seed: Mapped[int] = mapped_column(default=0)
    budget: Mapped[int | None]
    next_birth: Mapped[int] = mapped_column(default=0)
    hypervolume: Mapped[float | None]  # of the full front; derived, see pareto.py
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    controller_host: Mapped[str | None] = mapped_column(String(255))
    controller_pid: Mapped[int | None]
    controller_heartbeat_at: Mapped[datetime | None]

    candidates: Mapped[list[Candidate]] = relationship(
        back_populates="search", cascade="all, delete-orphan", passive_deletes=True, order_by="Candidate.birth"
    )

    __table_args__ = (
        Index("ix_searches_state_heartbeat", "state", "controller_heartbeat_at"),
        CheckConstraint("next_birth >= 0", name="next_birth_non_negative"),
    )

    @property
    def objective_specs(self) -> list[Objective]:
        return [Objective.from_json(o) for o in self.objectives]

    @property
    def objective_names(self) -> list[str]:
        return [o["name"] for o in self.objectives]

    def __repr__(self) -> str:
        return f"Search(id={self.id}, name={self.name!r}, state={self.state})"


class Candidate(Base):
    __tablename__ = "candidates"

    id: Mapped[int] = mapped_column(primary_key=True)
    search_id: Mapped[int] = mapped_column(ForeignKey("searches.id", ondelete="CASCADE"))
    birth: Mapped[int]
    graph: Mapped[dict[str, Any]] = mapped_column(JSONValue)
    dsl: Mapped[str] = mapped_column(Text)
    canonical_hash: Mapped[str] = mapped_column(String(128))
    fingerprint: Mapped[str | None] = mapped_column(String(128))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("candidates.id", ondelete="SET NULL"))
    mutation: Mapped[Any | None] = mapped_column(JSONValue)
    status: Mapped[CandidateStatus] = mapped_column(str_enum(CandidateStatus, "status"))
    rejection_stage: Mapped[RejectionStage | None] = mapped_column(str_enum(RejectionStage, "rejection_stage"))
    rejection_reason: Mapped[str | None] = mapped_column(Text)
    duplicate_of: Mapped[int | None] = mapped_column(ForeignKey("candidates.id", ondelete="SET NULL"))
    objectives: Mapped[dict[str, float] | None] = mapped_column(
        JSONValue
    )  # {name: value} as reported, set when evaluated
    check_seconds: Mapped[dict[str, float]] = mapped_column(
        JSONValue
    )  # {stage: seconds} of the rejection checks it went through
    attempt: Mapped[int] = mapped_column(default=0)  # bumped when a stuck evaluation is re-queued
    error: Mapped[str | None] = mapped_column(Text)
    # Baselines are reference layers stored beside the search's own candidates: outside its budget,
    # counters, population, duplicate index and fronts; births from BASELINE_BIRTHS up (see baselines.py).
    role: Mapped[CandidateRole] = mapped_column(
        str_enum(CandidateRole, "role"), default=CandidateRole.CANDIDATE, server_default=CandidateRole.CANDIDATE.value
    )
    label: Mapped[str | None] = mapped_column(String(200))  # a baseline's name as the config lists it
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    heartbeat_at: Mapped[datetime]  # last sign of life: a status change or heartbeat_candidates
    finished_at: Mapped[datetime | None]

    search: Mapped[Search] = relationship(back_populates="candidates")
    parent: Mapped[Candidate | None] = relationship(remote_side=[id], foreign_keys=[parent_id])
    evaluations: Mapped[list[Evaluation]] = relationship(
        back_populates="candidate",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by=lambda: [Evaluation.phase, Evaluation.architecture, Evaluation.attempt],
    )

    @property
    def objective_values(self) -> dict[str, float]:
        """The objective values of an evaluated candidate (fronts, populations and sorting read these); a
        candidate without values there is a bug, reported as such rather than as a TypeError."""
        if self.objectives is None:
            raise ValueError(f"candidate {self.id} ({self.status}) has no objective values")
        return self.objectives

    __table_args__ = (
        UniqueConstraint("search_id", "birth"),
        # the controller's queries (population, unfinished) and the service's status-filtered pages
        Index("ix_candidates_search_status_birth", "search_id", "status", "birth"),
        # the service's unfiltered pages in birth order: one ordered walk per role (migration 0003)
        Index("ix_candidates_search_role_birth", "search_id", "role", "birth"),
        Index("ix_candidates_search_stage_birth", "search_id", "rejection_stage", "birth"),
        Index("ix_candidates_search_hash", "search_id", "canonical_hash"),
        Index("ix_candidates_search_fingerprint", "search_id", "fingerprint"),
        Index("ix_candidates_search_finished", "search_id", "finished_at"),
        Index("ix_candidates_parent", "parent_id"),
        Index("ix_candidates_duplicate_of", "duplicate_of"),
        CheckConstraint("birth >= 0", name="birth_non_negative"),
        CheckConstraint("attempt >= 0", name="attempt_non_negative"),
        CheckConstraint("(status = 'rejected') = (rejection_stage IS NOT NULL)", name="rejection_stage_iff_rejected"),
        CheckConstraint("status = 'evaluated' OR objectives IS NULL", name="objectives_only_when_evaluated"),
    )

    def __repr__(self) -> str:
        return f"Candidate(id={self.id}, search_id={self.search_id}, birth={self.birth}, status={self.status})"


class Evaluation(Base):
    __tablename__ = "evaluations"

    id: Mapped[int] = mapped_column(primary_key=True)
    candidate_id: Mapped[int] = mapped_column(ForeignKey("candidates.id", ondelete="CASCADE"))
    architecture: Mapped[str] = mapped_column(String(100))
    phase: Mapped[EvaluationPhase] = mapped_column(str_enum(EvaluationPhase, "phase"))
    attempt: Mapped[int]
    status: Mapped[EvaluationStatus] = mapped_column(str_enum(EvaluationStatus, "status"))
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONValue)
    duration_seconds: Mapped[float]
    node: Mapped[str | None] = mapped_column(String(255))
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime]

    candidate: Mapped[Candidate] = relationship(back_populates="evaluations")

    __table_args__ = (
        # the idempotency key: a retried commit of the same outcome finds this row instead of adding one
        UniqueConstraint("candidate_id", "architecture", "phase", "attempt"),
        CheckConstraint("attempt >= 0", name="attempt_non_negative"),
        CheckConstraint("duration_seconds >= 0", name="duration_non_negative"),
    )

    def __repr__(self) -> str:
        return (
            f"Evaluation(candidate_id={self.candidate_id}, architecture={self.architecture!r}, "
            f"phase={self.phase}, attempt={self.attempt}, status={self.status})"
        )


# -- derived tables ------------------------------------------------------------------------------------


class SearchCounter(Base):
    """Candidates of a search per bucket: a status, `rejected:<stage>`, or `duplicate_hits`."""

    __tablename__ = "search_counters"

    search_id: Mapped[int] = mapped_column(ForeignKey("searches.id", ondelete="CASCADE"), primary_key=True)
    bucket: Mapped[str] = mapped_column(String(32), primary_key=True)
    count: Mapped[int] = mapped_column(default=0)

    __table_args__ = (CheckConstraint("count >= 0", name="count_non_negative"),)


class CandidateObjective(Base):
    """One objective value of an evaluated candidate (originals only, not duplicates), for sorted pages."""

    __tablename__ = "candidate_objectives"

    candidate_id: Mapped[int] = mapped_column(ForeignKey("candidates.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    search_id: Mapped[int] = mapped_column(ForeignKey("searches.id", ondelete="CASCADE"))
    value: Mapped[float]
    birth: Mapped[int]  # copied from the candidate: the tie-breaker of the sort, inside the index

    __table_args__ = (Index("ix_candidate_objectives_sort", "search_id", "name", "value", "birth"),)


class ParetoMember(Base):
    """Candidate `candidate_id` is on the Pareto front of its search over the objectives in `objective_mask`."""

    __tablename__ = "pareto_members"

    search_id: Mapped[int] = mapped_column(ForeignKey("searches.id", ondelete="CASCADE"), primary_key=True)
    objective_mask: Mapped[int] = mapped_column(primary_key=True)
    candidate_id: Mapped[int] = mapped_column(ForeignKey("candidates.id", ondelete="CASCADE"), primary_key=True)

    __table_args__ = (
        Index("ix_pareto_members_candidate", "candidate_id"),
        CheckConstraint("objective_mask > 0", name="mask_positive"),
    )
