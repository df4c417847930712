"""The controller end to end on a tiny synthetic search: budget, front read back from the store,
duplicates, stop requests, failures, resume after a crash, and a second controller refused."""

from __future__ import annotations

import os
import socket
from collections import Counter
from datetime import timedelta

import pytest

import evonorm_search as es
from evonorm_search.search import EvaluationOutcome, InProcessEvaluator
from evonorm_search.search.controller import ControllerError, create_search, run_search
from evonorm_search.search.mutation import MUTATIONS, RANDOM_RESTART
from evonorm_search.search.pareto import pareto_mask
from evonorm_search.store import (
    CandidateStatus,
    ConflictError,
    SearchState,
    claim_controller,
    evaluations_of,
    get_search,
    list_candidates,
    pareto_front,
    search_summary,
    set_search_state,
)

from .conftest import tiny_config


def all_candidates(store, search_id):
    with store.session(readonly=True) as s:
        return list_candidates(s, search_id, limit=1000).items


def run(store, config, evaluator=None, **kwargs):
    search_id = create_search(store, config)
    evaluator = evaluator or InProcessEvaluator()
    try:
        return search_id, run_search(store, search_id, evaluator, poll_interval=0.05, **kwargs)
    finally:
        evaluator.close()


def test_a_tiny_search_spends_its_budget_and_its_pareto_front_reads_back(any_store):
    store = any_store
    events = []
    config = tiny_config(budget=16)
    search_id, final = run(store, config, progress=events.append)
    assert final.state == "completed" and final.proposed == 16 and final.in_flight == 0
    assert events[0].last_event == "started" and events[-1].state == "completed"

    candidates = all_candidates(store, search_id)
    assert sorted(c.birth for c in candidates) == list(range(16))
    assert all(c.status in (CandidateStatus.EVALUATED, CandidateStatus.REJECTED) for c in candidates)
    originals = [c for c in candidates if c.status is CandidateStatus.EVALUATED and c.duplicate_of is None]
    assert originals, "a tiny search on a learnable task evaluates something"

    spec = config.objectives_spec()
    names = [o.name for o in spec]
    with store.session(readonly=True) as s:
        front = pareto_front(s, search_id)
        summary = search_summary(s, search_id)
        search = get_search(s, search_id)
        evaluations = {c.id: evaluations_of(s, c.id) for c in originals}
    assert search.state is SearchState.COMPLETED and search.controller_pid is None
    assert summary.total == 16 and summary.evaluated == len(
        [c for c in candidates if c.status is CandidateStatus.EVALUATED]
    )
    # The stored front is exactly the non-dominated set of the evaluated originals.
    expected = {
        c.id
        for c, keep in zip(
            originals, pareto_mask([[c.objectives[n] for n in names] for c in originals], spec), strict=True
        )
        if keep
    }
    assert {c.id for c in front} == expected
    for c in originals:
        assert set(c.objectives) == set(names)
        keys = Counter((e.architecture, e.phase.value) for e in evaluations[c.id])
        assert keys == Counter({(a, p): 1 for a in ("resnet", "mobilenetv2") for p in ("quality", "proxy")})
        proxy = {e.architecture: e.metrics["accuracy"] for e in evaluations[c.id] if e.phase.value == "proxy"}
        assert proxy == {n.removeprefix("accuracy_"): v for n, v in c.objectives.items()}
    for c in candidates:
        assert set(c.check_seconds) <= {"static", "duplicate", "numeric", "stability"}
        assert es.Graph.from_dict(c.graph).to_text() == c.dsl
        assert c.canonical_hash == es.canonical_hash(es.Graph.from_dict(c.graph))


def test_evolution_mutates_members_of_the_population(store):
    search_id, _ = run(store, tiny_config(budget=20, population=3, tournament=2))
    candidates = {c.id: c for c in all_candidates(store, search_id)}
    children = [c for c in candidates.values() if c.parent_id is not None]
    assert children
    for child in children:
        parent = candidates[child.parent_id]
        assert parent.birth < child.birth and parent.status is CandidateStatus.EVALUATED
        assert child.mutation in set(MUTATIONS) | {RANDOM_RESTART}
    assert all(c.mutation == "random" for c in candidates.values() if c.parent_id is None)


