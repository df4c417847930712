"""`create_app(settings=None)`: the FastAPI application factory.

    uvicorn --factory service.app:create_app          # settings from EVONORM_* variables
    evonorm-search serve --db sqlite:///runs/evonorm.db

Each call builds an independent app (own settings, metrics registry, store, launcher); nothing is
opened or read from the environment at import time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

import evonorm_search as es
from evonorm_search.search.config import SearchConfig

from .context import LauncherFactory, ServiceContext
from .errors import install_error_handlers
from .launcher import RAY_LAUNCHER_MODULE, make_launcher, ray_launcher_available
from .limits import BodyLimitMiddleware
from .metrics import MetricsMiddleware
from .routes import candidates, dashboard, health, layers, pareto, searches
from .schemas.layers import LayerCheckRequest
from .settings import Settings

DESCRIPTION = """\
Searches for normalization-activation layers (EvoNorm-style): launch and follow searches, page through
their candidates, read Pareto fronts, check layers written in the DSL, export discovered layers.

Changes (launch, stop, resume) need `Authorization: Bearer <key>` with a key from EVONORM_API_KEYS;
reads are public unless EVONORM_READ_REQUIRES_KEY is set. Every error is a JSON `ErrorBody`.
"""

# Request bodies the routes read themselves (JSON or YAML, JSON or text), documented from these models.
_BODY_MODELS: tuple[type[BaseModel], ...] = (SearchConfig, LayerCheckRequest)


def create_app(settings: Settings | None = None, *, launcher_factory: LauncherFactory = make_launcher) -> FastAPI:
    settings = settings if settings is not None else Settings()
    if settings.launcher == "ray" and launcher_factory is make_launcher and not ray_launcher_available():
        # Fail at start, not at the first launch request (the launcher itself is made on first use).
        raise RuntimeError(f"EVONORM_LAUNCHER=ray needs {RAY_LAUNCHER_MODULE}, which this installation lacks")
    context = ServiceContext(settings, launcher_factory=launcher_factory)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(context.close)  # stop searches this server drives, close the database

    app = FastAPI(
        title="evonorm-search",
        version=es.__version__,
        description=DESCRIPTION,
        docs_url=None,  # served by the dashboard router with vendored Swagger UI: no CDN
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.context = context
    install_error_handlers(app)
    # Routers carry their full prefix (/api/v1/...), so each route's path is its full template, which
    # the metrics label requests with.
    for router in (searches.router, candidates.router, pareto.router, layers.router, health.router, dashboard.router):
        app.include_router(router)
    app.mount(dashboard.STATIC_URL, StaticFiles(directory=dashboard.STATIC), name="static")
    app.add_middleware(MetricsMiddleware, metrics=context.metrics)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]  # FastAPI's documented way to customise the schema
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema, plus the schemas of the bodies routes read themselves (JSON or YAML)."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in _BODY_MODELS:
            _add_component(components, model)
        _errors_as_json(schema)
        app.openapi_schema = schema
    return app.openapi_schema


def _errors_as_json(schema: dict[str, Any]) -> None:
    """Errors are JSON ErrorBody on every route, also where success is a stream or a file (FastAPI documents
    a route's extra responses under the media type of its success response)."""
    error_content = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            for status, response in operation.get("responses", {}).items():
                if status.isdigit() and int(status) >= 400:
                    response["content"] = error_content


def _add_component(components: dict[str, Any], model: type[BaseModel]) -> None:
    body = model.model_json_schema(ref_template="#/components/schemas/{model}")
    nested = body.pop("$defs", {})
    for name, definition in {**nested, model.__name__: body}.items():
        if name in components and components[name] != definition:
            raise RuntimeError(f"two different OpenAPI schemas are both named {name!r}")
        components[name] = definition
