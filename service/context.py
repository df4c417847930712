"""What one app instance holds: its settings, metrics, formula cache, and, opened on first use, the store
and the launcher. Nothing is opened at import time or when the app is built, so an app starts even
while its database is down (/readyz then says so) and tests build as many apps as they like."""

from __future__ import annotations

import threading
from collections.abc import Callable

from . import repository as repo
from .cache import ReadCache
from .formulas import FormulaCache, SymbolicWorkers
from .launcher import Launcher, make_launcher
from .limits import RateLimiter, StreamSlots
from .metrics import ServiceMetrics
from .settings import Settings
from .threads import DatabaseThreads

LauncherFactory = Callable[[Settings, repo.Store], Launcher]


class ServiceContext:
    def __init__(self, settings: Settings, *, launcher_factory: LauncherFactory = make_launcher) -> None:
        self.settings = settings
        self.metrics = ServiceMetrics()
        self.formulas = FormulaCache(
            settings.max_formula_size,
            workers=SymbolicWorkers.shared(settings.formula_workers),
            seconds=settings.formula_seconds,
        )
        self.formula_rate = RateLimiter(settings.formula_rate_per_minute, settings.formula_burst)
        self.streams = StreamSlots(settings.max_event_streams)
        self.database = DatabaseThreads(settings.database_threads)
        self.reads = ReadCache(settings.read_cache_seconds)
        self._launcher_factory = launcher_factory
        self._store: repo.Store | None = None
        self._launcher: Launcher | None = None
        self._lock = threading.Lock()
        self.metrics.watch_store(self.store)

    @property
    def opened_store(self) -> repo.Store | None:
        return self._store

    @property
    def opened_launcher(self) -> Launcher | None:
        return self._launcher

    def store(self) -> repo.Store:
        """The open store; opened (and its schema brought to the newest revision) on first use.
        A failure is not remembered: the next call tries again (the database may come back)."""
        if self._store is None:
            with self._lock:
                if self._store is None:
                    self._store = repo.open_store(self.settings.database_url)
        return self._store

    def launcher(self) -> Launcher:
        if self._launcher is None:
            store = self.store()
            with self._lock:
                if self._launcher is None:
                    self._launcher = self._launcher_factory(self.settings, store)
        return self._launcher

    def close(self) -> None:
        with self._lock:
            launcher, store = self._launcher, self._store
            self._launcher = self._store = None
        if launcher is not None:
            launcher.close()
        if store is not None:
            store.close()