def test_random_search_never_has_parents(store):
    search_id, final = run(store, tiny_config(mode="random", budget=12))
    assert final.proposed == 12
    assert all(c.parent_id is None and c.mutation == "random" for c in all_candidates(store, search_id))


def test_duplicates_reuse_the_originals_verdict(store):
    space = {"seed_layers": ["evonorm_s0", "evonorm_s0", "relu", "relu"]}
    config = tiny_config(budget=4, space=space, rejection={"quality": {"threshold": 0.99, "steps": 5}})
    search_id, final = run(store, config)
    by_birth = {c.birth: c for c in all_candidates(store, search_id)}
    assert by_birth[0].status is CandidateStatus.REJECTED and by_birth[0].rejection_stage.value == "quality"
    assert by_birth[1].duplicate_of == by_birth[0].id and by_birth[1].rejection_stage.value == "duplicate"
    assert "it was rejected (quality" in by_birth[1].rejection_reason
    assert by_birth[3].duplicate_of == by_birth[2].id
    assert final.duplicate_hits == 2

    no_quality = {"quality": {"enabled": False}}
    search_id, _ = run(store, tiny_config(budget=2, space={"seed_layers": ["evonorm_s0"] * 2}, rejection=no_quality))
    first, second = sorted(all_candidates(store, search_id), key=lambda c: c.birth)
    assert first.status is CandidateStatus.EVALUATED and first.duplicate_of is None
    assert second.status is CandidateStatus.EVALUATED and second.duplicate_of == first.id
    assert second.objectives == first.objectives
    with store.session(readonly=True) as s:
        assert evaluations_of(s, second.id) == []  # nothing trained twice
        assert [c.id for c in pareto_front(s, search_id)] == [first.id]


def test_a_stop_request_stops_the_search_and_a_second_run_finishes_it(store):
    config = tiny_config(budget=14)
    search_id = create_search(store, config)

    def stop_after_five(progress):
        if progress.proposed >= 5 and progress.state == "running":
            with store.session() as s:
                if get_search(s, search_id).state is SearchState.RUNNING:
                    set_search_state(s, search_id, SearchState.STOPPING)

    evaluator = InProcessEvaluator()
    stopped = run_search(store, search_id, evaluator, progress=stop_after_five, poll_interval=0.05)
    evaluator.close()
    assert stopped.state == "stopped" and 5 <= stopped.proposed < 14
    evaluator = InProcessEvaluator()
    finished = run_search(store, search_id, evaluator, poll_interval=0.05)
    evaluator.close()
    assert finished.state == "completed" and finished.proposed == 14
    assert sorted(c.birth for c in all_candidates(store, search_id)) == list(range(14))


class DiesAfter:
    """An evaluator (by default in-process) whose process 'dies' (an exception nothing handles) after
    `n` outcomes."""

    class Death(BaseException):
        pass

    def __init__(self, n, inner=None):
        self.inner = inner if inner is not None else InProcessEvaluator()
        self.left = n

    def capacity(self):
        return self.inner.capacity()

    def submit(self, task):
        self.inner.submit(task)

    def poll(self, timeout):
        if self.left <= 0:
            raise self.Death()
        found = self.inner.poll(timeout)
        self.left -= len(found)
        return found

    def cancel(self, ids):
        self.inner.cancel(ids)

    def close(self):
        self.inner.close()


def test_a_crashed_controller_resumes_without_losing_or_repeating_evaluations(any_store):
    store = any_store
    config = tiny_config(budget=14, population=3)
    search_id = create_search(store, config)
    dying = DiesAfter(4)
    with pytest.raises(DiesAfter.Death):
        run_search(store, search_id, dying, poll_interval=0.05)
    dying.close()
    before = {c.id: c for c in all_candidates(store, search_id)}
    with store.session(readonly=True) as s:
        done_before = {cid: [(e.id, e.attempt) for e in evaluations_of(s, cid)] for cid in before}
        assert get_search(s, search_id).state is SearchState.RUNNING  # nobody cleaned up
    in_flight = [c for c in before.values() if c.status is CandidateStatus.RUNNING]
    assert len(in_flight) == 1

    evaluator = InProcessEvaluator()
    final = run_search(store, search_id, evaluator, poll_interval=0.05)
    evaluator.close()
    assert final.state == "completed" and final.proposed == 14
    after = {c.id: c for c in all_candidates(store, search_id)}
    assert sorted(c.birth for c in after.values()) == list(range(14))
    with store.session(readonly=True) as s:
        for cid, rows in done_before.items():
            if before[cid].status is not CandidateStatus.RUNNING:
                assert [(e.id, e.attempt) for e in evaluations_of(s, cid)] == rows  # untouched
        rerun = after[in_flight[0].id]
        assert rerun.attempt == 1 and rerun.status in (CandidateStatus.EVALUATED, CandidateStatus.REJECTED)
        assert {e.attempt for e in evaluations_of(s, rerun.id)} <= {1}


