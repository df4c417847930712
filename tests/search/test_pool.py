"""The process-pool evaluator: scores layers in worker processes, reports a task that cannot run as a
failed outcome instead of losing it, and drops what was cancelled."""

from __future__ import annotations

import pytest

from evonorm_search import library
from evonorm_search.search.evaluator import EvaluationTask
from evonorm_search.search.pool import ProcessPoolEvaluator
from evonorm_search.search.scoring import LayerToScore, score_layers
from tests.conftest import collect_outcomes

from .conftest import tiny_config


@pytest.fixture
def pool():
    evaluator = ProcessPoolEvaluator(1)
    yield evaluator
    evaluator.close()


def test_the_pool_scores_layers(pool):
    spec = tiny_config(training={"steps": 5, "batch_size": 16, "device": "cpu", "threads": 1}).proxy_spec()
    (score,) = score_layers([LayerToScore(library.get("gn_relu"), "gn_relu")], [spec], pool, poll_interval=0.05)
    assert score.errors == [] and 0.0 <= score.mean <= 1.0


def test_a_task_that_cannot_reach_its_process_comes_back_failed(pool):
    spec = tiny_config().proxy_spec()
    pool.submit(EvaluationTask(0, 7, {"unpicklable": lambda: None}, spec))
    outcomes = collect_outcomes(pool, 1)
    assert outcomes[0].candidate_id == 7 and outcomes[0].error is not None


def test_a_cancelled_task_never_comes_back(pool):
    spec = tiny_config().proxy_spec()
    graph = library.get("gn_relu").to_dict()
    pool.submit(EvaluationTask(0, 1, graph, spec))
    pool.submit(EvaluationTask(0, 2, graph, spec))  # waits behind the first: one worker
    pool.cancel([2])
    outcomes = collect_outcomes(pool, 1)
    assert [o.candidate_id for o in outcomes] == [1]
    assert pool.poll(0.2) == []


def test_a_candidate_in_flight_cannot_be_submitted_twice(pool):
    task = EvaluationTask(0, 1, library.get("gn_relu").to_dict(), tiny_config().proxy_spec())
    pool.submit(task)
    with pytest.raises(RuntimeError, match="already in flight"):
        pool.submit(task)


def test_as_a_context_manager_the_pool_closes_on_leaving_the_block_errors_included():
    spec = tiny_config(training={"steps": 5, "batch_size": 16, "device": "cpu", "threads": 1}).proxy_spec()
    layer = LayerToScore(library.get("gn_relu"), "gn_relu")
    with ProcessPoolEvaluator(1) as evaluator:
        (score,) = score_layers([layer], [spec], evaluator, poll_interval=0.05)
    assert score.errors == []
    with pytest.raises(RuntimeError, match="shutdown"):  # closed: it takes no more work
        evaluator.submit(EvaluationTask(0, 1, layer.graph.to_dict(), spec))
    with pytest.raises(KeyError), ProcessPoolEvaluator(1) as failing:
        raise KeyError("a caller's error")
    with pytest.raises(RuntimeError, match="shutdown"):
        failing.submit(EvaluationTask(0, 1, layer.graph.to_dict(), spec))
