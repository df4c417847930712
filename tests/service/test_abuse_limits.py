"""Abuse limits: symbolic work runs in worker processes under a per-request time limit (422, or 503 when
every worker stayed busy), a per-client rate limit on the routes that render formulas (429 with
Retry-After), and a cap on open event streams (503 with Retry-After), all EVONORM_* settings."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import evonorm_search as es
from evonorm_search import store as st
from service import Settings
from service.formulas import WORKER_NICENESS, FormulaBusy, FormulaCache, FormulaTimeout, SymbolicWorkers
from service.limits import RateLimiter, StreamSlots
from tests.conftest import wait_until

from .conftest import client_for, settings_for
from .factories import populate

API = "/api/v1"


def costly_layer() -> str:
    """A valid layer whose written-out formula is near the default size limit (sympy takes a while)."""
    lines = ["a0 = x"]
    for i in range(5):  # 727 operations written out: about a second of sympy
        lines.append(f"a{i + 1} = sigmoid(a{i}) * a{i} + tanh(a{i})")
    return "\n".join(lines)


@pytest.fixture
def url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'evonorm.db'}"


@pytest.fixture
def idle_workers() -> SymbolicWorkers:
    """The apps' shared pool, once the jobs earlier tests left behind (timed out, still running) ended."""
    workers = SymbolicWorkers.shared(2)
    workers.start()
    assert workers.wait_idle(120)
    return workers


