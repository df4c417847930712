"""`RayEvaluator` on the multi-node cluster: results, retries after dead and frozen workers, time limits,
cancellation, errors. Stand-in worker bodies (tests/workers/bodies.py) make workers misbehave on cue."""

from __future__ import annotations

import contextlib
import functools
import os
import signal

import pytest

import evonorm_search as es
from evonorm_search.search import EvaluationTask, evaluate_task
from tests.conftest import collect_outcomes, wait_until

from . import bodies
from .conftest import tiny_config

pytestmark = pytest.mark.xdist_group("ray")


def make_task(candidate_id: int, attempt: int = 0) -> EvaluationTask:
    graph = es.library.get("evonorm_s0").to_dict()
    return EvaluationTask(1, candidate_id, graph, tiny_config().evaluation_spec(), attempt=attempt)


def evaluator(**kwargs):
    from workers import RayEvaluator, WorkerResources

    bodies.register()
    kwargs.setdefault("heartbeat_interval", 0.25)
    kwargs.setdefault("heartbeat_timeout", 3.0)
    return RayEvaluator(WorkerResources(cpus=1), **kwargs)


def wait_started(ev, candidate_id: int, limit: float = 240.0):
    def started():
        ev.poll(timeout=0.2)  # the poll itself waits: no sleep between tries
        return ev.in_flight().get(candidate_id)

    return wait_until(started, limit=limit, interval=0.0, what=f"candidate {candidate_id} starting")


def test_capacity_counts_the_worker_nodes_slots(cluster):
    from workers import RayEvaluator, WorkerResources

    ev = RayEvaluator(WorkerResources(cpus=1))
    try:
        assert ev.capacity() == 2  # the head has no CPUs; each worker node has one
    finally:
        ev.close()
    halves = RayEvaluator(WorkerResources(cpus=0.5))
    try:
        assert halves.capacity() == 4
    finally:
        halves.close()


def test_real_evaluations_come_back_with_their_ray_node(cluster):
    ev = evaluator(body=evaluate_task)
    try:
        for candidate_id in (1, 2):
            ev.submit(make_task(candidate_id))
        outcomes = collect_outcomes(ev, 2)
    finally:
        ev.close()
    assert sorted(o.candidate_id for o in outcomes) == [1, 2]
    node_ids = {n.node_id[:8] for n in cluster.workers}
    assert {o.node.split("/")[1] for o in outcomes} == node_ids  # one CPU per node: the two ran side by side
    for outcome in outcomes:
        assert outcome.status == "evaluated", outcome.error
        assert set(outcome.objectives) == {"accuracy_resnet", "accuracy_mobilenetv2"}
        assert len(outcome.records) == 2
        for record in outcome.records:
            host, _, node = record.node.partition("/")
            assert host and node in node_ids
            assert record.metrics["worker_try"] == 1
            assert record.attempt == 0


def test_a_dead_worker_is_retried_by_ray(cluster, tmp_path):
    ev = evaluator(body=functools.partial(bodies.dies_first, str(tmp_path)))
    try:
        ev.submit(make_task(7, attempt=3))
        [outcome] = collect_outcomes(ev, 1)
    finally:
        ev.close()
    assert outcome.status == "evaluated"
    assert outcome.attempt == 3  # the store's attempt is kept: the controller matches outcomes by it
    # Ray retries the task; if the new worker takes longer to start than the heartbeat timeout, the
    # evaluator resubmits it as well: either way a later try produced the result.
    assert outcome.records[0].metrics["worker_try"] >= 2


def test_a_worker_that_dies_every_time_fails_the_candidate_with_the_reason(cluster):
    ev = evaluator(body=bodies.always_dies, retries=1)
    try:
        ev.submit(make_task(8))
        [outcome] = collect_outcomes(ev, 1)
    finally:
        ev.close()
    assert outcome.status == "failed"
    assert "the worker was lost on all 2 tries" in outcome.error


def test_a_frozen_worker_is_caught_by_heartbeat_and_the_task_runs_elsewhere(cluster, tmp_path):
    ev = evaluator(body=functools.partial(bodies.hangs_first, str(tmp_path)))
    frozen = None
    try:
        ev.submit(make_task(9))
        frozen = wait_started(ev, 9).pid
        os.kill(frozen, signal.SIGSTOP)  # alive to Ray, silent to the board: a frozen machine
        [outcome] = collect_outcomes(ev, 1)
    finally:
        ev.close()
        if frozen is not None:
            _kill(frozen)
    assert outcome.status == "evaluated", outcome.error
    assert outcome.records[0].metrics["worker_try"] == 2  # the frozen try, then the one that answered


def test_a_frozen_worker_with_no_retries_left_fails_with_the_silence_named(cluster, tmp_path):
    ev = evaluator(body=functools.partial(bodies.hangs_first, str(tmp_path)), retries=0)
    frozen = None
    try:
        ev.submit(make_task(10))
        frozen = wait_started(ev, 10).pid
        os.kill(frozen, signal.SIGSTOP)
        [outcome] = collect_outcomes(ev, 1)
    finally:
        ev.close()
        if frozen is not None:
            _kill(frozen)
    assert outcome.status == "failed"
    assert "sent no heartbeat" in outcome.error and "lost on all 1 tries" in outcome.error


def test_an_evaluation_past_its_time_limit_fails(cluster):
    ev = evaluator(body=functools.partial(bodies.sleepy, 120.0), evaluation_timeout=1.0)
    try:
        ev.submit(make_task(11))
        [outcome] = collect_outcomes(ev, 1)
    finally:
        ev.close()
    assert outcome.status == "failed"
    assert "timed out" in outcome.error and "the limit is 1s" in outcome.error


def test_cancelled_evaluations_never_report_and_free_their_worker(cluster):
    ev = evaluator(body=functools.partial(bodies.sleeps_for, {12, 13}, 120.0))
    try:
        ev.submit(make_task(12))
        ev.submit(make_task(13))
        wait_started(ev, 12)
        wait_started(ev, 13)
        ev.cancel([12, 13])
        assert ev.poll(timeout=1.0) == []
        assert ev.in_flight() == {}
        ev.submit(make_task(14))  # the freed CPUs take new work
        [outcome] = collect_outcomes(ev, 1)
    finally:
        ev.close()
    assert outcome.candidate_id == 14 and outcome.status == "evaluated"


def test_a_body_that_raises_fails_the_candidate_with_its_error(cluster):
    ev = evaluator(body=bodies.raises)
    try:
        ev.submit(make_task(15))
        [outcome] = collect_outcomes(ev, 1)
    finally:
        ev.close()
    assert outcome.status == "failed"
    assert outcome.error == "the evaluation raised RuntimeError: the body broke"


def test_misuse_is_refused(cluster):
    ev = evaluator(body=functools.partial(bodies.sleepy, 120.0))
    try:
        ev.submit(make_task(16))
        with pytest.raises(RuntimeError, match="candidate 16 is already in flight"):
            ev.submit(make_task(16))
    finally:
        ev.close()
    with pytest.raises(RuntimeError, match="closed"):
        ev.submit(make_task(17))


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
