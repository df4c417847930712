"""Limits on what one client can make the server do.

Request body size: 413 with a JSON ErrorBody, whether the client declares the size (Content-Length,
refused before reading a byte) or streams a chunked body (refused once it passes the limit, while the
route reads it). Symbolic work (/layers/check, formula rendering): a per-client rate limit (429 with
Retry-After). Event streams: a cap on how many are open at once (503 with Retry-After).
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import OrderedDict

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import error_response
from .schemas.common import ErrorBody

TOO_LARGE = "the request body is larger than this server accepts ({limit} bytes, EVONORM_MAX_BODY_BYTES)"


class BodyTooLarge(HTTPException):
    """Raised from `receive` inside a route; the app's HTTPException handler answers 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, TOO_LARGE.format(limit=limit))


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            body = ErrorBody(code="payload_too_large", message=TOO_LARGE.format(limit=self.max_bytes))
            await error_response(413, body, {"Connection": "close"})(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, counting_receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # malformed: the server (uvicorn/h11) refuses such requests itself
    return None


# -- per-client rate limits and the cap on event streams ---------------------------------------------


class RateLimiter:
    """A token bucket per client: `per_minute` requests a minute on average, up to `burst` at once.

    Clients are told apart by address; the `clients` most recently seen are remembered (an old one
    forgotten starts again with a full bucket), so memory stays bounded whatever the traffic.
    `per_minute=0` turns the limit off."""

    def __init__(self, per_minute: int, burst: int, *, clients: int = 10_000, clock=time.monotonic) -> None:
        self.per_second = per_minute / 60.0
        self.burst = float(burst)
        self.clients = clients
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # client -> (tokens, when)
        self._lock = threading.Lock()

    def wait_for(self, client: str) -> float:
        """Take one request from `client`'s bucket: 0.0 when allowed, else seconds until it would be."""
        if self.per_second == 0:
            return 0.0
        now = self._clock()
        with self._lock:
            tokens, then = self._buckets.pop(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - then) * self.per_second)
            allowed = tokens >= 1.0
            self._buckets[client] = (tokens - 1.0 if allowed else tokens, now)
            while len(self._buckets) > self.clients:
                self._buckets.popitem(last=False)
        return 0.0 if allowed else (1.0 - tokens) / self.per_second


class StreamSlot:
    """One open stream's place. Given back by `release()` when the stream ends, or, should the stream never
    start (a client gone before its first byte), when the request's objects are collected; once either way."""

    def __init__(self, slots: StreamSlots) -> None:
        self._give_back = weakref.finalize(self, slots._give_back)

    def release(self) -> None:
        self._give_back()


class StreamSlots:
    """At most `limit` event streams at once; `acquire` returns a slot, or None when all are taken."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open = 0
        self._lock = threading.Lock()

    @property
    def open(self) -> int:
        return self._open

    def acquire(self) -> StreamSlot | None:
        with self._lock:
            if self._open >= self.limit:
                return None
            self._open += 1
        return StreamSlot(self)

    def _give_back(self) -> None:
        with self._lock:
            self._open -= 1
