"""The simulated cluster through Ray: thousands of evaluations in flight as Ray actor tasks.

`SimulatedCluster` (evonorm_search/search/simulated.py) shows what the controller and the store can
drive; this module puts Ray between them and the simulated workers, so Ray's part is measured too:
submitting and scheduling each evaluation, its outcome through the object store, the driver's bookkeeping
of thousands of object refs, and retries of the evaluations whose worker died.

A plain Ray task holds a worker process while it runs, so 2,000 tasks in flight need 2,000 processes,
each with the package imported: more memory than one machine has. An async actor runs many calls at once
in one process. `sleeping_node()` is such an actor, one per node of the cluster: each call sleeps the
duration its task drew (`SimulatedCluster.fate_of`, deterministic per candidate and attempt) and returns
the outcome the simulated cluster computes for it (in the driver, pickled, as a worker's outcome travels
back through the object store). An actor killed with calls in flight is restarted by Ray
(`max_restarts`) and its calls run again (`max_task_retries`): a worker's death loses nothing, and no
call of this evaluator is retried by hand.
"""

from __future__ import annotations

import asyncio
import pickle
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import ray
from ray.exceptions import RayError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from evonorm_search.search.evaluator import EvaluationOutcome, EvaluationTask
from evonorm_search.search.simulated import LognormalDelay, SimulatedCluster, SimulatedProbes


def sleeping_node() -> Any:
    """The actor class of one node's simulated workers: every call is one evaluation, which sleeps its
    drawn duration and returns its outcome (pickled by the driver, as a worker's outcome travels).

    Defined in a function so that Ray ships the class by value: a node's process then imports asyncio and
    nothing of this package (torch and sympy would take the restart of a killed actor from well under a
    second to most of a minute on a busy machine, and that is not Ray's overhead)."""

    class SleepingNode:
        def __init__(self, label: str):
            self.label = label

        async def evaluate(self, outcome: bytes, seconds: float) -> bytes:
            await asyncio.sleep(seconds)
            return outcome

        def ready(self) -> str:
            return self.label

    return ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)(SleepingNode)


@dataclass
class _Call:
    task: EvaluationTask
    node: int
    submitted_at: float  # time.perf_counter()
    seconds: float  # the duration the task drew: its overhead is what it took beyond it
    killed_under: bool = False  # its actor was killed while it was in flight (Ray ran it again)


@dataclass
class RayStats:
    """What went through Ray: counts, the overhead of each collected call (seconds from submit to the
    outcome in the driver, minus the drawn duration), and the most calls in flight at once."""

    submitted: int = 0
    collected: int = 0
    cancelled: int = 0
    errors: int = 0  # outcomes that are an error from Ray itself (a call Ray gave up on)
    kills: int = 0
    rerun: int = 0  # calls in flight on a killed actor that Ray ran again and that came back
    peak_in_flight: int = 0
    overheads: list[float] = field(default_factory=list)  # calls whose actor lived throughout
    rerun_overheads: list[float] = field(default_factory=list)  # calls run again: the restart included


