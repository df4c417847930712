"""Repository functions for searches: create, read, page, state, controller lease. None of them commits."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from ..enums import CONTROLLED_STATES, SEARCH_TRANSITIONS, SearchState
from .derived import init_counters
from .errors import ConflictError, InvalidInputError, NotFoundError
from .models import Search
from .objectives import Objective, parse_objectives
from .pages import Page, check_limit, decode_cursor, encode_cursor
from .types import json_safe, moment

_FINISHED_STATES = frozenset({SearchState.STOPPED, SearchState.COMPLETED, SearchState.FAILED})


def create_search(
    session: Session,
    *,
    name: str,
    config: Mapping[str, Any],
    objectives: Sequence[Mapping[str, Any] | Objective],
    seed: int = 0,
    budget: int | None = None,
    now: datetime | None = None,
) -> Search:
    """A new search in state `created`, with its counters initialised."""
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise InvalidInputError(f"a search needs a name of 1 to 200 characters, got {name!r}")
    if not isinstance(config, Mapping):
        raise InvalidInputError(
            f"config must be a mapping (SearchConfig.model_dump(mode='json')), got {type(config).__name__}"
        )
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InvalidInputError(f"seed must be an integer, got {seed!r}")
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or budget < 1):
        raise InvalidInputError(f"budget must be a positive integer or None, got {budget!r}")
    now = moment(now)
    search = Search(
        name=name,
        config=json_safe(dict(config), "config"),
        objectives=[o.to_json() for o in parse_objectives(objectives)],
        state=SearchState.CREATED,
        seed=seed,
        budget=budget,
        next_birth=0,
        created_at=now,
        updated_at=now,
    )
    session.add(search)
    session.flush()
    init_counters(session, search.id)
    return search


def get_search(session: Session, search_id: int, *, for_update: bool = False) -> Search:
    query = select(Search).where(Search.id == search_id).execution_options(populate_existing=True)
    if for_update:
        query = query.with_for_update()
    search = session.execute(query).scalar_one_or_none()
    if search is None:
        raise NotFoundError(f"no search with id {search_id}")
    return search


def list_searches(
    session: Session,
    *,
    states: Iterable[SearchState] | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> Page[Search]:
    """Searches, newest first, `limit` at a time."""
    check_limit(limit)
    query = select(Search).order_by(Search.id.desc()).limit(limit + 1)
    if states is not None:
        query = query.where(Search.state.in_([SearchState(s) for s in states]))
    if cursor is not None:
        (last_id,) = decode_cursor(cursor, "searches:id:desc", 1)
        query = query.where(Search.id < last_id)
    rows = list(session.execute(query).scalars())
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, encode_cursor("searches:id:desc", [rows[-1].id]) if more else None)


def set_search_state(
    session: Session, search_id: int, state: SearchState, *, error: str | None = None, now: datetime | None = None
) -> Search:
    """Move a search to `state`; ConflictError when the current state does not allow it."""
    state = SearchState(state)
    search = get_search(session, search_id, for_update=True)
    if state not in SEARCH_TRANSITIONS[search.state]:
        allowed = ", ".join(sorted(s.value for s in SEARCH_TRANSITIONS[search.state])) or "none"
        raise ConflictError(f"search {search_id} is {search.state}; it cannot become {state} (allowed: {allowed})")
    if state is SearchState.FAILED and not error:
        raise InvalidInputError("a failed search needs an error message saying why")
    now = moment(now)
    search.state = state
    search.updated_at = now
    if state is SearchState.RUNNING:
        search.started_at = search.started_at or now
        search.finished_at = None
        search.error = None
    if state in _FINISHED_STATES:
        search.finished_at = now
    if error is not None:
        search.error = error
    return search


def claim_controller(
    session: Session, search_id: int, *, host: str, pid: int, stale_after: timedelta, now: datetime | None = None
) -> Search:
    """Make (host, pid) the search's controller. ConflictError while another controller's heartbeat is fresh."""
    now = moment(now)
    search = get_search(session, search_id, for_update=True)
    holder = (search.controller_host, search.controller_pid)
    fresh = search.controller_heartbeat_at is not None and search.controller_heartbeat_at > now - stale_after
    if holder != (None, None) and holder != (host, pid) and fresh:
        raise ConflictError(
            f"search {search_id} is controlled by pid {search.controller_pid} on {search.controller_host} "
            f"(last heartbeat {search.controller_heartbeat_at:%Y-%m-%d %H:%M:%S} UTC); stop that controller, or wait "
            f"{stale_after} after its last heartbeat"
        )
    search.controller_host, search.controller_pid = host, pid
    search.controller_heartbeat_at = now
    search.updated_at = now
    return search


def heartbeat_controller(
    session: Session, search_id: int, *, host: str, pid: int, now: datetime | None = None
) -> Search:
    """Record that the controller (host, pid) is alive. ConflictError when another process has taken over."""
    search = get_search(session, search_id, for_update=True)
    if (search.controller_host, search.controller_pid) != (host, pid):
        raise ConflictError(
            f"search {search_id} is now controlled by pid {search.controller_pid} on {search.controller_host}, "
            f"not pid {pid} on {host}; this controller must stop"
        )
    search.controller_heartbeat_at = moment(now)
    return search


def release_controller(session: Session, search_id: int, *, host: str, pid: int) -> Search:
    """Give up control (a clean shutdown); a no-op when (host, pid) no longer holds it."""
    search = get_search(session, search_id, for_update=True)
    if (search.controller_host, search.controller_pid) == (host, pid):
        search.controller_host = search.controller_pid = search.controller_heartbeat_at = None
    return search


def stale_searches(session: Session, *, stale_after: timedelta, now: datetime | None = None) -> list[Search]:
    """Searches that should have a live controller (running, stopping) but whose heartbeat is old or absent."""
    cutoff = moment(now) - stale_after
    query = (
        select(Search)
        .where(
            Search.state.in_(CONTROLLED_STATES),
            or_(Search.controller_heartbeat_at.is_(None), Search.controller_heartbeat_at < cutoff),
        )
        .order_by(Search.id)
    )
    return list(session.execute(query).scalars())


def delete_search(session: Session, search_id: int) -> None:
    """Delete a search with everything it holds. ConflictError while it runs: stop it first."""
    search = get_search(session, search_id, for_update=True)
    if search.state in CONTROLLED_STATES:
        raise ConflictError(f"search {search_id} is {search.state}; stop it before deleting it")
    session.execute(delete(Search).where(Search.id == search_id))
    session.expunge(search)
