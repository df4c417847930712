"""Searches written through the store's own write path, as a controller would leave them: real layers
(library layers and random graphs of the search space), parents, evaluations per architecture,
rejections at every stage, duplicates and failures."""

from __future__ import annotations

import os
import random
import socket
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import evonorm_search as es
from evonorm_search import store as st
from evonorm_search.search import SearchConfig, SearchSpace, random_graph

ARCHITECTURES = ("resnet", "mobilenetv2")
OBJECTIVES = [
    {"name": "accuracy_resnet", "direction": "max"},
    {"name": "accuracy_mobilenetv2", "direction": "max"},
    {"name": "cost", "direction": "min", "reference": 10.0},
]
SEED_LAYERS = ("evonorm_s0", "evonorm_b0", "gn_relu", "bn_relu")
REJECTION_STAGES = [s for s in st.RejectionStage if s is not st.RejectionStage.DUPLICATE]


def tiny_config(name: str = "tiny", budget: int = 3) -> SearchConfig:
    """A search that really runs in a few seconds on one CPU: synthetic data, one small proxy, few steps."""
    return SearchConfig.from_mapping(
        {
            "name": name,
            "budget": budget,
            "population": 2,
            "tournament": 1,
            "architectures": [{"kind": "resnet", "width": 4, "blocks": [1]}],
            "data": {"name": "synthetic", "samples": 64, "synthetic_shape": [1, 4, 4], "synthetic_classes": 2},
            "training": {"steps": 4, "batch_size": 16, "threads": 1},
            "rejection": {"stability": {"steps": 1}, "quality": {"threshold": 0.0, "steps": 2}},
        }
    )


@dataclass
class PopulatedSearch:
    id: int
    evaluated: list[int] = field(default_factory=list)
    rejected: dict[st.RejectionStage, list[int]] = field(default_factory=dict)
    failed: list[int] = field(default_factory=list)
    children: list[int] = field(default_factory=list)  # candidates with a parent


def _objectives(rng: random.Random) -> dict[str, float]:
    # A trade-off between the two accuracies (t), a shared quality (q) and a cost: a front of several points.
    q, t = rng.uniform(0.5, 1.0), rng.random()
    return {
        "accuracy_resnet": round(q * (0.7 + 0.3 * t), 4),
        "accuracy_mobilenetv2": round(q * (1.0 - 0.3 * t), 4),
        "cost": round(rng.uniform(1.0, 8.0), 3),
    }


def _record_evaluations(s, candidate_id: int, values: dict[str, float]) -> None:
    for architecture in ARCHITECTURES:
        for phase, accuracy in (("quality", 0.3), ("proxy", values[f"accuracy_{architecture}"])):
            st.record_evaluation(
                s,
                candidate_id,
                architecture=architecture,
                phase=st.EvaluationPhase(phase),
                attempt=1,
                status=st.EvaluationStatus.SUCCEEDED,
                metrics={"accuracy": accuracy, "loss": 0.5, "steps": 100 if phase == "quality" else 300},
                duration_seconds=1.5,
                node="node-a",
            )


def populate(
    store: st.Store,
    *,
    candidates: int = 30,
    seed: int = 0,
    name: str = "finished",
    final_state: st.SearchState = st.SearchState.COMPLETED,
) -> PopulatedSearch:
    """A search with `candidates` candidates, in `final_state` (completed by default)."""
    rng = random.Random(seed)
    space = SearchSpace()
    with store.session() as s:
        search = st.create_search(
            s,
            name=name,
            config=tiny_config(name, budget=candidates).model_dump(mode="json"),
            objectives=OBJECTIVES,
            seed=seed,
            budget=candidates,
        )
        out = PopulatedSearch(search.id)
        if final_state is not st.SearchState.CREATED:
            st.set_search_state(s, search.id, st.SearchState.RUNNING)
            # A running search has a live controller: this process stands in for it.
            st.claim_controller(
                s, search.id, host=socket.gethostname(), pid=os.getpid(), stale_after=timedelta(seconds=60)
            )
        for birth in range(candidates):
            _add_one(s, out, rng, space, birth)
        if final_state not in (st.SearchState.CREATED, st.SearchState.RUNNING):
            st.set_search_state(s, search.id, final_state, error="worker lost" if final_state == "failed" else None)
    return out


def _add_one(s, out: PopulatedSearch, rng: random.Random, space: SearchSpace, birth: int) -> None:
    if birth < len(SEED_LAYERS):
        graph, parent = es.library.get(SEED_LAYERS[birth]), None
    else:
        graph, parent = random_graph(space, rng), rng.choice(out.evaluated) if out.evaluated else None
    candidate = st.add_candidate(
        s,
        out.id,
        graph=graph,
        dsl=graph.to_text(),
        canonical_hash=es.canonical_hash(graph),
        parent_id=parent,
        mutation=None if parent is None else {"kind": "replace_op"},
    )
    if parent is not None:
        out.children.append(candidate.id)
    roll = birth % 10
    if birth < len(SEED_LAYERS) or roll < 6:
        values = _objectives(rng)
        _record_evaluations(s, candidate.id, values)
        st.complete_candidate(s, candidate.id, values)
        out.evaluated.append(candidate.id)
    elif roll == 9:
        st.mark_status(s, candidate.id, st.CandidateStatus.FAILED, error="RuntimeError: out of memory")
        out.failed.append(candidate.id)
    elif roll == 8 and out.evaluated:
        original = out.evaluated[0]
        st.record_rejection(
            s, candidate.id, stage=st.RejectionStage.DUPLICATE, reason=f"same as #{original}", duplicate_of=original
        )
        out.rejected.setdefault(st.RejectionStage.DUPLICATE, []).append(candidate.id)
    else:
        stage = REJECTION_STAGES[birth % len(REJECTION_STAGES)]
        st.record_rejection(s, candidate.id, stage=stage, reason=f"{stage} check failed", seconds=0.01)
        out.rejected.setdefault(stage, []).append(candidate.id)


# Two target networks, so the validated front has an axis per target architecture to be plotted on.
TWO_TARGET_NETWORKS = [
    {"kind": "resnet", "width": 4, "blocks": [1]},
    {"kind": "mobilenetv2", "width": 4, "blocks": [1], "expansion": 2},
]


def ladder_search_config() -> SearchConfig:
    """tests/search/test_ladder.py's tiny search with a fidelity ladder (2 promotions, baselines gn_relu
    and relu), its target task on two networks: it really runs, in seconds on one CPU."""
    from tests.search.test_baselines import TINY_TARGET
    from tests.search.test_ladder import ladder_config

    return ladder_config(validation={**TINY_TARGET, "architectures": TWO_TARGET_NETWORKS})


def run_ladder_search(store: st.Store) -> int:
    """Run the ladder search to its end in this process; its id. Its best candidates and its baselines
    hold target runs (validation evaluations), as a real search leaves them."""
    from evonorm_search.search import InProcessEvaluator
    from evonorm_search.search.controller import create_search, run_search

    search_id = create_search(store, ladder_search_config())
    evaluator = InProcessEvaluator()
    try:
        final = run_search(store, search_id, evaluator, poll_interval=0.01)
    finally:
        evaluator.close()
    assert final.state == "completed", final
    return search_id


def ladder_search_database(folder: Path) -> tuple[str, int]:
    """A SQLite database in `folder` holding the finished ladder search (baselines, a validated front,
    candidates with parents): its URL and the search's id."""
    url = f"sqlite:///{folder / 'evonorm.db'}"
    with st.open_store(url) as store:
        return url, run_ladder_search(store)
