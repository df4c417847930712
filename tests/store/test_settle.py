"""A group of outcomes settled at once (`settle_candidates`): the same rows as the per-candidate writes, in a
number of statements that does not grow with the group, and refused whole when any part is malformed."""

from __future__ import annotations

import itertools
import random
import re
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import event

from evonorm_search import store as st

from .helpers import NAMES, make_candidate, make_search, values

C = st.CandidateStatus
R = st.RejectionStage
EVALUATION = {
    "architecture": "resnet",
    "phase": st.EvaluationPhase.PROXY,
    "attempt": 0,
    "status": st.EvaluationStatus.SUCCEEDED,
    "metrics": {"accuracy": 0.5},
    "duration_seconds": 3.0,
    "node": "node-1",
}


@contextmanager
def statements(store) -> Iterator[Counter[tuple[str, str]]]:
    """Counts (verb, table) of the statements the store's engine sends while the block runs."""
    counted: Counter[tuple[str, str]] = Counter()

    def count(conn, cursor, statement, parameters, context, executemany):
        table = re.search(r"(?:FROM|INTO|UPDATE)\s+(\w+)", statement)
        counted[(statement.split()[0], table.group(1) if table else "")] += 1

    event.listen(store.engine, "before_cursor_execute", count)
    try:
        yield counted
    finally:
        event.remove(store.engine, "before_cursor_execute", count)


def _running(session, search_id, count, prefix="k"):
    made = [make_candidate(session, search_id, f"{prefix}{i}") for i in range(count)]
    for candidate in made:
        st.mark_status(session, candidate.id, C.RUNNING)
    return made


def _outcomes(ids, seed):
    """Evaluated (coarse values, so ties and evictions happen), quality-rejected, rejected by the worker's
    probes (`rejection.probes: workers`, with the probes' seconds) and failed outcomes."""
    rng = random.Random(seed)
    outcomes = []
    for candidate_id in ids:
        rows = [{**EVALUATION, "architecture": a} for a in ("resnet", "mobilenet")]
        probed = {"numeric": rng.choice([0.002, 0.003]), "stability": 0.03}
        kind = rng.choice(["evaluated"] * 4 + ["rejected", "probe", "failed"])
        if kind == "evaluated":
            point = values(rng.choice([0.1, 0.5, 0.9]), rng.choice([0.1, 0.5, 0.9]), rng.choice([1, 2, 3]))
            outcomes.append(st.Settlement(candidate_id, rows, objectives=point, check_seconds=probed))
        elif kind == "rejected":
            outcomes.append(st.Settlement(candidate_id, rows[:1], rejection="accuracy 0.10 below 0.30"))
        elif kind == "probe":
            stage = rng.choice([R.NUMERIC, R.STABILITY])
            reason = f"rejected by the {stage} probe"
            outcomes.append(st.Settlement(candidate_id, rejection=reason, rejection_stage=stage, check_seconds=probed))
        else:
            outcomes.append(st.Settlement(candidate_id, [], error="worker died"))
    return outcomes


def _one_by_one(session, search_id, outcome: st.Settlement):
    st.record_evaluations(session, outcome.candidate_id, outcome.evaluations)
    for stage, seconds in (outcome.check_seconds or {}).items():
        st.record_check(session, outcome.candidate_id, stage, seconds)
    if outcome.error is not None:
        return st.mark_status(session, outcome.candidate_id, C.FAILED, error=outcome.error)
    if outcome.rejection is not None:
        stage = outcome.rejection_stage
        return st.record_rejection(session, outcome.candidate_id, stage=stage, reason=outcome.rejection)
    return st.complete_candidate(session, outcome.candidate_id, outcome.objectives)


def _stored(session, search_id, births):
    """Everything the writes leave, by birth (ids differ between the two searches)."""
    summary = st.search_summary(session, search_id)
    fronts = {
        tuple(names): sorted(births[c.id] for c in st.pareto_front(session, search_id, list(names)))
        for r in range(1, len(NAMES) + 1)
        for names in itertools.combinations(NAMES, r)
    }
    page = [births[c.id] for c in st.list_candidates(session, search_id, sort="cost", limit=1000).items]
    rows = {
        births[i]: [(e.architecture, e.phase, e.attempt, e.status, e.metrics) for e in st.evaluations_of(session, i)]
        for i in births
    }
    verdicts = {
        births[i]: (c.status, c.rejection_stage, c.rejection_reason, c.error, c.objectives, c.check_seconds)
        for i in births
        for c in [st.get_candidate(session, i)]
    }
    counters = (summary.by_status, summary.rejected_by_stage, summary.duplicate_hits)
    return counters, summary.hypervolume, fronts, page, rows, verdicts