# -- the rate limit ----------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_token_bucket_allows_a_burst_then_the_rate_and_refills():
    clock = Clock()
    limiter = RateLimiter(per_minute=60, burst=3, clock=clock)
    assert [limiter.wait_for("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.wait_for("a") == pytest.approx(1.0)  # one token a second
    assert limiter.wait_for("b") == 0.0  # clients are told apart
    clock.now += 2.0
    assert limiter.wait_for("a") == 0.0 and limiter.wait_for("a") == 0.0
    assert limiter.wait_for("a") > 0
    assert all(RateLimiter(per_minute=0, burst=1).wait_for("a") == 0.0 for _ in range(100))  # 0: no limit


def test_the_limiter_remembers_a_bounded_number_of_clients():
    limiter = RateLimiter(per_minute=1, burst=1, clients=3, clock=Clock())
    for client in ("a", "b", "c", "d"):
        limiter.wait_for(client)
    assert limiter.wait_for("a") == 0.0  # forgotten: a full bucket again
    assert limiter.wait_for("d") > 0
    assert len(limiter._buckets) == 3


def test_checks_past_the_clients_rate_are_429_with_retry_after(url, idle_workers):
    settings = settings_for(url, formula_rate_per_minute=1, formula_burst=2)
    with client_for(settings) as client:
        answers = [client.post(f"{API}/layers/check", json={"dsl": "x * sigmoid(v1 * x)"}) for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 429]
        refused = answers[2]
        assert refused.json()["code"] == "rate_limited"
        assert "EVONORM_FORMULA_RATE_PER_MINUTE=1" in refused.json()["message"]
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        assert client.get("/healthz").status_code == 200  # other routes are not limited


def test_candidate_pages_that_render_formulas_share_the_limit(url, idle_workers):
    with st.open_store(url) as store:
        search = populate(store, candidates=2)
    with client_for(settings_for(url, formula_rate_per_minute=1, formula_burst=1)) as client:
        path = f"{API}/candidates/{search.evaluated[0]}"
        assert client.get(path).status_code == 200
        assert client.get(path).status_code == 429


# -- the time limit and the workers --------------------------------------------------------------------


def test_a_check_past_its_time_limit_is_422_and_says_which_setting(url, idle_workers):
    with client_for(settings_for(url, formula_seconds=0.001)) as client:
        answer = client.post(f"{API}/layers/check", content=costly_layer(), headers={"Content-Type": "text/plain"})
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert body["code"] == "formula_timeout" and "EVONORM_FORMULA_SECONDS" in body["message"]


def test_a_check_within_its_time_limit_answers_what_the_library_computes(url, idle_workers):
    text = "x * sigmoid(v1 * x) / std(x, group)"
    with client_for(settings_for(url, formula_seconds=120)) as client:
        answer = client.post(f"{API}/layers/check", json={"dsl": text})
    assert answer.status_code == 200, answer.text
    graph = es.parse(text)
    assert answer.json()["hash"] == es.canonical_hash(graph)
    assert answer.json()["latex"] == es.latex(graph)


def test_busy_workers_refuse_within_the_time_limit_and_recover(idle_workers):
    workers = idle_workers
    costly = es.parse(costly_layer())
    for _ in range(2):
        with pytest.raises(FormulaTimeout):
            workers.forms(costly, 4096, 0.001)  # its job keeps a worker until it ends
    with pytest.raises(FormulaBusy, match="all 2 formula workers stayed busy"):
        workers.forms(es.parse("relu(x)"), 4096, 0.001)
    canonical, latex, digest = workers.forms(es.parse("relu(x)"), 4096, 120)  # free again once they ended
    assert digest == es.canonical_hash(es.parse("relu(x)")) and "x" in latex and canonical


def test_pages_show_a_note_instead_of_a_formula_past_the_time_limit(idle_workers):
    cache = FormulaCache(4096, workers=idle_workers, seconds=0.001)
    symbolic = cache.of_graph(es.parse(costly_layer()))
    assert symbolic.latex is None and "EVONORM_FORMULA_SECONDS" in symbolic.note


def test_the_limits_are_settings_with_bounds(monkeypatch):
    monkeypatch.setenv("EVONORM_FORMULA_WORKERS", "3")
    monkeypatch.setenv("EVONORM_MAX_EVENT_STREAMS", "7")
    settings = Settings()
    assert (settings.formula_workers, settings.max_event_streams) == (3, 7)
    monkeypatch.setenv("EVONORM_FORMULA_SECONDS", "0")
    with pytest.raises(ValueError, match="formula_seconds"):
        Settings()


# -- event streams ---------------------------------------------------------------------------------------


def test_streams_past_the_cap_are_503_with_retry_after_and_a_closed_one_frees_its_slot(url):
    with st.open_store(url) as store:
        search = populate(store, candidates=3, final_state=st.SearchState.RUNNING)
    path = f"{API}/searches/{search.id}/events"
    with client_for(settings_for(url, max_event_streams=1)) as client:
        with client.stream("GET", path) as first:
            assert first.status_code == 200
            lines = first.iter_lines()  # held: dropping the iterator would close the stream
            assert next(lines) == "event: progress"
            refused = client.get(path)
            assert refused.status_code == 503
            assert refused.json()["code"] == "too_many_streams" and refused.headers["Retry-After"] == "10"
            assert client.get(f"{API}/searches/999999/events").status_code == 404  # takes no slot
            with st.open_store(url) as store, store.session() as s:  # the search ends: so does its stream
                st.set_search_state(s, search.id, st.SearchState.STOPPING)
                st.set_search_state(s, search.id, st.SearchState.STOPPED)
            assert "event: end" in list(lines)
        assert client.app.state.context.streams.open == 0
        with client.stream("GET", path) as again:
            assert again.status_code == 200


def test_stream_slots_count_and_each_slot_is_given_back_once():
    slots = StreamSlots(2)
    first, second = slots.acquire(), slots.acquire()
    assert first is not None and second is not None and slots.acquire() is None
    for _ in range(3):
        first.release()  # once, however often it is asked
    assert slots.open == 1
    del second  # a stream that never started: its slot comes back when the request's objects go
    gc.collect()
    assert slots.open == 0

    taken = []
    many = StreamSlots(10)
    threads = [threading.Thread(target=lambda: taken.append(many.acquire())) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(slot is not None for slot in taken) == 10 and many.open == 10


KILLED_SERVER = """
import os, sys, time
import evonorm_search as es
from service.formulas import SymbolicWorkers
workers = SymbolicWorkers(2)
workers.forms(es.parse("relu(x)"), 4096, 600)
print(os.getpid(), flush=True)
time.sleep(600)
"""


def test_formula_workers_exit_when_their_server_is_killed():
    server = subprocess.Popen([sys.executable, "-c", KILLED_SERVER], stdout=subprocess.PIPE, text=True)
    try:
        pid = int(server.stdout.readline())
        children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
        assert len(children) >= 2  # the two workers (and multiprocessing's resource tracker)
    finally:
        server.kill()  # SIGKILL: no clean-up code of the server runs
        server.wait()

    def orphans_gone() -> bool:  # the workers notice within a second
        return not [c for c in children if Path(f"/proc/{c}").exists() and "zombie" not in _state(c)]

    wait_until(orphans_gone, limit=60, interval=0.2, what="the orphaned workers' exit")


def _state(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].splitlines()[0].lower()
    except (OSError, IndexError):
        return "gone"


def _niceness(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])  # field 19: nice


def test_formula_workers_run_below_the_server_so_it_keeps_a_core(idle_workers):
    """When sympy keeps every core busy, the server's event loop must still get one at once."""
    workers = [c for c in _children(os.getpid()) if "spawn_main" in _command_line(c)]
    assert len(workers) >= idle_workers.workers
    wanted = min(19, _niceness(os.getpid()) + WORKER_NICENESS)
    # A worker sets its niceness once it has imported the library (seconds after it was spawned, and the
    # pool may have spawned one after the jobs it waited for).
    wait_until(
        lambda: all(_niceness(w) == wanted for w in workers), interval=0.2, what=f"every worker at niceness {wanted}"
    )


def _children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(c) for c in found]


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
    except OSError:
        return ""
