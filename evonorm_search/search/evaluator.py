"""The evaluator protocol, the picklable task and outcome, the worker body, and the in-process evaluator.

The controller hands `EvaluationTask`s to an `Evaluator` and collects `EvaluationOutcome`s; it never
knows where the work ran. `evaluate_task` is the worker body every evaluator runs (in this process,
in a Ray task, anywhere): run the probes when the spec carries them, build each proxy with the
candidate, train it for the quality prefix and reject it if any architecture scores below the threshold,
then continue every run to the full budget and report accuracy per architecture (and the plan cost when
asked).
"""

from __future__ import annotations

import functools
import queue
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ..enums import CandidateStatus, EvaluationPhase, EvaluationStatus, RejectionStage
from ..ir import Graph
from ..proxies import ProxyTrainer, TrainingCancelled, build_model, load_data
from ..proxies.data import LoadedData
from .config import EvaluationSpec, ProbeSpec
from .objectives import Evaluated, objective_values
from .rejection import CheapRejections, Rejection, Verdict, probe_chain


@dataclass(frozen=True)
class EvaluationTask:
    """One candidate to evaluate: everything a worker needs, picklable, no database handle."""

    search_id: int
    candidate_id: int
    graph: dict[str, Any]
    spec: EvaluationSpec
    attempt: int = 1


@dataclass(frozen=True)
class EvaluationRecord:
    """One (architecture, phase) run: its status, metrics (accuracy, loss, steps, seconds, diverged),
    duration in seconds, the node it ran on and the attempt number."""

    architecture: str
    phase: EvaluationPhase  # quality or proxy (validation runs are recorded by `search.validation`)
    status: EvaluationStatus
    metrics: dict[str, Any]
    duration: float
    node: str
    attempt: int


@dataclass(frozen=True)
class EvaluationOutcome:
    """The result of one task: objectives when evaluated, a rejection (by the worker's probes or the quality
    prefix) or an error (failed)."""

    candidate_id: int
    attempt: int
    node: str
    duration: float
    records: tuple[EvaluationRecord, ...] = ()
    objectives: dict[str, float] | None = None
    rejection: Rejection | None = None
    error: str | None = None
    check_seconds: dict[str, float] = field(default_factory=dict)  # the probes' seconds, when the worker ran them

    @property
    def status(self) -> CandidateStatus:
        if self.error is not None:
            return CandidateStatus.FAILED
        if self.rejection is not None:
            return CandidateStatus.REJECTED
        return CandidateStatus.EVALUATED


@runtime_checkable
class Evaluator(Protocol):
    """Where evaluations run. `capacity()` is how many may be in flight; `poll` returns finished outcomes,
    waiting up to `timeout` seconds for at least one; `cancel` drops tasks not yet finished (their
    outcomes never arrive); `close` releases resources."""

    def capacity(self) -> int: ...

    def submit(self, task: EvaluationTask) -> None: ...

    def poll(self, timeout: float) -> list[EvaluationOutcome]: ...

    def cancel(self, candidate_ids: Iterable[int]) -> None: ...

    def close(self) -> None: ...


# --------------------------------------------------------------------------------------------------
# The worker body
# --------------------------------------------------------------------------------------------------


@dataclass
class _Run:
    label: str
    trainer: ProxyTrainer
    records: list[EvaluationRecord] = field(default_factory=list)


def _record(
    run: _Run,
    phase: EvaluationPhase,
    metrics: dict[str, Any],
    started: float,
    task: EvaluationTask,
    status: EvaluationStatus = EvaluationStatus.SUCCEEDED,
) -> EvaluationRecord:
    record = EvaluationRecord(
        architecture=run.label,
        phase=phase,
        status=status,
        metrics=metrics,
        duration=round(time.perf_counter() - started, 4),
        node=socket.gethostname(),
        attempt=task.attempt,
    )
    run.records.append(record)
    return record


