"""Searches: creation, pages, states, the controller lease, deletion."""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import pytest

from evonorm_search import store as st
from evonorm_search.enums import SEARCH_TRANSITIONS
from evonorm_search.store.types import utcnow

from .helpers import OBJECTIVES, evaluated, make_search, values

S = st.SearchState


def test_create_search_stores_config_objectives_and_counters(store):
    with store.session() as s:
        search = make_search(s, config={"a": [1, 2.5], "b": {"c": None}, "d": np.float32(0.5)}, seed=7, budget=100)
    with store.session() as s:
        search = st.get_search(s, search.id)
        assert search.config == {"a": [1, 2.5], "b": {"c": None}, "d": 0.5}
        assert [o.name for o in search.objective_specs] == [o["name"] for o in OBJECTIVES]
        assert search.objective_specs[0] == st.Objective("accuracy_resnet", "max", 0.0)  # default reference
        assert search.objective_specs[2] == st.Objective("cost", "min", 10.0)
        assert (search.state, search.seed, search.budget, search.next_birth) == (S.CREATED, 7, 100, 0)
        summary = st.search_summary(s, search.id)
        assert summary.total == 0 and summary.best == {o["name"]: None for o in OBJECTIVES}


@pytest.mark.parametrize(
    ("objectives", "message"),
    [
        ([], "non-empty list"),
        ({"name": "a", "direction": "max"}, "non-empty list"),
        ([{"name": "a"}], "direction"),
        ([{"name": "a", "direction": "up"}], "direction"),
        ([{"name": "1a", "direction": "max"}], "name"),
        ([{"name": "a", "direction": "max"}, {"name": "a", "direction": "min"}], "unique"),
        ([{"name": "a", "direction": "max", "weight": 2}], "unknown keys"),
        ([{"name": "a", "direction": "min", "reference": math.inf}], "finite"),
        (["a"], "mapping"),
    ],
)
def test_malformed_objectives_are_refused(store, objectives, message):
    with pytest.raises(st.InvalidInputError, match=message), store.session() as s:
        make_search(s, objectives=objectives)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": ""}, "name"),
        ({"config": [1, 2]}, "config must be a mapping"),
        ({"config": {"f": object()}}, r"config\.f holds a object"),
        ({"config": {1: "x"}}, "non-string key"),
        ({"seed": "7"}, "seed"),
        ({"budget": 0}, "budget"),
    ],
)
def test_malformed_searches_are_refused(store, kwargs, message):
    with pytest.raises(st.InvalidInputError, match=message), store.session() as s:
        make_search(s, **kwargs)


def test_missing_search_is_not_found(store):
    with pytest.raises(st.NotFoundError, match="no search with id 999"), store.session() as s:
        st.get_search(s, 999)


def test_list_searches_pages_newest_first_and_filters_by_state(store):
    with store.session() as s:
        ids = [make_search(s, name=f"s{i}").id for i in range(5)]
        st.set_search_state(s, ids[1], S.RUNNING)
        st.set_search_state(s, ids[3], S.RUNNING)
    with store.session() as s:
        first = st.list_searches(s, limit=2)
        second = st.list_searches(s, limit=2, cursor=first.next_cursor)
        third = st.list_searches(s, limit=2, cursor=second.next_cursor)
        assert [x.id for x in first.items + second.items + third.items] == ids[::-1]
        assert third.next_cursor is None
        assert [x.id for x in st.list_searches(s, states=[S.RUNNING]).items] == [ids[3], ids[1]]
        with pytest.raises(st.InvalidInputError, match="limit"):
            st.list_searches(s, limit=0)
        with pytest.raises(st.InvalidInputError, match="cursor"):
            st.list_searches(s, cursor="not-a-cursor")


@pytest.mark.parametrize("source", list(S))
def test_state_transitions_follow_the_table(store, source):
    """Every (from, to) pair: allowed ones happen, the others raise ConflictError and change nothing."""
    for target in S:
        with store.session() as s:
            search = make_search(s)
            search.state = source  # put it in `source` directly: the table itself is under test
        allowed = target in SEARCH_TRANSITIONS[source]
        error = "crashed" if target is S.FAILED else None
        if allowed:
            with store.session() as s:
                assert st.set_search_state(s, search.id, target, error=error).state is target
        else:
            with pytest.raises(st.ConflictError, match=f"is {source}; it cannot become {target}"), store.session() as s:
                st.set_search_state(s, search.id, target, error=error)
            with store.session() as s:
                assert st.get_search(s, search.id).state is source


