"""The service's one door to the Pareto database (`evonorm_search.store`) and the search controller.

Routes, the launcher and the event stream go through here, so the rest of the service depends on a
handful of names, and what the service adds on top of the store (stop and resume rules, counts of
searches by state, the HTTP meaning of each store error) lives in one place.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from evonorm_search.search.config import SearchConfig
from evonorm_search.search.controller import ControllerError, SearchProgress, run_search
from evonorm_search.search.controller import create_search as _create_search
from evonorm_search.search.fronts import SearchFronts, read_fronts
from evonorm_search.search.ladder import search_compute, search_ladder
from evonorm_search.search.lifecycle import STALE_AFTER, check_resumable, request_stop
from evonorm_search.search.validation import candidate_validation
from evonorm_search.store import (
    Candidate,
    CandidateDetail,
    CandidateRole,
    CandidateStatus,
    ConflictError,
    Evaluation,
    EvaluationPhase,
    EvaluationStatus,
    InvalidInputError,
    NotFoundError,
    Page,
    RejectionStage,
    Search,
    SearchState,
    SearchSummary,
    Store,
    StoreError,
    baselines_of,
    candidate_detail,
    candidate_graphs,
    get_candidate,
    get_search,
    list_candidates,
    list_searches,
    open_store,
    pareto_front,
    pareto_front_across,
    results_in_commit_order,
    search_summary,
)

# A controller that has not heartbeaten for this long is presumed dead: its search may be resumed.
CONTROLLER_STALE_AFTER = STALE_AFTER

# States in which nothing drives the search and nothing will until someone resumes it.
IDLE_STATES = frozenset({SearchState.CREATED, SearchState.STOPPED, SearchState.FAILED, SearchState.COMPLETED})

__all__ = [
    "CONTROLLER_STALE_AFTER",
    "IDLE_STATES",
    "Candidate",
    "CandidateDetail",
    "CandidateRole",
    "CandidateStatus",
    "ConflictError",
    "ControllerError",
    "Evaluation",
    "EvaluationPhase",
    "EvaluationStatus",
    "InvalidInputError",
    "NotFoundError",
    "Page",
    "RejectionStage",
    "Search",
    "SearchFronts",
    "SearchProgress",
    "SearchState",
    "SearchSummary",
    "Store",
    "StoreError",
    "baselines_of",
    "candidate_detail",
    "candidate_graphs",
    "candidate_validation",
    "check_resumable",
    "count_searches_by_state",
    "create_search",
    "get_candidate",
    "get_search",
    "graph_reader",
    "http_status_of",
    "list_candidates",
    "list_searches",
    "open_store",
    "pareto_front",
    "pareto_front_across",
    "ping",
    "read_fronts",
    "request_stop",
    "results_in_commit_order",
    "run_search",
    "search_compute",
    "search_ladder",
    "search_summary",
]


def http_status_of(error: Exception) -> tuple[int, str]:
    """The HTTP status and error code a store or controller error answers with."""
    if isinstance(error, NotFoundError):
        return 404, "not_found"
    if isinstance(error, InvalidInputError):
        return 422, "invalid_input"
    if isinstance(error, (ConflictError, ControllerError)):
        return 409, "conflict"
    return 503, "database_unavailable"


def ping(store: Store) -> str | None:
    """Round-trip to the database; returns its schema revision. Raises StoreError when unreachable."""
    with store.session(readonly=True) as s:
        s.execute(text("SELECT 1"))
    return store.schema_revision()


def create_search(store: Store, config: SearchConfig) -> Search:
    """Store a new search for `config` (state `created`), the same way the CLI does."""
    search_id = _create_search(store, config)
    with store.session(readonly=True) as s:
        return get_search(s, search_id)


def count_searches_by_state(session: Session) -> dict[SearchState, int]:
    rows = session.execute(select(Search.state, func.count()).group_by(Search.state)).all()
    found = {SearchState(state): count for state, count in rows}
    return {state: found.get(state, 0) for state in SearchState}


def graph_reader(store: Store, prefetched: Mapping[int, Mapping[str, Any]]) -> Callable[[int], Mapping[str, Any]]:
    """A candidate's graph for its formula: from `prefetched` (read with the rows whose formulas were not
    cached), else from the database now (a formula dropped from the cache since)."""

    def graph_of(candidate_id: int) -> Mapping[str, Any]:
        if candidate_id in prefetched:
            return prefetched[candidate_id]
        with store.session(readonly=True) as s:
            return get_candidate(s, candidate_id).graph

    return graph_of
