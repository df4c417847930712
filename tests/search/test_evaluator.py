"""The worker body and the in-process evaluator: outcomes, quality rejection, errors, capacity, cancel."""

from __future__ import annotations

import pickle

import pytest

import evonorm_search as es
from evonorm_search.search import (
    EvaluationTask,
    Evaluator,
    InProcessEvaluator,
    SearchConfig,
    evaluate_task,
)
from evonorm_search.search import evaluator as evaluator_module
from tests.conftest import collect_outcomes, wait_until

TINY = """
name: tiny
seed: 0
groups: 2
architectures:
  - {kind: resnet, width: 4, blocks: [1]}
  - {kind: mobilenetv2, width: 4, blocks: [1], expansion: 2}
data: {name: synthetic, synthetic_shape: [1, 6, 6], synthetic_classes: 3, samples: 240}
training: {steps: 40, batch_size: 32, device: cpu, threads: 1}
rejection: {quality: {threshold: 0.2, steps: 10}}
"""


def spec(**quality):
    config = SearchConfig.from_yaml(TINY)
    if quality:
        config = config.model_copy(
            update={
                "rejection": config.rejection.model_copy(
                    update={"quality": config.rejection.quality.model_copy(update=quality)}
                )
            }
        )
    return config.evaluation_spec()


def task(layer: str, candidate_id: int = 1, **quality) -> EvaluationTask:
    graph = es.library.get(layer) if layer in es.library.names() else es.parse(layer)
    return EvaluationTask(
        search_id=1, candidate_id=candidate_id, graph=graph.to_dict(), spec=spec(**quality), attempt=2
    )


def test_a_good_layer_is_evaluated_on_every_architecture():
    outcome = evaluate_task(task("gn_relu"))
    assert outcome.status == "evaluated" and outcome.error is None and outcome.rejection is None
    assert set(outcome.objectives) == {"accuracy_resnet", "accuracy_mobilenetv2"}
    assert all(0.0 <= v <= 1.0 for v in outcome.objectives.values())
    assert [(r.architecture, r.phase) for r in outcome.records] == [
        ("resnet", "quality"),
        ("mobilenetv2", "quality"),
        ("resnet", "proxy"),
        ("mobilenetv2", "proxy"),
    ]
    assert all(r.status == "succeeded" and r.attempt == 2 and r.node and r.duration >= 0 for r in outcome.records)
    proxy = {r.architecture: r.metrics for r in outcome.records if r.phase == "proxy"}
    assert proxy["resnet"]["steps"] == 40 and outcome.objectives["accuracy_resnet"] == proxy["resnet"]["accuracy"]
    assert outcome.attempt == 2 and outcome.candidate_id == 1


def test_evaluation_is_deterministic():
    a, b = evaluate_task(task("evonorm_s0")), evaluate_task(task("evonorm_s0"))
    assert a.objectives == b.objectives


def test_quality_rejection_stops_at_the_first_architecture_below_the_threshold():
    outcome = evaluate_task(task("gn_relu", threshold=1.0))
    assert outcome.status == "rejected" and outcome.objectives is None
    assert outcome.rejection.stage == "quality"
    assert outcome.rejection.reason.startswith("resnet: validation accuracy")
    assert "below 100% after 10 steps" in outcome.rejection.reason
    assert [(r.architecture, r.phase, r.status) for r in outcome.records] == [("resnet", "quality", "rejected")]


def test_without_the_quality_protocol_only_proxy_records_exist():
    outcome = evaluate_task(task("gn_relu", enabled=False))
    assert outcome.status == "evaluated"
    assert [r.phase for r in outcome.records] == ["proxy", "proxy"]


def test_a_broken_task_is_an_error_outcome_not_an_exception():
    bad = EvaluationTask(search_id=1, candidate_id=5, graph={"nodes": "nope"}, spec=spec())
    outcome = evaluate_task(bad)
    assert outcome.status == "failed" and "GraphError" in outcome.error and "'nodes' must be" in outcome.error
    assert outcome.records == () and outcome.candidate_id == 5


def test_tasks_and_outcomes_pickle():
    t = task("evonorm_s0")
    assert pickle.loads(pickle.dumps(t)) == t
    outcome = evaluate_task(task("relu", threshold=1.0))
    assert pickle.loads(pickle.dumps(outcome)) == outcome


