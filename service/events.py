"""Server-sent progress of one search: a `progress` event whenever its status changes, `end` when it
reaches a state nothing will move it out of without a request (completed, stopped, failed).

The stream polls the store every `events_interval` seconds in a worker thread (the database may be
another process's, so there is nothing to subscribe to) and sends only changes. Each event's id is the
number of finished candidates, so a reconnecting browser's `Last-Event-ID` tells how far it got.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi.sse import ServerSentEvent

from evonorm_search.search.ladder import ComputeStatus, RungStatus

from . import repository as repo
from . import views
from .context import ServiceContext
from .schemas.searches import SearchStatus

END_STATES = frozenset({repo.SearchState.COMPLETED, repo.SearchState.STOPPED, repo.SearchState.FAILED})
RETRY_MS = 3000  # how long a browser waits before reconnecting a closed stream

# Fields that change every time they are read; a change in them alone is not news.
_CLOCK_FIELDS = {"elapsed_seconds", "estimated_seconds_to_finish"}


def read_status(context: ServiceContext, store: repo.Store, search_id: int) -> SearchStatus:
    """A search's status; its database part may come from the context's short-lived cache."""
    return views.search_status(*context.reads.get(("summary", search_id), _summary_reader(store, search_id)))


async def current_status(context: ServiceContext, store: repo.Store, search_id: int) -> SearchStatus:
    """`read_status` for the event loop: the database is read on its threads, only when the cache misses."""
    read = _summary_reader(store, search_id)
    return views.search_status(*await context.reads.aget(("summary", search_id), lambda: context.database.run(read)))


StatusReads = tuple[repo.SearchSummary, list[RungStatus], ComputeStatus | None]


def _summary_reader(store: repo.Store, search_id: int) -> Callable[[], StatusReads]:
    """The summary, the fidelity ladder's rungs and the compute spent, read in one session (one snapshot
    of the search)."""

    def read() -> StatusReads:
        with store.session(readonly=True) as s:
            summary = repo.search_summary(s, search_id)
            return summary, repo.search_ladder(s, summary), repo.search_compute(s, summary)

    return read


def _news(status: SearchStatus) -> dict[str, Any]:
    return status.model_dump(mode="json", exclude=_CLOCK_FIELDS)


async def progress_events(context: ServiceContext, store: repo.Store, search_id: int) -> AsyncIterator[ServerSentEvent]:
    settings = context.settings
    deadline = time.monotonic() + settings.events_max_seconds
    last: dict[str, Any] | None = None
    context.metrics.event_streams.inc()
    try:
        while True:
            status = await current_status(context, store, search_id)
            news = _news(status)
            if news != last:
                last = news
                yield ServerSentEvent(event="progress", data=status, id=str(status.counts.finished), retry=RETRY_MS)
            if repo.SearchState(status.state) in END_STATES:
                yield ServerSentEvent(event="end", data={"state": status.state}, id=str(status.counts.finished))
                return
            if time.monotonic() >= deadline:
                return  # the browser reconnects after RETRY_MS and gets a fresh stream
            await asyncio.sleep(settings.events_interval)
    finally:
        context.metrics.event_streams.dec()
