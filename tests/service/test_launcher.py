"""Launchers: a real search driven in a thread of the API process, stopped and resumed over HTTP; the
choice of launcher from the settings."""

from __future__ import annotations

import sys

import pytest

from evonorm_search import store as st
from evonorm_search.search.evaluator import InProcessEvaluator
from service import Settings, create_app
from service.launcher import NoLauncher, ThreadLauncher, make_launcher
from tests.conftest import wait_until

from .conftest import AUTH, client_for, settings_for
from .factories import tiny_config

API = "/api/v1"


@pytest.fixture
def url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'evonorm.db'}"


def test_a_launched_search_runs_to_completion_in_the_api_process(url: str):
    with client_for(settings_for(url, launcher="thread")) as client:
        launched = client.post(
            f"{API}/searches", json=tiny_config("threaded", budget=3).model_dump(mode="json"), headers=AUTH
        )
        assert launched.status_code == 201 and launched.json()["launched"] is True
        search_id = launched.json()["id"]
        status = wait_until(
            lambda: (s := client.get(f"{API}/searches/{search_id}").json())["state"] == "completed" and s
        )
        assert status["counts"]["total"] == status["counts"]["finished"] == 3
        assert (
            status["counts"]["evaluated"]
            + status["counts"]["by_status"]["rejected"]
            + status["counts"]["by_status"]["failed"]
            == 3
        )
        assert status["controller"] is None  # released when it finished
        assert status["best"]["accuracy_resnet"] is not None
        front = client.get(f"{API}/searches/{search_id}/pareto").json()
        assert front["points"], "an evaluated candidate must be on the front"
        detail = client.get(f"{API}/candidates/{front['points'][0]['candidate_id']}").json()
        proxy = detail["metrics_by_architecture"]["resnet"]["proxy"]
        assert proxy["steps"] == 4 or proxy["diverged"]  # a layer may diverge at once, and still be measured
        assert 'evonorm_search_launches_total{kind="start"} 1.0' in client.get("/metrics").text


def test_stop_then_resume_a_running_search_over_http(url: str):
    with client_for(settings_for(url, launcher="thread")) as client:
        body = tiny_config("long", budget=10_000).model_dump(mode="json")
        search_id = client.post(f"{API}/searches", json=body, headers=AUTH).json()["id"]
        wait_until(lambda: client.get(f"{API}/searches/{search_id}").json()["counts"]["finished"] >= 1)
        # `stopping` until the controller notices, which it may do before the response reads the state back.
        assert client.post(f"{API}/searches/{search_id}/stop", headers=AUTH).json()["state"] in ("stopping", "stopped")
        stopped = wait_until(
            lambda: (s := client.get(f"{API}/searches/{search_id}").json())["state"] == "stopped" and s
        )
        finished_before = stopped["counts"]["finished"]

        resumed = client.post(f"{API}/searches/{search_id}/resume", headers=AUTH)
        assert resumed.status_code == 202, resumed.text
        wait_until(lambda: client.get(f"{API}/searches/{search_id}").json()["counts"]["finished"] > finished_before)
        again = client.post(f"{API}/searches/{search_id}/resume", headers=AUTH)
        assert again.status_code == 409  # it is running, here
    # Leaving the client shut the app down: its launcher stopped the search it was driving.
    with st.open_store(url) as store, store.session() as s:
        assert st.get_search(s, search_id).state is st.SearchState.STOPPED


def test_the_thread_launcher_refuses_to_drive_one_search_twice(url: str):
    with st.open_store(url) as store:
        from evonorm_search.search.controller import create_search

        search_id = create_search(store, tiny_config("twice", budget=10_000))
        launcher = ThreadLauncher(store, poll_interval=0.01)
        launcher.start(search_id)
        try:
            with pytest.raises(st.ConflictError, match="already running in this server"):
                launcher.start(search_id)
            assert launcher.running() == [search_id]
        finally:
            launcher.close()
        assert launcher.running() == []
        with store.session() as s:
            assert st.get_search(s, search_id).state is st.SearchState.STOPPED


