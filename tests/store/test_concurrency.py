"""Several writers at once: processes sharing one database, sessions racing for the same row."""

from __future__ import annotations

import multiprocessing
import threading

import pytest
from sqlalchemy import func, select

from evonorm_search import store as st
from evonorm_search.store.models import Evaluation

from .helpers import NAMES, make_candidate, make_search, values

WRITES_PER_PROCESS = 25


def _controller_like_writer(url: str, search_id: int, worker: int, barrier, queue) -> None:
    """Child process: one transaction per candidate, as a controller commits each outcome."""
    try:
        with st.open_store(url) as store:
            barrier.wait(timeout=60)
            for i in range(WRITES_PER_PROCESS):
                with store.session() as s:
                    candidate = make_candidate(s, search_id, f"{worker}-{i}")
                    st.mark_status(s, candidate.id, st.CandidateStatus.RUNNING)
                with store.session() as s:
                    st.record_evaluation(
                        s,
                        candidate.id,
                        architecture="resnet",
                        phase="proxy",
                        attempt=0,
                        status="succeeded",
                        metrics={"worker": worker},
                        duration_seconds=0.1,
                    )
                    point = values((i * 7 + worker) % 10 / 10, (i * 3 + 2 * worker) % 10 / 10, 1 + (i + worker) % 4)
                    st.complete_candidate(s, candidate.id, point)
        queue.put("done")
    except BaseException as e:
        queue.put(f"{type(e).__name__}: {e}")


def test_two_processes_write_one_database(store, store_url):
    """On SQLite: two processes, one WAL file. Births stay unique, nothing is lost, and the derived data
    (counters, fronts) equals a recount although both processes updated it."""
    with store.session() as s:
        search_id = make_search(s).id
    context = multiprocessing.get_context("fork")
    barrier, queue = context.Barrier(2), context.Queue()
    children = [
        context.Process(target=_controller_like_writer, args=(store_url, search_id, w, barrier, queue)) for w in (1, 2)
    ]
    for child in children:
        child.start()
    outcomes = [queue.get(timeout=240) for _ in children]
    for child in children:
        child.join(timeout=60)
    assert outcomes == ["done", "done"]
    with store.session() as s:
        page = st.list_candidates(s, search_id, limit=1000)
        assert [c.birth for c in page.items] == list(range(2 * WRITES_PER_PROCESS))
        assert all(c.status is st.CandidateStatus.EVALUATED for c in page.items)
        assert s.execute(select(func.count()).select_from(Evaluation)).scalar_one() == 2 * WRITES_PER_PROCESS
        summary = st.search_summary(s, search_id)
        fronts = {n: {c.id for c in st.pareto_front(s, search_id, [n, "cost"])} for n in NAMES[:2]}
        st.rebuild_derived(s, search_id)
    with store.session() as s:
        rebuilt = st.search_summary(s, search_id)
        assert (rebuilt.by_status, rebuilt.best) == (summary.by_status, summary.best)
        assert rebuilt.hypervolume == pytest.approx(summary.hypervolume)
        assert {n: {c.id for c in st.pareto_front(s, search_id, [n, "cost"])} for n in NAMES[:2]} == fronts


def test_two_sessions_racing_to_record_the_same_evaluation(store):
    """Both sessions succeed, both get the one stored row; never a duplicate, never an error."""
    with store.session() as s:
        search_id = make_search(s).id
        candidate_ids = [make_candidate(s, search_id, i).id for i in range(8)]
    results: dict[tuple[int, int], list[int]] = {}
    errors: list[BaseException] = []

    def record(candidate_id: int, contender: int, barrier: threading.Barrier) -> None:
        try:
            barrier.wait(timeout=30)
            with store.session() as s:
                evaluation = st.record_evaluation(
                    s,
                    candidate_id,
                    architecture="resnet",
                    phase="proxy",
                    attempt=0,
                    status="succeeded",
                    metrics={"contender": contender},
                    duration_seconds=1.0,
                )
                results.setdefault((candidate_id, contender), []).append(evaluation.id)
        except BaseException as e:
            errors.append(e)

    for candidate_id in candidate_ids:
        barrier = threading.Barrier(2)
        threads = [threading.Thread(target=record, args=(candidate_id, c, barrier)) for c in (1, 2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    assert errors == []
    with store.session() as s:
        for candidate_id in candidate_ids:
            stored = st.evaluations_of(s, candidate_id)
            assert len(stored) == 1
            assert results[(candidate_id, 1)] == results[(candidate_id, 2)] == [stored[0].id]
            assert stored[0].metrics["contender"] in (1, 2)
