"""An evaluator over a local process pool: no Ray, no store.

Scoring many layers on one machine (the benchmarks, scripts) wants every core busy without starting a
Ray cluster. Each worker process trains with one torch thread, so `workers` processes use `workers`
cores and never oversubscribe them.
"""

from __future__ import annotations

import concurrent.futures as cf
import queue
import threading
import traceback
from collections.abc import Iterable
from types import TracebackType

from .evaluator import EvaluationOutcome, EvaluationTask, evaluate_task


def _one_thread_per_worker() -> None:
    import torch

    torch.set_num_threads(1)


class ProcessPoolEvaluator:
    """Runs `evaluate_task` in `workers` processes (the Evaluator protocol).

    A task that raises or whose process dies comes back as a failed outcome, so a caller polling for
    it never waits forever. A cancelled task that has not started never runs; one already running
    finishes in its process (a process cannot be interrupted mid-step) and its outcome is dropped.

    As a context manager it closes its processes on leaving the block, errors included:
    `with ProcessPoolEvaluator(4) as evaluator: score_layers(layers, specs, evaluator)`."""

    def __init__(self, workers: int):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self._pool = cf.ProcessPoolExecutor(max_workers=workers, initializer=_one_thread_per_worker)
        self._workers = workers
        self._done: queue.Queue[EvaluationOutcome] = queue.Queue()
        self._futures: dict[int, cf.Future[EvaluationOutcome]] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> ProcessPoolEvaluator:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def capacity(self) -> int:
        return self._workers

    def submit(self, task: EvaluationTask) -> None:
        with self._lock:
            if task.candidate_id in self._futures:
                raise RuntimeError(f"candidate {task.candidate_id} is already in flight")
            future = self._pool.submit(evaluate_task, task)
            self._futures[task.candidate_id] = future
        future.add_done_callback(lambda f: self._finished(task, f))

    def _finished(self, task: EvaluationTask, future: cf.Future[EvaluationOutcome]) -> None:
        if future.cancelled():
            return
        error = future.exception()
        if error is None:
            self._done.put(future.result())
            return
        # evaluate_task reports a training error itself: this is the process or the pickling failing.
        text = "".join(traceback.format_exception_only(type(error), error)).strip()
        self._done.put(EvaluationOutcome(task.candidate_id, task.attempt, "pool", 0.0, error=text))

    def poll(self, timeout: float) -> list[EvaluationOutcome]:
        """Outcomes finished so far, waiting up to `timeout` seconds for the first one."""
        found: list[EvaluationOutcome] = []
        try:
            found.append(self._done.get(timeout=max(0.0, timeout)))
            while True:
                found.append(self._done.get_nowait())
        except queue.Empty:
            pass
        with self._lock:
            kept = [o for o in found if o.candidate_id in self._futures]
            for outcome in kept:
                del self._futures[outcome.candidate_id]
        return kept

    def cancel(self, candidate_ids: Iterable[int]) -> None:
        with self._lock:
            for candidate_id in candidate_ids:
                future = self._futures.pop(candidate_id, None)
                if future is not None:
                    future.cancel()

    def close(self) -> None:
        with self._lock:
            self._futures.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)