def test_state_timestamps_and_errors(store):
    t0 = utcnow()
    with store.session() as s:
        search_id = make_search(s).id
        st.set_search_state(s, search_id, S.RUNNING, now=t0)
        with pytest.raises(st.InvalidInputError, match="error message"):
            st.set_search_state(s, search_id, S.FAILED)
        failed = st.set_search_state(s, search_id, S.FAILED, error="worker pool died", now=t0 + timedelta(hours=1))
        assert (failed.started_at, failed.finished_at, failed.error) == (
            t0,
            t0 + timedelta(hours=1),
            "worker pool died",
        )
        resumed = st.set_search_state(s, search_id, S.RUNNING, now=t0 + timedelta(hours=2))
        assert (resumed.started_at, resumed.finished_at, resumed.error) == (t0, None, None)


def test_controller_lease(store):
    t0 = utcnow()
    stale = timedelta(minutes=5)
    with store.session() as s:
        search_id = make_search(s).id
        st.set_search_state(s, search_id, S.RUNNING)
        st.claim_controller(s, search_id, host="a", pid=1, stale_after=stale, now=t0)
        st.heartbeat_controller(s, search_id, host="a", pid=1, now=t0 + timedelta(minutes=2))
        with pytest.raises(st.ConflictError, match="controlled by pid 1 on a"):
            st.claim_controller(s, search_id, host="b", pid=2, stale_after=stale, now=t0 + timedelta(minutes=6))
        assert st.stale_searches(s, stale_after=stale, now=t0 + timedelta(minutes=6)) == []
        assert [x.id for x in st.stale_searches(s, stale_after=stale, now=t0 + timedelta(minutes=8))] == [search_id]
        # the old controller stopped heartbeating: another process takes over ...
        st.claim_controller(s, search_id, host="b", pid=2, stale_after=stale, now=t0 + timedelta(minutes=8))
        # ... and the old one learns it must stop
        with pytest.raises(st.ConflictError, match="this controller must stop"):
            st.heartbeat_controller(s, search_id, host="a", pid=1)
        st.release_controller(s, search_id, host="a", pid=1)  # not the holder: nothing happens
        assert st.get_search(s, search_id).controller_pid == 2
        st.release_controller(s, search_id, host="b", pid=2)
        search = st.get_search(s, search_id)
        assert (search.controller_host, search.controller_pid, search.controller_heartbeat_at) == (None, None, None)
        assert [x.id for x in st.stale_searches(s, stale_after=stale)] == [search_id]  # running, nobody controls it


def test_stale_searches_ignore_searches_that_need_no_controller(store):
    with store.session() as s:
        for state in (S.CREATED, S.STOPPED):
            search = make_search(s)
            search.state = state
        assert st.stale_searches(s, stale_after=timedelta(0)) == []


def test_delete_search_removes_everything_it_holds(store):
    with store.session() as s:
        search_id = make_search(s).id
        kept_id = make_search(s).id
        candidate = evaluated(s, search_id, values(0.5, 0.5, 1.0))
        st.record_evaluation(
            s,
            candidate.id,
            architecture="r",
            phase="proxy",
            attempt=0,
            status="succeeded",
            metrics={},
            duration_seconds=1,
        )
        st.set_search_state(s, search_id, S.RUNNING)
        with pytest.raises(st.ConflictError, match="stop it before deleting"):
            st.delete_search(s, search_id)
        st.set_search_state(s, search_id, S.STOPPED)
        st.delete_search(s, search_id)
    with store.session() as s:
        with pytest.raises(st.NotFoundError):
            st.get_search(s, search_id)
        with pytest.raises(st.NotFoundError):
            st.get_candidate(s, candidate.id)
        assert st.evaluations_of(s, candidate.id) == []
        assert st.pareto_front_across(s, ["cost"]) == []
        assert st.get_search(s, kept_id).id == kept_id
