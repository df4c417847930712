"""Engines per backend, and driver errors turned into messages that say what to do.

SQLite: WAL (readers never wait for the writer), a busy timeout (writers queue instead of failing),
foreign keys on, `synchronous=FULL` (a committed transaction survives power loss, not only a crash), and
transactions that take the write lock up front (`BEGIN IMMEDIATE`): a deferred transaction that reads and
then writes fails with SQLITE_BUSY when another process wrote in between, without waiting. Read-only
sessions begin deferred under `PRAGMA query_only`, so they never block writers.
A read-only SQLite engine (`readonly=True`, for commands that only read) opens the file with `mode=ro`, so
it can neither write nor create anything: every transaction is a deferred, `query_only` one, and the
journal mode is left as the file has it. In a directory it may not write, it opens the file `immutable`
unless a write-ahead log is there to read (SQLite needs to create the shared-memory file otherwise, and
no writer can exist where nobody may create that log).
A new SQLite file is created in WAL mode before any engine opens it (`create_sqlite_file`), and the one
journal-mode switch SQLite answers with SQLITE_BUSY without waiting is waited out (`_switch_to_wal`).
PostgreSQL: psycopg 3, pre-ping (stale pooled connections after a server restart are replaced), a connect
timeout, read-only sessions as READ ONLY transactions.
"""

from __future__ import annotations

import os
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import URL, Engine, create_engine, event
from sqlalchemy.pool import StaticPool

from .urls import ResolvedURL

READONLY_OPTION = "evonorm_readonly"
POSTGRES_CONNECT_TIMEOUT = 10  # seconds; an unreachable server fails fast with a clear message
# Connections kept open per process. The service reads from up to 40 threads (Starlette's thread pool);
# with SQLAlchemy's default of 5, every request beyond the fifth at once opened a connection and closed it
# again afterwards (a new PostgreSQL backend process each time, or SQLite's set-up PRAGMAs). The pool
# only grows to the concurrency a process actually reaches; beyond POOL_SIZE, connections still close.
POOL_SIZE = 16
POOL_OVERFLOW = 24


def create_store_engine(resolved: ResolvedURL, *, busy_timeout: float, readonly: bool = False) -> Engine:
    """The engine for `resolved`; `readonly` opens a SQLite file read-only (PostgreSQL ignores it: its
    read-only sessions are READ ONLY transactions already)."""
    if resolved.backend == "sqlite":
        return _sqlite_engine(resolved, busy_timeout, readonly=readonly and not resolved.in_memory)
    return _postgres_engine(resolved)


