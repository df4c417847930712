"""Candidates and evaluations: the search controller's write and read paths."""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import event

import evonorm_search as es
from evonorm_search import store as st
from evonorm_search.enums import STATUS_TRANSITIONS
from evonorm_search.store.types import utcnow

from .helpers import evaluated, make_candidate, make_search, values

C = st.CandidateStatus
R = st.RejectionStage


@pytest.fixture
def search_id(store):
    with store.session() as s:
        return make_search(s).id


def _evaluation(session, candidate_id, **overrides):
    fields = {
        "architecture": "resnet",
        "phase": st.EvaluationPhase.PROXY,
        "attempt": 0,
        "status": st.EvaluationStatus.SUCCEEDED,
        "metrics": {"accuracy": 0.9, "loss": 0.3},
        "duration_seconds": 12.5,
        "node": "node-1",
    }
    return st.record_evaluation(session, candidate_id, **{**fields, **overrides})


def test_births_count_up_from_zero_per_search(store, search_id):
    with store.session() as s:
        other = make_search(s).id
        assert [st.next_birth(s, search_id) for _ in range(3)] == [0, 1, 2]
        assert st.next_birth(s, other) == 0
        assert make_candidate(s, search_id, "a").birth == 3
        with pytest.raises(st.NotFoundError):
            st.next_birth(s, 10_000)


def test_add_candidate_from_a_graph(store, search_id):
    graph = es.library.get("evonorm_s0")
    with store.session() as s:
        parent = make_candidate(s, search_id, "p")
        child = st.add_candidate(
            s,
            search_id,
            graph=graph,
            dsl=graph.to_text(),
            canonical_hash=es.canonical_hash(graph),
            fingerprint=es.fingerprint(graph),
            parent_id=parent.id,
            mutation={"kind": "replace_op", "node": np.int64(3), "op": "sigmoid"},
        )
    with store.session() as s:
        child = st.get_candidate(s, child.id)
        assert es.Graph.from_dict(child.graph) == graph
        assert es.parse(child.dsl) == graph
        assert child.mutation == {"kind": "replace_op", "node": 3, "op": "sigmoid"}
        assert (child.status, child.attempt, child.parent_id, child.check_seconds) == (C.PENDING, 0, parent.id, {})
        assert child.created_at == child.heartbeat_at


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        ({"graph": "relu(x)"}, st.InvalidInputError, "graph must be"),
        ({"dsl": " "}, st.InvalidInputError, "DSL text"),
        ({"canonical_hash": ""}, st.InvalidInputError, "canonical hash"),
        ({"status": C.EVALUATED}, st.InvalidInputError, "starts pending"),
        ({"birth": -1}, st.InvalidInputError, "birth"),
        ({"parent_id": 10_000}, st.NotFoundError, "parent candidate 10000"),
        ({"mutation": {"f": {1, 2}}}, st.InvalidInputError, "mutation.f holds a set"),
    ],
)
def test_malformed_candidates_are_refused(store, search_id, overrides, error, message):
    with pytest.raises(error, match=message), store.session() as s:
        make_candidate(s, search_id, **overrides)


def test_parent_from_another_search_is_refused(store, search_id):
    with store.session() as s:
        foreign = make_candidate(s, make_search(s).id)
    with pytest.raises(st.InvalidInputError, match="belongs to search"), store.session() as s:
        make_candidate(s, search_id, parent_id=foreign.id)


def test_find_duplicate_returns_the_earliest_finished_match(store, search_id):
    with store.session() as s:
        running = make_candidate(s, search_id, canonical_hash="H", fingerprint="F1", status=C.RUNNING)
        first = make_candidate(s, search_id, canonical_hash="H2", fingerprint="F")
        st.record_rejection(s, first.id, stage=R.NUMERIC, reason="nan output")
        second = evaluated(s, search_id, values(0.5, 0.5, 1.0), canonical_hash="H", fingerprint="F3")
        elsewhere = make_search(s).id
        evaluated(s, elsewhere, values(0.9, 0.9, 1.0), canonical_hash="X", fingerprint="Y")
    with store.session() as s:
        assert st.find_duplicate(s, search_id, canonical_hash="H").id == second.id  # the running one is not finished
        assert st.find_duplicate(s, search_id, fingerprint="F").id == first.id
        assert st.find_duplicate(s, search_id, canonical_hash="H", fingerprint="F").id == first.id  # earliest birth
        assert st.find_duplicate(s, search_id, canonical_hash="X", fingerprint="Y") is None  # other search
        assert st.find_duplicate(s, search_id) is None
    assert running.birth < first.birth < second.birth


