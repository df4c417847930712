"""`RayEvaluator`: the search's `Evaluator` protocol with every evaluation a Ray task.

Ray schedules the tasks on whatever nodes have the declared resources, retries a task whose worker
process or node died (`retries`), and keeps worker processes warm between tasks. This class adds what
Ray cannot know: a per-evaluation time limit, heartbeats that catch a worker gone silent before Ray
notices (a frozen node, a lost network), and the bookkeeping that turns every submitted task into
exactly one outcome (results, a rejection, or an error that says what happened), unless the controller
cancelled it. So no candidate stays `running` because its worker disappeared.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import ray
from ray.exceptions import GetTimeoutError, RayError, RayTaskError, TaskCancelledError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from evonorm_search.search.evaluator import EvaluationOutcome, EvaluationTask, evaluate_task

from .heartbeat import HeartbeatBoard, Liveness
from .remote import Body, remote_evaluation
from .resources import WorkerResources

log = logging.getLogger("workers.ray_evaluator")


@dataclass
class _Submission:
    """One submission of a task to Ray (a resubmission after a silent worker gets a new ticket)."""

    task: EvaluationTask
    ticket: int
    ref: ray.ObjectRef
    tries_before: int  # worker tries spent by earlier submissions of this task
    liveness: Liveness | None = None


class RayEvaluator:
    """Runs `EvaluationTask`s as Ray tasks on the connected cluster (see `workers.connect`).

    resources:          what one evaluation reserves (CPUs, fractional GPUs, memory).
    retries:            how many times an evaluation is started again after its worker died or went
                        silent, before the candidate fails with the reason.
    evaluation_timeout: seconds one try may run (None: no limit); past it the candidate fails (`poll`'s
                        `timeout` is how long a poll waits, another thing).
    heartbeat_interval: seconds between a worker's heartbeats.
    heartbeat_timeout:  seconds of silence after which a started evaluation's worker counts as gone.
    max_in_flight:      cap on `capacity()` (None: as many as the cluster's resources allow).
    max_calls:          evaluations after which a worker process is replaced by a fresh one (0: never).
    body:               the worker body (default `evaluate_task`); it must be picklable.
    on_close:           called by `close()` after the evaluator's own cleanup (e.g. to leave Ray).
    """

    def __init__(
        self,
        resources: WorkerResources | None = None,
        *,
        retries: int = 2,
        evaluation_timeout: float | None = None,
        heartbeat_interval: float = 5.0,
        heartbeat_timeout: float = 60.0,
        max_in_flight: int | None = None,
        max_calls: int = 0,
        body: Body = evaluate_task,
        capacity_refresh: float = 2.0,
        on_close: Callable[[], None] | None = None,
    ):
        check_settings(
            retries=retries,
            evaluation_timeout=evaluation_timeout,
            heartbeat_interval=heartbeat_interval,
            heartbeat_timeout=heartbeat_timeout,
            max_in_flight=max_in_flight,
            max_calls=max_calls,
        )
        if not ray.is_initialized():
            raise RuntimeError(
                "Ray is not connected: call workers.connect() (or ray.init) before making a RayEvaluator"
            )
        self.resources = resources or WorkerResources()
        self.retries = retries
        self.evaluation_timeout = evaluation_timeout
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_timeout = heartbeat_timeout
        self.max_in_flight = max_in_flight
        self.max_calls = max_calls
        self._remote = remote_evaluation(max_calls)
        self._body = body
        self._capacity_refresh = capacity_refresh
        self._board = _start_board()
        self._tickets = itertools.count(1)
        self._live: dict[int, _Submission] = {}  # candidate id -> its current submission
        self._made: list[EvaluationOutcome] = []  # outcomes this evaluator decided (time limit, lost worker)
        self._snapshot: ray.ObjectRef | None = None
        self._last_check = 0.0
        self._capacity = (-float("inf"), 0)  # (when measured, value)
        self._closed = False
        self._on_close = on_close

    # -- the protocol -----------------------------------------------------------------------------

    def capacity(self) -> int:
        """Evaluations the cluster's alive nodes can run at once (re-read every few seconds)."""
        measured, value = self._capacity
        if time.monotonic() - measured > self._capacity_refresh:
            value = self.resources.slots_in(ray.nodes())
            if self.max_in_flight is not None:
                value = min(value, self.max_in_flight)
            self._capacity = (time.monotonic(), value)
        return value

    def submit(self, task: EvaluationTask) -> None:
        if self._closed:
            raise RuntimeError("the evaluator is closed")
        if task.candidate_id in self._live:
            raise RuntimeError(f"candidate {task.candidate_id} is already in flight")
        self._launch(task, tries_before=0)

    def poll(self, timeout: float) -> list[EvaluationOutcome]:
        """Outcomes finished so far, waiting up to `timeout` seconds for the first one."""
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            found = self._collect_ready()
            self._check_liveness()
            found += self._made
            self._made = []
            remaining = deadline - time.monotonic()
            if found or remaining <= 0:
                return found
            self._wait(min(remaining, self.heartbeat_interval))

    def cancel(self, candidate_ids: Iterable[int]) -> None:
        """Stop these evaluations (their workers are killed); their outcomes never arrive."""
        cancelled = set(candidate_ids)
        for candidate_id in cancelled:
            submission = self._live.pop(candidate_id, None)
            if submission is not None:
                self._abandon(submission)
        self._made = [o for o in self._made if o.candidate_id not in cancelled]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if ray.is_initialized():  # never call Ray once it is shut down: its calls would start a new local Ray
            self.cancel(list(self._live))
            with contextlib.suppress(RayError):  # already gone with its node
                ray.kill(self._board)
        self._live.clear()
        if self._on_close is not None:
            self._on_close()

    # -- what else a caller may want to see -------------------------------------------------------

    def in_flight(self) -> dict[int, Liveness | None]:
        """Each in-flight candidate's latest liveness (None: no worker has started it yet)."""
        # list() copies in one step, so another thread (a progress view, a test) may call this safely.
        return {candidate_id: s.liveness for candidate_id, s in list(self._live.items())}

    # -- submitting and collecting ----------------------------------------------------------------

    def _launch(self, task: EvaluationTask, tries_before: int) -> None:
        ticket = next(self._tickets)
        options = self.resources.ray_options() | {"max_retries": self.retries - tries_before}
        ref = self._remote.options(**options).remote(
            task, ticket, self._board, self.heartbeat_interval, self._body, tries_before
        )
        self._live[task.candidate_id] = _Submission(task, ticket, ref, tries_before)

    def _abandon(self, submission: _Submission) -> None:
        ray.cancel(submission.ref, force=True)
        self._board.forget.remote([submission.ticket])

    def _wait(self, seconds: float) -> None:
        refs = [s.ref for s in self._live.values()]
        if refs:
            ray.wait(refs, num_returns=1, timeout=seconds)
        else:
            time.sleep(seconds)

    def _collect_ready(self) -> list[EvaluationOutcome]:
        by_ref = {s.ref: candidate_id for candidate_id, s in self._live.items()}
        if not by_ref:
            return []
        ready, _ = ray.wait(list(by_ref), num_returns=len(by_ref), timeout=0)
        return [self._outcome_of(self._live.pop(by_ref[ref])) for ref in ready]

    def _outcome_of(self, submission: _Submission) -> EvaluationOutcome:
        self._board.forget.remote([submission.ticket])
        try:
            return ray.get(submission.ref, timeout=0)
        except TaskCancelledError:  # not cancelled by us (we forget those first): report it
            return self._failed(submission, "the evaluation was cancelled by Ray before it finished")
        except RayTaskError as e:  # the body raised (evaluate_task never does; a custom body may)
            cause = e.cause or e
            return self._failed(submission, f"the evaluation raised {type(cause).__name__}: {_first_line(cause)}")
        except RayError as e:  # Ray gave up: the worker process or its node died on every try
            tries = self.retries + 1
            return self._failed(submission, f"the worker was lost on all {tries} tries; last: {_first_line(e)}")

    def _failed(self, submission: _Submission, reason: str) -> EvaluationOutcome:
        task, seen = submission.task, submission.liveness
        return EvaluationOutcome(
            candidate_id=task.candidate_id,
            attempt=task.attempt,
            node=seen.node if seen is not None else "",
            duration=round(seen.running_for, 4) if seen is not None else 0.0,
            error=reason,
        )

    # -- liveness ---------------------------------------------------------------------------------

    def _check_liveness(self) -> None:
        """Every heartbeat interval: read the board (without blocking) and act on what it says."""
        if self._snapshot is not None:
            try:
                snapshot = ray.get(self._snapshot, timeout=0)
            except GetTimeoutError:
                return  # the board has not answered yet: ask again later
            except RayError as e:
                # The board is gone (its node failed while this driver lives on). Start a new one; tasks
                # already running beat to the old one, so until they end only Ray watches them.
                log.warning("the heartbeat board failed (%s); starting a new one", _first_line(e))
                self._snapshot, self._board = None, _start_board()
                return
            self._snapshot = None
            self._judge(snapshot)
        if self._live and time.monotonic() - self._last_check >= self.heartbeat_interval:
            self._last_check = time.monotonic()
            self._snapshot = self._board.snapshot.remote([s.ticket for s in self._live.values()])

    def _judge(self, snapshot: dict[int, Liveness]) -> None:
        for candidate_id, submission in list(self._live.items()):
            seen = snapshot.get(submission.ticket)
            if seen is None:
                continue  # queued in Ray, or started after the snapshot: nothing to judge
            submission.liveness = seen
            if _finished(submission):
                continue  # its result is waiting to be collected
            if self.evaluation_timeout is not None and seen.running_for > self.evaluation_timeout:
                self._give_up(
                    candidate_id,
                    f"timed out: still running after {seen.running_for:.0f}s on {seen.node} "
                    f"(the limit is {self.evaluation_timeout:g}s)",
                )
            elif seen.silent_for > self.heartbeat_timeout:
                self._requeue_silent(candidate_id, submission, seen)

    def _requeue_silent(self, candidate_id: int, submission: _Submission, seen: Liveness) -> None:
        tries = submission.tries_before + seen.tries
        silence = f"its worker on {seen.node} (pid {seen.pid}) sent no heartbeat for {seen.silent_for:.0f}s"
        if tries > self.retries:
            self._give_up(candidate_id, f"{silence}; lost on all {tries} tries")
            return
        self._abandon(self._live.pop(candidate_id))
        self._launch(submission.task, tries_before=tries)

    def _give_up(self, candidate_id: int, reason: str) -> None:
        submission = self._live.pop(candidate_id)
        self._abandon(submission)
        self._made.append(self._failed(submission, reason))


def _start_board():
    """The heartbeat board, pinned to this driver's node (strictly: a soft pin lets Ray place it on any node,
    whose loss would then silence every heartbeat): it lives and dies with the controller."""
    here = ray.get_runtime_context().get_node_id()
    board = ray.remote(HeartbeatBoard).options(
        num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=here, soft=False)
    )
    return board.remote()