def _start_runs(
    graph: Graph, spec: EvaluationSpec, data: LoadedData, should_stop: Callable[[], bool] | None
) -> list[_Run]:
    runs = []
    for arch in spec.architectures:
        model = build_model(
            arch,
            graph,
            in_channels=data.in_channels,
            classes=data.num_classes,
            spatial_dims=data.spatial_dims,
            groups=spec.groups,
            eps=spec.eps,
            backend=spec.backend,
            seed=spec.seed,
        )
        trainer = ProxyTrainer(model, data, spec.training, seed=spec.seed, should_stop=should_stop)
        runs.append(_Run(arch.label, trainer))
    return runs


def _quality_rejection(runs: list[_Run], spec: EvaluationSpec, task: EvaluationTask) -> Rejection | None:
    """Train every run for the quality prefix; the first architecture below the threshold rejects."""
    quality = spec.quality
    for run in runs:
        started = time.perf_counter()
        run.trainer.train_until(quality.steps)
        metrics = run.trainer.evaluate()
        passed = metrics.accuracy >= quality.threshold
        status = EvaluationStatus.SUCCEEDED if passed else EvaluationStatus.REJECTED
        _record(run, EvaluationPhase.QUALITY, metrics.to_dict(), started, task, status)
        if not passed:
            return Rejection(
                RejectionStage.QUALITY,
                f"{run.label}: validation accuracy {metrics.accuracy:.1%} below {quality.threshold:.0%} "
                f"after {metrics.steps} steps" + (" (training diverged)" if metrics.diverged else ""),
            )
    return None


def _objectives(runs: list[_Run], graph: Graph, spec: EvaluationSpec) -> dict[str, float]:
    final_metrics = {run.label: run.records[-1].metrics for run in runs}
    return objective_values(spec.objectives, Evaluated(graph, final_metrics))


@functools.lru_cache(maxsize=4)
def _probe_chain(spec: ProbeSpec, groups: int, eps: float) -> CheapRejections:
    """The probes a spec asks for (a frozen `ProbeSpec`, so hashable), built once per worker process: their
    random inputs are drawn from the seed, so every candidate meets the same ones, as on the controller."""
    stability = spec.stability.model_dump(exclude={"enabled"}) if spec.stability.enabled else None
    return probe_chain(
        groups=groups,
        eps=eps,
        spatial_dims=spec.spatial_dims,
        numeric=spec.numeric,
        stability=stability,
        seed=spec.seed,
    )


def run_probes(graph: Graph, spec: EvaluationSpec) -> Verdict | None:
    """The verdict of the spec's probes on `graph` (None when the spec has none)."""
    if spec.probes is None:
        return None
    return _probe_chain(spec.probes, spec.groups, spec.eps).run(graph)


def evaluate_task(task: EvaluationTask, *, should_stop: Callable[[], bool] | None = None) -> EvaluationOutcome:
    """Evaluate one candidate; never raises (an exception becomes an outcome with `error`).

    With probes in the spec (`rejection.probes: workers`), they run first: a layer they reject is reported
    at their stage without training, in milliseconds.

    `should_stop`, polled before every training step, abandons the evaluation early (the outcome then
    has an error saying so); evaluators use it to cancel work and to shut down promptly.
    """
    started = time.perf_counter()
    runs: list[_Run] = []
    check_seconds: dict[str, float] = {}

    def outcome(**kwargs: Any) -> EvaluationOutcome:
        # Chronological: every quality record (in architecture order) before every proxy record.
        records = tuple(
            sorted((r for run in runs for r in run.records), key=lambda r: r.phase is not EvaluationPhase.QUALITY)
        )
        return EvaluationOutcome(
            candidate_id=task.candidate_id,
            attempt=task.attempt,
            node=socket.gethostname(),
            duration=round(time.perf_counter() - started, 4),
            records=records,
            check_seconds=check_seconds,
            **kwargs,
        )

    try:
        spec = task.spec
        graph = Graph.from_dict(task.graph)
        if (probed := run_probes(graph, spec)) is not None:
            check_seconds.update((stage.value, seconds) for stage, seconds in probed.seconds.items())
            if probed.rejection is not None:
                return outcome(rejection=probed.rejection)
        runs = _start_runs(graph, spec, load_data(spec.data, spec.split), should_stop)
        if spec.quality.enabled and (rejection := _quality_rejection(runs, spec, task)) is not None:
            return outcome(rejection=rejection)
        for run in runs:
            run_started = time.perf_counter()
            run.trainer.train_until(spec.training.steps)
            _record(run, EvaluationPhase.PROXY, run.trainer.evaluate().to_dict(), run_started, task)
        return outcome(objectives=_objectives(runs, graph, spec))
    except TrainingCancelled as e:
        return outcome(error=f"cancelled: {e}")
    except Exception as e:  # the worker must report, not die: the controller records the error
        detail = "".join(traceback.format_exception_only(type(e), e)).strip()
        return outcome(error=detail)
    finally:
        for run in runs:
            run.trainer.close()  # streamed data: no loader worker outlives the candidate