def test_rejection_records_stage_reason_and_time_and_the_first_verdict_wins(store, search_id):
    with store.session() as s:
        candidate = make_candidate(s, search_id)
        st.record_check(s, candidate.id, R.STATIC, 0.001)
        st.record_check(s, candidate.id, R.DUPLICATE, 0.0002)
        st.record_rejection(s, candidate.id, stage=R.STABILITY, reason="gradient norm 3e9 > 1e8", seconds=0.04)
        again = st.record_rejection(s, candidate.id, stage=R.QUALITY, reason="late verdict", seconds=9.0)
        assert st.complete_candidate(s, candidate.id, values(0.9, 0.9, 1.0)).status is C.REJECTED
    with store.session() as s:
        candidate = st.get_candidate(s, candidate.id)
        assert again.rejection_stage is R.STABILITY
        assert (candidate.status, candidate.rejection_stage) == (C.REJECTED, R.STABILITY)
        assert candidate.rejection_reason == "gradient norm 3e9 > 1e8"
        assert candidate.check_seconds == {"static": 0.001, "duplicate": 0.0002, "stability": 0.04}
        assert candidate.objectives is None and candidate.finished_at is not None
        summary = st.search_summary(s, search_id)
        assert summary.rejected_by_stage[R.STABILITY] == 1 and summary.by_status[C.REJECTED] == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"stage": R.NUMERIC, "reason": ""}, "needs a reason"),
        ({"stage": "boredom", "reason": "x"}, "boredom"),
        ({"stage": R.NUMERIC, "reason": "x", "seconds": -1.0}, "non-negative"),
        ({"stage": R.NUMERIC, "reason": "x", "seconds": math.nan}, "non-negative"),
        ({"stage": R.NUMERIC, "reason": "x", "duplicate_of": 1}, "duplicate_of belongs"),
    ],
)
def test_malformed_rejections_are_refused(store, search_id, kwargs, message):
    with store.session() as s:
        candidate = make_candidate(s, search_id)
    with pytest.raises(ValueError, match=message), store.session() as s:
        st.record_rejection(s, candidate.id, **kwargs)
    with store.session() as s:
        assert st.get_candidate(s, candidate.id).status is C.PENDING


def test_duplicates_point_at_their_original_and_are_counted(store, search_id):
    with store.session() as s:
        original = evaluated(s, search_id, values(0.8, 0.7, 2.0), "o")
        rejected_copy = make_candidate(s, search_id, "r")
        st.record_rejection(s, rejected_copy.id, stage=R.DUPLICATE, reason="same hash", duplicate_of=original.id)
        reused_copy = make_candidate(s, search_id, "u")
        st.complete_candidate(s, reused_copy.id, original.objectives, duplicate_of=original.id)
    with pytest.raises(st.InvalidInputError, match="cannot duplicate itself"), store.session() as s:
        _self_duplicate(s, search_id)
    with pytest.raises(st.InvalidInputError, match="belongs to search"), store.session() as s:
        foreign = evaluated(s, make_search(s).id, values(0.1, 0.1, 1.0), "foreign")
        copy = make_candidate(s, search_id, "copy-of-foreign")
        st.record_rejection(s, copy.id, stage=R.DUPLICATE, reason="same hash", duplicate_of=foreign.id)
    with store.session() as s:
        assert st.get_candidate(s, rejected_copy.id).duplicate_of == original.id
        assert st.get_candidate(s, reused_copy.id).duplicate_of == original.id
        summary = st.search_summary(s, search_id)
        assert (summary.duplicate_hits, summary.evaluated, summary.rejected_by_stage[R.DUPLICATE]) == (2, 2, 1)
        # the reused copy joins neither the population nor the fronts, where its original stands for it
        assert [c.id for c in st.population(s, search_id, 10)] == [original.id]
        assert [c.id for c in st.pareto_front(s, search_id)] == [original.id]
        assert [c.id for c in st.list_candidates(s, search_id, sort="cost").items] == [original.id]


def _self_duplicate(session, search_id):
    candidate = make_candidate(session, search_id, "self")
    st.record_rejection(session, candidate.id, stage=R.DUPLICATE, reason="x", duplicate_of=candidate.id)


