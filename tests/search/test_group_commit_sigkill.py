"""A controller process killed with SIGKILL inside a group commit (mid-transaction, or after a group
committed and before its candidates reached a worker) resumes in a new process with nothing lost or
repeated: the kernel ends the process, the database rolls the open transaction back, and no Python
clean-up runs. On SQLite and PostgreSQL (tests/search/killed_controller.py runs the controller)."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from evonorm_search.search.controller import create_search
from evonorm_search.store import get_search, open_store

from .conftest import tiny_config
from .test_group_commit import assert_nothing_lost_or_repeated, finished_state

REPOSITORY = Path(__file__).resolve().parents[2]
MODES = ("outcome group", "proposal group", "after commit")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_url(request) -> str:
    return request.getfixturevalue(f"{request.param}_url")


def controller_process(url: str, search_id: int, mode: str, k: int, log: Path, check_workers: int = 0) -> int:
    command = [sys.executable, "-m", "tests.search.killed_controller", url, str(search_id), mode, str(k), str(log)]
    command.append(str(check_workers))
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

    handed = Counter(tuple(map(int, line.split())) for line in log.read_text().splitlines())
    with open_store(any_url) as store:
        with store.session(readonly=True) as s:
            assert get_search(s, search_id).state == "completed"
        assert_nothing_lost_or_repeated(store, search_id, config, handed, committed)


def _running(pid: int) -> bool:
    """Whether process `pid` still runs (a zombie waiting for its parent to reap it has ended)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return False
    return fields[0] != "Z"


def test_a_controller_with_a_check_pool_sigkilled_resumes_with_nothing_lost_and_leaves_no_pool(sqlite_url, tmp_path):
    """The same kills with the cheap checks computed ahead in a pool: what the pool computed for a killed
    controller is never stored by itself, and its processes end with the controller that started them."""
    budget = 50
    config = tiny_config(budget=budget, population=6, tournament=2)
    with open_store(sqlite_url) as store:
        search_id = create_search(store, config)
    log = tmp_path / "handed.log"
    rng = random.Random(8)
    committed: dict = {}
    deaths: Counter = Counter()
    ended_by_themselves = 0
    for run in range(4):  # a kill of each kind, then a run left to finish
        mode = MODES[run] if run < 3 else "none"
        k = rng.randint(1, 6 if mode == "after commit" else 30)
        code = controller_process(sqlite_url, search_id, mode, k, log, check_workers=1)
        assert code in (0, -9), code
        deaths[mode] += code == -9
        ended_by_themselves += code == 0
        with open_store(sqlite_url) as store:
            now = finished_state(store, search_id)
        assert {c: now[c] for c in committed} == committed, "a committed verdict changed after a SIGKILL"
        committed = now
    assert sum(deaths.values()) >= 2, deaths
    pool_pids = [int(line) for line in (tmp_path / "handed.log.pids").read_text().split()]
    # One pool process per run that got going (a run killed before its first report logged none): more
    # than the runs that ended by themselves, so some belonged to a controller that was killed.
    assert len(pool_pids) > ended_by_themselves
    deadline = time.monotonic() + 30
    while any(_running(pid) for pid in pool_pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in pool_pids if _running(pid)], "a pool process outlived its controller"

    handed = Counter(tuple(map(int, line.split())) for line in log.read_text().splitlines())
    with open_store(sqlite_url) as store:
        with store.session(readonly=True) as s:
            assert get_search(s, search_id).state == "completed"
        assert_nothing_lost_or_repeated(store, search_id, config, handed, committed)
