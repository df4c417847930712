"""One error shape for every failure, and the handlers that map each kind of failure onto it.

Whatever a client sends, the answer is a 4xx with a JSON `ErrorBody` that says what was wrong:
request validation (422), unknown ids (404), bad DSL (422 with line and column), bad search
configurations (422 with each field's problem), state conflicts (409), missing or wrong keys
(401/403), bodies over the limit (413). A 5xx means the server itself is at fault: the database is
unreachable (503) or a bug (500, logged with its traceback, answered without details).
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from evonorm_search.ir import DSLError
from evonorm_search.search.config import ConfigError

from . import repository as repo
from .schemas.common import ErrorBody, Problem

log = logging.getLogger("evonorm_search.service")

# Machine-readable codes for the statuses the framework raises on its own (unknown route, wrong method...).
_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    501: "not_implemented",
    503: "unavailable",
}


class ApiError(Exception):
    """An error a route raises on purpose; becomes an ErrorBody with `status`."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        problems: list[Problem] | None = None,
        line: int | None = None,
        column: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = ErrorBody(code=code, message=message, problems=problems or [], line=line, column=column)
        self.headers = headers


def error_response(status: int, body: ErrorBody, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body.model_dump(mode="json", exclude_none=True), status_code=status, headers=headers)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` documenting the ErrorBody of each status a route may answer."""
    return {s: {"model": ErrorBody, "description": HTTPStatus(s).phrase} for s in statuses}


# -- handlers ------------------------------------------------------------------------------------------


def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.body, exc.headers)


def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    message = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    body = ErrorBody(code=_CODES.get(exc.status_code, "error"), message=message)
    return error_response(exc.status_code, body, getattr(exc, "headers", None))


def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [Problem(field=_location(e.get("loc", ())), message=str(e.get("msg", "invalid"))) for e in exc.errors()]
    summary = "; ".join(f"{p.field}: {p.message}" for p in problems[:5])
    body = ErrorBody(code="invalid_request", message=f"invalid request: {summary}", problems=problems)
    return error_response(422, body)


def _location(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(part) for part in loc) or "request"


def _dsl_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DSLError)
    body = ErrorBody(
        code="dsl_error",
        message=f"line {exc.line}, column {exc.column}: {exc.message}",
        line=exc.line,
        column=exc.column,
    )
    return error_response(422, body)


def _config_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ConfigError)
    problems = [Problem(field=field or "config", message=message) for field, message in exc.problems]
    return error_response(422, ErrorBody(code="invalid_config", message=str(exc), problems=problems))


def _store_error(_: Request, exc: Exception) -> JSONResponse:
    status, code = repo.http_status_of(exc)
    if status >= 500:
        log.error("database error: %s", exc)
    return error_response(status, ErrorBody(code=code, message=str(exc)))


def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error in %s %s", request.method, request.url.path, exc_info=exc)
    body = ErrorBody(code="internal_error", message="internal server error; the server log has the details")
    return error_response(500, body)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(DSLError, _dsl_error)
    app.add_exception_handler(ConfigError, _config_error)
    app.add_exception_handler(repo.StoreError, _store_error)
    app.add_exception_handler(Exception, _unexpected)