def test_the_in_process_evaluator_runs_tasks_in_order_on_a_background_thread():
    evaluator = InProcessEvaluator(capacity=2)
    assert isinstance(evaluator, Evaluator) and evaluator.capacity() == 2
    try:
        evaluator.submit(task("gn_relu", 1, enabled=False))
        evaluator.submit(task("evonorm_s0", 2, enabled=False))
        with pytest.raises(RuntimeError, match="full"):
            evaluator.submit(task("relu", 3))
        outcomes = collect_outcomes(evaluator, 2)
        assert [o.candidate_id for o in outcomes] == [1, 2]
        assert all(o.status == "evaluated" for o in outcomes)
        assert evaluator.poll(timeout=0.0) == []
        evaluator.submit(task("relu", 3, enabled=False))  # room again
        with pytest.raises(RuntimeError, match="already in flight"):
            evaluator.submit(task("relu", 3))
        assert [o.candidate_id for o in collect_outcomes(evaluator, 1)] == [3]
    finally:
        evaluator.close()


def test_cancelled_tasks_never_report_and_free_their_slot():
    evaluator = InProcessEvaluator(capacity=1)
    try:
        evaluator.submit(task("gn_relu", 7, enabled=False))
        evaluator.cancel([7])
        evaluator.submit(task("evonorm_s0", 8, enabled=False))
        outcomes = collect_outcomes(evaluator, 1)
        # One thread takes tasks in submission order: by the time 8 is done, 7 has been passed over.
        outcomes += evaluator.poll(timeout=0.0)
        assert [o.candidate_id for o in outcomes] == [8]
    finally:
        evaluator.close()
    with pytest.raises(RuntimeError, match="closed"):
        evaluator.submit(task("relu", 9))
    evaluator.close()  # idempotent
    with pytest.raises(ValueError, match="capacity must be >= 1"):
        InProcessEvaluator(capacity=0)


def test_should_stop_abandons_an_evaluation_between_training_steps():
    calls = []

    def stop_after_three_steps():
        calls.append(1)
        return len(calls) > 3

    outcome = evaluate_task(task("gn_relu"), should_stop=stop_after_three_steps)
    assert outcome.status == "failed"
    assert outcome.error == "cancelled: training stopped at step 3 of 10"
    assert outcome.records == ()


def test_close_stops_the_running_evaluation_at_its_next_training_step(monkeypatch):
    """`close` abandons an evaluation that is training (between two steps, of 100,000) and waits for
    its thread to leave torch: the evaluation ends cancelled, and no thread is left running it."""
    steps, outcomes = [], []
    evaluate = evaluator_module.evaluate_task

    def watched(task, *, should_stop):
        def asked() -> bool:
            steps.append(1)  # asked before every training step
            return should_stop()

        outcomes.append(evaluate(task, should_stop=asked))
        return outcomes[-1]

    monkeypatch.setattr(evaluator_module, "evaluate_task", watched)
    evaluator = InProcessEvaluator()
    long = task("gn_relu", 11, enabled=False)
    long = EvaluationTask(
        1,
        11,
        long.graph,
        long.spec.model_copy(update={"training": long.spec.training.model_copy(update={"steps": 100_000})}),
    )
    evaluator.submit(long)
    wait_until(lambda: len(steps) > 1, what="training under way")
    evaluator.close(timeout=600)  # the limit guards against a hang only
    assert not evaluator._thread.is_alive()
    (outcome,) = outcomes
    assert outcome.status == "failed" and outcome.error.startswith("cancelled: training stopped at step")
    assert len(steps) < 100_000


def test_mnist1d_candidates_train_one_dimensional_proxies():
    config = SearchConfig.from_yaml(TINY).model_dump(mode="json")
    config["data"] = {"name": "mnist1d", "samples": 200}
    config["training"]["steps"] = 6
    config["rejection"] = {"quality": {"enabled": False}}
    spec = SearchConfig.from_mapping(config).evaluation_spec()
    graph = es.library.get("evonorm_s0").to_dict()
    outcome = evaluate_task(EvaluationTask(search_id=1, candidate_id=3, graph=graph, spec=spec))
    assert outcome.status == "evaluated", outcome.error
    assert [r.metrics["steps"] for r in outcome.records] == [6, 6]
