"""A controller process killed with SIGKILL inside a group commit (mid-transaction, or after a group
committed and before its candidates reached a worker) resumes in a new process with nothing lost or
repeated: the kernel ends the process, the database rolls the open transaction back, and no Python
clean-up runs. On SQLite and PostgreSQL (tests/search/killed_controller.py runs the controller)."""

from __future__ import annotations

import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from evonorm_search.search.controller import create_search
from evonorm_search.search.simulated import layer_scores
from evonorm_search.store import CandidateStatus, evaluations_of, get_search, open_store, search_summary

from .conftest import tiny_config
from .test_group_commit import all_candidates, finished_state

REPOSITORY = Path(__file__).resolve().parents[2]
MODES = ("outcome group", "proposal group", "after commit")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_url(request) -> str:
    return request.getfixturevalue(f"{request.param}_url")


def controller_process(url: str, search_id: int, mode: str, k: int, log: Path) -> int:
    command = [sys.executable, "-m", "tests.search.killed_controller", url, str(search_id), mode, str(k), str(log)]
    return subprocess.run(command, cwd=REPOSITORY, capture_output=True, text=True, timeout=300).returncode


def test_a_controller_process_sigkilled_inside_group_commits_resumes_with_nothing_lost(any_url, tmp_path):
    budget = 60
    config = tiny_config(budget=budget, population=6, tournament=2)
    with open_store(any_url) as store:
        search_id = create_search(store, config)
    log = tmp_path / "handed.log"
    rng = random.Random(5)
    committed: dict = {}
    deaths: Counter = Counter()
    for run in range(7):  # six kills, two of each kind, then a run left to finish
        mode = MODES[run % 3] if run < 6 else "none"
        code = controller_process(any_url, search_id, mode, rng.randint(1, 6 if mode == "after commit" else 40), log)
        if mode == "none":
            assert code == 0
            break
        assert code in (0, -9), code  # killed, or the budget was spent before the trigger came
        deaths[mode] += code == -9
        with open_store(any_url) as store:
            now = finished_state(store, search_id)
        assert {c: now[c] for c in committed} == committed, "a committed verdict changed after a SIGKILL"
        committed = now
    assert all(deaths[m] >= 1 for m in MODES), deaths

    with open_store(any_url) as store:
        after = finished_state(store, search_id)
        candidates = all_candidates(store, search_id)
        with store.session(readonly=True) as s:
            search = get_search(s, search_id)
            summary = search_summary(s, search_id)
            rows = {cid: evaluations_of(s, cid) for cid in candidates}
    assert {c: after[c] for c in committed} == committed
    assert search.state == "completed" and search.next_birth == budget
    assert sorted(c.birth for c in candidates.values()) == list(range(budget))
    assert all(c.status in (CandidateStatus.EVALUATED, CandidateStatus.REJECTED) for c in candidates.values())
    statuses = Counter(c.status for c in candidates.values())
    assert summary.total == budget and summary.evaluated == statuses[CandidateStatus.EVALUATED]
    handed = Counter(tuple(map(int, line.split())) for line in log.read_text().splitlines())
    assert max(handed.values()) == 1, [k for k, n in handed.items() if n > 1]  # no attempt reached a worker twice
    assert {cid for cid, _ in handed} <= set(candidates)
    spec = config.evaluation_spec()
    for cid, c in candidates.items():
        keys = Counter((e.architecture, e.phase, e.attempt) for e in rows[cid])
        assert all(n == 1 for n in keys.values()), f"candidate {cid} evaluated twice: {keys}"
        assert all((cid, e.attempt) in handed for e in rows[cid])
        if c.status is CandidateStatus.EVALUATED and c.duplicate_of is None:
            assert c.objectives == layer_scores(c.graph, spec, seed=3)
