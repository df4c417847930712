"""Fixtures shared by every test area: Pareto databases on SQLite and on PostgreSQL.

`store_url` runs a test once per backend: a SQLite file under tmp_path, and a fresh PostgreSQL schema.
PostgreSQL comes from EVONORM_TEST_POSTGRES_URL (default: the local server's `test` database); each
test session (each xdist worker) creates its own database there and drops it at the end, and each test
gets its own schema in it, first on the search path. Without a reachable server, PostgreSQL tests are
skipped with the reason, except under CI (the CI variable set), where they fail: CI has the server.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from sqlalchemy import URL, create_engine, make_url
from sqlalchemy.exc import DBAPIError

T = TypeVar("T")

POSTGRES_URL_VARIABLE = "EVONORM_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _postgres_server_url() -> URL:
    url = make_url(os.environ.get(POSTGRES_URL_VARIABLE) or DEFAULT_POSTGRES_URL)
    return url.set(drivername="postgresql+psycopg")


def _unreachable(url: URL, error: Exception) -> None:
    reason = str(getattr(error, "orig", error)).strip().splitlines()[0]
    message = (
        f"PostgreSQL at {url.render_as_string(hide_password=True)} is unreachable ({reason}); "
        f"set {POSTGRES_URL_VARIABLE} to a server where this user may create databases"
    )
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_database_url() -> Iterator[URL]:
    """A PostgreSQL database of this test session, dropped (with its connections) at the end."""
    server = _postgres_server_url()
    admin = create_engine(server, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    name = f"evonorm_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except DBAPIError as e:
        admin.dispose()
        _unreachable(server, e)
    try:
        yield server.set(database=name)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture
def postgres_url(postgres_database_url: URL) -> Iterator[str]:
    """A fresh, empty schema in the session's PostgreSQL database; the URL puts it first on the search path."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_database_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        url = postgres_database_url.update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    """A SQLite file that does not exist yet, in a directory that does not exist yet."""
    return f"sqlite:///{tmp_path / 'db' / 'evonorm.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request) -> str:
    """An empty database, once on SQLite and once on PostgreSQL."""
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture
def store(store_url: str):
    """An open store at the newest schema, on each backend."""
    from evonorm_search.store import open_store

    with open_store(store_url) as opened:
        yield opened


def wait_until(
    condition: Callable[[], T | None], *, limit: float = 120.0, interval: float = 0.05, what: str = "the awaited state"
) -> T:
    """Call `condition` until it returns something truthy, and return that. The limit only guards
    against a hang (it never decides a test): past it, AssertionError naming `what`. A condition may
    raise AssertionError itself to give up early (a process it waits on has exited)."""
    deadline = time.monotonic() + limit
    while True:
        if value := condition():
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} never came within {limit:g} s")
        time.sleep(interval)


def collect_outcomes(evaluator: Any, count: int, *, limit: float = 240.0, wait: float = 0.5) -> list[Any]:
    """Poll an evaluator until `count` outcomes came, and return every one it gave. Its `poll` waits up
    to `wait` s itself, so there is no pause between tries; `limit` only guards against a hang."""
    found: list[Any] = []

    def arrived() -> bool:
        found.extend(evaluator.poll(timeout=wait))
        return len(found) >= count

    wait_until(arrived, limit=limit, interval=0.0, what=f"{count} outcome(s)")
    return found
