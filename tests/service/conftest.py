"""Fixtures of the service tests: apps over SQLite and PostgreSQL, populated searches, keys, launchers."""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from sqlalchemy import create_engine

from evonorm_search import store as st
from service import Settings, create_app
from service.launcher import Launcher, NoLauncher
from service.repository import request_stop

from .factories import PopulatedSearch, populate

with warnings.catch_warnings():  # Starlette asks for httpx2; the TestClient works the same on httpx
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

KEY = "service-test-key-0123456789abcdef"
OTHER_KEY = "another-valid-key-fedcba9876543210"
AUTH = {"Authorization": f"Bearer {KEY}"}


def settings_for(url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": url,
        "api_keys": KEY,
        "launcher": "none",
        "events_interval": 0.05,
        "read_cache_seconds": 0.0,  # tests that change the database behind the app's back see it at once
    }
    values.update(overrides)
    return Settings(**values)


@contextmanager
def client_for(settings: Settings, launcher_factory: Callable[..., Launcher] | None = None) -> Iterator[TestClient]:
    """A client of a new app; the app's lifespan runs, so its launcher and store are closed at the end."""
    app = create_app(settings) if launcher_factory is None else create_app(settings, launcher_factory=launcher_factory)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


class RecordingLauncher(NoLauncher):
    """Launches nothing, but records what it was asked to launch (stop goes to the store, as everywhere)."""

    name = "recording"
    launches = True

    def __init__(self, store: st.Store) -> None:
        super().__init__(store)
        self.calls: list[tuple[str, int]] = []

    def start(self, search_id: int) -> None:
        self.calls.append(("start", search_id))

    def resume(self, search_id: int) -> None:
        self.calls.append(("resume", search_id))

    def stop(self, search_id: int) -> None:
        self.calls.append(("stop", search_id))
        request_stop(self.store, search_id)


@dataclass
class Populated:
    """A database holding a completed search (40 candidates) and a stopped one (12), and a client over it."""

    url: str
    client: TestClient
    finished: PopulatedSearch
    stopped: PopulatedSearch


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def populated(request, tmp_path_factory) -> Iterator[Populated]:
    """Read-only tests share one populated database per module and backend."""
    with _module_database(request, tmp_path_factory) as url:
        with st.open_store(url) as store:
            finished = populate(store, candidates=40, seed=0, name="finished")
            stopped = populate(store, candidates=12, seed=1, name="stopped", final_state=st.SearchState.STOPPED)
        with client_for(settings_for(url)) as client:
            yield Populated(url, client, finished, stopped)


@contextmanager
def _module_database(request, tmp_path_factory) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'evonorm.db'}"
        return
    database = request.getfixturevalue("postgres_database_url")  # the session's database (tests/conftest.py)
    schema = f"m_{uuid.uuid4().hex[:12]}"
    admin = create_engine(database, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        url = database.update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@dataclass
class RecordingApp:
    client: TestClient
    url: str
    launchers: list[RecordingLauncher]

    @property
    def calls(self) -> list[tuple[str, int]]:
        return [call for launcher in self.launchers for call in launcher.calls]


@pytest.fixture
def recording_app(store_url: str) -> Iterator[RecordingApp]:
    """A client whose launcher records what it is asked to launch, on an empty database of each backend."""
    launchers: list[RecordingLauncher] = []

    def factory(_settings: Settings, store: st.Store) -> Launcher:
        launchers.append(RecordingLauncher(store))
        return launchers[-1]

    with client_for(settings_for(store_url), launcher_factory=factory) as client:
        yield RecordingApp(client, store_url, launchers)
