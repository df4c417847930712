"""The states and kinds of searches, candidates and evaluations: one set of str-valued enums that the
search, the workers, the store and the service all use (the database stores their values; users see them).

Dependency-free on purpose (the standard library's `enum` only): any package can import it without
pulling in the store's SQLAlchemy or the workers' Ray. `evonorm_search.store` re-exports the enums.
"""

from __future__ import annotations

import enum


class SearchState(enum.StrEnum):
    CREATED = "created"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    COMPLETED = "completed"
    FAILED = "failed"


class CandidateStatus(enum.StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    EVALUATED = "evaluated"
    REJECTED = "rejected"
    FAILED = "failed"


class RejectionStage(enum.StrEnum):
    """The rejection protocols, cheapest first."""

    STATIC = "static"
    DUPLICATE = "duplicate"
    NUMERIC = "numeric"
    STABILITY = "stability"
    QUALITY = "quality"


# The stages a worker may reject at: the probes when they run on the workers (`ProbeSite.WORKERS`), and
# the quality prefix of training, which always does.
WORKER_STAGES = frozenset({RejectionStage.NUMERIC, RejectionStage.STABILITY, RejectionStage.QUALITY})


class ProbeSite(enum.StrEnum):
    """Where a search runs the numeric and stability probes (`rejection.probes`)."""

    CONTROLLER = "controller"  # before the candidate is stored as running: a rejected layer never reaches a worker
    WORKERS = "workers"  # first thing in the worker body, before training: the controller's CPU goes elsewhere


class CandidateRole(enum.StrEnum):
    CANDIDATE = "candidate"  # proposed by the search: counts toward its budget, population and fronts
    BASELINE = "baseline"  # a reference layer evaluated beside the search, outside all of those


class EvaluationPhase(enum.StrEnum):
    QUALITY = "quality"  # the short training of the quality rejection
    PROXY = "proxy"  # the full proxy training that yields the objectives
    VALIDATION = "validation"  # the target task (`evonorm-search validate`); `attempt` holds the seed


class EvaluationStatus(enum.StrEnum):
    SUCCEEDED = "succeeded"
    REJECTED = "rejected"  # ran to the end but fell below the quality threshold
    FAILED = "failed"  # raised, ran out of memory, or its worker died


TERMINAL_STATUSES = frozenset({CandidateStatus.EVALUATED, CandidateStatus.REJECTED, CandidateStatus.FAILED})
UNFINISHED_STATUSES = (CandidateStatus.PENDING, CandidateStatus.QUEUED, CandidateStatus.RUNNING)
IN_FLIGHT_STATUSES = (CandidateStatus.QUEUED, CandidateStatus.RUNNING)
CONTROLLED_STATES = (SearchState.RUNNING, SearchState.STOPPING)  # states in which a controller should be alive
# States in which nothing drives the search until someone resumes it (a running or stopping search whose
# controller died may be resumed too: `search.lifecycle.not_resumable_reason`).
RESUMABLE_STATES = frozenset({SearchState.CREATED, SearchState.STOPPED, SearchState.FAILED})

# Which search states may follow which. A live controller re-claims a `running` search after a crash,
# hence running -> running; stopped and failed searches may be resumed.
SEARCH_TRANSITIONS: dict[SearchState, frozenset[SearchState]] = {
    SearchState.CREATED: frozenset({SearchState.RUNNING, SearchState.STOPPED, SearchState.FAILED}),
    SearchState.RUNNING: frozenset(
        {SearchState.RUNNING, SearchState.STOPPING, SearchState.STOPPED, SearchState.COMPLETED, SearchState.FAILED}
    ),
    SearchState.STOPPING: frozenset({SearchState.STOPPED, SearchState.COMPLETED, SearchState.FAILED}),
    SearchState.STOPPED: frozenset({SearchState.RUNNING}),
    SearchState.FAILED: frozenset({SearchState.RUNNING}),
    SearchState.COMPLETED: frozenset(),
}

# Which candidate statuses `mark_status` may set from which. Terminal statuses have no way out;
# `evaluated` and `rejected` are only reached through complete_candidate / record_rejection.
STATUS_TRANSITIONS: dict[CandidateStatus, frozenset[CandidateStatus]] = {
    CandidateStatus.PENDING: frozenset({CandidateStatus.QUEUED, CandidateStatus.RUNNING, CandidateStatus.FAILED}),
    CandidateStatus.QUEUED: frozenset(
        {CandidateStatus.PENDING, CandidateStatus.QUEUED, CandidateStatus.RUNNING, CandidateStatus.FAILED}
    ),
    CandidateStatus.RUNNING: frozenset(
        {CandidateStatus.PENDING, CandidateStatus.QUEUED, CandidateStatus.RUNNING, CandidateStatus.FAILED}
    ),
    CandidateStatus.EVALUATED: frozenset(),
    CandidateStatus.REJECTED: frozenset(),
    CandidateStatus.FAILED: frozenset(),
}
