"""The session scope owns commit and rollback; driver errors leave it as StoreError."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from evonorm_search import store as st
from evonorm_search.store import open_store
from evonorm_search.store.models import Search

from .helpers import make_candidate, make_search


def _search_count(store) -> int:
    with store.session(readonly=True) as s:
        return s.execute(select(func.count()).select_from(Search)).scalar_one()


def test_commits_when_the_block_succeeds(store):
    with store.session() as s:
        search_id = make_search(s).id
    with store.session() as s:
        assert st.get_search(s, search_id).name == "test-search"


def test_rolls_back_when_the_block_raises_and_the_error_passes_unchanged(store):
    class Boom(Exception):
        pass

    with pytest.raises(Boom), store.session() as s:
        make_search(s)
        s.flush()  # written to the database inside the transaction ...
        raise Boom
    assert _search_count(store) == 0  # ... and gone with the rollback


def test_driver_errors_become_store_errors_and_roll_back(store):
    with store.session() as s:
        search_id = make_search(s).id
    with pytest.raises(st.StoreError) as info, store.session() as s:
        make_candidate(s, search_id, 1, birth=0)
        make_candidate(s, search_id, 2, birth=0)  # the same birth twice breaks a unique constraint
    assert info.value.__cause__ is not None
    with store.session() as s:
        assert st.unfinished_candidates(s, search_id) == []


def test_a_database_locked_beyond_the_busy_timeout(sqlite_url):
    """Another process holding SQLite's write lock longer than the busy timeout: a StoreError saying so."""
    with open_store(sqlite_url, busy_timeout=0.05) as store:
        blocker = sqlite3.connect(store.engine.url.database, isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")
            locked = "stayed locked by another process beyond the busy timeout"
            with pytest.raises(st.StoreError, match=locked), store.session() as s:
                make_search(s)
            with store.session(readonly=True) as s:  # readers are not blocked by the writer (WAL)
                assert st.list_searches(s).items == []
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        with store.session() as s:
            make_search(s)


def test_attributes_stay_readable_after_the_scope(store):
    with store.session() as s:
        search = make_search(s)
    assert search.name == "test-search"  # expire_on_commit=False: no reload after the session closed
    assert search.state is st.SearchState.CREATED


def test_readonly_sessions_read_but_refuse_writes(store):
    with store.session() as s:
        search_id = make_search(s).id
    with store.session(readonly=True) as s:
        assert st.get_search(s, search_id).id == search_id
    with pytest.raises(st.StoreError, match="read-only session"), store.session(readonly=True) as s:
        st.set_search_state(s, search_id, st.SearchState.RUNNING)
    with store.session() as s:
        assert st.get_search(s, search_id).state is st.SearchState.CREATED


def test_readonly_sessions_do_not_leave_pooled_connections_read_only(store):
    with store.session(readonly=True) as s:
        s.execute(select(1))
    with store.session() as s:  # the same pooled connection, now writable again
        make_search(s)
    assert _search_count(store) == 1


def test_timestamps_are_aware_utc_on_every_backend(store):
    moment = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=timezone(timedelta(hours=2)))
    with store.session() as s:
        search_id = make_search(s, now=moment).id
    with store.session() as s:
        created = st.get_search(s, search_id).created_at
    assert created.tzinfo is not None and created.utcoffset() == timedelta(0)
    assert created == moment


def test_naive_timestamps_are_refused(store):
    with pytest.raises(st.InvalidInputError, match="no time zone"), store.session() as s:
        make_search(s, now=datetime(2024, 1, 1))
