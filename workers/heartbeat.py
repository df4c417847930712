"""Heartbeats: how the evaluator tells a running evaluation from one whose worker vanished.

Every submission of a task to Ray gets a ticket. The worker that runs it registers with the
`HeartbeatBoard` (a small Ray actor beside the controller) when it starts and then beats every few
seconds from a background thread, whatever the training is doing. The evaluator reads the board: a
started ticket that has been silent longer than the heartbeat timeout belongs to a worker that is gone
(its node died, froze or lost the network) even when Ray has not noticed yet, so the evaluator cancels
it and submits the task again. All times are the board's own clock, so nodes' clocks never matter.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Liveness:
    """What the board knows of one ticket: how many workers started it, where the latest runs, and for
    how long (seconds) it has been running and silent."""

    tries: int
    node: str
    pid: int
    running_for: float
    silent_for: float


@dataclass
class _Entry:
    tries: int
    node: str
    pid: int
    started: float
    beat: float


class HeartbeatBoard:
    """The tickets' heartbeats, kept by one Ray actor (`ray.remote(HeartbeatBoard)`)."""

    def __init__(self) -> None:
        self._entries: dict[int, _Entry] = {}

    def start(self, ticket: int, node: str, pid: int) -> int:
        """A worker starts `ticket`; returns which try this is (1 for the first worker, 2 after a retry...)."""
        now = time.monotonic()
        entry = self._entries.get(ticket)
        tries = 1 if entry is None else entry.tries + 1
        self._entries[ticket] = _Entry(tries, node, pid, now, now)
        return tries

    def beat(self, ticket: int, pid: int) -> None:
        entry = self._entries.get(ticket)
        # A beat from a superseded worker (a retry started elsewhere) must not keep the new one alive.
        if entry is not None and entry.pid == pid:
            entry.beat = time.monotonic()

    def snapshot(self, tickets: list[int]) -> dict[int, Liveness]:
        """Liveness of the given tickets that some worker has started (others are still queued in Ray)."""
        now = time.monotonic()
        found = {}
        for ticket in tickets:
            entry = self._entries.get(ticket)
            if entry is not None:
                found[ticket] = Liveness(entry.tries, entry.node, entry.pid, now - entry.started, now - entry.beat)
        return found

    def forget(self, tickets: list[int]) -> None:
        for ticket in tickets:
            self._entries.pop(ticket, None)


class Beating:
    """The worker side: registers a ticket's start, then beats every `interval` seconds until closed.

    The beats come from a daemon thread, so a training step that holds the process for a while delays
    nothing but itself; a worker that is frozen or gone stops beating, which is the point.
    """

    def __init__(self, board: Any, ticket: int, node: str, interval: float):
        import ray

        self._board = board
        self._ticket = ticket
        self._pid = os.getpid()
        self._interval = interval
        self.try_number = ray.get(board.start.remote(ticket, node, self._pid))
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"evonorm-heartbeat-{ticket}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stopped.wait(self._interval):
            try:
                self._board.beat.remote(self._ticket, self._pid)
            except Exception:  # the board is gone with its controller: Ray ends this task soon enough
                return

    def close(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=self._interval)

    def __enter__(self) -> Beating:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
