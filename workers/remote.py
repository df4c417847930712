"""The function Ray runs on a worker: one candidate's evaluation, with heartbeats.

Ray keeps its worker processes between tasks, so each process stays warm: PyTorch is imported once, the
proxy data set is loaded once (`load_data` caches it per process) and compiled kernels stay in the
compiler's bounded per-process cache (and Triton's on-disk cache of the node). A process is recycled
after `max_calls` evaluations (the search's `workers.max_calls`; 0 keeps it for good), so whatever
it accumulates beyond those caps (loaded CUDA modules, allocator fragments) goes back to the system.
"""

from __future__ import annotations

import dataclasses
import functools
import socket
from collections.abc import Callable
from typing import Any

import ray

from evonorm_search.search.evaluator import EvaluationOutcome, EvaluationTask, evaluate_task

from .heartbeat import Beating

Body = Callable[[EvaluationTask], EvaluationOutcome]


def node_label() -> str:
    """`host/ray-node`: the host name alone cannot tell apart several Ray nodes on one machine."""
    return f"{socket.gethostname()}/{ray.get_runtime_context().get_node_id()[:8]}"


def run_evaluation(
    task: EvaluationTask,
    ticket: int,
    board: Any,
    heartbeat_interval: float,
    body: Body = evaluate_task,
    tries_before: int = 0,
) -> EvaluationOutcome:
    """Evaluate `task` with `body` while beating on `board`; label the outcome with this node and its worker
    try (counting the tries of earlier submissions of the task, `tries_before`)."""
    node = node_label()
    task = on_granted_device(task, ray.get_gpu_ids())
    with Beating(board, ticket, node, heartbeat_interval) as beating:
        outcome = body(task)
    return _labelled(outcome, node, tries_before + beating.try_number)


def on_granted_device(task: EvaluationTask, gpu_ids: list) -> EvaluationTask:
    """`training.device: auto` made definite by what Ray granted this task: `cuda` with a GPU, else `cpu`.

    Ray hides the GPUs of other tasks from a GPU task (CUDA_VISIBLE_DEVICES) but leaves every GPU visible
    to a task that reserved none, where `auto` would otherwise train on a GPU nobody scheduled."""
    training = task.spec.training
    if training.device != "auto":
        return task
    device = "cuda" if gpu_ids else "cpu"
    spec = task.spec.model_copy(update={"training": training.model_copy(update={"device": device})})
    return dataclasses.replace(task, spec=spec)


def _labelled(outcome: EvaluationOutcome, node: str, try_number: int) -> EvaluationOutcome:
    # `attempt` stays the store's attempt (the controller matches outcomes by it); which worker try
    # produced the result goes into each record's metrics, so retries after lost workers are visible.
    records = tuple(
        dataclasses.replace(r, node=node, metrics={**r.metrics, "worker_try": try_number}) for r in outcome.records
    )
    return dataclasses.replace(outcome, node=node, records=records)


@functools.cache
def remote_evaluation(max_calls: int = 0) -> Any:
    """`run_evaluation` as a Ray task whose worker process exits after `max_calls` tasks (0: never).

    Ray takes `max_calls` only where the function is declared, never in `.options()`, so each value gets
    its own declaration (one per process and value). Retries happen only when the worker process or its
    node dies (retry_exceptions=False): `evaluate_task` reports its own errors as outcomes. Ray's default
    for GPU tasks (a new process per task) is overridden too: the value given applies to every task."""
    if isinstance(max_calls, bool) or not isinstance(max_calls, int) or max_calls < 0:
        raise ValueError(f"max_calls must be a whole number >= 0, got {max_calls!r}")
    return ray.remote(retry_exceptions=False, max_calls=max_calls)(run_evaluation)
