"""Small builders the storage tests share."""

from __future__ import annotations

from sqlalchemy.orm import Session

from evonorm_search import store as st

OBJECTIVES = [
    {"name": "accuracy_resnet", "direction": "max"},
    {"name": "accuracy_mobilenet", "direction": "max"},
    {"name": "cost", "direction": "min", "reference": 10.0},
]
NAMES = [o["name"] for o in OBJECTIVES]

GRAPH = {"version": 1, "nodes": [{"op": "x"}, {"op": "relu", "args": [0]}], "output": 1}


def make_search(session: Session, objectives=OBJECTIVES, **kwargs) -> st.Search:
    kwargs.setdefault("name", "test-search")
    kwargs.setdefault("config", {"population": 8, "tournament": 2})
    return st.create_search(session, objectives=objectives, **kwargs)


def make_candidate(session: Session, search_id: int, key: str | int = 0, **kwargs) -> st.Candidate:
    kwargs.setdefault("graph", GRAPH)
    kwargs.setdefault("dsl", "relu(x)")
    kwargs.setdefault("canonical_hash", f"hash-{key}")
    kwargs.setdefault("fingerprint", f"fingerprint-{key}")
    return st.add_candidate(session, search_id, **kwargs)


def evaluated(session: Session, search_id: int, values: dict[str, float], key: str | int = 0, **kwargs) -> st.Candidate:
    candidate = make_candidate(session, search_id, key, **kwargs)
    return st.complete_candidate(session, candidate.id, values)


def values(resnet: float, mobilenet: float, cost: float) -> dict[str, float]:
    return {"accuracy_resnet": resnet, "accuracy_mobilenet": mobilenet, "cost": cost}
