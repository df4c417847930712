"""GET /searches/{id}/events: server-sent progress as the store changes."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator

import pytest

from evonorm_search import store as st

from .conftest import AUTH, KEY, client_for, settings_for
from .factories import OBJECTIVES, populate


def iter_events(response) -> Iterator[dict]:
    """The events of an SSE response body as they arrive, each as {event, data, id, retry}."""
    current: dict = {}
    for line in response.iter_lines():
        if line == "":
            if current:
                yield current
            current = {}
        elif not line.startswith(":"):
            field, _, value = line.partition(":")
            current[field] = value.removeprefix(" ")
    if current:
        yield current


def read_events(response) -> list[dict]:
    return list(iter_events(response))


@pytest.fixture
def url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'evonorm.db'}"


def test_a_finished_search_streams_its_status_then_end(url: str):
    with st.open_store(url) as store:
        search = populate(store, candidates=8)
    with client_for(settings_for(url)) as client:
        with client.stream("GET", f"/api/v1/searches/{search.id}/events") as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            events = read_events(response)
        assert [e["event"] for e in events] == ["progress", "end"]
        status = json.loads(events[0]["data"])
        assert status == client.get(f"/api/v1/searches/{search.id}").json() | {
            "elapsed_seconds": status["elapsed_seconds"]
        }
        assert events[0]["id"] == "8" and events[0]["retry"] == "3000"
        assert json.loads(events[1]["data"]) == {"state": "completed"}
        assert "evonorm_event_streams 0.0" in client.get("/metrics").text


def _finish_in_background(url: str, search_id: int, delay: float) -> threading.Thread:
    """After `delay`, evaluate one more candidate; after another `delay`, complete the search."""

    def work() -> None:
        time.sleep(delay)
        with st.open_store(url) as store:
            with store.session() as s:
                c = st.add_candidate(
                    s, search_id, graph={"nodes": [{"op": "x"}], "output": 0}, dsl="x", canonical_hash="h"
                )
                st.complete_candidate(s, c.id, {o["name"]: 0.5 for o in OBJECTIVES})
            time.sleep(delay)
            with store.session() as s:
                st.set_search_state(s, search_id, st.SearchState.COMPLETED)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


def test_a_running_search_streams_each_change_until_it_completes(url: str):
    with st.open_store(url) as store:
        search = populate(store, candidates=5, final_state=st.SearchState.RUNNING)
    events, worker = [], None
    with client_for(settings_for(url, events_interval=0.02)) as client:
        with client.stream("GET", f"/api/v1/searches/{search.id}/events") as response:
            for event in iter_events(response):
                events.append(event)
                if worker is None:  # change the search only once its first status has been sent
                    worker = _finish_in_background(url, search.id, delay=0.2)
        worker.join()
    progress = [json.loads(e["data"]) for e in events if e["event"] == "progress"]
    assert events[-1]["event"] == "end" and json.loads(events[-1]["data"]) == {"state": "completed"}
    totals = [p["counts"]["total"] for p in progress]
    assert totals[0] == 5 and totals[-1] == 6
    assert progress[0]["state"] == "running" and progress[-1]["state"] == "completed"
    # Only changes are sent: consecutive events differ in more than the clock.
    clock = {"elapsed_seconds", "estimated_seconds_to_finish"}
    for before, after in itertools.pairwise(progress):
        assert {k: v for k, v in before.items() if k not in clock} != {k: v for k, v in after.items() if k not in clock}
    ids = [int(e["id"]) for e in events]
    assert ids == sorted(ids)


def test_streams_end_after_their_time_limit_and_say_how_to_reconnect(url: str):
    with st.open_store(url) as store:
        search = populate(store, candidates=3, final_state=st.SearchState.CREATED)
    settings = settings_for(url, events_interval=0.02, events_max_seconds=0.2)
    with client_for(settings) as client, client.stream("GET", f"/api/v1/searches/{search.id}/events") as response:
        events = read_events(response)
    assert [e["event"] for e in events] == ["progress"]  # nothing changed; no `end`: the browser reconnects
    assert events[0]["retry"] == "3000"


def test_status_and_fronts_are_cached_briefly_but_changes_made_here_show_at_once(url: str):
    with st.open_store(url) as store:
        search = populate(store, candidates=3, final_state=st.SearchState.RUNNING)
    status_url, front_url = f"/api/v1/searches/{search.id}", f"/api/v1/searches/{search.id}/pareto"
    with client_for(settings_for(url, read_cache_seconds=60.0, api_keys=KEY)) as client:
        assert client.get(status_url).json()["counts"]["total"] == 3
        before = client.get(front_url).json()["points"]
        with st.open_store(url) as store, store.session() as s:  # another process finds a layer beating all
            c = st.add_candidate(s, search.id, graph={"nodes": [{"op": "x"}], "output": 0}, dsl="x", canonical_hash="h")
            best = {"accuracy_resnet": 1.0, "accuracy_mobilenetv2": 1.0, "cost": 0.0}
            st.complete_candidate(s, c.id, best)
        assert client.get(status_url).json()["counts"]["total"] == 3  # within the interval: the cached reads
        assert client.get(front_url).json()["points"] == before
        stopped = client.post(f"/api/v1/searches/{search.id}/stop", headers=AUTH).json()
        assert stopped["state"] == "stopping" and stopped["counts"]["total"] == 4
        assert client.get(status_url).json()["state"] == "stopping"
        assert [p["candidate_id"] for p in client.get(front_url).json()["points"]] == [c.id]