def test_another_live_controller_is_refused(store):
    search_id = create_search(store, tiny_config())
    with store.session() as s:
        claim_controller(s, search_id, host="elsewhere", pid=4242, stale_after=timedelta(seconds=60))
    evaluator = InProcessEvaluator()
    with pytest.raises(ConflictError, match="controlled by pid 4242 on elsewhere"):
        run_search(store, search_id, evaluator)
    evaluator.close()


def test_a_dead_controller_on_this_machine_is_taken_over_at_once(store):
    search_id = create_search(store, tiny_config(budget=3))
    dead_pid = 2**22 + 12345  # above the default pid_max: no such process
    with store.session() as s:
        claim_controller(s, search_id, host=socket.gethostname(), pid=dead_pid, stale_after=timedelta(seconds=60))
        set_search_state(s, search_id, SearchState.RUNNING)
    evaluator = InProcessEvaluator()
    assert run_search(store, search_id, evaluator, poll_interval=0.05).state == "completed"
    evaluator.close()
    assert os.getpid() != dead_pid


def test_finished_searches_and_unusable_configs_are_refused(store):
    search_id, _ = run(store, tiny_config(budget=2))
    evaluator = InProcessEvaluator()
    with pytest.raises(ControllerError, match="already completed"):
        run_search(store, search_id, evaluator)
    from evonorm_search.store import create_search as store_create

    with store.session() as s:
        broken = store_create(
            s, name="broken", config={"name": "broken", "budget": -3}, objectives=[{"name": "a", "direction": "max"}]
        ).id
    with pytest.raises(ControllerError, match="budget: Input should be greater than or equal to 1"):
        run_search(store, broken, evaluator)
    evaluator.close()


class Failing:
    """Evaluations that always fail (a worker error), or a poll that raises (a controller bug)."""

    def __init__(self, raise_in_poll=False):
        self.queue, self.raise_in_poll = [], raise_in_poll

    def capacity(self):
        return 1

    def submit(self, task):
        self.queue.append(task)

    def poll(self, timeout):
        if self.raise_in_poll:
            raise RuntimeError("the evaluator lost its mind")
        done, self.queue = self.queue, []
        return [EvaluationOutcome(t.candidate_id, t.attempt, "node", 0.0, error="CUDA out of memory") for t in done]

    def cancel(self, ids):
        pass

    def close(self):
        pass


class FailsSometimes(Failing):
    """Every second evaluation fails, starting with the second; the others succeed with made-up accuracies."""

    def poll(self, timeout):
        done, self.queue = self.queue, []
        out = []
        for t in done:
            self.count = getattr(self, "count", 0) + 1
            if self.count % 2 == 0:
                out.append(EvaluationOutcome(t.candidate_id, t.attempt, "node", 0.0, error="CUDA out of memory"))
            else:
                values = {"accuracy_resnet": 0.5, "accuracy_mobilenetv2": 0.25}
                out.append(EvaluationOutcome(t.candidate_id, t.attempt, "node", 0.0, objectives=values))
        return out


def test_failed_evaluations_are_recorded_and_the_search_goes_on(store):
    search_id, final = run(store, tiny_config(budget=10, population=20, tournament=2), evaluator=FailsSometimes())
    assert final.state == "completed" and final.failed >= 1
    candidates = all_candidates(store, search_id)
    failed = [c for c in candidates if c.status is CandidateStatus.FAILED]
    assert failed and all(c.error == "CUDA out of memory" for c in failed)
    assert any(c.status is CandidateStatus.EVALUATED for c in candidates)


