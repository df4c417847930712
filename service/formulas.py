"""Symbolic forms (canonical form, LaTeX, hash) for layers, bounded in size, in time and cached.

A small graph can stand for an enormous formula (see `evonorm_search.symbolic.formula_size`); layers over
the service's limit (EVONORM_MAX_FORMULA_SIZE) get no symbolic form instead of tying up a worker thread.
sympy runs in a few worker processes (`SymbolicWorkers`, EVONORM_FORMULA_WORKERS), never in the server's
own: it holds the interpreter lock for as long as it works, so in a thread it would stall every other
request, /healthz included. Each request waits at most EVONORM_FORMULA_SECONDS for a free worker and its
result; past that it gets an answer that says so, and the work in flight is capped by the worker count.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool

from evonorm_search.ir import Graph, GraphError
from evonorm_search.symbolic import FormulaTooLarge, formula_size, symbolic_forms

# A stored candidate's graph, or a function reading it (called only when its form is not cached).
StoredGraph = Mapping[str, Any] | Callable[[], Mapping[str, Any]]


class FormulaBusy(RuntimeError):
    """Every formula worker stayed busy for the whole time limit (503: try again later)."""


class FormulaTimeout(RuntimeError):
    """The symbolic work took longer than the time limit (422: the layer is too costly to print)."""


# How much lower than the server the formula workers run: when sympy keeps every core busy, the server's
# event loop still gets a core at once (/healthz and the database reads stay fast); the formulas wait.
WORKER_NICENESS = 10


def _start_worker(parent: int) -> None:
    """In each worker, before its first job: yield the CPU to the server, and exit with it."""
    os.nice(WORKER_NICENESS)
    _exit_with_parent(parent)


def _exit_with_parent(parent: int) -> None:
    """Exit as soon as the server that started this worker is gone, however it ended (a killed server
    never shuts its pool down, and its workers would otherwise live on)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


_TRIVIAL = {"version": 1, "nodes": [{"op": "x"}, {"op": "relu", "args": [0]}], "output": 1}  # relu(x)


