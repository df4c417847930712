"""Initial schema: searches, candidates, evaluations, and the derived tables (counters, objective index,
Pareto fronts).

Revision ID: 0001
Revises:
Create Date: 2026-11-23

A migration is a frozen snapshot: it spells its types out instead of importing the models.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSON = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
TIMESTAMP = sa.DateTime(timezone=True)

SEARCH_STATES = ("created", "running", "stopping", "stopped", "completed", "failed")
CANDIDATE_STATUSES = ("pending", "queued", "running", "evaluated", "rejected", "failed")
REJECTION_STAGES = ("static", "duplicate", "numeric", "stability", "quality")
EVALUATION_PHASES = ("quality", "proxy")
EVALUATION_STATUSES = ("succeeded", "rejected", "failed")


def _one_of(table: str, column: str, values: tuple[str, ...]) -> sa.CheckConstraint:
    allowed = ", ".join(f"'{v}'" for v in values)
    return sa.CheckConstraint(f"{column} IN ({allowed})", name=op.f(f"ck_{table}_{column}"))


def upgrade() -> None:
    _create_searches()
    _create_candidates()
    _create_evaluations()
    _create_derived_tables()


def _create_searches() -> None:
    op.create_table(
        "searches",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("config", JSON, nullable=False),
        sa.Column("objectives", JSON, nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("budget", sa.Integer(), nullable=True),
        sa.Column("next_birth", sa.Integer(), nullable=False),
        sa.Column("hypervolume", sa.Double(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=True),
        sa.Column("finished_at", TIMESTAMP, nullable=True),
        sa.Column("controller_host", sa.String(length=255), nullable=True),
        sa.Column("controller_pid", sa.Integer(), nullable=True),
        sa.Column("controller_heartbeat_at", TIMESTAMP, nullable=True),
        _one_of("searches", "state", SEARCH_STATES),
        sa.CheckConstraint("next_birth >= 0", name=op.f("ck_searches_next_birth_non_negative")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_searches")),
    )
    op.create_index("ix_searches_state_heartbeat", "searches", ["state", "controller_heartbeat_at"])


def _create_candidates() -> None:
    op.create_table(
        "candidates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("search_id", sa.Integer(), nullable=False),
        sa.Column("birth", sa.Integer(), nullable=False),
        sa.Column("graph", JSON, nullable=False),
        sa.Column("dsl", sa.Text(), nullable=False),
        sa.Column("canonical_hash", sa.String(length=128), nullable=False),
        sa.Column("fingerprint", sa.String(length=128), nullable=True),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("mutation", JSON, nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("rejection_stage", sa.String(length=16), nullable=True),
        sa.Column("rejection_reason", sa.Text(), nullable=True),
        sa.Column("duplicate_of", sa.Integer(), nullable=True),
        sa.Column("objectives", JSON, nullable=True),
        sa.Column("check_seconds", JSON, nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.Column("heartbeat_at", TIMESTAMP, nullable=False),
        sa.Column("finished_at", TIMESTAMP, nullable=True),
        _one_of("candidates", "status", CANDIDATE_STATUSES),
        _one_of("candidates", "rejection_stage", REJECTION_STAGES),
        sa.CheckConstraint(
            "(status = 'rejected') = (rejection_stage IS NOT NULL)",
            name=op.f("ck_candidates_rejection_stage_iff_rejected"),
        ),
        sa.CheckConstraint(
            "status = 'evaluated' OR objectives IS NULL", name=op.f("ck_candidates_objectives_only_when_evaluated")
        ),
        sa.CheckConstraint("attempt >= 0", name=op.f("ck_candidates_attempt_non_negative")),
        sa.CheckConstraint("birth >= 0", name=op.f("ck_candidates_birth_non_negative")),
        sa.ForeignKeyConstraint(
            ["duplicate_of"], ["candidates.id"], name=op.f("fk_candidates_duplicate_of_candidates"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"], ["candidates.id"], name=op.f("fk_candidates_parent_id_candidates"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["search_id"], ["searches.id"], name=op.f("fk_candidates_search_id_searches"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_candidates")),
        sa.UniqueConstraint("search_id", "birth", name=op.f("uq_candidates_search_id_birth")),
    )
    indexes = {
        "ix_candidates_search_status_birth": ["search_id", "status", "birth"],
        "ix_candidates_search_stage_birth": ["search_id", "rejection_stage", "birth"],
        "ix_candidates_search_hash": ["search_id", "canonical_hash"],
        "ix_candidates_search_fingerprint": ["search_id", "fingerprint"],
        "ix_candidates_search_finished": ["search_id", "finished_at"],
        "ix_candidates_parent": ["parent_id"],
        "ix_candidates_duplicate_of": ["duplicate_of"],
    }
    for name, columns in indexes.items():
        op.create_index(name, "candidates", columns)


def _create_evaluations() -> None:
    op.create_table(
        "evaluations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("candidate_id", sa.Integer(), nullable=False),
        sa.Column("architecture", sa.String(length=100), nullable=False),
        sa.Column("phase", sa.String(length=16), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("metrics", JSON, nullable=False),
        sa.Column("duration_seconds", sa.Double(), nullable=False),
        sa.Column("node", sa.String(length=255), nullable=True),
        sa.Column("started_at", TIMESTAMP, nullable=True),
        sa.Column("finished_at", TIMESTAMP, nullable=False),
        _one_of("evaluations", "phase", EVALUATION_PHASES),
        _one_of("evaluations", "status", EVALUATION_STATUSES),
        sa.CheckConstraint("attempt >= 0", name=op.f("ck_evaluations_attempt_non_negative")),
        sa.CheckConstraint("duration_seconds >= 0", name=op.f("ck_evaluations_duration_non_negative")),
        sa.ForeignKeyConstraint(
            ["candidate_id"], ["candidates.id"], name=op.f("fk_evaluations_candidate_id_candidates"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evaluations")),
        sa.UniqueConstraint(
            "candidate_id",
            "architecture",
            "phase",
            "attempt",
            name=op.f("uq_evaluations_candidate_id_architecture_phase_attempt"),
        ),
    )


def _create_derived_tables() -> None:
    op.create_table(
        "search_counters",
        sa.Column("search_id", sa.Integer(), nullable=False),
        sa.Column("bucket", sa.String(length=32), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.CheckConstraint("count >= 0", name=op.f("ck_search_counters_count_non_negative")),
        sa.ForeignKeyConstraint(
            ["search_id"], ["searches.id"], name=op.f("fk_search_counters_search_id_searches"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("search_id", "bucket", name=op.f("pk_search_counters")),
    )
    op.create_table(
        "candidate_objectives",
        sa.Column("candidate_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("search_id", sa.Integer(), nullable=False),
        sa.Column("value", sa.Double(), nullable=False),
        sa.Column("birth", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["candidate_id"],
            ["candidates.id"],
            name=op.f("fk_candidate_objectives_candidate_id_candidates"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["search_id"], ["searches.id"], name=op.f("fk_candidate_objectives_search_id_searches"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("candidate_id", "name", name=op.f("pk_candidate_objectives")),
    )
    op.create_index("ix_candidate_objectives_sort", "candidate_objectives", ["search_id", "name", "value", "birth"])
    op.create_table(
        "pareto_members",
        sa.Column("search_id", sa.Integer(), nullable=False),
        sa.Column("objective_mask", sa.Integer(), nullable=False),
        sa.Column("candidate_id", sa.Integer(), nullable=False),
        sa.CheckConstraint("objective_mask > 0", name=op.f("ck_pareto_members_mask_positive")),
        sa.ForeignKeyConstraint(
            ["candidate_id"],
            ["candidates.id"],
            name=op.f("fk_pareto_members_candidate_id_candidates"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["search_id"], ["searches.id"], name=op.f("fk_pareto_members_search_id_searches"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("search_id", "objective_mask", "candidate_id", name=op.f("pk_pareto_members")),
    )
    op.create_index("ix_pareto_members_candidate", "pareto_members", ["candidate_id"])


def downgrade() -> None:
    for table in ("pareto_members", "candidate_objectives", "search_counters", "evaluations", "candidates", "searches"):
        op.drop_table(table)
