"""Database URLs: the embedded default, SQLite files, PostgreSQL servers.

Every URL a user can type is resolved here into a `sqlalchemy.URL` the engine factory accepts, or refused
with a `StoreError` that shows an example of what would work.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import URL, make_url
from sqlalchemy.exc import ArgumentError

from .errors import StoreError

DEFAULT_FILENAME = "evonorm.db"
HOME_VARIABLE = "EVONORM_HOME"
POSTGRES_DRIVER = "postgresql+psycopg"
_EXAMPLES = "sqlite:///runs/evonorm.db, sqlite:////abs/path/evonorm.db or postgresql://user@host:5432/dbname"
_SQLITE_DRIVERS = {"sqlite", "sqlite+pysqlite"}
_POSTGRES_ALIASES = {"postgresql", "postgres", POSTGRES_DRIVER}


@dataclass(frozen=True)
class ResolvedURL:
    url: URL
    backend: str  # "sqlite" | "postgresql"
    sqlite_path: Path | None  # the file of a file-backed SQLite database; None for memory and PostgreSQL

    @property
    def display(self) -> str:
        """The URL as shown to users: the password hidden."""
        return self.url.render_as_string(hide_password=True)

    @property
    def in_memory(self) -> bool:
        return self.backend == "sqlite" and self.sqlite_path is None


def home_directory() -> Path:
    """Where the embedded database lives: $EVONORM_HOME, or ./runs."""
    return Path(os.environ.get(HOME_VARIABLE) or "runs").expanduser()


def default_url() -> str:
    return f"sqlite:///{(home_directory() / DEFAULT_FILENAME).resolve()}"


def resolve_url(url: str | URL | None) -> ResolvedURL:
    """Parse and normalise `url` (None: the embedded default). Creates nothing on disk."""
    text = default_url() if url is None else url
    if isinstance(text, str):
        text = text.strip()
        if not text:
            raise StoreError(f"the database URL is empty; give one such as {_EXAMPLES}")
        if "://" not in text:
            raise StoreError(
                f"{text!r} is not a database URL; for a SQLite file write sqlite:///{text}, or give {_EXAMPLES}"
            )
    try:
        parsed = make_url(text)
    except ArgumentError:
        raise StoreError(f"cannot parse the database URL {text!r}; give one such as {_EXAMPLES}") from None
    scheme = parsed.drivername
    if scheme in _SQLITE_DRIVERS:
        return _resolve_sqlite(parsed)
    if scheme in _POSTGRES_ALIASES:
        return _resolve_postgres(parsed)
    if scheme.startswith("postgres"):
        raise StoreError(
            f"unsupported PostgreSQL driver {scheme!r}; evonorm-search talks to PostgreSQL through psycopg 3: "
            f"write postgresql://... (or {POSTGRES_DRIVER}://...)"
        )
    raise StoreError(
        f"unsupported database {scheme!r}; evonorm-search stores results in SQLite (embedded) or PostgreSQL "
        f"(clusters): give a URL such as {_EXAMPLES}"
    )


def _resolve_sqlite(url: URL) -> ResolvedURL:
    database = url.database or ""
    if url.host or url.username or url.password or url.port:
        raise StoreError(
            f"a SQLite URL names a file, not a server: write sqlite:///relative/path.db or sqlite:////absolute/path.db "
            f"(got {url.render_as_string(hide_password=True)!r})"
        )
    url = url.set(drivername="sqlite")
    if database in ("", ":memory:"):
        return ResolvedURL(url.set(database=":memory:"), "sqlite", None)
    if database.startswith("file:"):
        raise StoreError("SQLite URI filenames (file:...) are not supported; write sqlite:///path/to/file.db")
    path = Path(database).expanduser().resolve()
    return ResolvedURL(url.set(database=str(path)), "sqlite", path)


def _resolve_postgres(url: URL) -> ResolvedURL:
    if not url.host and not url.query.get("host"):
        raise StoreError(
            f"the PostgreSQL URL {url.render_as_string(hide_password=True)!r} names no server; "
            "write postgresql://user@host:5432/dbname"
        )
    if not url.database:
        raise StoreError(
            f"the PostgreSQL URL {url.render_as_string(hide_password=True)!r} names no database; "
            "write postgresql://user@host:5432/dbname"
        )
    return ResolvedURL(url.set(drivername=POSTGRES_DRIVER), "postgresql", None)
