"""Annotated dependencies of the routes: the app's context, store, launcher and formula cache, and access
checks. The cheap ones are `async def`, so FastAPI runs them on the event loop, not in a thread."""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials
from starlette.concurrency import run_in_threadpool

from . import repository as repo
from .auth import bearer_scheme, check_key
from .context import ServiceContext
from .errors import ApiError
from .formulas import FormulaCache
from .launcher import Launcher
from .limits import StreamSlot
from .threads import DatabaseThreads

# Ids are database integers: larger ones cannot exist, and some drivers cannot even bind them.
MAX_ID = 2**63 - 1


async def get_context(request: Request) -> ServiceContext:
    return request.app.state.context


ContextDep = Annotated[ServiceContext, Depends(get_context)]
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]


async def get_store(context: ContextDep) -> repo.Store:
    # Opening may block (connecting, migrating): do it in a worker thread, never on the event loop.
    opened = context.opened_store
    return opened if opened is not None else await run_in_threadpool(context.store)


async def get_launcher(context: ContextDep) -> Launcher:
    opened = context.opened_launcher
    return opened if opened is not None else await run_in_threadpool(context.launcher)


async def get_database(context: ContextDep) -> DatabaseThreads:
    return context.database


async def get_formulas(context: ContextDep) -> FormulaCache:
    return context.formulas


async def formula_rate(request: Request, context: ContextDep) -> None:
    """Symbolic work costs CPU a client chooses: each client gets EVONORM_FORMULA_RATE_PER_MINUTE of it."""
    client = request.client.host if request.client is not None else "unknown"
    wait = context.formula_rate.wait_for(client)
    if wait > 0:
        seconds = max(1, math.ceil(wait))
        raise ApiError(
            429,
            "rate_limited",
            f"too many requests that render formulas from {client}; try again in {seconds}s "
            f"(EVONORM_FORMULA_RATE_PER_MINUTE={context.settings.formula_rate_per_minute})",
            headers={"Retry-After": str(seconds)},
        )


async def stream_slot(context: ContextDep) -> StreamSlot:
    """One of EVONORM_MAX_EVENT_STREAMS, or 503 with Retry-After; the stream releases it when it ends."""
    slot = context.streams.acquire()
    if slot is None:
        raise ApiError(
            503,
            "too_many_streams",
            f"this server already serves {context.streams.limit} event streams (EVONORM_MAX_EVENT_STREAMS); "
            "try again shortly",
            headers={"Retry-After": "10"},
        )
    return slot


FormulaRate = Depends(formula_rate)
StreamSlotDep = Annotated[StreamSlot, Depends(stream_slot)]
StoreDep = Annotated[repo.Store, Depends(get_store)]
LauncherDep = Annotated[Launcher, Depends(get_launcher)]
FormulasDep = Annotated[FormulaCache, Depends(get_formulas)]
DatabaseDep = Annotated[DatabaseThreads, Depends(get_database)]

SearchId = Annotated[int, Path(ge=1, le=MAX_ID, description="A search's id.", examples=[1])]
CandidateId = Annotated[int, Path(ge=1, le=MAX_ID, description="A candidate's id.", examples=[1])]


async def read_access(context: ContextDep, credentials: Credentials) -> None:
    """Reads are public unless EVONORM_READ_REQUIRES_KEY is set."""
    if context.settings.read_requires_key:
        check_key(context.settings, credentials, "reading")


async def write_access(context: ContextDep, credentials: Credentials) -> None:
    """Changes always need a key."""
    check_key(context.settings, credentials, "changing searches")


ReadAccess = Depends(read_access)
WriteAccess = Depends(write_access)