class SymbolicWorkers:
    """A pool of `workers` processes for sympy, shared by every app of this process with that count.

    `forms(graph, max_size, seconds)` waits at most `seconds` in all: for a free worker (FormulaBusy past
    it) and for the result (FormulaTimeout). A worker whose request timed out finishes its job (formulas
    are bounded in size, so every job ends) before it takes another, so the work in flight never exceeds
    `workers`, however many clients send oversized layers."""

    _shared: dict[int, SymbolicWorkers] = {}
    _shared_lock = threading.Lock()

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._slots = threading.BoundedSemaphore(workers)
        self._pool: ProcessPoolExecutor | None = None
        self._ready: list[Future] = []  # the start-up jobs, one per worker
        self._lock = threading.Lock()

    @classmethod
    def shared(cls, workers: int) -> SymbolicWorkers:
        with cls._shared_lock:
            if workers not in cls._shared:
                cls._shared[workers] = cls(workers)
            return cls._shared[workers]

    def forms(self, graph: Graph, max_size: int, seconds: float) -> tuple[str, str, str]:
        """(canonical form, LaTeX, hash) of `graph`; FormulaTooLarge, FormulaBusy or FormulaTimeout."""
        self.start()  # the first call waits for the workers to start, outside its time limit
        deadline = time.monotonic() + seconds
        if not self._slots.acquire(timeout=seconds):
            raise FormulaBusy(f"all {self.workers} formula workers stayed busy for {seconds:g}s")
        try:
            future = self._submit(graph.to_dict(), max_size)
        except BaseException:
            self._slots.release()
            raise
        future.add_done_callback(lambda _: self._slots.release())
        try:
            return future.result(timeout=max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            raise FormulaTimeout(f"its symbolic form took longer than {seconds:g}s (EVONORM_FORMULA_SECONDS)") from None
        except BrokenProcessPool:
            self._reset()
            raise FormulaBusy("a formula worker died; the pool was restarted") from None

    def start(self) -> None:
        """Start the worker processes and wait until each has imported the library (seconds, once per
        process), so that no request's time limit is spent starting them. The first formula starts them."""
        with self._lock:
            pool = self._pool
            if pool is None:
                # spawn: the server has threads, and a forked child would inherit their locks mid-use.
                pool = ProcessPoolExecutor(
                    max_workers=self.workers,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_start_worker,
                    initargs=(os.getpid(),),
                )
                self._pool, self._ready = pool, [pool.submit(symbolic_forms, _TRIVIAL, 16) for _ in range(self.workers)]
            ready = self._ready
        for future in ready:  # outside the lock: closing must never wait for a start
            try:
                future.result()
            except Exception:  # a broken start: the next job reports it (and the pool restarts)
                return

    def wait_idle(self, seconds: float) -> bool:
        """Wait until no job is in flight (True), or `seconds` pass (False)."""
        deadline = time.monotonic() + seconds
        taken = 0
        try:
            while taken < self.workers and self._slots.acquire(timeout=max(0.0, deadline - time.monotonic())):
                taken += 1
            return taken == self.workers
        finally:
            for _ in range(taken):
                self._slots.release()

    def _submit(self, graph: dict, max_size: int) -> Future:
        with self._lock:
            if self._pool is None:
                raise BrokenProcessPool("the formula workers were closed")
            return self._pool.submit(symbolic_forms, graph, max_size)

    def _reset(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        self._reset()


@atexit.register
def _close_shared_workers() -> None:
    for workers in list(SymbolicWorkers._shared.values()):
        workers.close()


@dataclass(frozen=True)
class Symbolic:
    canonical: str | None
    latex: str | None
    note: str | None = None  # why canonical/latex are missing


@dataclass(frozen=True)
class Checked:
    """A layer's symbolic forms as /layers/check answers them."""

    canonical: str
    latex: str
    hash: str


class FormulaCache:
    """Symbolic forms of layers up to `max_size` operations, computed by `workers` within `seconds` per
    request; the last `entries` kept, keyed by canonical hash (layers with equal hashes have equal
    canonical forms, hence equal LaTeX)."""

    def __init__(
        self, max_size: int, entries: int = 4096, *, workers: SymbolicWorkers | None = None, seconds: float = 5.0
    ) -> None:
        self.max_size = max_size
        self.entries = entries
        self.workers = workers or SymbolicWorkers.shared(2)
        self.seconds = seconds
        self._cache: OrderedDict[str, Symbolic] = OrderedDict()
        self._lock = threading.Lock()

    def too_large(self, graph: Graph) -> str | None:
        """Why the layer gets no symbolic form, or None when it fits."""
        if formula_size(graph, cap=self.max_size + 1) <= self.max_size:
            return None
        return (
            f"the formula has more than {self.max_size} operations once shared subexpressions are written out, "
            "too many to print (EVONORM_MAX_FORMULA_SIZE)"
        )

    def check(self, graph: Graph) -> Checked:
        """Canonical form, LaTeX and hash of a layer; FormulaTooLarge, FormulaBusy or FormulaTimeout."""
        if (note := self.too_large(graph)) is not None:
            raise FormulaTooLarge(note)
        return Checked(*self.workers.forms(graph, self.max_size, self.seconds))

    def of_graph(self, graph: Graph) -> Symbolic:
        """Canonical form and LaTeX of a layer, or a note saying why there are none."""
        try:
            checked = self.check(graph)
        except (FormulaTooLarge, FormulaTimeout, FormulaBusy) as e:
            return Symbolic(None, None, str(e))
        return Symbolic(checked.canonical, checked.latex)

    def has(self, canonical_hash: str) -> bool:
        """Whether the symbolic form of this hash is cached (then `of_stored` needs no graph)."""
        with self._lock:
            return canonical_hash in self._cache

    def cached(self, canonical_hashes: Iterable[str]) -> dict[str, Symbolic]:
        """{hash: symbolic form} of those of `canonical_hashes` whose forms are cached."""
        found: dict[str, Symbolic] = {}
        with self._lock:
            for h in canonical_hashes:
                if (hit := self._cache.get(h)) is not None:
                    self._cache.move_to_end(h)
                    found[h] = hit
        return found

    async def of_stored_many(self, stored: Mapping[str, StoredGraph]) -> dict[str, Symbolic]:
        """`of_stored` of each {hash: graph} item, for the event loop: cached forms at once, and only when
        some are missing, the rest on the general thread pool (they may wait for a formula worker, which
        must hold neither the event loop nor a database thread)."""
        found = self.cached(stored)
        missing = {h: graph for h, graph in stored.items() if h not in found}
        if missing:
            found |= await run_in_threadpool(lambda: {h: self.of_stored(h, graph) for h, graph in missing.items()})
        return found

    def of_stored(self, canonical_hash: str, graph: StoredGraph) -> Symbolic:
        """The symbolic form of a stored candidate, from the cache when its hash was seen before. `graph`: the
        stored graph, or a function reading it, called only on a miss (reads that show many candidates
        leave graphs out: decoding them costs more than the rest of the read)."""
        with self._lock:
            if (hit := self._cache.get(canonical_hash)) is not None:
                self._cache.move_to_end(canonical_hash)
                return hit
        if callable(graph):
            graph = graph()
        try:
            layer = Graph.from_dict(dict(graph))
        except (GraphError, ValueError, TypeError, KeyError):
            layer = None
        if layer is None:
            symbolic = Symbolic(None, None, "the stored graph cannot be read by this version of evonorm-search")
        else:
            try:
                checked = self.check(layer)
            except FormulaBusy as e:
                return Symbolic(None, None, str(e))  # not a property of the layer: not cached
            except (FormulaTooLarge, FormulaTimeout) as e:
                symbolic = Symbolic(None, None, str(e))
            else:
                symbolic = Symbolic(checked.canonical, checked.latex)
        with self._lock:
            self._cache[canonical_hash] = symbolic
            while len(self._cache) > self.entries:
                self._cache.popitem(last=False)
        return symbolic
