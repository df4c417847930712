"""Request body size limit: 413 with a JSON ErrorBody, whether the client declares the size
(Content-Length, refused before reading a byte) or streams a chunked body (refused once it passes
the limit, while the route reads it)."""

from __future__ import annotations

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