def _finished(submission: _Submission) -> bool:
    ready, _ = ray.wait([submission.ref], num_returns=1, timeout=0)
    return bool(ready)


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def check_settings(
    *,
    retries: int = 2,
    evaluation_timeout: float | None = None,
    heartbeat_interval: float = 5.0,
    heartbeat_timeout: float = 60.0,
    max_in_flight: int | None = None,
    max_calls: int = 0,
) -> None:
    """ValueError naming every bad `RayEvaluator` setting (usable before Ray is connected)."""
    problems = []
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        problems.append(f"retries must be a whole number >= 0, got {retries!r}")
    if evaluation_timeout is not None and not evaluation_timeout > 0:
        problems.append(
            f"evaluation_timeout must be positive seconds (or None for no limit), got {evaluation_timeout!r}"
        )
    if not heartbeat_interval > 0:
        problems.append(f"heartbeat_interval must be positive seconds, got {heartbeat_interval!r}")
    elif not heartbeat_timeout >= 2 * heartbeat_interval:
        problems.append(
            f"heartbeat_timeout ({heartbeat_timeout!r}s) must be at least twice heartbeat_interval "
            f"({heartbeat_interval!r}s), or one late beat would count as a lost worker"
        )
    if max_in_flight is not None and (isinstance(max_in_flight, bool) or max_in_flight < 1):
        problems.append(f"max_in_flight must be >= 1 (or None for the cluster's resources), got {max_in_flight!r}")
    if isinstance(max_calls, bool) or not isinstance(max_calls, int) or max_calls < 0:
        problems.append(f"max_calls must be a whole number >= 0 (0: never recycle a worker), got {max_calls!r}")
    if problems:
        raise ValueError("; ".join(problems))