def test_launcher_choice_follows_the_settings(url: str, monkeypatch):
    with st.open_store(url) as store:
        assert isinstance(make_launcher(Settings(launcher="thread"), store), ThreadLauncher)
        assert isinstance(make_launcher(Settings(launcher="none"), store), NoLauncher)
        monkeypatch.setattr("service.launcher.ray_launcher_available", lambda: False)
        assert isinstance(make_launcher(Settings(launcher="auto"), store), ThreadLauncher)
        monkeypatch.setitem(sys.modules, "workers.cluster", None)  # as if the workers package were not installed
        with pytest.raises(RuntimeError, match="EVONORM_LAUNCHER=thread"):
            make_launcher(Settings(launcher="ray"), store)


def test_a_server_that_launches_nothing_stores_searches_for_others_to_drive(url: str):
    with client_for(settings_for(url, launcher="none")) as client:
        created = client.post(f"{API}/searches", json=tiny_config("elsewhere").model_dump(mode="json"), headers=AUTH)
        assert created.status_code == 201 and created.json()["launched"] is False
        search_id = created.json()["id"]
        refused = client.post(f"{API}/searches/{search_id}/resume", headers=AUTH)
        assert refused.status_code == 409
        assert f"evonorm-search resume {search_id}" in refused.json()["message"]
        assert client.post(f"{API}/searches/{search_id}/stop", headers=AUTH).json()["state"] == "stopped"


def test_auto_and_ray_pick_the_ray_launcher_of_the_workers_package_without_starting_ray(url: str):
    ray_launcher = pytest.importorskip("workers.cluster", reason="the workers package is not installed")
    import ray

    with st.open_store(url) as store:
        for choice in ("auto", "ray"):
            launcher = make_launcher(Settings(launcher=choice), store)
            assert isinstance(launcher, ray_launcher.RayLauncher)
            assert launcher.launches is True
            launcher.close()
    assert not ray.is_initialized()  # Ray is connected on the first launch, not before


def test_an_app_told_to_use_ray_without_the_workers_package_refuses_to_start(url: str, monkeypatch):
    monkeypatch.setattr("service.app.ray_launcher_available", lambda: False)
    with pytest.raises(RuntimeError, match=r"EVONORM_LAUNCHER=ray needs workers\.cluster"):
        create_app(settings_for(url, launcher="ray"))


class _SlowToClose(InProcessEvaluator):
    """An evaluator whose close() waits, holding the launcher's thread after its controller returned."""

    def __init__(self, closing, release) -> None:
        super().__init__()
        self.closing, self.release = closing, release

    def close(self) -> None:
        self.closing.set()
        self.release.wait(30)
        super().close()


def test_a_resume_right_after_a_stop_waits_for_the_old_thread_instead_of_refusing(url: str):
    # The store says `stopped` as soon as the controller commits it; the thread then still closes its
    # evaluator. A resume in that window (what a user clicking "resume" at once does) must not be a 409.
    import threading

    closing, release = threading.Event(), threading.Event()
    with st.open_store(url) as store:
        from evonorm_search.search.controller import create_search

        search_id = create_search(store, tiny_config("window", budget=10_000))
        launcher = ThreadLauncher(store, poll_interval=0.01, evaluator_factory=lambda: _SlowToClose(closing, release))
        launcher.start(search_id)
        try:
            wait_until(lambda: launcher.running() == [search_id] and _state(store, search_id) == "running")
            launcher.stop(search_id)
            assert closing.wait(30), "the controller did not return after the stop"
            assert _state(store, search_id) == "stopped" and launcher.running() == [search_id]
            threading.Timer(0.3, release.set).start()  # the old thread finishes while resume waits
            launcher.resume(search_id)  # no ConflictError
            wait_until(lambda: _state(store, search_id) == "running")
        finally:
            release.set()
            launcher.close()
        assert _state(store, search_id) == "stopped"


def _state(store, search_id: int) -> str:
    with store.session(readonly=True) as s:
        return str(st.get_search(s, search_id).state)
