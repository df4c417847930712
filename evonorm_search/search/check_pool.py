"""Cheap checks computed ahead in a process pool, beside the controller.

The controller is one thread. With thousands of workers it spends most of its time on the cheap checks
of the candidates it proposes (benchmarks/results/paper-scale-*.md: the stability probe's adversarial
ascent alone is about 12 ms for a layer that reaches it), and a candidate waits for them before it is
stored and sent to training. Most of that work reads nothing but the layer: the static check, the
canonical hash and fingerprint, the numeric and stability probes (`CheapRejections.precompute`). Only
the duplicate lookups read the search's index, which changes with every candidate stored.

So the controller proposes the next births ahead of time (speculation, `Controller._speculate`), hands
their layers to this pool, and when it makes each proposal for real takes the pool's result for that
layer, if it has one, and finishes the chain with the index lookups (`CheapRejections.run(graph,
known)`). A proposal depends on the population and on the duplicate index, so a speculated layer may
not be the one proposed in the end: the pool's results are looked up by layer, never by birth, and a
miss is checked in the controller as before. The verdicts, and so the search, are the same with or
without the pool; only the time the controller spends waiting for them changes.

A pool whose process dies, or that cannot be pickled to, answers None from then on (the controller
checks inline) and says why in `broken`: a search never stops because its helper did.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import multiprocessing.connection
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..ir import Graph
from .rejection import CheapRejections, DuplicateIndex, Precomputed

if TYPE_CHECKING:
    from .config import SearchConfig

_CHECKS: CheapRejections | None = None  # in a pool process: the search's chain, built once
# Builds a search's chain (`controller.build_checks`), handed in by the controller: a module-level function
# pickles by reference, so the pool never imports the controller that imports it.
ChecksBuilder = Callable[["SearchConfig", DuplicateIndex], CheapRejections]


def _start_process(config: dict[str, Any], build: ChecksBuilder) -> None:
    _end_with_the_controller()
    import torch

    from .config import SearchConfig

    torch.set_num_threads(1)
    global _CHECKS
    # The index is never read here: `precompute` skips the lookups, which stay with the controller.
    _CHECKS = build(SearchConfig.from_mapping(config), DuplicateIndex())


def _end_with_the_controller() -> None:
    """End this process when the controller that started it ends, however it ends. A pool process waits
    for work on a queue whose both ends it holds, so a controller killed with SIGKILL (no clean-up runs)
    would otherwise leave it waiting forever, holding whatever the controller's stdout was piped to."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def wait_then_exit() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(0)

    threading.Thread(target=wait_then_exit, name="evonorm-check-pool-watch", daemon=True).start()


def _precompute(graph: dict[str, Any]) -> Precomputed:
    assert _CHECKS is not None, "the pool process was not started with its search's checks"
    return _CHECKS.precompute(Graph.from_dict(graph))


class CheckPool:
    """`workers` processes computing `precompute` for a search's layers, looked up by the layer's text;
    each builds the search's chain from `config` (its JSON form) with `build`.

    At most `limit` layers are held (waiting, running or done and not yet taken); beyond it the oldest
    is dropped, so a speculation that was never taken cannot grow the controller's memory."""

    def __init__(self, config: dict[str, Any], workers: int, build: ChecksBuilder, *, limit: int | None = None):
        if workers < 1:
            raise ValueError(f"check workers must be >= 1, got {workers}")
        # spawn: the controller may hold threads (a store's pool, a progress display) that fork would copy
        # in whatever state they were in.
        self._pool = cf.ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_process,
            initargs=(config, build),
        )
        self.workers = workers
        self.limit = limit if limit is not None else 16 * workers
        self._held: OrderedDict[str, cf.Future[Precomputed]] = OrderedDict()
        self.broken: str | None = None
        self.hits = 0  # proposals whose checks the pool had computed
        self.misses = 0  # proposals checked in the controller (not speculated, or a different layer)
        self.dropped = 0  # speculated layers never taken

    def __len__(self) -> int:
        return len(self._held)

    def pids(self) -> list[int]:
        """The ids of the pool's live processes (started on first use), for a monitor or a test."""
        processes = getattr(self._pool, "_processes", None) or {}
        return [process.pid for process in processes.values() if process.is_alive()]

    def submit(self, graph: Graph) -> None:
        """Start computing `graph`'s checks, unless they are already held."""
        key = graph.to_text()
        if self.broken is not None or key in self._held:
            return
        try:
            self._held[key] = self._pool.submit(_precompute, graph.to_dict())
        except (cf.BrokenExecutor, RuntimeError) as e:  # RuntimeError: submitted after shutdown
            self._break(e)
            return
        while len(self._held) > self.limit:
            _, oldest = self._held.popitem(last=False)
            oldest.cancel()
            self.dropped += 1

    def take(self, graph: Graph) -> Precomputed | None:
        """The checks computed for `graph`, waiting for them if they are still running; None when the
        pool was not given this layer or can no longer answer."""
        future = self._held.pop(graph.to_text(), None)
        if future is None or self.broken is not None:
            self.misses += 1
            return None
        try:
            known = future.result()
        except cf.BrokenExecutor as e:  # a process died: nothing it held can be trusted to come back
            self._break(e)
            self.misses += 1
            return None
        except Exception:  # this layer alone (cancelled, or it did not pickle): the controller checks it
            self.misses += 1
            return None
        self.hits += 1
        return known

    def _break(self, error: BaseException) -> None:
        self.broken = f"{type(error).__name__}: {error}".rstrip(": ")
        for future in self._held.values():
            future.cancel()
        self._held.clear()

    def close(self) -> None:
        self.dropped += sum(not f.done() for f in self._held.values())
        self._held.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)