# --------------------------------------------------------------------------------------------------
# In-process evaluation
# --------------------------------------------------------------------------------------------------


class InProcessEvaluator:
    """Runs tasks in this process on one background thread, in submission order.

    The controller's thread stays free while a candidate trains: it heartbeats, answers stop
    requests, refreshes the progress display and runs the next candidate's cheap checks. `capacity`
    is how many tasks may be submitted and not yet polled (default 1: one training at a time, what
    is in flight is what is running). A cancelled task stops at its next training step and its outcome
    is dropped; `close` stops the running task the same way and waits for the thread.
    """

    def __init__(self, capacity: int = 1):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self._capacity = capacity
        self._tasks: queue.Queue[EvaluationTask | None] = queue.Queue()
        self._outcomes: queue.Queue[EvaluationOutcome] = queue.Queue()
        self._in_flight: set[int] = set()
        self._lock = threading.Lock()
        self._closed = False
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._work, name="evonorm-evaluator", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while (task := self._tasks.get()) is not None:
            if not self._wanted(task.candidate_id):
                continue
            outcome = evaluate_task(task, should_stop=functools.partial(self._unwanted, task.candidate_id))
            self._outcomes.put(outcome)

    def _unwanted(self, candidate_id: int) -> bool:
        return not self._wanted(candidate_id)

    def _wanted(self, candidate_id: int) -> bool:
        """Still to be evaluated: neither cancelled nor shut down."""
        with self._lock:
            return not self._closing.is_set() and candidate_id in self._in_flight

    def capacity(self) -> int:
        return self._capacity

    def submit(self, task: EvaluationTask) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("the evaluator is closed")
            if len(self._in_flight) >= self._capacity:
                raise RuntimeError(f"the evaluator is full ({self._capacity} task(s) in flight)")
            if task.candidate_id in self._in_flight:
                raise RuntimeError(f"candidate {task.candidate_id} is already in flight")
            self._in_flight.add(task.candidate_id)
        self._tasks.put(task)

    def poll(self, timeout: float) -> list[EvaluationOutcome]:
        """Outcomes finished so far, waiting up to `timeout` seconds for the first one."""
        found: list[EvaluationOutcome] = []
        try:
            found.append(self._outcomes.get(timeout=max(0.0, timeout)))
            while True:
                found.append(self._outcomes.get_nowait())
        except queue.Empty:
            pass
        with self._lock:
            kept = [o for o in found if o.candidate_id in self._in_flight]
            self._in_flight.difference_update(o.candidate_id for o in kept)
        return kept

    def cancel(self, candidate_ids: Iterable[int]) -> None:
        with self._lock:
            self._in_flight.difference_update(candidate_ids)

    def close(self, timeout: float = 30.0) -> None:
        """Abandon what is in flight and wait (up to `timeout` s) for the worker thread to leave torch:
        an interpreter that exits while a thread is inside a torch kernel can abort."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._closing.set()
            self._in_flight.clear()
        self._tasks.put(None)
        self._thread.join(timeout)
