"""Worker bodies for evaluator tests: they stand in for `evaluate_task` to make a worker slow, hang, die
or raise on demand. Ray pickles them by value (see `register`), so workers need not import this file."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from evonorm_search.enums import EvaluationPhase, EvaluationStatus
from evonorm_search.search.evaluator import EvaluationOutcome, EvaluationRecord, EvaluationTask


def register() -> None:
    import ray.cloudpickle

    import tests.workers.bodies as me

    ray.cloudpickle.register_pickle_by_value(me)


def quick(task: EvaluationTask) -> EvaluationOutcome:
    record = EvaluationRecord(
        "arch",
        EvaluationPhase.PROXY,
        EvaluationStatus.SUCCEEDED,
        {"accuracy": 0.5},
        0.0,
        socket.gethostname(),
        task.attempt,
    )
    return EvaluationOutcome(
        task.candidate_id, task.attempt, socket.gethostname(), 0.0, (record,), objectives={"accuracy_arch": 0.5}
    )


def sleepy(seconds: float, task: EvaluationTask) -> EvaluationOutcome:
    time.sleep(seconds)
    return quick(task)


def sleeps_for(candidate_ids: set[int], seconds: float, task: EvaluationTask) -> EvaluationOutcome:
    if task.candidate_id in candidate_ids:
        time.sleep(seconds)
    return quick(task)


def _first_time(marker_dir: str, task: EvaluationTask) -> bool:
    marker = Path(marker_dir) / f"started-{task.candidate_id}"
    if marker.exists():
        return False
    marker.write_text(str(os.getpid()))
    return True


def hangs_first(marker_dir: str, task: EvaluationTask) -> EvaluationOutcome:
    """The first worker to run a task stays busy (the test freezes it); any later one answers at once."""
    if _first_time(marker_dir, task):
        time.sleep(120)
    return quick(task)


def dies_first(marker_dir: str, task: EvaluationTask) -> EvaluationOutcome:
    """The first worker to run a task dies as a killed process would; any later one answers at once."""
    if _first_time(marker_dir, task):
        os._exit(1)
    return quick(task)


def always_dies(task: EvaluationTask) -> EvaluationOutcome:
    os._exit(1)


def raises(task: EvaluationTask) -> EvaluationOutcome:
    raise RuntimeError("the body broke")


def reports_its_process(task: EvaluationTask) -> EvaluationOutcome:
    """Answers at once with what the worker saw: the training device it was given, the GPUs Ray granted
    it and its process id (to see worker processes recycled)."""
    import ray

    seen = {"device": task.spec.training.device, "gpu_ids": [str(i) for i in ray.get_gpu_ids()], "pid": os.getpid()}
    record = EvaluationRecord(
        "arch", EvaluationPhase.PROXY, EvaluationStatus.SUCCEEDED, seen, 0.0, socket.gethostname(), task.attempt
    )
    return EvaluationOutcome(
        task.candidate_id, task.attempt, socket.gethostname(), 0.0, (record,), objectives={"accuracy_arch": 0.5}
    )
