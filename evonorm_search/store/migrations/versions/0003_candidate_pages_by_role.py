"""An index for candidate pages in birth order: `candidates (search_id, role, birth)`.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29

Every candidate page filters on `role` (a search's own candidates, or its baselines). Unfiltered pages in
birth order (the dashboard's default, and keyset pages deep into a search) had only (search_id, birth)
with `role` checked row by row; PostgreSQL, with statistics from before a bulk of inserts, then chose a
bitmap scan of the whole search and a sort (about 100 ms at 100,000 candidates). With role in the index
the page is one ordered walk of it on both backends, whatever the planner's statistics say.
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

INDEX = "ix_candidates_search_role_birth"


def upgrade() -> None:
    op.create_index(INDEX, "candidates", ["search_id", "role", "birth"])


def downgrade() -> None:
    op.drop_index(INDEX, table_name="candidates")
