"""The simulated cluster: deterministic given a seed, delays as configured (on its own clock, never
the wall's), failures and lost workers reaching the real controller, which records and resumes them."""

from __future__ import annotations

import json
import math
import random
import re
import statistics
from collections import Counter

import pytest

import evonorm_search as es
from evonorm_search.search import (
    EvaluationTask,
    Evaluator,
    LognormalDelay,
    ManualClock,
    SimulatedCluster,
)
from evonorm_search.search.controller import create_search, run_search
from evonorm_search.search.simulated import SimulatedProbes, layer_scores
from evonorm_search.search.space import random_graph
from evonorm_search.store import CandidateStatus, evaluations_of, list_candidates

from .conftest import tiny_config
from .test_controller import DiesAfter

# The tiny search's rejection section with the probes on the workers.
ON_WORKERS = {"quality": {"threshold": 0.3, "steps": 5}, "stability": {"steps": 4}, "probes": "workers"}
LAYERS = ["evonorm_s0", "bn_relu", "gn_relu", "layernorm", "rmsnorm", "evonorm_b0"]


def tasks(count: int, attempt: int = 1) -> list[EvaluationTask]:
    spec = tiny_config().evaluation_spec()
    graphs = [es.library.get(LAYERS[i % len(LAYERS)]).to_dict() for i in range(count)]
    return [EvaluationTask(1, i + 1, graph, spec, attempt=attempt) for i, graph in enumerate(graphs)]


def drain(cluster: SimulatedCluster, clock: ManualClock) -> list[tuple[float, object]]:
    """Every outcome with the clock time it arrived at."""
    arrived = []
    while cluster.in_flight():
        arrived += [(clock.now(), o) for o in cluster.poll(timeout=1000.0)]
    return arrived


def cluster(workers: int = 64, **kwargs) -> tuple[SimulatedCluster, ManualClock]:
    clock = ManualClock()
    return SimulatedCluster(workers, clock=clock, **kwargs), clock


def all_candidates(store, search_id):
    with store.session(readonly=True) as s:
        return list_candidates(s, search_id, limit=1000).items


# -- the evaluator on its own ----------------------------------------------------------------------


def test_it_is_an_evaluator_with_one_slot_per_worker():
    simulated, _ = cluster(workers=7)
    assert isinstance(simulated, Evaluator) and simulated.capacity() == 7


def test_the_same_seed_gives_the_same_outcomes_and_another_seed_does_not():
    def run(seed):
        simulated, clock = cluster(failure_rate=0.2, loss_rate=0.2, seed=seed, time_factor=0.01)
        for task in tasks(40):
            simulated.submit(task)
        return drain(simulated, clock), simulated.stats()

    first, first_stats = run(seed=3)
    again, again_stats = run(seed=3)
    other, _ = run(seed=4)
    assert first == again and first_stats == again_stats
    assert [o for _, o in first] != [o for _, o in other]
    outcomes = [o for _, o in first]
    assert any(o.error for o in outcomes) and any(o.objectives for o in outcomes)


def test_scores_are_a_function_of_the_layer_and_normalizers_score_higher():
    spec = tiny_config().evaluation_spec()
    evonorm = es.library.get("evonorm_s0").to_dict()
    # The score hashes the graph, which numbers its nodes canonically: the same structure however written.
    one_line = es.parse("x * sigmoid(v1 * x) / std(x, group)").to_dict()
    with_names = es.parse("gate = sigmoid(v1 * x)\nscale = std(x, group)\ny = x * gate / scale").to_dict()
    assert layer_scores(one_line, spec, 0) == layer_scores(with_names, spec, 0) == layer_scores(evonorm, spec, 0)
    assert layer_scores(evonorm, spec, 0) != layer_scores(evonorm, spec, 1)
    assert set(layer_scores(evonorm, spec, 0)) == {o.name for o in tiny_config().objectives_spec()}
    normalizers = [layer_scores(es.library.get(n).to_dict(), spec, 0) for n in ("bn_relu", "gn_relu", "layernorm")]
    plain = [layer_scores(es.parse(text).to_dict(), spec, 0) for text in ("relu(x)", "x * v1", "tanh(x) + x")]
    assert min(statistics.mean(s.values()) for s in normalizers) > max(statistics.mean(s.values()) for s in plain)


def test_delays_follow_the_configured_lognormal_on_the_evaluators_clock():
    simulated, clock = cluster(workers=3000, delay=LognormalDelay(median=90.0, sigma=0.5), time_factor=0.01)
    for task in tasks(3000):
        simulated.submit(task)
    arrived = drain(simulated, clock)
    delays = [when for when, _ in arrived]  # every task was submitted at clock time 0
    assert len(delays) == 3000
    assert statistics.median(delays) == pytest.approx(0.9, rel=0.05)
    assert statistics.stdev(math.log(d) for d in delays) == pytest.approx(0.5, rel=0.06)
    assert all(o.duration == pytest.approx(when / 0.01, rel=1e-3) for when, o in arrived)  # simulated seconds