@pytest.mark.parametrize("source", [C.PENDING, C.QUEUED, C.RUNNING, C.EVALUATED, C.REJECTED, C.FAILED])
def test_status_transitions_follow_the_table(store, search_id, source):
    for target in (C.PENDING, C.QUEUED, C.RUNNING, C.FAILED):
        with store.session() as s:
            candidate = _candidate_in(s, search_id, source)
        error = "worker raised" if target is C.FAILED else None
        if target in STATUS_TRANSITIONS[source]:
            with store.session() as s:
                assert st.mark_status(s, candidate.id, target, error=error).status is target
        else:
            with pytest.raises(st.ConflictError, match=f"is {source}; it cannot become {target}"), store.session() as s:
                st.mark_status(s, candidate.id, target, error=error)
    with store.session() as s:
        _assert_counters_match_a_recount(s, search_id)


def _candidate_in(session, search_id, status):
    candidate = make_candidate(session, search_id, key=st.next_birth(session, search_id))
    if status is C.EVALUATED:
        return st.complete_candidate(session, candidate.id, values(0.1, 0.1, 1.0))
    if status is C.REJECTED:
        return st.record_rejection(session, candidate.id, stage=R.STATIC, reason="constant")
    if status is not C.PENDING:
        st.mark_status(session, candidate.id, status, error="died" if status is C.FAILED else None)
    return candidate


def _assert_counters_match_a_recount(session, search_id):
    before = st.search_summary(session, search_id)
    st.rebuild_derived(session, search_id)
    after = st.search_summary(session, search_id)
    assert (before.by_status, before.rejected_by_stage, before.duplicate_hits) == (
        after.by_status,
        after.rejected_by_stage,
        after.duplicate_hits,
    )


def test_mark_status_refuses_verdicts_and_failures_without_reason(store, search_id):
    with store.session() as s:
        candidate = make_candidate(s, search_id)
        with pytest.raises(st.InvalidInputError, match="complete_candidate"):
            st.mark_status(s, candidate.id, C.EVALUATED)
        with pytest.raises(st.InvalidInputError, match="record_rejection"):
            st.mark_status(s, candidate.id, C.REJECTED)
        with pytest.raises(st.InvalidInputError, match="error message"):
            st.mark_status(s, candidate.id, C.FAILED)
        failed = st.mark_status(s, candidate.id, C.FAILED, error="CUDA out of memory")
        assert (failed.error, failed.finished_at is not None) == ("CUDA out of memory", True)
        with pytest.raises(st.NotFoundError):
            st.mark_status(s, 10_000, C.QUEUED)


def test_stuck_candidates_heartbeats_and_requeueing(store, search_id):
    t0 = utcnow()
    with store.session() as s:
        queued = make_candidate(s, search_id, "q", status=C.QUEUED, now=t0)
        running = make_candidate(s, search_id, "r", now=t0)
        st.mark_status(s, running.id, C.RUNNING, now=t0 + timedelta(minutes=1))
        alive = make_candidate(s, search_id, "a", status=C.RUNNING, now=t0)
        make_candidate(s, search_id, "p", now=t0)  # pending: not in flight, never stuck
        assert st.heartbeat_candidates(s, [alive.id, 10_000], now=t0 + timedelta(minutes=9)) == 1
        assert st.heartbeat_candidates(s, []) == 0
        stuck = st.stuck_candidates(s, search_id, older_than=timedelta(minutes=5), now=t0 + timedelta(minutes=10))
        assert [c.id for c in stuck] == [queued.id, running.id]
        for candidate in stuck:
            requeued = st.requeue_candidate(s, candidate.id, now=t0 + timedelta(minutes=10))
            assert (requeued.status, requeued.attempt) == (C.PENDING, 1)
        assert st.stuck_candidates(s, search_id, older_than=timedelta(minutes=5), now=t0 + timedelta(minutes=10)) == []
        with pytest.raises(st.ConflictError, match="only queued or running"):
            st.requeue_candidate(s, queued.id)
        summary = st.search_summary(s, search_id)
        assert (summary.by_status[C.PENDING], summary.by_status[C.RUNNING]) == (3, 1)