def test_a_settled_group_leaves_what_the_per_candidate_writes_leave(store):
    with store.session() as s:
        one_by_one, grouped = make_search(s, name="one-by-one").id, make_search(s, name="grouped").id
        made = {sid: _running(s, sid, 36) for sid in (one_by_one, grouped)}
    births = {sid: {c.id: c.birth for c in made[sid]} for sid in made}
    outcomes = {sid: _outcomes([c.id for c in made[sid]], seed=3) for sid in made}
    with store.session() as s:
        for outcome in outcomes[one_by_one]:
            _one_by_one(s, one_by_one, outcome)
    rng, done = random.Random(4), 0
    while done < len(outcomes[grouped]):  # groups of 1 to 12, each its own transaction
        size = rng.randint(1, 12)
        with store.session() as s:
            settled = st.settle_candidates(s, grouped, outcomes[grouped][done : done + size])
        assert [c.id for c in settled] == [o.candidate_id for o in outcomes[grouped][done : done + size]]
        done += size
    with store.session(readonly=True) as s:
        expected = _stored(s, one_by_one, births[one_by_one])
        got = _stored(s, grouped, births[grouped])
    assert got[0] == expected[0] and got[0][0][C.EVALUATED] > 10  # counters, with evictions from the fronts
    assert got[0][1][R.NUMERIC] + got[0][1][R.STABILITY] > 0  # the workers' probes rejected some
    assert got[1] == pytest.approx(expected[1])
    assert got[2:] == expected[2:]
    with store.session() as s:  # and the counters match a recount from the candidates
        before = st.search_summary(s, grouped)
        st.rebuild_derived(s, grouped)
        after = st.search_summary(s, grouped)
        assert (before.by_status, before.rejected_by_stage) == (after.by_status, after.rejected_by_stage)


@pytest.mark.parametrize("size", [3, 30])
def test_a_group_costs_the_same_statements_whatever_its_size(store, size):
    with store.session() as s:
        search_id = make_search(s).id
        best, *rest = _running(s, search_id, size + 1)
    with store.session() as s:  # the front is held by one candidate that dominates every later one
        st.settle_candidates(s, search_id, [st.Settlement(best.id, [EVALUATION], objectives=values(1, 1, 0.5))])
    group = [st.Settlement(c.id, [EVALUATION], objectives=values(0.5, 0.5, 2)) for c in rest[:-2]]
    group += [st.Settlement(rest[-2].id, [EVALUATION], rejection="below 0.30")]
    group += [st.Settlement(rest[-1].id, [], error="worker died")]
    with statements(store) as counted, store.session() as s:
        st.settle_candidates(s, search_id, group)
    writes = {k: n for k, n in counted.items() if k[0] in ("SELECT", "INSERT", "UPDATE", "DELETE")}
    # The search and the candidates locked once, one insert per table, one counter update, one flush of
    # the candidates (an executemany per set of changed columns), the fronts read once.
    assert writes == {
        ("SELECT", "searches"): 1,
        ("SELECT", "candidates"): 1,
        ("SELECT", "pareto_members"): 1,
        ("INSERT", "evaluations"): 1,
        ("INSERT", "candidate_objectives"): 1,
        ("UPDATE", "search_counters"): 1,
        ("UPDATE", "candidates"): 3,  # evaluated, rejected and failed rows change different columns
    }
    with store.session(readonly=True) as s:
        summary = st.search_summary(s, search_id)
        assert summary.by_status[C.EVALUATED] == size - 1 and summary.by_status[C.FAILED] == 1
        assert [c.id for c in st.pareto_front(s, search_id)] == [best.id]


def test_the_fronts_are_read_once_per_transaction_though_every_completion_flushes(store):
    with store.session() as s:
        search_id = make_search(s).id
        made = _running(s, search_id, 8)
    with statements(store) as counted, store.session() as s:
        for i, candidate in enumerate(made):  # mutually non-dominated: each joins the fronts
            st.complete_candidate(s, candidate.id, values(i / 10, 1 - i / 10, 2))
    assert counted[("SELECT", "pareto_members")] == 1
    with store.session(readonly=True) as s:
        assert {c.id for c in st.pareto_front(s, search_id, ["accuracy_resnet", "accuracy_mobilenet"])} == {
            c.id for c in made
        }