class RaySimulatedCluster:
    """The `Evaluator` protocol over `nodes` `SimulatedNode` actors of `slots` concurrent evaluations
    each (capacity: nodes x slots), spread one per Ray node. Evaluations take a lognormal delay around a
    median (`delay`) times `time_factor`, fail at `failure_rate` and are scored as `SimulatedCluster`
    scores them (`seed`); a spec that puts the probes on the workers gets them played by `probes`. `kill_at`: numbers of collected outcomes at which the next actor is killed
    (round robin) with its calls in flight, as a worker process dies; Ray restarts it and runs them again."""

    def __init__(
        self,
        nodes: int,
        slots: int,
        *,
        delay: LognormalDelay | None = None,
        time_factor: float = 1.0,
        failure_rate: float = 0.0,
        probes: SimulatedProbes | None = None,
        seed: int = 0,
        kill_at: Sequence[int] = (),
    ):
        if nodes < 1 or slots < 1:
            raise ValueError(f"nodes and slots must be at least 1, got {nodes} and {slots}")
        self.slots = slots
        self.fates = SimulatedCluster(
            nodes * slots, delay=delay, time_factor=time_factor, failure_rate=failure_rate, probes=probes, seed=seed
        )
        placements = _node_ids()
        node_class = sleeping_node()
        self.actors = [
            node_class.options(
                max_concurrency=slots,
                scheduling_strategy=NodeAffinitySchedulingStrategy(placements[i % len(placements)], soft=True),
            ).remote(f"ray-sim-{i}")
            for i in range(nodes)
        ]
        ray.get([a.ready.remote() for a in self.actors])
        self.calls: dict[ray.ObjectRef, _Call] = {}
        self.ref_of: dict[int, ray.ObjectRef] = {}  # candidate id -> its call in flight
        self.load = [0] * nodes
        self.kill_at = sorted(kill_at)
        self.stats = RayStats()
        self.closed = False

    def capacity(self) -> int:
        return self.slots * len(self.actors)

    def submit(self, task: EvaluationTask) -> None:
        if self.closed:
            raise RuntimeError("the evaluator is closed")
        if len(self.calls) >= self.capacity():
            raise RuntimeError(f"the evaluator is full ({self.capacity()} task(s) in flight)")
        if task.candidate_id in self.ref_of:
            raise RuntimeError(f"candidate {task.candidate_id} is already in flight")
        fate = self.fates.fate_of(task)
        node = min(range(len(self.actors)), key=self.load.__getitem__)
        outcome = replace(self.fates.outcome(task, fate), node=f"ray-sim-{node}")
        ref = self.actors[node].evaluate.remote(pickle.dumps(outcome), fate.seconds)
        self.calls[ref] = _Call(task, node, time.perf_counter(), fate.seconds)
        self.ref_of[task.candidate_id] = ref
        self.load[node] += 1
        self.stats.submitted += 1
        self.stats.peak_in_flight = max(self.stats.peak_in_flight, len(self.calls))

    def poll(self, timeout: float) -> list[EvaluationOutcome]:
        """Outcomes ready now, waiting up to `timeout` seconds for the first."""
        if not self.calls:
            time.sleep(max(0.0, timeout))
            return []
        refs = list(self.calls)
        ready, _ = ray.wait(refs, num_returns=1, timeout=max(0.0, timeout))
        if ready:
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        outcomes = [self._collect(ref) for ref in ready]
        self._kill_when_due()
        return outcomes

    def cancel(self, candidate_ids: Iterable[int]) -> None:
        for cid in candidate_ids:
            ref = self.ref_of.pop(cid, None)
            if ref is None:
                continue
            call = self.calls.pop(ref)
            self.load[call.node] -= 1
            ray.cancel(ref)
            self.stats.cancelled += 1

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for ref in list(self.calls):
            ray.cancel(ref)
        for actor in self.actors:
            ray.kill(actor, no_restart=True)

    def __enter__(self) -> RaySimulatedCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _collect(self, ref: ray.ObjectRef) -> EvaluationOutcome:
        call = self.calls.pop(ref)
        del self.ref_of[call.task.candidate_id]
        self.load[call.node] -= 1
        self.stats.collected += 1
        try:
            # The bytes this driver pickled in `submit`, returned by the sleeping actor unchanged.
            outcome: EvaluationOutcome = pickle.loads(ray.get(ref))  # noqa: S301
        except RayError as e:  # Ray gave up on the call: the candidate fails with the reason, never hangs
            self.stats.errors += 1
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            node = f"ray-sim-{call.node}"
            return EvaluationOutcome(call.task.candidate_id, call.task.attempt, node, 0.0, error=f"Ray: {reason}")
        overhead = time.perf_counter() - call.submitted_at - call.seconds
        (self.stats.rerun_overheads if call.killed_under else self.stats.overheads).append(overhead)
        self.stats.rerun += call.killed_under
        return outcome

    def _kill_when_due(self) -> None:
        """Kill the next actor with its calls in flight once as many outcomes as the next mark came back."""
        while self.kill_at and self.stats.collected >= self.kill_at[0]:
            self.kill_at.pop(0)
            node = self.stats.kills % len(self.actors)
            for call in self.calls.values():
                call.killed_under |= call.node == node
            ray.kill(self.actors[node], no_restart=False)
            self.stats.kills += 1


def _node_ids() -> list[str]:
    """The alive nodes that offer CPUs (a head started with none runs no simulated node)."""
    nodes = [n for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU", 0) > 0]
    return [n["NodeID"] for n in nodes] or [ray.get_runtime_context().get_node_id()]
