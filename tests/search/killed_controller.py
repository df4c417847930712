"""A controller in a process of its own that SIGKILLs itself at a chosen point of a group commit, for
tests/search/test_group_commit_sigkill.py:

    python -m tests.search.killed_controller URL SEARCH_ID MODE K HANDED_LOG [CHECK_WORKERS]

MODE is `outcome group` or `proposal group` (the K-th SQL statement executed inside that kind of group:
the process dies mid-transaction), `after commit` (the K-th hand-over of a candidate to the evaluator
after its group committed) or `none` (run to the end). Every (candidate, attempt) handed to the simulated
cluster is appended to HANDED_LOG with an unbuffered write first, so the log survives the kill.
With CHECK_WORKERS, the controller's cheap checks run ahead in a pool of that many processes, whose ids
are appended to HANDED_LOG.pids as they start (a test then sees them end with their controller).
"""

from __future__ import annotations

import os
import signal
import sys
from datetime import timedelta

from sqlalchemy import event

from evonorm_search.search import LognormalDelay, SimulatedCluster
from evonorm_search.search.controller import Controller
from evonorm_search.store import open_store

SEED = 3


class Trigger:
    """Counts down the statements of one kind of group, or the hand-overs; SIGKILL at zero."""

    def __init__(self, mode: str, k: int):
        self.mode, self.left, self.inside = mode, k, None

    def tick(self, where: str | None) -> None:
        if where == self.mode:
            self.left -= 1
            if self.left <= 0:
                os.kill(os.getpid(), signal.SIGKILL)


class HandedLog:
    """The simulated cluster, appending every hand-over to a file before it happens."""

    def __init__(self, inner: SimulatedCluster, path: str, trigger: Trigger):
        self.inner, self.trigger = inner, trigger
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def capacity(self) -> int:
        return self.inner.capacity()

    def submit(self, task) -> None:
        self.trigger.tick("after commit")
        os.write(self.fd, f"{task.candidate_id} {task.attempt}\n".encode())
        self.inner.submit(task)

    def poll(self, timeout):
        return self.inner.poll(timeout)

    def cancel(self, ids) -> None:
        self.inner.cancel(ids)

    def close(self) -> None:
        self.inner.close()


def marked(method, where: str, trigger: Trigger):
    """`method` with `trigger.inside` set to `where` while it runs (its statements count there)."""

    def wrapper(controller, *args):
        trigger.inside = where
        try:
            return method(controller, *args)
        finally:
            trigger.inside = None

    return wrapper


def main() -> None:
    url, search_id, mode, k, log_path = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
    check_workers = int(sys.argv[6]) if len(sys.argv) > 6 else 0
    trigger = Trigger(mode, k)
    store = open_store(url)
    event.listen(store.engine, "before_cursor_execute", lambda *_: trigger.tick(trigger.inside))
    Controller._commit_outcomes = marked(Controller._commit_outcomes, "outcome group", trigger)  # type: ignore[method-assign]
    Controller._fill_group = marked(Controller._fill_group, "proposal group", trigger)  # type: ignore[method-assign]
    # Every evaluation takes 0.3 s of wall time: the tasks of one fill come back in one poll.
    cluster = SimulatedCluster(8, delay=LognormalDelay(median=30.0, sigma=0.0), time_factor=0.01, seed=SEED)
    evaluator = HandedLog(cluster, log_path, trigger)
    controller = Controller(
        store, search_id, evaluator, poll_interval=0.1, stale_after=timedelta(0), check_workers=check_workers
    )
    pids_fd = os.open(log_path + ".pids", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    logged: set[int] = set()

    def log_pool(progress) -> None:
        pool = controller.check_pool
        for pid in set(pool.pids() if pool is not None else ()) - logged:
            os.write(pids_fd, f"{pid}\n".encode())
            logged.add(pid)

    controller.progress = log_pool
    controller.run()
    store.close()


if __name__ == "__main__":
    main()
