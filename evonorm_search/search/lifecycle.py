"""A search's lifecycle as seen from outside its controller (`controller.py` is the loop that drives it):
stop requests, resume checks and controller liveness, through the search row's state in the store.

One set of rules for the CLI (`stop`, `resume`), the Ray launcher and the API service: a search whose
controller is alive is asked to stop (`stopping`; the controller ends it in `stopped`); a search nobody
drives becomes `stopped` at once; a search may be resumed when nothing drives it.
"""

from __future__ import annotations

import os
import socket
import time
from datetime import UTC, datetime, timedelta

from ..enums import RESUMABLE_STATES
from ..store import ConflictError, Search, SearchState, Store, get_search, set_search_state

# A controller heartbeats every few seconds; one silent this long is gone (the controller's own default).
STALE_AFTER = timedelta(seconds=60)


def controller_alive(search: Search, *, stale_after: timedelta = STALE_AFTER, now: datetime | None = None) -> bool:
    """Whether a controller is driving `search`: a recent heartbeat, from a process that still exists
    when it ran on this machine."""
    beat = search.controller_heartbeat_at
    if search.controller_pid is None or beat is None:
        return False
    if search.controller_host == socket.gethostname():
        try:
            os.kill(search.controller_pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # alive, owned by another user
    return (now or datetime.now(UTC)) - beat < stale_after


def request_stop(store: Store, search_id: int) -> SearchState:
    """Ask search `search_id` to stop; returns its state afterwards.

    A running search with a live controller becomes `stopping`, and its controller ends it in `stopped`
    after cancelling its evaluations. A search without a live controller (never started, or its
    controller was killed) becomes `stopped` at once, and a controller launched for it later will not
    start it (see `run_search(..., require_states=...)`). Stopping twice changes nothing; a finished
    search is a ConflictError.
    """
    with store.session() as s:
        # The row is locked from the first read: the API's stop and a launcher re-applying that stop from
        # the controller's thread may ask at once, and both must see the state the other one left.
        search = get_search(s, search_id, for_update=True)
        state = search.state
        if state in (SearchState.STOPPING, SearchState.STOPPED):
            return state
        if state is SearchState.RUNNING and controller_alive(search):
            return set_search_state(s, search_id, SearchState.STOPPING).state
        if state in (SearchState.CREATED, SearchState.RUNNING):  # nobody drives it: nobody else would stop it
            return set_search_state(s, search_id, SearchState.STOPPED).state
        raise ConflictError(f"search {search_id} is already {state}; there is nothing to stop")


def wait_until_stopped(store: Store, search_id: int, *, timeout: float, poll: float = 0.5) -> SearchState:
    """Wait up to `timeout` seconds for the search to leave `stopping`; returns the state it reached."""
    deadline = time.monotonic() + timeout
    while True:
        with store.session(readonly=True) as s:
            state = get_search(s, search_id).state
        if state is not SearchState.STOPPING or time.monotonic() >= deadline:
            return state
        time.sleep(poll)


def not_resumable_reason(search: Search, *, now: datetime | None = None) -> str | None:
    """Why `search` cannot be resumed now, or None when it can."""
    if search.state in RESUMABLE_STATES:
        return None
    if search.state is SearchState.COMPLETED:
        return f"search {search.id} is completed: its budget is spent"
    if not controller_alive(search, now=now):
        return None  # running or stopping, but its controller died: a new one takes over
    if search.state is SearchState.STOPPING:
        return f"search {search.id} is stopping; resume it once it is stopped"
    return (
        f"search {search.id} is being driven by process {search.controller_pid} on {search.controller_host}; "
        f"stop it first (`evonorm-search stop {search.id}`)"
    )


def check_resumable(store: Store, search_id: int, *, now: datetime | None = None) -> Search:
    """The search, if a controller may start driving it now; ConflictError saying why not otherwise."""
    with store.session(readonly=True) as s:
        search = get_search(s, search_id)
    reason = not_resumable_reason(search, now=now)
    if reason is not None:
        raise ConflictError(reason)
    return search
