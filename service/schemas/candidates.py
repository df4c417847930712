"""Schemas of the candidates resource: pages, detail, lineage, evaluations."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from .common import Schema


class CandidateBrief(Schema):
    """A candidate as a row of a page."""

    id: int
    search_id: int
    birth: int = Field(description="0, 1, 2, ... in the order the search proposed its candidates.")
    status: str = Field(description="pending, queued, running, evaluated, rejected or failed")
    rejection_stage: str | None = Field(description="static, duplicate, numeric, stability or quality")
    rejection_reason: str | None
    objectives: dict[str, float] | None = Field(description="Objective values, once evaluated.")
    dsl: str
    canonical_hash: str
    parent_id: int | None
    duplicate_of: int | None
    role: str = Field(description="candidate (proposed by the search) or baseline (a reference layer beside it)")
    label: str | None = Field(description="A baseline's name as the search's config lists it.")
    created_at: datetime
    finished_at: datetime | None


class CandidatePage(Schema):
    items: list[CandidateBrief]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class Formula(Schema):
    text: str = Field(description="The layer in the DSL, as printed from its graph.")
    canonical: str | None = Field(description="sympy's canonical form (srepr): equal layers share it.")
    latex: str | None = Field(description="The formula in LaTeX.")
    note: str | None = Field(default=None, description="Why `canonical`/`latex` are missing, when they are.")


class EvaluationOut(Schema):
    architecture: str
    phase: str = Field(
        description="quality (the short training of the quality rejection), proxy, or validation (the target "
        "task; `attempt` then holds the seed)"
    )
    attempt: int
    status: str = Field(description="succeeded, rejected or failed")
    metrics: dict[str, Any]
    duration_seconds: float
    node: str | None
    started_at: datetime | None
    finished_at: datetime


class ValidationArchitecture(Schema):
    mean: float
    std: float = Field(description="Sample standard deviation over seeds (0 with one seed).")


class ValidationOut(Schema):
    """The candidate re-trained on the target task (`evonorm-search validate`)."""

    seeds: list[int]
    mean: float = Field(description="Mean over seeds of the mean accuracy over the target architectures.")
    std: float = Field(description="Sample standard deviation of that over seeds (0 with one seed).")
    per_architecture: dict[str, ValidationArchitecture]
    runs: list[dict[str, Any]] = Field(description="Per seed: {seed, accuracies: {architecture: accuracy}}.")


class RungScore(Schema):
    """The candidate's scores at one rung of the fidelity ladder."""

    rung: int = Field(description="0: the proxies; 1: the target task.")
    name: str = Field(description="proxies or target task")
    mean: float | None = Field(description="Mean accuracy over the rung's architectures (over seeds at rung 1).")
    std: float | None = Field(description="Over target seeds at rung 1; null at rung 0 (one run per architecture).")
    per_architecture: dict[str, float] = Field(description="Accuracy per architecture of the rung.")
    seeds: list[int] = Field(description="The target seeds stored whole (rung 1); empty at rung 0.")
    objectives: dict[str, float] | None = Field(description="Every proxy objective at rung 0; null at rung 1.")


class Ancestor(Schema):
    id: int
    birth: int
    status: str
    dsl: str
    objectives: dict[str, float] | None
    mutation: Any = Field(default=None, description="How this ancestor was made from its own parent.")


class CandidateLinks(Schema):
    search: str
    module: str
    kernels: str


class CandidateDetailOut(CandidateBrief):
    """Everything known about one candidate."""

    fingerprint: str | None
    mutation: Any = Field(default=None, description="How the candidate was made from its parent.")
    graph: dict[str, Any] = Field(description="The graph IR (Graph.to_dict()).")
    formula: Formula
    attempt: int
    error: str | None
    check_seconds: dict[str, float] = Field(description="Seconds spent in each rejection check it went through.")
    metrics_by_architecture: dict[str, dict[str, dict[str, Any]]] = Field(
        description="Per architecture, per phase: the metrics of its latest attempt."
    )
    mean_accuracy: float | None = Field(description="Mean of its accuracy objectives, once evaluated.")
    evaluations: list[EvaluationOut] = Field(description="Every evaluation, every attempt.")
    validation: ValidationOut | None = Field(
        description="Target-task results over seeds (null until `evonorm-search validate` has run on it)."
    )
    rung: int | None = Field(
        description="The highest rung of the fidelity ladder it has a result at: 0 (the proxies) once evaluated, "
        "1 (the target task) once a target seed is stored whole; null before any result."
    )
    rungs: list[RungScore] = Field(description="Its scores at every rung it has a result at, lowest first.")
    lineage: list[Ancestor] = Field(description="Parent, grandparent, ... towards the root.")
    lineage_truncated: bool
    links: CandidateLinks
