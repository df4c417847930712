"""A simulated cluster: the `Evaluator` protocol as N remote workers that never train.

The controller, the store and their costs are real; only the evaluations are simulated, so one machine
can show whether a controller keeps thousands of workers busy. Each evaluation takes a delay drawn
from a lognormal distribution (around a median, e.g. the 90 s of a proxy run) times a time factor
(so a run takes seconds), may fail (the worker body reports an error) or lose its worker (retried
here, as Ray retries a task whose worker died, until the tries run out and the outcome says so), and
scores the layer by a deterministic function of its structure and a hash of its graph,
so selection has signal. A spec that puts the probes on the workers gets them played as measured
shares and seconds (`SimulatedProbes`). Everything a task's fate depends on is drawn from a stream keyed
by the seed, the candidate and the attempt: a run is reproducible whatever order the controller submits in.

Time comes from a `Clock`: the wall clock for benchmarks, a `ManualClock` for tests, whose `sleep`
advances it at once (so a test never waits on wall time and delays can be checked exactly).
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import json
import math
import random
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from ..enums import EvaluationPhase, EvaluationStatus, RejectionStage
from ..ir import AGGREGATIONS
from .config import EvaluationSpec
from .evaluator import EvaluationOutcome, EvaluationRecord, EvaluationTask
from .objectives import COST, accuracy_name
from .rejection import Rejection

# -- time ------------------------------------------------------------------------------------------


class Clock(Protocol):
    """Seconds that only go forward, and a way to wait for them."""

    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class WallClock:
    """Real time: what a benchmark measures the controller against."""

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class ManualClock:
    """Time that moves only when told: `sleep` jumps ahead instead of waiting."""

    def __init__(self, start: float = 0.0):
        self.time = start

    def now(self) -> float:
        return self.time

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        self.time += max(0.0, seconds)


# -- what one evaluation does ----------------------------------------------------------------------


@dataclass(frozen=True)
class LognormalDelay:
    """Evaluation durations in simulated seconds: `median * exp(sigma * z)`, z standard normal."""

    median: float = 90.0
    sigma: float = 0.5

    def __post_init__(self) -> None:
        if not self.median > 0:
            raise ValueError(f"the median delay must be positive seconds, got {self.median!r}")
        if not self.sigma >= 0:
            raise ValueError(f"sigma must be >= 0, got {self.sigma!r}")

    def draw(self, rng: random.Random) -> float:
        return self.median * math.exp(self.sigma * rng.gauss(0.0, 1.0))


@dataclass(frozen=True)
class SimulatedProbes:
    """The probes a worker runs before training (`rejection.probes: workers`), as the simulated cluster
    plays them: each probe the task's spec asks for rejects a layer with its share, drawn from a hash of
    the layer (one layer, one verdict, in any run), and takes its simulated seconds. The shares and
    seconds are meant to be measured on the real probes (benchmarks/paper_scale.py does, on paper.yaml's
    proposals), since the controller's throughput depends on how many layers come back at once."""

    numeric_share: float = 0.0
    stability_share: float = 0.0
    numeric_seconds: float = 0.002
    stability_seconds: float = 0.03

    def __post_init__(self) -> None:
        for name in ("numeric_share", "stability_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {getattr(self, name)!r}")
        for name in ("numeric_seconds", "stability_seconds"):
            if not getattr(self, name) >= 0.0:
                raise ValueError(f"{name} must be >= 0 seconds, got {getattr(self, name)!r}")

    def verdict(self, task: EvaluationTask, seed: int) -> tuple[Rejection | None, dict[str, float]]:
        """The rejection (or None) of the probes the task's spec asks for, and each one's simulated seconds."""
        probes = task.spec.probes
        assert probes is not None, "a verdict of probes the spec does not ask for"
        canonical = json.dumps(task.graph, sort_keys=True)
        asked = [
            (RejectionStage.NUMERIC, probes.numeric, self.numeric_share, self.numeric_seconds),
            (RejectionStage.STABILITY, probes.stability.enabled, self.stability_share, self.stability_seconds),
        ]
        seconds: dict[str, float] = {}
        for stage, wanted, share, cost in asked:
            if not wanted:
                continue
            seconds[stage.value] = cost
            if _unit(canonical, seed, f"probe:{stage}") < share:
                return Rejection(stage, f"rejected by the {stage} probe (simulated)"), seconds
        return None, seconds


@dataclass(frozen=True)
class Fate:
    """What happens to one submitted task: its clock seconds until the outcome, the worker tries it
    took, and whether it failed, lost its worker on every try, was rejected by the worker's probes
    (`probe_rejection`, with the probes' simulated seconds in `probe_seconds`), or finished."""

    seconds: float
    tries: int
    node: str
    failed: bool
    lost: bool
    probe_rejection: Rejection | None = None
    probe_seconds: tuple[tuple[str, float], ...] = ()


