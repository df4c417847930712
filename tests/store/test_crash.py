"""Crash safety: a process killed with SIGKILL loses nothing it committed and leaves nothing half-written;
the search resumes from the store without losing or repeating a completed evaluation."""

from __future__ import annotations

import multiprocessing
import os
import signal

import pytest
from sqlalchemy import func, insert, select, text

from evonorm_search import store as st
from evonorm_search.store.models import Candidate, Evaluation

from .helpers import GRAPH, make_candidate, make_search, values

ARCHITECTURES = ("resnet", "mobilenet", "efficientnet")
COMMITTED = 5


def _evaluate(session, candidate_id: int, architecture: str) -> None:
    st.record_evaluation(
        session,
        candidate_id,
        architecture=architecture,
        phase="proxy",
        attempt=0,
        status="succeeded",
        metrics={"accuracy": 0.5},
        duration_seconds=2.0,
    )


def _commit_then_hang_mid_transaction(url: str, search_id: int, queue) -> None:
    """Child: commit some work, then write a large transaction and wait, uncommitted, to be killed."""
    store = st.open_store(url)
    for i in range(COMMITTED):
        with store.session() as s:
            candidate = make_candidate(s, search_id, f"committed-{i}")
            for architecture in ARCHITECTURES:
                _evaluate(s, candidate.id, architecture)
            st.complete_candidate(s, candidate.id, values(0.1 * i, 0.5, 2.0))
    with store.session() as session:
        doomed = make_candidate(session, search_id, "doomed")
        st.complete_candidate(session, doomed.id, values(0.99, 0.99, 0.1))
        big_graph = {**GRAPH, "padding": "x" * 2000}  # enough rows to spill uncommitted pages into the WAL
        session.execute(
            insert(Candidate),
            [
                {
                    "search_id": search_id,
                    "birth": 1000 + i,
                    "graph": big_graph,
                    "dsl": "relu(x)",
                    "canonical_hash": f"bulk-{i}",
                    "status": st.CandidateStatus.PENDING,
                    "check_seconds": {},
                    "attempt": 0,
                    "created_at": doomed.created_at,
                    "updated_at": doomed.created_at,
                    "heartbeat_at": doomed.created_at,
                }
                for i in range(3000)
            ],
        )
        session.flush()
        queue.put("mid-transaction")
        signal.pause()  # inside the open transaction, until SIGKILL


def test_sigkill_mid_transaction_loses_nothing_committed(store, store_url):
    with store.session() as s:
        search_id = make_search(s).id
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_commit_then_hang_mid_transaction, args=(store_url, search_id, queue))
    child.start()
    assert queue.get(timeout=120) == "mid-transaction"
    if store.backend == "sqlite":  # the uncommitted transaction really reached the disk, half-written
        assert os.path.getsize(f"{store.engine.url.database}-wal") > 1_000_000
    os.kill(child.pid, signal.SIGKILL)
    child.join(timeout=60)
    assert child.exitcode == -signal.SIGKILL

    with st.open_store(store_url) as reopened, reopened.session() as s:
        if reopened.backend == "sqlite":
            assert s.execute(text("PRAGMA integrity_check")).scalar_one() == "ok"
        candidates = st.list_candidates(s, search_id, limit=1000).items
        assert [c.canonical_hash for c in candidates] == [f"hash-committed-{i}" for i in range(COMMITTED)]
        assert all(c.status is st.CandidateStatus.EVALUATED for c in candidates)
        assert s.execute(select(func.count()).select_from(Evaluation)).scalar_one() == COMMITTED * len(ARCHITECTURES)
        summary = st.search_summary(s, search_id)
        assert summary.total == COMMITTED
        assert summary.best["accuracy_resnet"].value == pytest.approx(0.4)  # not the doomed 0.99
        # the killed writer's locks are gone, and its birth allocation went with its transaction: births
        # continue right after the committed work, without a gap
        assert st.next_birth(s, search_id) == COMMITTED
    with reopened.session() as s:
        st.rebuild_derived(s, search_id)
        assert st.search_summary(s, search_id).by_status == summary.by_status


def _controller_killed_somewhere(url: str, search_id: int, queue) -> None:
    """Child: a controller committing each outcome as it arrives; reports progress until killed."""
    store = st.open_store(url)
    for i in range(1000):
        with store.session() as s:
            candidate = make_candidate(s, search_id, i)
            st.mark_status(s, candidate.id, st.CandidateStatus.RUNNING)
        for architecture in ARCHITECTURES:
            with store.session() as s:
                _evaluate(s, candidate.id, architecture)
            queue.put(("evaluated", candidate.id, architecture))
        with store.session() as s:
            st.complete_candidate(s, candidate.id, values(0.5, 0.5, 2.0))
        queue.put(("completed", candidate.id, None))
    queue.put(("finished", None, None))


def test_resume_after_sigkill_neither_loses_nor_repeats_evaluations(store, store_url):
    with store.session() as s:
        search_id = make_search(s).id
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_controller_killed_somewhere, args=(store_url, search_id, queue))
    child.start()
    reported = [queue.get(timeout=120) for _ in range(11)]  # into the third candidate
    os.kill(child.pid, signal.SIGKILL)
    child.join(timeout=60)
    committed = {(cid, arch) for kind, cid, arch in reported if kind == "evaluated"}

    # resume: finish every unfinished candidate, re-recording whatever evaluations it may lack
    with store.session() as s:
        unfinished = st.unfinished_candidates(s, search_id)
        assert unfinished and all(c.status is st.CandidateStatus.RUNNING for c in unfinished)
        for candidate in unfinished:
            for architecture in ARCHITECTURES:
                _evaluate(s, candidate.id, architecture)
            st.complete_candidate(s, candidate.id, values(0.5, 0.5, 2.0))
    with store.session() as s:
        candidates = st.list_candidates(s, search_id, limit=1000).items
        assert all(c.status is st.CandidateStatus.EVALUATED for c in candidates)
        rows = s.execute(select(Evaluation.candidate_id, Evaluation.architecture)).all()
        assert len(rows) == len(set(rows)) == len(candidates) * len(ARCHITECTURES)  # none repeated, none missing
        assert committed <= set(rows)  # nothing reported as committed was lost
        summary = st.search_summary(s, search_id)
        st.rebuild_derived(s, search_id)
        assert st.search_summary(s, search_id).by_status == summary.by_status