def _sqlite_engine(resolved: ResolvedURL, busy_timeout: float, *, readonly: bool = False) -> Engine:
    kwargs: dict[str, Any] = {"connect_args": {"timeout": busy_timeout, "check_same_thread": False}}
    if resolved.in_memory:
        kwargs["poolclass"] = StaticPool  # one connection, or every connection would see its own empty database
    else:
        kwargs |= {"pool_size": POOL_SIZE, "max_overflow": POOL_OVERFLOW}
    engine = create_engine(_readonly_uri(resolved) if readonly else resolved.url, **kwargs)
    timeout_ms = int(busy_timeout * 1000)
    in_memory = resolved.in_memory

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        # The driver must not open transactions on its own; the "begin" hook below does.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {timeout_ms}")
            cursor.execute("PRAGMA foreign_keys = ON")
            if not in_memory and not readonly:  # setting the journal mode writes the file
                _switch_to_wal(cursor, busy_timeout)
                cursor.execute("PRAGMA synchronous = FULL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        read_only = readonly or connection.get_execution_options().get(READONLY_OPTION, False)
        connection.exec_driver_sql(f"PRAGMA query_only = {int(read_only)}")
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


# The longest pause between two tries of the WAL switch (seconds); tries start 1 ms apart and double.
_WAL_SWITCH_MAX_PAUSE = 0.05


def _switch_to_wal(cursor: sqlite3.Cursor, busy_timeout: float) -> None:
    """`PRAGMA journal_mode = WAL`, waiting (up to the busy timeout) where SQLite itself does not.

    Switching a rollback-journal file to WAL rewrites its header, and SQLite does it by opening a read
    transaction and then upgrading it to an exclusive write one (`sqlite3BtreeSetVersion`). When two
    connections switch the same file at once, the one that asks for the write lock while the other already
    holds it gets SQLITE_BUSY ("database is locked") at once: SQLite does not call the busy handler for a
    lock upgrade from a read transaction, since waiting there could deadlock (the documentation of
    `sqlite3_busy_handler`). The failed statement releases its locks, the other connection completes the
    switch, and the next try finds the file in WAL and writes nothing. So this one statement is retried,
    for at most `busy_timeout` seconds, as the busy handler would have waited. `open_store` creates new
    files in WAL already (`create_sqlite_file`), so only an existing rollback-journal file (made by
    another tool, or an empty file) gets here with several openers.
    """
    deadline = time.monotonic() + busy_timeout
    pause = 0.001
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as e:
            remaining = deadline - time.monotonic()
            if "database is locked" not in str(e) or remaining <= 0:
                raise
            time.sleep(min(pause, remaining))
            pause = min(pause * 2, _WAL_SWITCH_MAX_PAUSE)


def create_sqlite_file(path: Path) -> None:
    """Create the SQLite database `path`, already in WAL mode, unless a file is there; safe to race.

    The file is built under a private name in the same directory and hard-linked into place (`os.link`
    fails when `path` exists, so the first process wins and the others keep its file), so processes opening
    a new database at once never switch a shared file's journal mode (see `_switch_to_wal`). Where that is
    impossible (no hard links, an unwritable directory), nothing is created here: SQLite creates the file
    on the first connection, and opening it reports any problem as before.
    """
    private = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.new")
    try:
        connection = sqlite3.connect(private, isolation_level=None)
        try:
            connection.execute("PRAGMA journal_mode = WAL")
        finally:
            connection.close()  # the last connection: SQLite removes the -wal and -shm files
        os.link(private, path)
    except FileExistsError:
        pass  # another process created it first
    except (OSError, sqlite3.Error):
        pass  # left to SQLite, as the docstring says
    finally:
        for leftover in (private, *(private.with_name(private.name + suffix) for suffix in ("-wal", "-shm"))):
            leftover.unlink(missing_ok=True)


def _readonly_uri(resolved: ResolvedURL) -> URL:
    """`file:PATH?mode=ro` (immutable where nothing can be writing it), as a URL SQLAlchemy passes on."""
    path = resolved.sqlite_path
    assert path is not None
    query = {"mode": "ro", "uri": "true"}
    if not os.access(path.parent, os.W_OK) and not path.with_name(path.name + "-wal").exists():
        query["immutable"] = "1"
    return URL.create("sqlite", database=f"file:{quote(str(path))}", query=query)


def _postgres_engine(resolved: ResolvedURL) -> Engine:
    connect_args: dict[str, Any] = {}
    if "connect_timeout" not in resolved.url.query:
        connect_args["connect_timeout"] = POSTGRES_CONNECT_TIMEOUT
    return create_engine(
        resolved.url,
        pool_pre_ping=True,
        pool_size=POOL_SIZE,
        max_overflow=POOL_OVERFLOW,
        connect_args=connect_args,
    )


def readonly_engine(engine: Engine) -> Engine:
    """A view of `engine` (same pool) whose transactions are read-only."""
    if engine.dialect.name == "postgresql":
        return engine.execution_options(**{READONLY_OPTION: True}, postgresql_readonly=True)
    return engine.execution_options(**{READONLY_OPTION: True})


# -- driver errors -> StoreError -----------------------------------------------------------------------


def describe_error(error: BaseException, resolved: ResolvedURL) -> str:
    """A message for a driver error: what happened, where, and what to do."""
    original = getattr(error, "orig", None) or error
    text = str(original).strip().splitlines()[0] if str(original).strip() else type(original).__name__
    lowered = str(original).lower()
    if resolved.backend == "sqlite":
        return _describe_sqlite(lowered, text, resolved)
    return _describe_postgres(lowered, text, resolved)


def _describe_sqlite(lowered: str, text: str, resolved: ResolvedURL) -> str:
    where = f"the SQLite database {resolved.sqlite_path or ':memory:'}"
    if "readonly" in lowered or "read-only" in lowered:
        return (
            f"{where} is read-only ({text}); make the file and its directory writable, or choose another "
            "location with --db sqlite:///PATH or EVONORM_HOME"
        )
    if "database is locked" in lowered or "database table is locked" in lowered:
        return (
            f"{where} stayed locked by another process beyond the busy timeout ({text}); retry, or give "
            "searches on many machines a PostgreSQL database"
        )
    if "file is not a database" in lowered or "malformed" in lowered:
        return f"{resolved.sqlite_path} is not a usable SQLite database ({text}); point --db at another file"
    if "unable to open" in lowered:
        return f"cannot open {where} ({text}); check that the directory exists and is readable and writable"
    if "disk" in lowered and ("full" in lowered or "i/o" in lowered):
        return f"{where} could not be written ({text}); free disk space or choose another location"
    return f"{where} failed: {text}"


def _describe_postgres(lowered: str, text: str, resolved: ResolvedURL) -> str:
    url = resolved.url
    server = f"{url.host or url.query.get('host')}:{url.port or 5432}"
    if "does not exist" in lowered and "database" in lowered:
        return (
            f"PostgreSQL database {url.database!r} does not exist on {server}; create it "
            f"(createdb -h {url.host} -p {url.port or 5432} -U {url.username or 'postgres'} {url.database}) "
            "or point --db at an existing database"
        )
    if "password authentication failed" in lowered or "no password supplied" in lowered:
        return f"PostgreSQL at {server} refused the credentials of {resolved.display} ({text}); check user and password"
    connect_failures = (
        "connection refused",
        "could not connect",
        "connection failed",
        "timeout",
        "could not translate",
    )
    if any(marker in lowered for marker in connect_failures):
        return (
            f"cannot reach PostgreSQL at {server} ({text}); check that the server is running and that host and "
            f"port in {resolved.display} are right"
        )
    if "read-only transaction" in lowered:
        return f"a read-only session tried to write to {resolved.display}; use store.session() for writes"
    return f"PostgreSQL at {resolved.display} failed: {text}"