def test_a_rolled_back_savepoint_makes_admission_read_the_fronts_again(store):
    with store.session() as s:
        search_id = make_search(s).id
        first, second, third = _running(s, search_id, 3)
    with store.session() as s:
        st.complete_candidate(s, first.id, values(0.5, 0.5, 2))
        savepoint = s.begin_nested()
        st.complete_candidate(s, second.id, values(0.9, 0.9, 1))  # evicts the first, then is undone
        savepoint.rollback()
        st.complete_candidate(s, third.id, values(0.6, 0.4, 2))  # beside the first; the undone one dominated it
    with store.session(readonly=True) as s:
        assert {c.id for c in st.pareto_front(s, search_id)} == {first.id, third.id}
        assert st.get_candidate(s, second.id).status is C.RUNNING


def test_a_terminal_candidate_keeps_its_first_verdict(store):
    with store.session() as s:
        search_id = make_search(s).id
        (candidate,) = _running(s, search_id, 1)
    with store.session() as s:
        st.settle_candidates(s, search_id, [st.Settlement(candidate.id, [EVALUATION], objectives=values(1, 1, 1))])
    with store.session() as s:  # a duplicated outcome: its rows are kept once, the verdict stays
        again = st.settle_candidates(s, search_id, [st.Settlement(candidate.id, [EVALUATION], rejection="late")])
    assert (again[0].status, again[0].rejection_reason) == (C.EVALUATED, None)
    with pytest.raises(st.ConflictError, match="is evaluated; it cannot become failed"), store.session() as s:
        st.settle_candidates(s, search_id, [st.Settlement(candidate.id, [], error="died after all")])
    with store.session(readonly=True) as s:
        assert len(st.evaluations_of(s, candidate.id)) == 1
        assert st.search_summary(s, search_id).by_status[C.EVALUATED] == 1


@pytest.mark.parametrize(
    ("bad", "error", "message"),
    [
        ({"objectives": values(1, 1, 1), "rejection": "low"}, st.InvalidInputError, "one verdict .* got 2"),
        ({}, st.InvalidInputError, "one verdict .* got 0"),
        ({"rejection": "  "}, st.InvalidInputError, "a rejection needs a reason"),
        ({"error": ""}, st.InvalidInputError, "a failure needs an error"),
        ({"objectives": {"accuracy_resnet": 1.0}}, st.InvalidInputError, "missing for"),
        ({"objectives": values(1, 1, 1), "evaluations": [{**EVALUATION, "attempt": -1}]}, ValueError, "attempt"),
        ({"candidate_id": 10_000, "error": "died"}, st.NotFoundError, "no candidate with id 10000"),
        ({"candidate_id": "other", "error": "died"}, st.InvalidInputError, "belongs to search"),
        ({"candidate_id": "repeat", "error": "died"}, st.InvalidInputError, "each candidate once"),
        ({"rejection": "copy", "rejection_stage": R.DUPLICATE}, st.InvalidInputError, "stage a worker runs"),
        ({"rejection": "odd", "rejection_stage": "sideways"}, st.InvalidInputError, "stage a worker runs"),
        ({"rejection": "odd", "rejection_stage": ["numeric"]}, st.InvalidInputError, "stage a worker runs"),
        ({"error": "died", "check_seconds": {"numeric": -1.0}}, st.InvalidInputError, "non-negative number"),
        ({"error": "died", "check_seconds": {"numeric": float("nan")}}, st.InvalidInputError, "non-negative"),
        ({"error": "died", "check_seconds": {"numerik": 0.1}}, st.InvalidInputError, "no check stage named"),
    ],
)
def test_a_malformed_group_is_refused_whole(store, bad, error, message):
    with store.session() as s:
        search_id = make_search(s).id
        other = make_search(s, name="other").id
        good, target = _running(s, search_id, 2)
        (foreign,) = _running(s, other, 1, prefix="f")
    ids = {"other": foreign.id, "repeat": good.id}
    fields = {"evaluations": [EVALUATION], **bad}
    fields["candidate_id"] = ids.get(fields.get("candidate_id"), fields.get("candidate_id", target.id))
    group = [st.Settlement(good.id, [EVALUATION], objectives=values(1, 1, 1)), st.Settlement(**fields)]
    with pytest.raises(error, match=message), store.session() as s:
        st.settle_candidates(s, search_id, group)
    with store.session(readonly=True) as s:  # nothing of the group was kept, the good outcome included
        for candidate in (good, target, foreign):
            assert st.get_candidate(s, candidate.id).status is C.RUNNING
            assert st.evaluations_of(s, candidate.id) == []
        assert st.search_summary(s, search_id).by_status[C.RUNNING] == 2
        assert st.pareto_front(s, search_id) == []