def fate_rng(seed: int, candidate_id: int, attempt: int, worker_try: int) -> random.Random:
    """One stream per (candidate, attempt, try): a fate does not depend on submission order."""
    return random.Random(f"evonorm-simulated:{seed}:{candidate_id}:{attempt}:{worker_try}")


def layer_scores(graph: dict[str, Any], spec: EvaluationSpec, seed: int) -> dict[str, float]:
    """Deterministic objectives for a layer: structure gives the signal, a hash of the graph the noise.

    A layer with aggregations (it normalizes) scores higher than one without, a bloated one lower; a
    hash of the graph (Graph numbers its nodes canonically, so one structure however written gives one
    dict) adds a layer-wide and a per-architecture term, so architectures agree but not exactly. It is
    not the sympy canonical hash: that costs milliseconds of the controller's CPU per evaluation, which
    a real worker would spend, not the controller, and the controller already rejects those duplicates.
    `cost` (when the spec asks for it) is the node count: the plan cost would compile the layer in the
    controller's process and bias what the simulation measures.
    """
    ops = [node["op"] for node in graph["nodes"]]
    aggregations = sum(op in AGGREGATIONS for op in ops)
    canonical = json.dumps(graph, sort_keys=True)
    skill = 0.35 + 0.12 * min(aggregations, 3) - 0.01 * max(0, len(ops) - 10) + 0.25 * _unit(canonical, seed, "")
    scores = {}
    for arch in spec.architectures:
        accuracy = skill + 0.08 * (_unit(canonical, seed, arch.label) - 0.5)
        scores[accuracy_name(arch.label)] = round(min(0.95, max(0.05, accuracy)), 4)
    if COST.wanted(spec.objectives):
        scores[COST.name] = float(len(ops))
    return scores


