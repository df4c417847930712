"""Where blocking work runs: database reads on at most EVONORM_DATABASE_THREADS threads, and work that may
wait for a formula worker on the general pool, never on a database thread."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest

from evonorm_search import store as st
from service import Settings, create_app
from service.threads import DatabaseThreads

from .conftest import settings_for
from .factories import populate

API = "/api/v1"


class Overlap:
    """Counts the reads running at once, and the most seen."""

    def __init__(self) -> None:
        self.now = self.most = 0
        self._lock = threading.Lock()

    def read(self, value: int) -> int:
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)
        time.sleep(0.02)
        with self._lock:
            self.now -= 1
        return value


@pytest.mark.parametrize("limit", [1, 2, 5])
def test_reads_never_run_on_more_threads_than_the_limit(limit):
    threads, overlap = DatabaseThreads(limit), Overlap()

    async def many_reads() -> list[int]:
        return await asyncio.gather(*(threads.run(lambda i=i: overlap.read(i)) for i in range(12)))

    assert asyncio.run(many_reads()) == list(range(12))  # every read answered, each its own value
    assert overlap.most == limit


def test_each_event_loop_gets_its_own_limit():
    """An app serves one event loop at a time, but tests (and restarts) run it on several in turn."""
    threads, overlap = DatabaseThreads(2), Overlap()

    async def reads() -> list[int]:
        return await asyncio.gather(*(threads.run(lambda i=i: overlap.read(i)) for i in range(4)))

    assert asyncio.run(reads()) == asyncio.run(reads()) == [0, 1, 2, 3]
    assert overlap.most == 2


def test_the_limit_is_a_setting_with_bounds(monkeypatch):
    monkeypatch.setenv("EVONORM_DATABASE_THREADS", "3")
    assert Settings().database_threads == 3
    monkeypatch.setenv("EVONORM_DATABASE_THREADS", "0")
    with pytest.raises(ValueError, match="database_threads"):
        Settings()


def test_a_formula_being_computed_holds_no_database_thread(tmp_path):
    """With one database thread, a candidate whose formula waits for a (here: stalled) formula worker
    must not stop other clients' reads: the wait happens on the general pool."""
    url = f"sqlite:///{tmp_path / 'evonorm.db'}"
    with st.open_store(url) as store:
        search = populate(store, candidates=10, seed=3)
    app = create_app(settings_for(url, database_threads=1))
    formulas = app.state.context.formulas
    computing, release = threading.Event(), threading.Event()
    of_stored = formulas.of_stored

    def stalled_of_stored(canonical_hash, graph):
        computing.set()
        assert release.wait(30), "the test never released the formula"
        return of_stored(canonical_hash, graph)

    formulas.of_stored = stalled_of_stored

    async def scenario() -> tuple[httpx.Response, httpx.Response, bool]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            detail = asyncio.create_task(client.get(f"{API}/candidates/{search.evaluated[0]}"))
            while not computing.is_set():
                await asyncio.sleep(0.01)
            page = await asyncio.wait_for(client.get(f"{API}/searches/{search.id}/candidates?limit=5"), 20)
            detail_waited = not detail.done()
            release.set()
            return page, await detail, detail_waited

    try:
        page, detail, detail_waited = asyncio.run(scenario())
    finally:
        release.set()
        app.state.context.close()
    assert page.status_code == 200 and len(page.json()["items"]) == 5
    assert detail_waited  # the page was answered while the formula was still being computed
    assert detail.status_code == 200
    assert detail.json()["formula"]["text"] == detail.json()["dsl"]
