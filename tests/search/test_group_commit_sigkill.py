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


def _new_search(url: str, budget: int):
    config = tiny_config(budget=budget, population=6, tournament=2)
    with open_store(url) as store:
        return config, create_search(store, config)


def _run_and_compare(url: str, search_id: int, committed: dict, mode: str, k: int, log: Path, **options) -> tuple:
    """A controller process run to its kill (or its end), then every verdict committed before it checked
    unchanged: (its exit code, the verdicts committed now)."""
    code = controller_process(url, search_id, mode, k, log, **options)
    assert code in (0, -9), code  # killed, or the budget was spent before the trigger came
    with open_store(url) as store:
        now = finished_state(store, search_id)
    assert {c: now[c] for c in committed} == committed, "a committed verdict changed after a SIGKILL"
    return code, now


def _assert_completed_whole(url: str, search_id: int, config, log: Path, committed: dict) -> None:
    handed = Counter(tuple(map(int, line.split())) for line in log.read_text().splitlines())
    with open_store(url) as store:
        with store.session(readonly=True) as s:
            assert get_search(s, search_id).state == "completed"
        assert_nothing_lost_or_repeated(store, search_id, config, handed, committed)


def test_a_controller_process_sigkilled_inside_group_commits_resumes_with_nothing_lost(any_url, tmp_path):
    config, search_id = _new_search(any_url, budget=60)
    log = tmp_path / "handed.log"
    rng = random.Random(5)
    committed: dict = {}
    deaths: Counter = Counter()
    for mode in [*MODES, *MODES]:  # six kills, two of each kind
        k = rng.randint(1, 6 if mode == "after commit" else 40)
        code, committed = _run_and_compare(any_url, search_id, committed, mode, k, log)
        deaths[mode] += code == -9
    assert all(deaths[m] >= 1 for m in MODES), deaths
    assert controller_process(any_url, search_id, "none", rng.randint(1, 40), log) == 0  # then one left to finish
    _assert_completed_whole(any_url, search_id, config, log, committed)


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
    config, search_id = _new_search(sqlite_url, budget=50)
    log = tmp_path / "handed.log"
    rng = random.Random(8)
    committed: dict = {}
    deaths: Counter = Counter()
    ended_by_themselves = 0
    for mode in [*MODES, "none"]:  # a kill of each kind, then a run left to finish
        k = rng.randint(1, 6 if mode == "after commit" else 30)
        code, now = _run_and_compare(sqlite_url, search_id, committed, mode, k, log, check_workers=1)
        deaths[mode] += code == -9
        ended_by_themselves += code == 0
        if mode != "none":  # the last run's verdicts are what the kills before it must not have changed
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
    _assert_completed_whole(sqlite_url, search_id, config, log, committed)