def test_unfinished_candidates_and_the_population(store, search_id):
    with store.session() as s:
        made = []
        for i in range(8):
            if i % 3 == 0:
                made.append(make_candidate(s, search_id, i))
            else:
                made.append(evaluated(s, search_id, values(i / 10, i / 10, 1.0), i))
        st.mark_status(s, made[3].id, C.RUNNING)
        st.mark_status(s, made[6].id, C.FAILED, error="boom")
    with store.session() as s:
        assert [c.birth for c in st.unfinished_candidates(s, search_id)] == [0, 3]
        assert [c.birth for c in st.population(s, search_id, 3)] == [4, 5, 7]  # newest three, oldest first
        assert [c.birth for c in st.population(s, search_id, 100)] == [1, 2, 4, 5, 7]
        with pytest.raises(st.InvalidInputError, match="population size"):
            st.population(s, search_id, 0)


def test_record_evaluation_is_idempotent(store, search_id):
    with store.session() as s:
        candidate = make_candidate(s, search_id)
        first = _evaluation(s, candidate.id, metrics={"accuracy": 0.9, "loss": math.inf, "curve": [1.0, math.nan]})
    with store.session() as s:  # a retried commit of the same outcome, possibly with other numbers
        again = _evaluation(s, candidate.id, metrics={"accuracy": 0.1}, duration_seconds=99.0)
        retry = _evaluation(s, candidate.id, attempt=1, status=st.EvaluationStatus.FAILED, metrics={"error": "OOM"})
        quality = _evaluation(s, candidate.id, phase=st.EvaluationPhase.QUALITY, duration_seconds=0.5)
    assert again.id == first.id
    assert again.metrics == {"accuracy": 0.9, "loss": "inf", "curve": [1.0, "nan"]}
    assert again.duration_seconds == 12.5
    with store.session() as s:
        stored = st.evaluations_of(s, candidate.id)
        assert [(e.phase, e.attempt, e.status) for e in stored] == [
            (st.EvaluationPhase.PROXY, 0, st.EvaluationStatus.SUCCEEDED),
            (st.EvaluationPhase.PROXY, 1, st.EvaluationStatus.FAILED),
            (st.EvaluationPhase.QUALITY, 0, st.EvaluationStatus.SUCCEEDED),
        ]
        assert [e.id for e in stored] == [first.id, retry.id, quality.id]
        assert (stored[0].node, stored[0].finished_at.tzinfo is not None) == ("node-1", True)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"architecture": ""}, "architecture"),
        ({"attempt": -1}, "attempt"),
        ({"phase": "warmup"}, "warmup"),
        ({"status": "ok"}, "ok"),
        ({"metrics": [0.9]}, "metrics must be a mapping"),
        ({"metrics": {"model": object()}}, r"metrics\.model"),
        ({"duration_seconds": -2.0}, "non-negative"),
        ({"duration_seconds": None}, "duration_seconds"),
    ],
)
def test_malformed_evaluations_are_refused(store, search_id, overrides, message):
    with store.session() as s:
        candidate = make_candidate(s, search_id)
    with pytest.raises(ValueError, match=message), store.session() as s:
        _evaluation(s, candidate.id, **overrides)
    with store.session() as s:
        assert st.evaluations_of(s, candidate.id) == []


def test_evaluation_of_a_missing_candidate_is_not_found(store):
    with pytest.raises(st.NotFoundError), store.session() as s:
        _evaluation(s, 10_000)


@pytest.mark.parametrize(
    ("objectives", "message"),
    [
        ({"accuracy_resnet": 0.5, "accuracy_mobilenet": 0.5}, "missing for cost"),
        ({**values(0.5, 0.5, 1.0), "speed": 2.0}, "unknown objectives speed"),
        (values(math.nan, 0.5, 1.0), "not a finite number"),
        (values(0.5, math.inf, 1.0), "not a finite number"),
        (values(0.5, "0.5", 1.0), "not a finite number"),
        ([0.5, 0.5, 1.0], "must map objective names"),
    ],
)
def test_complete_candidate_checks_the_objectives(store, search_id, objectives, message):
    with store.session() as s:
        candidate = make_candidate(s, search_id)
    with pytest.raises(st.InvalidInputError, match=message), store.session() as s:
        st.complete_candidate(s, candidate.id, objectives)
    with store.session() as s:
        assert st.get_candidate(s, candidate.id).status is C.PENDING
        assert st.search_summary(s, search_id).evaluated == 0