def test_a_search_whose_evaluations_all_fail_stops_instead_of_spending_its_budget(store):
    search_id = create_search(store, tiny_config(budget=50))
    with pytest.raises(ControllerError, match=r"the first 3 evaluations of this run all failed; .*CUDA out of memory"):
        run_search(store, search_id, Failing(), poll_interval=0.01)
    candidates = all_candidates(store, search_id)
    assert len(candidates) < 50
    assert sum(c.status is CandidateStatus.FAILED for c in candidates) == 3
    with store.session(readonly=True) as s:
        search = get_search(s, search_id)
        assert search.state is SearchState.FAILED and "all failed" in search.error


def test_a_controller_error_marks_the_search_failed_and_it_can_be_resumed(store):
    search_id = create_search(store, tiny_config(budget=4))
    with pytest.raises(RuntimeError, match="lost its mind"):
        run_search(store, search_id, Failing(raise_in_poll=True))
    with store.session(readonly=True) as s:
        search = get_search(s, search_id)
        assert search.state is SearchState.FAILED and "lost its mind" in search.error
    evaluator = InProcessEvaluator()
    assert run_search(store, search_id, evaluator, poll_interval=0.05).state == "completed"
    evaluator.close()


def test_the_plan_cost_objective_comes_from_the_compiler(store):
    pytest.importorskip("evonorm_search.compiler")
    from evonorm_search.compiler import plan_cost

    config = tiny_config(
        budget=3, space={"seed_layers": ["evonorm_s0", "relu", "gn_relu"]}, objectives={"cost": "plan"}
    )
    search_id, _ = run(store, config)
    evaluated = [c for c in all_candidates(store, search_id) if c.status is CandidateStatus.EVALUATED]
    assert evaluated
    for c in evaluated:
        assert c.objectives["cost"] == float(plan_cost(es.Graph.from_dict(c.graph)))
    with store.session(readonly=True) as s:
        assert get_search(s, search_id).objectives[-1] == {
            "name": "cost",
            "direction": "min",
            "reference": 64.0,
            "kind": "cost",
        }
        assert search_summary(s, search_id).hypervolume is not None


def test_a_launch_requiring_a_new_search_leaves_a_stopped_one_stopped(store):
    from evonorm_search.search.lifecycle import request_stop
    from evonorm_search.store import SearchState, get_search

    search_id = create_search(store, tiny_config())
    assert request_stop(store, search_id) is SearchState.STOPPED  # stopped before any controller started
    with pytest.raises(ControllerError, match="is stopped; not started"):
        run_search(store, search_id, InProcessEvaluator(), require_states={SearchState.CREATED})
    with store.session(readonly=True) as s:
        search = get_search(s, search_id)
        assert search.state is SearchState.STOPPED and search.next_birth == 0


def test_stop_requests_that_arrive_together_all_see_the_search_stopping(any_store):
    """The API's stop and a launcher re-applying it from the controller's thread can ask at the same moment;
    neither may fail because the other got there first."""
    import os
    import socket
    import threading
    from datetime import timedelta

    from evonorm_search.store import SearchState, claim_controller, set_search_state

    store = any_store
    for attempt in range(4):
        search_id = create_search(store, tiny_config(name=f"stopped-together-{attempt}"))
        with store.session() as s:
            claim_controller(
                s, search_id, host=socket.gethostname(), pid=os.getpid(), stale_after=timedelta(seconds=60)
            )
            set_search_state(s, search_id, SearchState.RUNNING)
        start = threading.Barrier(6)
        outcomes: list[object] = []
        threads = [threading.Thread(target=_stop_at, args=(store, search_id, start, outcomes)) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert outcomes == [SearchState.STOPPING] * 6


def _stop_at(store, search_id: int, start, outcomes: list[object]) -> None:
    """Ask search `search_id` to stop once every thread is at `start`; the state or the error goes to `outcomes`."""
    from evonorm_search.search.lifecycle import request_stop

    start.wait()
    try:
        outcomes.append(request_stop(store, search_id))
    except Exception as e:  # the failure the test looks for, recorded rather than lost in the thread
        outcomes.append(e)
