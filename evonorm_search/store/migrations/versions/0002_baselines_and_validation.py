"""Baselines and the validation phase: `candidates.role` and `candidates.label`, and `validation` among
the evaluation phases.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

SQLite cannot change a CHECK constraint in place, so `evaluations` (which no other table references) is
copied into a table with the new constraint; `candidates` (referenced by three tables, whose ON DELETE
CASCADE would fire if it were dropped) only gains columns, which ALTER TABLE ADD COLUMN does in place.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

JSON = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
TIMESTAMP = sa.DateTime(timezone=True)

ROLES = ("candidate", "baseline")
PHASES_BEFORE = ("quality", "proxy")
PHASES_AFTER = ("quality", "proxy", "validation")
EVALUATION_STATUSES = ("succeeded", "rejected", "failed")
EVALUATION_COLUMNS = (
    "id, candidate_id, architecture, phase, attempt, status, metrics, duration_seconds, node, started_at, finished_at"
)


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def upgrade() -> None:
    _add_role_and_label()
    _phases(PHASES_AFTER)


def downgrade() -> None:
    op.execute("DELETE FROM evaluations WHERE phase = 'validation'")
    op.execute("DELETE FROM candidates WHERE role = 'baseline'")
    _phases(PHASES_BEFORE)
    if not _sqlite():  # SQLite 3.35+ drops a column together with its own column CHECK
        op.drop_constraint(op.f("ck_candidates_role"), "candidates", type_="check")
    for column in ("label", "role"):
        op.execute(f"ALTER TABLE candidates DROP COLUMN {column}")


def _add_role_and_label() -> None:
    if _sqlite():
        # ADD COLUMN takes column constraints, so the CHECK travels with the column.
        op.execute(
            "ALTER TABLE candidates ADD COLUMN role VARCHAR(16) DEFAULT 'candidate' NOT NULL "
            f"CONSTRAINT ck_candidates_role CHECK ({_one_of('role', ROLES)})"
        )
    else:
        op.add_column("candidates", sa.Column("role", sa.String(length=16), server_default="candidate", nullable=False))
        op.create_check_constraint(op.f("ck_candidates_role"), "candidates", _one_of("role", ROLES))
    op.add_column("candidates", sa.Column("label", sa.String(length=200), nullable=True))


def _phases(phases: tuple[str, ...]) -> None:
    if not _sqlite():
        op.drop_constraint(op.f("ck_evaluations_phase"), "evaluations", type_="check")
        op.create_check_constraint(op.f("ck_evaluations_phase"), "evaluations", _one_of("phase", phases))
        return
    _create_evaluations("evaluations_new", phases)
    op.execute(f"INSERT INTO evaluations_new ({EVALUATION_COLUMNS}) SELECT {EVALUATION_COLUMNS} FROM evaluations")  # noqa: S608  (constant column list)
    op.drop_table("evaluations")
    op.rename_table("evaluations_new", "evaluations")


def _create_evaluations(name: str, phases: tuple[str, ...]) -> None:
    """0001's `evaluations` with `phases` allowed (SQLite keeps constraint names per table: no clash)."""
    op.create_table(
        name,
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
        sa.CheckConstraint(_one_of("phase", phases), name=op.f("ck_evaluations_phase")),
        sa.CheckConstraint(_one_of("status", EVALUATION_STATUSES), name=op.f("ck_evaluations_status")),
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
