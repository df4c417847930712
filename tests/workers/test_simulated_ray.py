"""The simulated cluster through Ray (`workers/simulated_ray.py`): the real controller drives evaluations
that are async actor calls on the two-node test cluster, actors are killed with calls in flight, and
every candidate still gets exactly one outcome."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import evonorm_search as es
from evonorm_search import store as st
from evonorm_search.search import SearchConfig
from evonorm_search.search.controller import create_search, run_search
from evonorm_search.search.evaluator import EvaluationTask
from evonorm_search.search.simulated import LognormalDelay, SimulatedProbes

pytestmark = pytest.mark.xdist_group("ray")

PAPER = Path(__file__).resolve().parents[2] / "examples" / "paper.yaml"


def paper_search(budget: int) -> SearchConfig:
    data = SearchConfig.from_yaml(PAPER).model_dump(mode="json")
    return SearchConfig.from_mapping(data | {"budget": budget, "population": 20, "tournament": 4})


def test_a_search_through_ray_actors_loses_nothing_when_actors_die(cluster, tmp_path):
    from workers.simulated_ray import RaySimulatedCluster

    with st.open_store(f"sqlite:///{tmp_path / 'ray.db'}") as store:
        search_id = create_search(store, paper_search(budget=60))
        # 2 actors of 10 slots; evaluations of about 0.3 s; an actor killed at the 15th and the 30th outcome.
        delay = LognormalDelay(median=90.0, sigma=0.3)
        # paper.yaml runs the probes on the workers: their rejections come back through Ray too.
        probes = SimulatedProbes(numeric_share=0.15, stability_share=0.15)
        with RaySimulatedCluster(
            2, 10, delay=delay, time_factor=1 / 300, probes=probes, seed=1, kill_at=(15, 30)
        ) as ray_cluster:
            final = run_search(store, search_id, ray_cluster, poll_interval=0.02)
            stats = ray_cluster.stats
        with store.session(readonly=True) as s:
            summary = st.search_summary(s, search_id)
    assert final.state == "completed" and final.proposed == 60
    assert summary.rejected_by_stage[st.RejectionStage.NUMERIC] + summary.rejected_by_stage["stability"] > 0
    assert stats.kills == 2 and stats.rerun >= 1  # calls in flight on a killed actor came back, run again
    assert stats.errors == 0 and summary.by_status[st.CandidateStatus.FAILED] == 0
    assert summary.by_status[st.CandidateStatus.RUNNING] == summary.by_status[st.CandidateStatus.QUEUED] == 0
    assert stats.submitted == stats.collected + stats.cancelled  # one outcome per submission, or a cancel
    assert stats.peak_in_flight > 10  # both actors took calls
    assert len(stats.overheads) + len(stats.rerun_overheads) == stats.collected == stats.submitted
    assert min(stats.overheads) > -0.05  # an outcome never arrives before its drawn duration has passed


def test_the_ray_evaluator_refuses_what_it_cannot_take(cluster):
    from workers.simulated_ray import RaySimulatedCluster

    config = paper_search(budget=4)
    task = EvaluationTask(1, 7, es.library.get("evonorm_b0").to_dict(), config.evaluation_spec())
    with pytest.raises(ValueError, match="nodes and slots must be at least 1"):
        RaySimulatedCluster(0, 1)
    evaluator = RaySimulatedCluster(1, 1, time_factor=1 / 1000)
    try:
        with pytest.raises(ValueError, match="SimulatedProbes"):  # paper.yaml's probes run on the workers
            evaluator.submit(task)
        assert evaluator.capacity() == 1 and evaluator.stats.submitted == 0
        task = dataclasses.replace(task, spec=task.spec.model_copy(update={"probes": None}))
        evaluator.submit(task)
        with pytest.raises(RuntimeError, match="full"):
            evaluator.submit(task)
        evaluator.cancel([7])
        assert evaluator.stats.cancelled == 1 and evaluator.capacity() == 1
    finally:
        evaluator.close()
    with pytest.raises(RuntimeError, match="closed"):
        evaluator.submit(task)
