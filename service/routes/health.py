"""/healthz (the process answers), /readyz (the database answers too), /metrics (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

import evonorm_search as es

from .. import repository as repo
from ..deps import ContextDep
from ..errors import ApiError, error_responses
from ..schemas.health import Health, Readiness

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness")
async def healthz() -> Health:
    """The process is up and answering; says nothing about the database."""
    return Health(status="ok", version=es.__version__)


@router.get("/readyz", responses=error_responses(503), summary="Readiness")
async def readyz(context: ContextDep) -> Readiness:
    """Ready when the Pareto database answers a query; 503 with the reason otherwise."""

    def probe() -> Readiness:
        store = context.store()
        return Readiness(status="ready", database=store.backend, schema_revision=repo.ping(store))

    try:
        return await run_in_threadpool(probe)
    except repo.StoreError as e:
        raise ApiError(503, "database_unavailable", f"the database is not reachable: {e}") from None


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}}}},
    summary="Prometheus metrics",
)
async def metrics(context: ContextDep) -> Response:
    """Requests by route and status, latencies, open event streams, launches, searches by state."""
    body = await run_in_threadpool(generate_latest, context.metrics.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
