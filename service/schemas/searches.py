"""Schemas of the searches resource: launch, list, status."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from .candidates import CandidateBrief
from .common import ObjectiveOut, Schema

SearchStateName = str  # one of evonorm_search.store.SearchState's values


class SearchLinks(Schema):
    status: str
    events: str
    candidates: str
    pareto: str
    fronts: str
    baselines: str


class SearchBrief(Schema):
    """A search as listed: what it is and where it stands, without counting its candidates."""

    id: int
    name: str
    state: SearchStateName = Field(description="created, running, stopping, stopped, completed or failed")
    budget: int | None = Field(description="Candidates the search proposes in all, rejected ones included.")
    seed: int
    objectives: list[ObjectiveOut]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None = None


class SearchPage(Schema):
    items: list[SearchBrief]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class SearchLaunched(SearchBrief):
    launched: bool = Field(description="Whether this server started driving the search (false: launcher 'none').")
    links: SearchLinks


class Counts(Schema):
    total: int = Field(description="Candidates proposed so far.")
    finished: int = Field(description="Candidates with a final verdict: evaluated, rejected or failed.")
    by_status: dict[str, int] = Field(description="Candidates per status.")
    rejected_by_stage: dict[str, int] = Field(description="Rejected candidates per rejection stage (reason).")
    evaluated: int
    duplicate_hits: int = Field(description="Duplicates answered from an earlier candidate's result.")


class BestOut(Schema):
    value: float
    candidate_id: int
    birth: int


class BaselineOut(CandidateBrief):
    """A reference layer evaluated under the search's proxies, outside its budget, population and fronts."""

    mean_accuracy: float | None = Field(description="Mean of its accuracy objectives, once evaluated.")
    error: str | None


class RungOut(Schema):
    """One rung of the search's fidelity ladder (`evonorm-search status --json`'s `ladder` rows)."""

    rung: int = Field(description="0: the proxies; 1: the target task.")
    name: str = Field(description="proxies, target task, or baselines on the target task")
    evaluated: int = Field(description="Candidates with a complete result at this rung.")
    promoted: int = Field(description="Candidates sent on to the next rung.")
    pending: int = Field(description="Candidates at this rung whose result is not complete yet.")
    examples: int = Field(description="Training examples processed at this rung (steps x batch size x networks).")


class ComputeOut(Schema):
    """A compute-bounded search's training examples (config `compute_budget`)."""

    spent_examples: int = Field(description="Used by the search's own candidates: rung 0 and their target runs.")
    budget_examples: int = Field(description="The search's compute budget; it proposes nothing new once reached.")


class Controller(Schema):
    host: str | None
    pid: int | None
    heartbeat_at: datetime | None


class SearchStatus(SearchBrief):
    """The status page of one search."""

    counts: Counts
    best: dict[str, BestOut | None] = Field(description="Best value per objective, honouring its direction.")
    hypervolume: float | None = Field(description="Of the front over all objectives; null without references.")
    front_size: int
    elapsed_seconds: float | None = Field(description="From start to finish, or to now while it runs.")
    throughput_per_hour: float | None = Field(
        description="Candidates finished per hour, between the first and the last verdict."
    )
    estimated_seconds_to_finish: float | None = Field(
        description="Remaining budget over the throughput, while the search runs."
    )
    progress: float | None = Field(description="Finished candidates over the budget, 0 to 1.")
    controller: Controller | None
    config: dict[str, Any] = Field(description="The search's configuration (SearchConfig).")
    ladder: list[RungOut] = Field(
        default_factory=list,
        description="The fidelity ladder's rungs (config `fidelities`); empty for a search without one.",
    )
    compute: ComputeOut | None = Field(
        default=None, description="Compute spent against `compute_budget`; null for a search without one."
    )
    links: SearchLinks


class ProgressStep(Schema):
    """The objective's best value changed: after `evaluated` evaluated candidates, to `value`."""

    evaluated: int
    candidate_id: int = Field(description="The candidate that set it.")
    value: float


class ObjectiveProgress(ObjectiveOut):
    steps: list[ProgressStep] = Field(description="Each change of the best value so far, in evaluation order.")


class BaselineLevel(Schema):
    """An evaluated baseline's objectives: the reference lines of the progress chart."""

    candidate_id: int
    label: str
    objectives: dict[str, float]


class SearchProgressChart(Schema):
    """The best value so far over the evaluated candidates (in the order their results were stored,
    duplicates not counted again), per objective, and the evaluated baselines to read it against."""

    search: int
    evaluated: int = Field(description="Evaluated candidates so far: the chart's x range.")
    objectives: list[ObjectiveProgress]
    baselines: list[BaselineLevel]
