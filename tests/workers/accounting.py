"""The bookkeeping a finished search must satisfy, whatever happened to its workers and controllers."""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import select

from evonorm_search.store import (
    Candidate,
    CandidateStatus,
    Evaluation,
    EvaluationPhase,
    SearchState,
    get_search,
)


def assert_fully_accounted(store: Any, search_id: int, *, budget: int, architectures: list[str]) -> dict[str, Any]:
    """Every proposed candidate ended evaluated or rejected with a reason, exactly `budget` of them; each
    evaluated original has one proxy evaluation per architecture; no evaluation is repeated. Returns
    facts for further checks (candidates, evaluations)."""
    with store.session(readonly=True) as s:
        search = get_search(s, search_id)
        candidates = list(s.scalars(select(Candidate).where(Candidate.search_id == search_id)))
        evaluations = list(s.scalars(select(Evaluation).join(Candidate).where(Candidate.search_id == search_id)))
    assert search.state is SearchState.COMPLETED, (search.state, search.error)
    assert sorted(c.birth for c in candidates) == list(range(budget))
    unfinished = [(c.birth, c.status, c.error) for c in candidates if c.status not in _ENDED]
    assert not unfinished, f"candidates that did not end evaluated or rejected: {unfinished}"
    for c in candidates:
        if c.status is CandidateStatus.REJECTED:
            assert c.rejection_stage is not None and c.rejection_reason, c.birth

    keys = Counter((e.candidate_id, e.architecture, e.phase, e.attempt) for e in evaluations)
    assert all(n == 1 for n in keys.values()), f"repeated evaluations: {[k for k, n in keys.items() if n > 1]}"
    proxy = Counter((e.candidate_id, e.architecture) for e in evaluations if e.phase is EvaluationPhase.PROXY)
    assert all(n == 1 for n in proxy.values()), f"a candidate trained twice: {[k for k, n in proxy.items() if n > 1]}"

    originals = [c for c in candidates if c.status is CandidateStatus.EVALUATED and c.duplicate_of is None]
    assert sum(proxy.values()) == len(originals) * len(architectures)
    for c in originals:
        assert {arch for (cid, arch) in proxy if cid == c.id} == set(architectures), c.birth
    return {"candidates": candidates, "evaluations": evaluations, "originals": originals}


_ENDED = (CandidateStatus.EVALUATED, CandidateStatus.REJECTED)
