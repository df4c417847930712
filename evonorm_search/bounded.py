"""Per-process caches with a size cap, so a worker that compiles thousands of candidates stays bounded.

`Bounded` is a thread-safe least-recently-used mapping that calls `on_evict(key, value)` for what it drops
(the compiled-layer cache uses it to drop the layer's source from `linecache` with it). Caps come from
EVONORM_* environment variables, read when a cache is first built (a worker process inherits its node's
environment), else the defaults below.

A general utility at the bottom of the import order: the compiler and the reference both cache with it,
and neither may import the other. It imports only the standard library, because the compiler's runtime
carries its text into standalone exports (`compiler.cache.standalone_source`). The caps of all users
stay in one table (`LIMITS`), so one place lists what a process may hold.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# Defaults: a few hundred layers cover a population and its recent children; the logs keep the latest.
LIMITS = {
    "EVONORM_LAYER_CACHE_SIZE": 256,  # compiled layers (executed kernel sources) per process
    "EVONORM_KERNEL_RECORD_SIZE": 16_384,  # kernel specialisations remembered as launched / tuned / precompiled
    "EVONORM_COMPILE_LOG_SIZE": 4_096,  # entries of the compile log kept (the latest)
    "EVONORM_REFERENCE_CACHE_SIZE": 4_096,  # reference forwards (executed PyTorch sources) per process
}


def limit(name: str) -> int:
    """The cap named `name` (one of LIMITS): its environment variable when set, else the default."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return LIMITS[name]
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number >= 1, got {raw!r}") from None
    if value < 1:
        raise ValueError(f"{name} must be a whole number >= 1, got {raw!r}")
    return value


class Bounded(Generic[K, V]):
    """A mapping that keeps its `maxsize` most recently used entries."""

    def __init__(self, maxsize: int, on_evict: Callable[[K, V], None] | None = None) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        self.maxsize = maxsize
        self._items: OrderedDict[K, V] = OrderedDict()
        self._on_evict = on_evict
        self._lock = threading.RLock()

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def __contains__(self, key: object) -> bool:
        return self.get(key) is not None  # type: ignore[arg-type]  # `in` takes any object; a key of another type is simply absent

    def __setitem__(self, key: K, value: V) -> None:
        evicted = []
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.maxsize:
                evicted.append(self._items.popitem(last=False))
        if self._on_evict is not None:
            for old_key, old_value in evicted:
                self._on_evict(old_key, old_value)

    def add(self, key: K) -> None:
        """Set-like use: remember `key`."""
        self[key] = True  # type: ignore[assignment]  # set-like caches are BoundedCache[K, bool]

    def pop(self, key: K) -> V | None:
        with self._lock:
            return self._items.pop(key, None)

    def values(self) -> list[V]:
        with self._lock:
            return list(self._items.values())

    def items(self) -> list[tuple[K, V]]:
        with self._lock:
            return list(self._items.items())

    def clear(self) -> None:
        with self._lock:
            dropped = list(self._items.items())
            self._items.clear()
        if self._on_evict is not None:
            for key, value in dropped:
                self._on_evict(key, value)

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[K]:
        return iter(list(self._items))