def _unit(text: str, seed: int, salt: str) -> float:
    """A number in [0, 1) fixed by the text, the seed and the salt."""
    digest = hashlib.blake2b(f"{seed}:{salt}:{text}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


# -- the cluster -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClusterStats:
    """What the simulated workers went through, in clock seconds.

    `idle_seconds` is the time slots sat free between an evaluation finishing and the controller
    submitting the next task to them (waiting for the controller); a slot's first task (the initial
    fill) and slots left free at the end (budget spent) do not count. `busy_seconds` sums the
    evaluations whose outcomes were collected. Their ratio is the share of worker time lost to
    the controller."""

    submitted: int
    collected: int
    probe_rejected: int  # outcomes the worker's probes rejected before training (collected counts them too)
    failed: int
    lost: int  # outcomes whose worker was lost on every try
    worker_losses: int  # worker tries lost (each one retried while tries remain)
    cancelled: int
    refills: int
    busy_seconds: float
    idle_seconds: float
    first_submit_at: float | None
    full_at: float | None  # when the in-flight count first reached capacity

    @property
    def idle_share(self) -> float:
        total = self.busy_seconds + self.idle_seconds
        return self.idle_seconds / total if total > 0 else 0.0


@dataclass
class _Job:
    task: EvaluationTask
    fate: Fate
    submitted_at: float

    @property
    def due(self) -> float:
        return self.submitted_at + self.fate.seconds


class SimulatedCluster:
    """`workers` simulated remote workers behind the `Evaluator` protocol (capacity = workers).

    delay:        evaluation durations in simulated seconds (default lognormal, median 90 s).
    time_factor:  clock seconds per simulated second (0.01: a 90 s evaluation takes 0.9 s).
    failure_rate: chance that an evaluation's body fails (its outcome carries the error; not retried).
    loss_rate:    chance that a worker try dies partway (the evaluation starts again on another worker,
                  up to `retries` times; after that its outcome says the worker was lost on every try).
    probes:       how the workers' probes behave, for specs that carry probes (`SimulatedProbes`); a task
                  whose spec asks for probes is refused without it.
    seed:         fixes every delay, failure, loss and score.
    clock:        where time comes from (default the wall clock).
    """

    def __init__(
        self,
        workers: int,
        *,
        delay: LognormalDelay | None = None,
        time_factor: float = 1.0,
        failure_rate: float = 0.0,
        loss_rate: float = 0.0,
        retries: int = 2,
        probes: SimulatedProbes | None = None,
        seed: int = 0,
        clock: Clock | None = None,
    ):
        _check_settings(workers, time_factor, failure_rate, loss_rate, retries)
        self.workers = workers
        self.delay = delay or LognormalDelay()
        self.time_factor = time_factor
        self.failure_rate = failure_rate
        self.loss_rate = loss_rate
        self.retries = retries
        self.probes = probes
        self.seed = seed
        self.clock: Clock = clock or WallClock()
        self._live: dict[int, _Job] = {}  # candidate id -> its job
        self._due: list[tuple[float, int, _Job]] = []  # heap by due time; cancelled jobs are skipped lazily
        self._order = itertools.count()
        self._freed_at: deque[float] = deque()  # when each slot that has run a task became free, oldest first
        self._closed = False
        counted = ("submitted", "collected", "probe_rejected", "failed", "lost", "worker_losses", "cancelled")
        self._counts = dict.fromkeys(counted, 0)
        self._refills = 0
        self._busy = 0.0
        self._idle = 0.0
        self._first_submit_at: float | None = None
        self._full_at: float | None = None

    # -- the protocol -----------------------------------------------------------------------------

    def capacity(self) -> int:
        return self.workers

    def submit(self, task: EvaluationTask) -> None:
        if self._closed:
            raise RuntimeError("the evaluator is closed")
        if len(self._live) >= self.workers:
            raise RuntimeError(f"the evaluator is full ({self.workers} task(s) in flight)")
        if task.candidate_id in self._live:
            raise RuntimeError(f"candidate {task.candidate_id} is already in flight")
        fate = self.fate_of(task)  # before a slot is taken: it refuses probes the cluster cannot play
        now = self.clock.now()
        self._take_slot(now)
        job = _Job(task, fate, now)
        self._live[task.candidate_id] = job
        heapq.heappush(self._due, (job.due, next(self._order), job))
        self._counts["submitted"] += 1
        self._counts["worker_losses"] += job.fate.tries - 1 + job.fate.lost

    def poll(self, timeout: float) -> list[EvaluationOutcome]:
        """Outcomes due so far, waiting (on the clock) up to `timeout` seconds for the first one."""
        deadline = self.clock.now() + max(0.0, timeout)
        while True:
            found = self._collect_due(self.clock.now())
            now = self.clock.now()
            if found or now >= deadline:
                return found
            next_due = self._due[0][0] if self._due else math.inf
            self.clock.sleep(min(next_due, deadline) - now)

    def cancel(self, candidate_ids: Iterable[int]) -> None:
        now = self.clock.now()
        for candidate_id in candidate_ids:
            if self._live.pop(candidate_id, None) is not None:
                self._freed_at.append(now)
                self._counts["cancelled"] += 1

    def close(self) -> None:
        self._closed = True
        self._live.clear()
        self._due.clear()

    # -- what else a caller may want to see -------------------------------------------------------

    def in_flight(self) -> int:
        return len(self._live)

    def stats(self) -> ClusterStats:
        return ClusterStats(
            **self._counts,
            refills=self._refills,
            busy_seconds=self._busy,
            idle_seconds=self._idle,
            first_submit_at=self._first_submit_at,
            full_at=self._full_at,
        )

    def fate_of(self, task: EvaluationTask) -> Fate:
        """Run the task's tries: the probes first when the spec asks for them (a rejection ends the task
        there), then each try draws a duration; a lost try ends partway and the next starts."""
        rejection, probe_seconds = self._probe_verdict(task)
        probed = tuple(probe_seconds.items())
        seconds = sum(probe_seconds.values()) * self.time_factor
        if rejection is not None:  # the probes end the task on its first worker, before any training
            node = f"sim-worker-{fate_rng(self.seed, task.candidate_id, task.attempt, 0).randrange(self.workers)}"
            return Fate(seconds, 1, node, failed=False, lost=False, probe_rejection=rejection, probe_seconds=probed)
        for worker_try in range(self.retries + 1):
            rng = fate_rng(self.seed, task.candidate_id, task.attempt, worker_try)
            duration = self.delay.draw(rng) * self.time_factor
            node = f"sim-worker-{rng.randrange(self.workers)}"
            if rng.random() < self.loss_rate:
                seconds += duration * rng.random()  # the worker died partway through
                continue
            failed = rng.random() < self.failure_rate
            return Fate(seconds + duration, worker_try + 1, node, failed=failed, lost=False, probe_seconds=probed)
        return Fate(seconds, self.retries + 1, node, failed=False, lost=True, probe_seconds=probed)

    # -- inside -----------------------------------------------------------------------------------

    def _probe_verdict(self, task: EvaluationTask) -> tuple[Rejection | None, dict[str, float]]:
        """The workers' probes for the task (none when its spec has none); refused without `probes`."""
        if task.spec.probes is None:
            return None, {}
        if self.probes is None:
            raise ValueError(
                "the task's spec asks the workers to run the probes (rejection.probes: workers); "
                "give the cluster SimulatedProbes to say how they behave"
            )
        return self.probes.verdict(task, self.seed)

    def _take_slot(self, now: float) -> None:
        """A free slot that ran before was idle since it freed: that wait is the controller's."""
        if self._first_submit_at is None:
            self._first_submit_at = now
        if self._freed_at:
            self._idle += now - self._freed_at.popleft()
            self._refills += 1
        if self._full_at is None and len(self._live) + 1 >= self.workers:
            self._full_at = now

    def _collect_due(self, now: float) -> list[EvaluationOutcome]:
        found = []
        while self._due and self._due[0][0] <= now:
            due, _, job = heapq.heappop(self._due)
            if self._live.get(job.task.candidate_id) is not job:
                continue  # cancelled: its outcome never arrives
            del self._live[job.task.candidate_id]
            self._freed_at.append(due)
            self._busy += job.fate.seconds
            found.append(self._outcome(job))
        self._counts["collected"] += len(found)
        return found

    def _outcome(self, job: _Job) -> EvaluationOutcome:
        return self.outcome(job.task, job.fate)

    def outcome(self, task: EvaluationTask, fate: Fate) -> EvaluationOutcome:
        """What a worker returns for `task` once `fate` has played out: scores and records, a probe's or
        the quality rejection, the body's error, or the loss of its worker on every try."""
        simulated = round(fate.seconds / self.time_factor, 4)
        common: dict[str, Any] = {
            "candidate_id": task.candidate_id,
            "attempt": task.attempt,
            "node": fate.node,
            "duration": simulated,
            "check_seconds": dict(fate.probe_seconds),
        }
        if fate.probe_rejection is not None:
            self._counts["probe_rejected"] += 1
            return EvaluationOutcome(**common, rejection=fate.probe_rejection)
        if fate.lost:
            self._counts["lost"] += 1
            error = f"the worker was lost on all {fate.tries} tries; last: simulated worker loss on {fate.node}"
            return EvaluationOutcome(**common, error=error)
        if fate.failed:
            self._counts["failed"] += 1
            return EvaluationOutcome(**common, error=f"simulated failure on {fate.node}: the evaluation raised")
        scores = layer_scores(task.graph, task.spec, self.seed)
        records = self._records(task, fate, scores, simulated)
        rejection = _quality_rejection(task.spec, scores)
        objectives = None if rejection is not None else scores
        if rejection is not None:  # a quality rejection stops after the quality phase, as the real body does
            records = tuple(r for r in records if r.phase is EvaluationPhase.QUALITY)
        return EvaluationOutcome(**common, records=records, objectives=objectives, rejection=rejection)

    def _records(
        self, task: EvaluationTask, fate: Fate, scores: dict[str, float], simulated: float
    ) -> tuple[EvaluationRecord, ...]:
        """One record per architecture and phase, as the worker body writes them (quality first)."""
        spec = task.spec
        phases = [EvaluationPhase.QUALITY, EvaluationPhase.PROXY] if spec.quality.enabled else [EvaluationPhase.PROXY]
        each = simulated / (len(phases) * len(spec.architectures))
        records = []
        for phase in phases:
            for arch in spec.architectures:
                accuracy = scores[accuracy_name(arch.label)]
                status = EvaluationStatus.SUCCEEDED
                if phase is EvaluationPhase.QUALITY and accuracy < spec.quality.threshold:
                    status = EvaluationStatus.REJECTED
                metrics = {"accuracy": accuracy, "simulated": True}
                records.append(EvaluationRecord(arch.label, phase, status, metrics, each, fate.node, task.attempt))
        return tuple(records)


def _quality_rejection(spec: EvaluationSpec, scores: dict[str, float]) -> Rejection | None:
    if not spec.quality.enabled:
        return None
    for arch in spec.architectures:
        accuracy = scores[accuracy_name(arch.label)]
        if accuracy < spec.quality.threshold:
            return Rejection(
                RejectionStage.QUALITY,
                f"{arch.label}: validation accuracy {accuracy:.1%} below {spec.quality.threshold:.0%} (simulated)",
            )
    return None


def _check_settings(workers: int, time_factor: float, failure_rate: float, loss_rate: float, retries: int) -> None:
    problems = []
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        problems.append(f"workers must be a whole number >= 1, got {workers!r}")
    if not time_factor > 0:
        problems.append(f"time_factor must be positive, got {time_factor!r}")
    for name, rate in (("failure_rate", failure_rate), ("loss_rate", loss_rate)):
        if not 0.0 <= rate <= 1.0:
            problems.append(f"{name} must be within [0, 1], got {rate!r}")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        problems.append(f"retries must be a whole number >= 0, got {retries!r}")
    if problems:
        raise ValueError("; ".join(problems))
