"""Driving searches in background threads of a long-lived process (the API service).

`BackgroundLauncher` runs `run_search` for each launched search in a daemon thread; subclasses say where
evaluations run by overriding `make_evaluator` (in-process here, Ray in `workers.RayLauncher`). Stopping
goes through the store (`search.lifecycle.request_stop`), so a controller anywhere obeys it.
"""

from __future__ import annotations

import logging
import threading

from ..store import ConflictError, SearchState, Store, StoreError, get_search
from .controller import ControllerError, SearchProgress, run_search
from .evaluator import Evaluator, InProcessEvaluator
from .lifecycle import request_stop

log = logging.getLogger("evonorm_search.launcher")

NEW_SEARCH = frozenset({SearchState.CREATED})
DRIVEN = frozenset({SearchState.RUNNING, SearchState.STOPPING})  # states while a controller is at work


class BackgroundLauncher:
    """One daemon thread per driven search, with the in-process evaluator unless a subclass says otherwise.

    `start` drives a new search and leaves one that was stopped before its controller got going stopped;
    `resume` drives a search from whatever the store holds. A stop that arrives after a resume but before
    the controller has claimed the search (claiming sets it `running`) is remembered and re-applied from
    the controller's progress callback.
    """

    name = "thread"
    launches = True

    def __init__(
        self, store: Store, *, poll_interval: float = 0.5, heartbeat_interval: float = 5.0, join_timeout: float = 30.0
    ):
        self.store = store
        self.poll_interval = poll_interval
        self.heartbeat_interval = heartbeat_interval
        self.join_timeout = join_timeout
        self._threads: dict[int, threading.Thread] = {}
        self._stops: dict[int, threading.Event] = {}
        self._ending: set[threading.Thread] = set()  # threads past run_search, cleaning up
        self._lock = threading.Lock()

    # -- what subclasses change -------------------------------------------------------------------

    def make_evaluator(self, search_id: int) -> Evaluator:
        """The evaluator for one run of `search_id` (called in the caller's thread, so errors reach it)."""
        return InProcessEvaluator()

    def release(self) -> None:
        """Free what the launcher holds once every search has stopped (connections, clusters)."""

    # -- the Launcher interface -------------------------------------------------------------------

    def start(self, search_id: int) -> None:
        self._launch(search_id, NEW_SEARCH)

    def resume(self, search_id: int) -> None:
        self._launch(search_id, None)

    def stop(self, search_id: int) -> None:
        with self._lock:
            stop = self._stops.get(search_id)
        if stop is not None:
            stop.set()
        request_stop(self.store, search_id)

    def running(self) -> list[int]:
        with self._lock:
            return sorted(i for i, t in self._threads.items() if t.is_alive())

    def close(self) -> None:
        searches = self.running()
        for search_id in searches:
            try:
                self.stop(search_id)
            except StoreError as e:  # it ended meanwhile, or the database is gone: nothing to stop
                log.info("search %d: not stopped at shutdown: %s", search_id, e)
        for search_id in searches:
            with self._lock:
                thread = self._threads.get(search_id)
            if thread is not None:
                thread.join(self.join_timeout)
        self.release()

    # -- threads ----------------------------------------------------------------------------------

    def _launch(self, search_id: int, require_states: frozenset[SearchState] | None) -> None:
        self._wait_for_winding_down(search_id)
        with self._lock:
            current = self._threads.get(search_id)
            if current is not None and current.is_alive():
                raise ConflictError(f"search {search_id} is already running in this server")
            evaluator = self.make_evaluator(search_id)
            stop = self._stops[search_id] = threading.Event()
            thread = threading.Thread(
                target=self._drive,
                args=(search_id, evaluator, stop, require_states),
                name=f"evonorm-search-{search_id}",
                daemon=True,
            )
            self._threads[search_id] = thread
            thread.start()

    def _wait_for_winding_down(self, search_id: int) -> None:
        """A search whose controller has returned may still have its thread here, closing its evaluator;
        a launch then waits for that instead of refusing the search as running."""
        with self._lock:
            current = self._threads.get(search_id)
            ending = current in self._ending
        if current is None or not current.is_alive():
            return
        if ending:
            current.join(self.join_timeout)
            return
        # The controller may have committed the end and not yet reached its clean-up. (A thread that has
        # not claimed the search yet looks the same; after the wait it has, and the launch is refused.)
        with self.store.session(readonly=True) as s:
            state = get_search(s, search_id).state
        if state not in DRIVEN:
            current.join(min(self.join_timeout, 5.0))

    def _drive(
        self,
        search_id: int,
        evaluator: Evaluator,
        stop: threading.Event,
        require_states: frozenset[SearchState] | None,
    ) -> None:
        try:
            final = run_search(
                self.store,
                search_id,
                evaluator,
                progress=lambda progress: self._apply_stop(stop, progress),
                poll_interval=self.poll_interval,
                heartbeat_interval=self.heartbeat_interval,
                require_states=require_states,
            )
            log.info("search %d ended %s after %d candidates", search_id, final.state, final.proposed)
        except (ControllerError, ConflictError) as e:
            log.warning("search %d was not driven: %s", search_id, e)
        except Exception:  # run_search has already marked the search failed, with the error
            log.exception("search %d failed", search_id)
        finally:
            with self._lock:
                self._ending.add(threading.current_thread())
            evaluator.close()
            with self._lock:
                self._ending.discard(threading.current_thread())
                if self._threads.get(search_id) is threading.current_thread():
                    del self._threads[search_id]
                    del self._stops[search_id]

    def _apply_stop(self, stop: threading.Event, progress: SearchProgress) -> None:
        """Called by the controller after every event: a stop asked for earlier takes effect now."""
        if stop.is_set() and progress.state == SearchState.RUNNING:
            try:
                request_stop(self.store, progress.search_id)
            except StoreError as e:  # the controller retries at its next event
                log.info("search %d: stop not applied yet: %s", progress.search_id, e)
