"""Stored searches for the command-line tests: one a real tiny run left, one written through the store
with a front of trade-offs (the best value of each objective held by a different layer) and baselines."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

import evonorm_search as es
from evonorm_search import store as st
from evonorm_search.cli import app
from tests.search.conftest import tiny_yaml
from tests.service.factories import populate

# The baselines of the populated search: bn_relu beats every layer there on the mean accuracy.
POPULATED_BASELINES = {
    "bn_relu": {"accuracy_resnet": 0.97, "accuracy_mobilenetv2": 0.96, "cost": 4.0},
    "relu": {"accuracy_resnet": 0.31, "accuracy_mobilenetv2": 0.32, "cost": 1.0},
}


@dataclass(frozen=True)
class StoredSearch:
    path: Path  # the SQLite file
    db: str  # its URL
    output: str  # what `run` printed (empty for a populated search)


@pytest.fixture(scope="session")
def finished(tmp_path_factory) -> StoredSearch:
    """Search 1, completed by a real `run` of a tiny search with the relu and bn_relu baselines."""
    folder = tmp_path_factory.mktemp("finished")
    config = folder / "tiny.yaml"
    config.write_text(tiny_yaml(budget=10, baselines=["relu", "bn_relu"]))
    path = folder / "db" / "evonorm.db"
    db = f"sqlite:///{path}"
    result = CliRunner().invoke(app, ["run", str(config), "--db", db, "--no-live", "--in-process"])
    assert result.exit_code == 0, result.output
    return StoredSearch(path, db, result.output)


# The demo's baselines beside them: a front table of every `vs` column is wider than 80 columns.
WIDE_BASELINES = {
    **POPULATED_BASELINES,
    "gn_relu": {"accuracy_resnet": 0.91, "accuracy_mobilenetv2": 0.84, "cost": 3.0},
    "evonorm_b0": {"accuracy_resnet": 0.93, "accuracy_mobilenetv2": 0.88, "cost": 5.0},
    "evonorm_s0": {"accuracy_resnet": 0.9, "accuracy_mobilenetv2": 0.86, "cost": 4.5},
}


def populated_search(path: Path, baselines: dict[str, dict[str, float]]) -> StoredSearch:
    """Search 1 of 30 candidates written through the store (tests/service/factories.py), with `baselines`."""
    db = f"sqlite:///{path}"
    with st.open_store(db) as store:
        search = populate(store, candidates=30)
        with store.session() as s:
            for index, (label, values) in enumerate(baselines.items()):
                graph = es.library.get(label)
                baseline = st.add_baseline(
                    s,
                    search.id,
                    index=index,
                    label=label,
                    graph=graph.to_dict(),
                    dsl=graph.to_text(),
                    canonical_hash=es.canonical_hash(graph),
                )
                st.complete_candidate(s, baseline.id, values)
    return StoredSearch(path, db, "")


@pytest.fixture(scope="session")
def populated(tmp_path_factory) -> StoredSearch:
    """Search 1 of 30 candidates with the bn_relu and relu baselines."""
    return populated_search(tmp_path_factory.mktemp("populated") / "evonorm.db", POPULATED_BASELINES)


@pytest.fixture(scope="session")
def populated_wide(tmp_path_factory) -> StoredSearch:
    """The same search with five baselines, as many `vs` columns as the demo prints and one more."""
    return populated_search(tmp_path_factory.mktemp("populated-wide") / "evonorm.db", WIDE_BASELINES)


def evaluated_candidates(db: str, search_id: int = 1) -> list[st.Candidate]:
    """The search's evaluated originals (no baselines, no duplicates)."""
    with st.open_store(db) as store, store.session(readonly=True) as s:
        return [
            c
            for c in st.list_candidates(s, search_id, limit=1000).items
            if c.status is st.CandidateStatus.EVALUATED and c.duplicate_of is None
        ]
