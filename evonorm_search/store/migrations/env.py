"""Alembic environment: runs on the connection (and inside the transaction) the store hands over."""

from __future__ import annotations

from alembic import context

from evonorm_search.store.migrate import VERSION_TABLE
from evonorm_search.store.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "evonorm-search migrations run through the store: use `evonorm-search db upgrade --db URL` "
        "or evonorm_search.store.open_store(url)"
    )

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    version_table=VERSION_TABLE,
    render_as_batch=True,  # SQLite alters tables by copying them; batch mode does that
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
