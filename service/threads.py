"""Where a route's blocking work runs: database reads on a few threads of their own, everything else
(formulas, exports, launches) on Starlette's general thread pool.

Why few: a read is a millisecond of Python (SQLAlchemy, pydantic) around a sub-millisecond query, and
Python runs one thread at a time. Eight reads on eight threads do not finish sooner than on one; they
take turns at the interpreter lock, and the hand-offs cost CPU of their own. Measured on 2 cores, a
candidate page at 100,000 candidates with 8 clients and the read cache off
(the "database threads" table of `benchmarks/results/api-cpu2.md`): one or two database threads serve more requests per second,
at a lower p99, than Starlette's 40.

Two by default, not one: a single slow read (a long lineage, a cold page of a large database) then
delays the others by at most its own time, not all of them.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import TypeVar

import anyio
import anyio.to_thread

T = TypeVar("T")


class DatabaseThreads:
    """`await run(read)`: `read()` on one of at most `limit` threads; more reads wait their turn."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        # A limiter belongs to the event loop it was made on; tests run one app on several loops.
        self._limiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, anyio.CapacityLimiter] = (
            weakref.WeakKeyDictionary()
        )

    async def run(self, read: Callable[[], T]) -> T:
        return await anyio.to_thread.run_sync(read, limiter=self._limiter())

    def _limiter(self) -> anyio.CapacityLimiter:
        loop = asyncio.get_running_loop()
        limiter = self._limiters.get(loop)
        if limiter is None:
            limiter = self._limiters[loop] = anyio.CapacityLimiter(self.limit)
        return limiter
