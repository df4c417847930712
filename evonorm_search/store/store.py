"""`open_store` and `Store`: one engine per database, one session scope that owns commit and rollback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.orm import Session, sessionmaker

from . import migrate
from .engine import create_sqlite_file, create_store_engine, describe_error, readonly_engine
from .errors import StoreError
from .urls import ResolvedURL, resolve_url


@dataclass(frozen=True)
class SchemaStatus:
    url: str  # password hidden
    current: str | None  # None: no evonorm-search schema yet
    head: str  # the newest revision this version of evonorm-search ships
    exists: bool  # False: the SQLite file does not exist (nothing was created to find out)
    known: bool = True  # False: `current` comes from a newer evonorm-search

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


class Store:
    """A Pareto database. Make one with `open_store`; share it within a process, open one per process."""

    def __init__(self, resolved: ResolvedURL, engine: Engine) -> None:
        self._resolved = resolved
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._readonly_sessions = sessionmaker(readonly_engine(engine), expire_on_commit=False)

    @property
    def url(self) -> str:
        return self._resolved.display

    @property
    def backend(self) -> str:
        return self._resolved.backend

    @property
    def is_shared_across_nodes(self) -> bool:
        """Whether processes on other machines can use this database (PostgreSQL: yes; SQLite: no)."""
        return self._resolved.backend == "postgresql"

    @contextmanager
    def session(self, *, readonly: bool = False) -> Iterator[Session]:
        """The session scope: commits when the block ends normally, rolls back when it raises.

        Driver errors leave as StoreError (the driver's error as __cause__); other exceptions pass unchanged.
        `readonly=True` sessions never take the write lock (SQLite) and refuse writes.
        """
        session = (self._readonly_sessions if readonly else self._sessions)()
        try:
            yield session
            session.commit()
        except StatementError as e:
            session.rollback()
            if isinstance(e.orig, StoreError):  # raised by a column type while binding a value
                raise e.orig from None
            if isinstance(e, DBAPIError):
                raise self._error(e, readonly) from e
            raise
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def _error(self, error: DBAPIError, readonly: bool) -> StoreError:
        message = describe_error(error, self._resolved)
        cause = str(error.orig).lower()
        if (readonly and "readonly" in cause) or "read-only transaction" in cause:
            message = f"a read-only session tried to write to {self.url}; write inside store.session()"
        return StoreError(message)

    def schema_revision(self) -> str | None:
        with self.engine.connect() as connection:
            return migrate.current_revision(connection)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.url!r})"


def open_store(url: str | None = None, *, create: bool = True, busy_timeout: float = 30.0) -> Store:
    """Open the Pareto database at `url` (None: the embedded default under $EVONORM_HOME or ./runs).

    `create=True` creates the database file (SQLite) and brings the schema to the newest revision;
    `create=False` requires a database already at the newest revision. Every problem is a StoreError.
    """
    resolved = resolve_url(url)
    if resolved.sqlite_path is not None:
        _prepare_sqlite_file(resolved, create)
    engine = create_store_engine(resolved, busy_timeout=busy_timeout)
    try:
        _ensure_schema(engine, resolved, create)
    except BaseException:
        engine.dispose()
        raise
    return Store(resolved, engine)


def open_readonly_store(url: str | None = None, *, busy_timeout: float = 30.0) -> Store:
    """Open an existing Pareto database only to read it: nothing is created, migrated or written (a
    SQLite file opens with `mode=ro`, so this works in a directory the process may not write).

    A missing SQLite file, or a schema that is not the newest, is a StoreError saying what to do.
    """
    resolved = resolve_url(url)
    if resolved.sqlite_path is not None:
        _require_sqlite_file(resolved)
    engine = create_store_engine(resolved, busy_timeout=busy_timeout, readonly=True)
    try:
        _ensure_schema(engine, resolved, create=False)
    except BaseException:
        engine.dispose()
        raise
    return Store(resolved, engine)


def _require_sqlite_file(resolved: ResolvedURL) -> None:
    path = resolved.sqlite_path
    assert path is not None
    if path.is_dir():
        raise StoreError(f"{path} is a directory; give the database file's path, e.g. sqlite:///{path / 'evonorm.db'}")
    if not path.exists():
        raise StoreError(
            f"no database at {path}; give the --db a search was run with (`evonorm-search run CONFIG.yaml "
            f"--db {resolved.display}` starts one there)"
        )


def schema_status(url: str | None = None) -> SchemaStatus:
    """The schema revision at `url`, without creating or changing anything."""
    resolved = resolve_url(url)
    head = migrate.head_revision()
    if resolved.sqlite_path is not None and not resolved.sqlite_path.exists():
        return SchemaStatus(resolved.display, None, head, exists=False)
    engine = create_store_engine(resolved, busy_timeout=5.0, readonly=True)
    try:
        with _translated(resolved), engine.connect() as connection:
            current = migrate.current_revision(connection)
            if current is None:
                migrate.check_revision(connection, where=resolved.display)  # refuses foreign tables
    finally:
        engine.dispose()
    known = current is None or migrate.is_known(current)
    return SchemaStatus(resolved.display, current, head, exists=True, known=known)


def _prepare_sqlite_file(resolved: ResolvedURL, create: bool) -> None:
    path = resolved.sqlite_path
    assert path is not None
    if path.is_dir():
        raise StoreError(f"{path} is a directory; give the database file's path, e.g. sqlite:///{path / 'evonorm.db'}")
    if path.exists():
        return
    if not create:
        raise StoreError(f"no database at {path}; create it with `evonorm-search db upgrade --db {resolved.display}`")
    _make_parent(path)
    create_sqlite_file(path)  # in WAL mode from the start: concurrent first opens never switch it


def _make_parent(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StoreError(
            f"cannot create the directory {path.parent} for the SQLite database ({e.strerror or e}); "
            "choose a writable location with --db sqlite:///PATH or EVONORM_HOME"
        ) from None


def _ensure_schema(engine: Engine, resolved: ResolvedURL, create: bool) -> None:
    where = resolved.display
    with _translated(resolved):
        # A cheap read first: the common case (already at head) never takes the write lock.
        with readonly_engine(engine).connect() as connection:
            current = migrate.check_revision(connection, where=where)
            connection.rollback()
        if current == migrate.head_revision():
            return
        if not create:
            raise StoreError(_behind_message(where, current))
        with engine.connect() as connection, connection.begin():
            migrate.upgrade_to_head(connection, where=where)


def _behind_message(where: str, current: str | None) -> str:
    state = "has no evonorm-search schema" if current is None else f"is at schema revision {current!r}"
    return (
        f"{where} {state}, not the newest ({migrate.head_revision()!r}); run `evonorm-search db upgrade --db {where}`"
    )


@contextmanager
def _translated(resolved: ResolvedURL) -> Iterator[None]:
    """Driver and OS errors while opening become StoreError with a message that says what to do."""
    try:
        yield
    except DBAPIError as e:
        raise StoreError(describe_error(e, resolved)) from e
    except OSError as e:
        raise StoreError(describe_error(e, resolved)) from e
