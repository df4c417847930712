"""The schema's Alembic migrations, run programmatically (no alembic.ini).

The migrations ship inside the package (`migrations/`). Upgrades run inside one transaction that holds a
lock (SQLite: the write lock of BEGIN IMMEDIATE; PostgreSQL: a transaction-scoped advisory lock), and the
revision is checked again under the lock, so processes opening a fresh database at the same moment queue
up and exactly one of them creates the schema. The version table has a project-specific name, so the
schema can share a PostgreSQL database with other Alembic-managed applications.
"""

from __future__ import annotations

from functools import cache

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection, inspect, text

from .errors import StoreError

VERSION_TABLE = "evonorm_alembic_version"
SCRIPT_LOCATION = "evonorm_search.store:migrations"
# pg_advisory_xact_lock key: any fixed 64-bit number, unique to this project's migrations
_ADVISORY_LOCK_KEY = 0x65766F6E6F726D  # "evonorm"
_OUR_TABLES = frozenset({"searches", "candidates", "evaluations"})


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@cache
def script_directory() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    head = script_directory().get_current_head()
    assert head is not None, "the package ships no migrations"
    return head


def current_revision(connection: Connection) -> str | None:
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


def is_known(revision: str) -> bool:
    try:
        return script_directory().get_revision(revision) is not None
    except CommandError:
        return False


def check_revision(connection: Connection, *, where: str) -> str | None:
    """The database's revision, refusing one this version of evonorm-search does not know."""
    revision = current_revision(connection)
    if revision is None:
        _refuse_unversioned_tables(connection, where)
        return None
    if not is_known(revision):
        raise StoreError(
            f"{where} is at schema revision {revision!r}, which this version of evonorm-search does not know "
            f"(its newest is {head_revision()!r}); it was probably written by a newer evonorm-search: upgrade "
            "evonorm-search, or use another database"
        )
    return revision


def _refuse_unversioned_tables(connection: Connection, where: str) -> None:
    existing = _OUR_TABLES & set(inspect(connection).get_table_names())
    if existing:
        raise StoreError(
            f"{where} has tables {sorted(existing)} but no evonorm-search schema version ({VERSION_TABLE}); "
            "it was not created by evonorm-search: use another database"
        )


def lock_for_migration(connection: Connection) -> None:
    """Serialise migrations across processes (SQLite is already serialised by BEGIN IMMEDIATE)."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK_KEY})


def upgrade_to_head(connection: Connection, *, where: str) -> str | None:
    """Bring the schema to head inside the caller's transaction; returns the revision found before."""
    lock_for_migration(connection)
    before = check_revision(connection, where=where)
    if before != head_revision():
        command.upgrade(alembic_config(connection), "head")
    return before