def test_a_poll_with_nothing_due_waits_its_timeout_on_the_clock_and_returns_nothing():
    simulated, clock = cluster(workers=1, delay=LognormalDelay(median=10.0, sigma=0.0))
    simulated.submit(tasks(1)[0])
    assert simulated.poll(timeout=4.0) == [] and clock.now() == 4.0
    (outcome,) = simulated.poll(timeout=100.0)
    assert clock.now() == 10.0 and outcome.candidate_id == 1


def test_idle_time_is_the_wait_between_a_slot_freeing_and_its_next_task():
    simulated, clock = cluster(workers=1, delay=LognormalDelay(median=10.0, sigma=0.0))
    first, second = tasks(2)
    simulated.submit(first)
    simulated.poll(timeout=100.0)
    clock.advance(5.0)  # the controller takes 5 s to hand the free worker its next task
    simulated.submit(second)
    stats = simulated.stats()
    assert (stats.idle_seconds, stats.busy_seconds, stats.refills) == (5.0, 10.0, 1)
    assert stats.idle_share == pytest.approx(5 / 15)


def test_cancelled_tasks_free_their_slots_and_never_report():
    simulated, clock = cluster(workers=2)
    one, two, three = tasks(3)
    simulated.submit(one)
    with pytest.raises(RuntimeError, match="already in flight"):
        simulated.submit(one)
    simulated.submit(two)
    with pytest.raises(RuntimeError, match="full"):
        simulated.submit(three)
    simulated.cancel([one.candidate_id])
    simulated.submit(three)
    assert sorted(o.candidate_id for _, o in drain(simulated, clock)) == [2, 3]
    assert simulated.stats().cancelled == 1


def test_a_lost_worker_is_retried_until_its_tries_run_out():
    simulated, clock = cluster(loss_rate=1.0, retries=2)
    for task in tasks(5):
        simulated.submit(task)
    outcomes = [o for _, o in drain(simulated, clock)]
    assert all(o.error and o.error.startswith("the worker was lost on all 3 tries") for o in outcomes)
    assert simulated.stats().worker_losses == 15 and simulated.stats().lost == 5

    sometimes, clock = cluster(loss_rate=0.5, retries=3, seed=1)
    for task in tasks(60):
        sometimes.submit(task)
    outcomes = [o for _, o in drain(sometimes, clock)]
    stats = sometimes.stats()
    assert stats.worker_losses > stats.lost  # some losses were retried and then finished
    assert sum(o.error is None for o in outcomes) == 60 - stats.lost


def test_bad_settings_are_refused_with_every_problem_named():
    with pytest.raises(ValueError, match=r"workers must be .*time_factor must be .*failure_rate must be"):
        SimulatedCluster(0, time_factor=0.0, failure_rate=1.5)


def test_the_workers_probes_are_played_by_layer_with_their_shares_and_seconds():
    workers = tiny_config(rejection=ON_WORKERS)
    spec = workers.evaluation_spec()
    graphs = [random_graph(workers.build_space(), random.Random(i)).to_dict() for i in range(400)]
    probes = SimulatedProbes(numeric_share=0.2, stability_share=0.25, numeric_seconds=0.5, stability_seconds=4.0)
    simulated, clock = cluster(workers=400, probes=probes, seed=3)
    for i, graph in enumerate(graphs):
        simulated.submit(EvaluationTask(1, i + 1, graph, spec))
    arrived = drain(simulated, clock)
    outcomes = {o.candidate_id: o for _, o in arrived}
    stages = Counter(o.rejection.stage for o in outcomes.values() if o.rejection and o.rejection.stage != "quality")
    assert 0.12 < stages["numeric"] / 400 < 0.28  # 20% of the layers
    assert 0.12 < stages["stability"] / (400 - stages["numeric"]) < 0.38  # 25% of those the numeric one passed
    assert simulated.stats().probe_rejected == stages.total() and simulated.stats().collected == 400
    for at, outcome in arrived:
        if outcome.rejection is not None and outcome.rejection.stage == "numeric":
            assert (at, outcome.records, outcome.check_seconds) == (0.5, (), {"numeric": 0.5})
        elif outcome.rejection is not None and outcome.rejection.stage == "stability":
            assert (at, outcome.records, outcome.check_seconds) == (4.5, (), {"numeric": 0.5, "stability": 4.0})
        else:  # passed the probes: their seconds, then the evaluation
            assert outcome.check_seconds == {"numeric": 0.5, "stability": 4.0} and at > 4.5 and outcome.records
    again, clock = cluster(workers=400, probes=probes, seed=3)  # a layer's verdict is its own, not its id's
    for i, graph in enumerate(reversed(graphs)):
        again.submit(EvaluationTask(1, i + 1, graph, spec))
    replayed = {json.dumps(graphs[::-1][o.candidate_id - 1]): o.rejection for _, o in drain(again, clock)}
    assert all(replayed[json.dumps(graphs[i - 1])] == o.rejection for i, o in outcomes.items())


