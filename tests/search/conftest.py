"""Shared pieces of the search tests: a tiny search on synthetic data and a fresh SQLite store per test."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from evonorm_search.search import InProcessEvaluator, SearchConfig
from evonorm_search.search.controller import SearchProgress, create_search, run_search
from evonorm_search.store import open_store

# Two tiny proxies on a 3-class synthetic task: a candidate trains in a fraction of a second. No
# baselines: the tests of baselines (test_baselines.py) add them where they are the subject.
TINY_SEARCH = """
name: tiny
seed: 1
budget: 16
population: 5
tournament: 3
groups: 2
architectures:
  - {kind: resnet, width: 4, blocks: [1]}
  - {kind: mobilenetv2, width: 4, blocks: [1], expansion: 2}
data: {name: synthetic, synthetic_shape: [1, 6, 6], synthetic_classes: 3, samples: 240}
training: {steps: 20, batch_size: 32, device: cpu, threads: 1}
rejection: {quality: {threshold: 0.3, steps: 5}, stability: {steps: 4}}
baselines: []
"""


def tiny_config(**overrides: Any) -> SearchConfig:
    """The tiny search with top-level keys replaced (nested mappings replace whole sections)."""
    data = yaml.safe_load(TINY_SEARCH)
    data.update(overrides)
    return SearchConfig.from_mapping(data)


def run_to_end(store, config: SearchConfig, evaluator=None) -> tuple[int, SearchProgress]:
    """A new search of `config` in `store`, driven to its end in this process: (its id, the final progress)."""
    search_id = create_search(store, config)
    evaluator = evaluator or InProcessEvaluator()
    try:
        return search_id, run_search(store, search_id, evaluator, poll_interval=0.01)
    finally:
        evaluator.close()


def tiny_yaml(**overrides: Any) -> str:
    return tiny_config(**overrides).to_yaml()


@pytest.fixture
def store(tmp_path):
    s = open_store(f"sqlite:///{tmp_path / 'search.db'}")
    yield s
    s.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_store(request):
    """A fresh store on SQLite and on the local PostgreSQL server (the root conftest's URLs)."""
    s = open_store(request.getfixturevalue(f"{request.param}_url"))
    yield s
    s.close()