def test_complete_candidate_is_final_and_accepts_numpy_values(store, search_id):
    with store.session() as s:
        candidate = make_candidate(s, search_id)
        done = st.complete_candidate(
            s, candidate.id, {"accuracy_resnet": np.float32(0.75), "accuracy_mobilenet": np.float64(0.5), "cost": 3}
        )
        assert done.objectives == values(0.75, 0.5, 3.0)
        again = st.complete_candidate(s, candidate.id, values(0.99, 0.99, 0.1))
        assert again.objectives == values(0.75, 0.5, 3.0)
        with pytest.raises(st.ConflictError):
            st.mark_status(s, candidate.id, C.RUNNING)
        with pytest.raises(st.NotFoundError):
            st.complete_candidate(s, 10_000, values(0.1, 0.1, 1.0))
    with store.session() as s:
        assert st.search_summary(s, search_id).evaluated == 1
        assert [c.id for c in st.pareto_front(s, search_id)] == [candidate.id]


# -- a group of new candidates (the controller's proposals of one fill) --------------------------------


def _grouped(group, key, **kwargs):
    return group.add(graph=GRAPH_OF_GROUP, dsl="relu(x)", canonical_hash=f"hash-{key}", **kwargs)


GRAPH_OF_GROUP = es.library.get("relu").to_dict()


def test_a_group_adds_candidates_with_their_verdicts_births_and_counters_once(store, search_id):
    with store.session() as s:
        original = evaluated(s, search_id, values(0.5, 0.4, 2.0), key="original")  # birth 0
        group = st.CandidateGroup(s, search_id, first_birth=1)
        running = _grouped(group, 1, status=C.RUNNING, parent_id=original.id, check_seconds={"static": 0.5})
        rejected = _grouped(
            group, 2, status=C.REJECTED, rejection_stage=R.NUMERIC, rejection_reason="nan", check_seconds={"numeric": 1}
        )
        copy = _grouped(
            group, 3, status=C.EVALUATED, duplicate_of=original.id, objectives=original.objectives, mutation="random"
        )
        echo = _grouped(
            group, 4, status=C.REJECTED, rejection_stage=R.DUPLICATE, rejection_reason="same", duplicate_of=1
        )
        group.close()
        assert len(group) == 4 and [c.birth for c in group.candidates] == [1, 2, 3, 4]
        assert st.next_birth(s, search_id) == 5
        _assert_counters_match_a_recount(s, search_id)
    with store.session(readonly=True) as s:
        summary = st.search_summary(s, search_id)
        assert summary.total == 5 and summary.duplicate_hits == 2
        assert summary.by_status[C.RUNNING] == 1 and summary.rejected_by_stage[R.NUMERIC] == 1
        stored = {c.id: c for c in st.list_candidates(s, search_id, limit=10).items}
    assert stored[running.id].check_seconds == {"static": 0.5} and stored[running.id].parent_id == original.id
    assert stored[rejected.id].rejection_reason == "nan" and stored[rejected.id].finished_at is not None
    assert stored[copy.id].objectives == original.objectives and stored[copy.id].duplicate_of == original.id
    assert stored[echo.id].duplicate_of == 1 and stored[echo.id].rejection_stage is R.DUPLICATE
    with store.session(readonly=True) as s:  # a duplicate joins neither the fronts nor the sorted pages
        assert [c.id for c in st.pareto_front(s, search_id)] == [original.id]


def test_a_group_refuses_births_another_process_took_and_rolls_back_whole(store, search_id):
    with store.session() as s:
        make_candidate(s, search_id, "first")  # birth 0 taken
    with pytest.raises(st.ConflictError, match="another process"), store.session() as s:
        _grouped(st.CandidateGroup(s, search_id, first_birth=0), "late", status=C.QUEUED)
    with store.session() as s:
        other = make_search(s).id
    with pytest.raises(st.InvalidInputError, match="belongs to search"), store.session() as s:
        group = st.CandidateGroup(s, other, first_birth=0)
        _grouped(group, "a", status=C.QUEUED)
        _grouped(group, "b", status=C.QUEUED, parent_id=1)  # candidate 1 is the first search's
        group.close()
    with store.session(readonly=True) as s:  # nothing of either group was kept
        assert st.search_summary(s, search_id).total == 1 and st.search_summary(s, other).total == 0
        assert st.list_candidates(s, other, limit=10).items == [] and st.get_search(s, other).next_birth == 0


