"""The function Ray runs on a worker: one candidate's evaluation, with heartbeats.

Ray keeps its worker processes between tasks of a job, so each process stays warm: PyTorch is imported
once, the proxy data set is loaded once (`load_data` caches it per process) and compiled kernels stay
in the compiler's per-process cache (and Triton's on-disk cache of the node).
"""

from __future__ import annotations

import dataclasses
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
    with Beating(board, ticket, node, heartbeat_interval) as beating:
        outcome = body(task)
    return _labelled(outcome, node, tries_before + beating.try_number)


def _labelled(outcome: EvaluationOutcome, node: str, try_number: int) -> EvaluationOutcome:
    # `attempt` stays the store's attempt (the controller matches outcomes by it); which worker try
    # produced the result goes into each record's metrics, so retries after lost workers are visible.
    records = tuple(
        dataclasses.replace(r, node=node, metrics={**r.metrics, "worker_try": try_number}) for r in outcome.records
    )
    return dataclasses.replace(outcome, node=node, records=records)


# Retries happen only when the worker process or its node dies (retry_exceptions=False): `evaluate_task`
# reports its own errors as outcomes. max_calls=0 keeps worker processes (and their caches) alive between
# tasks, also for GPU tasks.
remote_evaluation = ray.remote(retry_exceptions=False, max_calls=0)(run_evaluation)