def test_a_task_that_asks_for_probes_needs_a_cluster_that_plays_them():
    spec = tiny_config(rejection=ON_WORKERS).evaluation_spec()
    simulated, _ = cluster(workers=2)
    with pytest.raises(ValueError, match=r"asks the workers to run the probes.*SimulatedProbes"):
        simulated.submit(EvaluationTask(1, 1, es.library.get("gn_relu").to_dict(), spec))
    assert simulated.in_flight() == 0
    with pytest.raises(ValueError, match="stability_share must be within"):
        SimulatedProbes(stability_share=1.5)


# -- with the real controller ----------------------------------------------------------------------


def test_a_controller_run_on_the_simulated_cluster_spends_its_budget(any_store):
    store = any_store
    config = tiny_config(budget=30, population=5)
    search_id = create_search(store, config)
    simulated, _ = cluster(workers=8, time_factor=0.01, seed=2)
    final = run_search(store, search_id, simulated, poll_interval=0.5)
    assert final.state == "completed" and final.proposed == 30 and final.in_flight == 0
    candidates = all_candidates(store, search_id)
    assert sorted(c.birth for c in candidates) == list(range(30))
    trained = [c for c in candidates if c.status is CandidateStatus.EVALUATED and c.duplicate_of is None]
    assert trained and simulated.stats().collected == simulated.stats().submitted
    spec = config.evaluation_spec()
    assert all(c.objectives == layer_scores(c.graph, spec, seed=2) for c in trained)
    assert any(c.parent_id is not None for c in candidates)  # the population filled and selection ran


def test_the_workers_probe_rejections_are_stored_at_their_stage(store):
    config = tiny_config(budget=40, population=5, rejection=ON_WORKERS)
    search_id = create_search(store, config)
    simulated, _ = cluster(workers=8, time_factor=0.01, probes=SimulatedProbes(0.2, 0.2), seed=4)
    final = run_search(store, search_id, simulated, poll_interval=0.5)
    assert final.state == "completed" and final.proposed == 40
    probed = [c for c in all_candidates(store, search_id) if c.rejection_stage in ("numeric", "stability")]
    assert probed and len(probed) == simulated.stats().probe_rejected
    assert all(c.rejection_reason.endswith("probe (simulated)") for c in probed)
    assert all(c.rejection_stage.value in c.check_seconds for c in probed)


def test_failures_and_lost_workers_reach_the_controller_and_are_recorded(store):
    search_id = create_search(store, tiny_config(budget=40, population=5))
    simulated, _ = cluster(workers=6, time_factor=0.01, failure_rate=0.25, loss_rate=0.3, retries=1, seed=5)
    final = run_search(store, search_id, simulated, poll_interval=0.5)
    assert final.state == "completed" and final.proposed == 40
    stats = simulated.stats()
    failed = [c for c in all_candidates(store, search_id) if c.status is CandidateStatus.FAILED]
    assert stats.failed and stats.lost and len(failed) == stats.failed + stats.lost == final.failed
    errors = {re.sub(r" on sim-worker-\d+", "", c.error) for c in failed}
    assert errors == {
        "simulated failure: the evaluation raised",
        "the worker was lost on all 2 tries; last: simulated worker loss",
    }


def test_a_crash_under_simulated_load_resumes_with_the_next_attempt_and_nothing_repeated(store):
    search_id = create_search(store, tiny_config(budget=30, population=5))
    dying = DiesAfter(8, cluster(workers=6, time_factor=0.01, seed=7)[0])
    with pytest.raises(DiesAfter.Death):
        run_search(store, search_id, dying, poll_interval=0.5)
    before = {c.id: c for c in all_candidates(store, search_id)}
    interrupted = [c.id for c in before.values() if c.status is CandidateStatus.RUNNING]
    with store.session(readonly=True) as s:
        finished_rows = {c: [e.id for e in evaluations_of(s, c)] for c in before if c not in interrupted}
    assert interrupted

    final = run_search(store, search_id, cluster(workers=6, time_factor=0.01, seed=7)[0], poll_interval=0.5)
    assert final.state == "completed" and final.proposed == 30
    after = {c.id: c for c in all_candidates(store, search_id)}
    assert all(after[c].attempt == 1 and after[c].status is not CandidateStatus.RUNNING for c in interrupted)
    with store.session(readonly=True) as s:
        assert all([e.id for e in evaluations_of(s, c)] == rows for c, rows in finished_rows.items())
        assert all({e.attempt for e in evaluations_of(s, c)} <= {1} for c in interrupted)