def _candidate_inserts(store):
    """The INSERT statements into candidates the store sends from now on (an executemany counts once)."""
    sent: list[str] = []

    def note(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO CANDIDATES"):
            sent.append(statement)

    event.listen(store.engine, "before_cursor_execute", note)
    return sent


def test_a_group_hands_out_ids_as_it_adds_and_inserts_its_rows_once_at_close(store, search_id):
    sent = _candidate_inserts(store)
    with store.session() as s:
        group = st.CandidateGroup(s, search_id, first_birth=0, expected=2)
        added = [_grouped(group, i, status=C.QUEUED) for i in range(5)]  # past the expected 2: more blocks
        echo = _grouped(
            group, "echo", status=C.REJECTED, rejection_stage=R.DUPLICATE, rejection_reason="same",
            duplicate_of=added[0].id,
        )  # fmt: skip
        ids = [c.id for c in [*added, echo]]
        assert None not in ids and len(set(ids)) == 6 and sent == []  # ids known, nothing inserted yet
        assert group.original(added[0].id) is added[0]  # an original in the group is found without a write
        assert sent == []
        group.close()
        assert len(sent) == 1
    with store.session(readonly=True) as s:
        stored = {c.id: c for c in st.list_candidates(s, search_id, limit=10).items}
    assert [stored[i].birth for i in ids] == [0, 1, 2, 3, 4, 5] and stored[echo.id].duplicate_of == added[0].id


def test_ids_taken_ahead_never_collide_with_another_writer(store, search_id):
    """On PostgreSQL another session inserts (into another search) while a group holds ids it has not
    inserted yet: the sequence gives each value once. SQLite's one write lock keeps other writers out
    until the group commits, so there a later group counts on from the rows before it."""
    with store.session() as s:
        other_search = make_search(s).id
    outsiders = []
    with store.session() as s:
        group = st.CandidateGroup(s, search_id, first_birth=0, expected=4)
        mine = [_grouped(group, "a", status=C.QUEUED)]
        if store.engine.dialect.name == "postgresql":
            with store.session() as other:
                outsiders.append(make_candidate(other, other_search, "outsider").id)  # committed first
        mine += [_grouped(group, key, status=C.QUEUED) for key in ("b", "c", "d", "e", "f")]
        group.close()
    with store.session() as s:
        group = st.CandidateGroup(s, search_id, first_birth=6)
        mine += [_grouped(group, f"later-{i}", status=C.QUEUED) for i in range(3)]
        group.close()
    with store.session(readonly=True) as s:
        stored = st.list_candidates(s, search_id, limit=20).items + st.list_candidates(s, other_search, limit=20).items
    assert sorted(c.id for c in stored) == sorted([c.id for c in mine] + outsiders)  # each id once, none lost
    assert sorted(c.birth for c in stored if c.search_id == search_id) == list(range(9))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"status": C.REJECTED}, "rejection stage and reason"),
        ({"status": C.QUEUED, "rejection_stage": R.STATIC, "rejection_reason": "x"}, "has no rejection"),
        ({"status": C.EVALUATED, "objectives": {"a": 1.0}}, "only as a duplicate"),
        ({"status": C.FAILED}, "cannot have failed"),
        ({"status": C.QUEUED, "duplicate_of": 1}, "duplicate_of belongs"),
        ({"status": C.RUNNING, "check_seconds": {"static": -1.0}}, "non-negative"),
    ],
)
def test_a_group_refuses_malformed_verdicts(store, search_id, kwargs, message):
    with pytest.raises(st.InvalidInputError, match=message), store.session() as s:
        _grouped(st.CandidateGroup(s, search_id, first_birth=0), "x", **kwargs)


def test_record_evaluations_writes_each_row_once(store, search_id):
    rows = [
        {"architecture": a, "phase": st.EvaluationPhase.PROXY, "attempt": 0, "status": st.EvaluationStatus.SUCCEEDED,
         "metrics": {"accuracy": 0.5}, "duration_seconds": 1.0}
        for a in ("resnet", "mobilenet")
    ]  # fmt: skip
    with store.session() as s:
        candidate = make_candidate(s, search_id, "e")
        st.record_evaluations(s, candidate.id, rows)
        st.record_evaluations(s, candidate.id, rows)  # again: nothing changes
        assert [(e.architecture, e.attempt) for e in st.evaluations_of(s, candidate.id)] == [
            ("mobilenet", 0),
            ("resnet", 0),
        ]
        with pytest.raises(st.InvalidInputError, match="duration_seconds"):
            st.record_evaluations(s, candidate.id, [{**rows[0], "duration_seconds": -1.0}])
