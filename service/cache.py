"""A short-lived cache of the reads many clients repeat: a search's status and its Pareto fronts.

A busy search's status page is read by every open dashboard and event stream, but changes at most a few
times a second; so each process reads each of them from the database at most once per
EVONORM_READ_CACHE_SECONDS. Changes made through this process invalidate the search's entries at once;
changes made elsewhere (a controller in another process) show within the interval.

Keys are tuples `(kind, search_id, ...)`; reads across searches use `None` as the search id.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import TypeVar

T = TypeVar("T")


class ReadCache:
    def __init__(self, ttl_seconds: float, max_entries: int = 4096) -> None:
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self._entries: dict[tuple[Hashable, ...], tuple[float, object]] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[Hashable, ...], read: Callable[[], T]) -> T:
        """The cached value of `key` while fresh, else `read()` (kept for the next `ttl` seconds)."""
        if (hit := self._fresh(key)) is not None:
            return hit  # type: ignore[return-value]  # entries of `key` hold what its `read` returned
        return self._keep(key, read())

    async def aget(self, key: tuple[Hashable, ...], load: Callable[[], Awaitable[T]]) -> T:
        """`get` for the event loop: a hit answers at once; only a miss awaits `load()` (which reads the
        database on its threads)."""
        if (hit := self._fresh(key)) is not None:
            return hit  # type: ignore[return-value]  # entries of `key` hold what its `load` returned
        return self._keep(key, await load())

    def _fresh(self, key: tuple[Hashable, ...]) -> object | None:
        with self._lock:
            entry = self._entries.get(key)
        return entry[1] if entry is not None and entry[0] > time.monotonic() else None

    def _keep(self, key: tuple[Hashable, ...], value: T) -> T:
        if self.ttl <= 0:
            return value
        now = time.monotonic()
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
            self._entries[key] = (now + self.ttl, value)
        return value

    def invalidate(self, search_id: int) -> None:
        """Forget everything read about `search_id` (and every read across searches)."""
        with self._lock:
            self._entries = {k: v for k, v in self._entries.items() if k[1] not in (search_id, None)}
