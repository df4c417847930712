"""The Pareto database: searches, candidates, evaluations and their Pareto fronts.

SQLite (embedded default) or PostgreSQL (clusters) through SQLAlchemy 2; the schema comes only from the
Alembic migrations shipped in `migrations/`. Open with `open_store(url)`; do all work inside
`store.session()`, the one scope that commits or rolls back; the repository functions below take that
session first and never commit. See "Store" in docs/architecture.md.
"""

from ..enums import CandidateRole, CandidateStatus, EvaluationPhase, EvaluationStatus, RejectionStage, SearchState
from .baselines import (
    BASELINE_BIRTHS,
    ValidationRun,
    add_baseline,
    baselines_of,
    is_baseline,
    record_validation,
    validated_candidates,
    validation_runs,
)
from .candidates import (
    add_candidate,
    complete_candidate,
    evaluations_of,
    find_duplicate,
    get_candidate,
    heartbeat_candidates,
    mark_status,
    next_birth,
    population,
    record_check,
    record_evaluation,
    record_rejection,
    requeue_candidate,
    stuck_candidates,
    unfinished_candidates,
)
from .derived import rebuild_derived
from .errors import ConflictError, InvalidInputError, NotFoundError, StoreError
from .models import Candidate, Evaluation, Search
from .objectives import Objective
from .pages import Page
from .queries import (
    ANCESTOR_COLUMNS,
    BRIEF_COLUMNS,
    POINT_COLUMNS,
    BestValue,
    CandidateDetail,
    SearchSummary,
    candidate_detail,
    candidate_graphs,
    list_candidates,
    pareto_front,
    pareto_front_across,
    results_in_commit_order,
    search_summary,
)
from .searches import (
    claim_controller,
    create_search,
    delete_search,
    get_search,
    heartbeat_controller,
    list_searches,
    release_controller,
    set_search_state,
    stale_searches,
)
from .store import SchemaStatus, Store, open_readonly_store, open_store, schema_status
from .urls import default_url

__all__ = [
    "ANCESTOR_COLUMNS",
    "BASELINE_BIRTHS",
    "BRIEF_COLUMNS",
    "POINT_COLUMNS",
    "BestValue",
    "Candidate",
    "CandidateDetail",
    "CandidateRole",
    "CandidateStatus",
    "ConflictError",
    "Evaluation",
    "EvaluationPhase",
    "EvaluationStatus",
    "InvalidInputError",
    "NotFoundError",
    "Objective",
    "Page",
    "RejectionStage",
    "SchemaStatus",
    "Search",
    "SearchState",
    "SearchSummary",
    "Store",
    "StoreError",
    "ValidationRun",
    "add_baseline",
    "add_candidate",
    "baselines_of",
    "candidate_detail",
    "candidate_graphs",
    "claim_controller",
    "complete_candidate",
    "create_search",
    "default_url",
    "delete_search",
    "evaluations_of",
    "find_duplicate",
    "get_candidate",
    "get_search",
    "heartbeat_candidates",
    "heartbeat_controller",
    "is_baseline",
    "list_candidates",
    "list_searches",
    "mark_status",
    "next_birth",
    "open_readonly_store",
    "open_store",
    "pareto_front",
    "pareto_front_across",
    "population",
    "rebuild_derived",
    "record_check",
    "record_evaluation",
    "record_rejection",
    "record_validation",
    "release_controller",
    "requeue_candidate",
    "results_in_commit_order",
    "schema_status",
    "search_summary",
    "set_search_state",
    "stale_searches",
    "stuck_candidates",
    "unfinished_candidates",
    "validated_candidates",
    "validation_runs",
]
