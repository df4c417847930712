"""Schemas of Pareto fronts."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from .common import ObjectiveOut, Schema


class ParetoPoint(Schema):
    candidate_id: int
    search_id: int
    birth: int
    objectives: dict[str, float] = Field(description="Every objective value of the candidate.")
    dsl: str
    canonical_hash: str
    latex: str | None = Field(description="The formula in LaTeX (null when too large to print).")


class ParetoFront(Schema):
    objectives: list[ObjectiveOut] = Field(description="The objectives the front is over, in the order asked.")
    search_ids: list[int] = Field(
        description="The searches asked for (search_id), else the searches the front's layers come from."
    )
    points: list[ParetoPoint] = Field(description="Non-dominated candidates, best first by the first objective.")


# -- the fronts at each rung of the fidelity ladder (evonorm_search/search/fronts.py builds them) ----------


class ProxyDifference(Schema):
    mean: float | None = Field(description="The layer's mean proxy accuracy minus the baseline's.")
    per_objective: dict[str, float] = Field(description="The layer's value minus the baseline's, per objective.")


class ProxyRow(Schema):
    """A layer of the proxy front (rung 0)."""

    candidate: int
    birth: int
    layer: str = Field(description="The layer in the DSL.")
    rung: int = Field(description="0: the proxies.")
    mean: float | None = Field(description="Mean of its accuracy objectives over the proxy architectures.")
    std: float | None = Field(description="Always null: one proxy run per architecture.")
    per_architecture: dict[str, float] = Field(description="Proxy accuracy per architecture.")
    objectives: dict[str, float]
    mutation: Any = Field(default=None, description="How the layer was made from its parent.")
    vs_baselines: dict[str, ProxyDifference] = Field(description="Per evaluated baseline (label): the difference.")


class ProxyBaselineRow(Schema):
    """A baseline evaluated on the proxies (rung 0)."""

    candidate: int
    label: str | None
    layer: str
    objectives: dict[str, float]
    mean: float | None
    per_architecture: dict[str, float]


class ValidatedRow(Schema):
    """A layer or baseline trained on the target task (rung 1), by the ladder or `evonorm-search validate`."""

    candidate: int | None
    label: str | None = Field(description="A baseline's name; null for a layer of the search.")
    layer: str
    rung: int = Field(description="1: the target task.")
    mean: float | None = Field(description="Mean over the stored target seeds of the mean over target networks.")
    std: float | None = Field(description="Sample standard deviation over seeds (0 with one seed).")
    per_architecture: dict[str, float] = Field(description="Mean target accuracy per target architecture.")
    seeds: list[int] = Field(description="The target seeds stored whole (every target architecture).")
    vs_baselines: dict[str, float | None] = Field(
        description="Per validated baseline (its label): this mean minus the baseline's."
    )


class SearchFronts(Schema):
    """A search's answer at each rung: `evonorm-search pareto ID --json`, the same JSON."""

    search: int
    objectives: list[str] = Field(description="The search's objectives, the proxy front's order.")
    validated: list[ValidatedRow] = Field(description="The validated front: layers with target runs, best mean first.")
    proxy: list[ProxyRow] = Field(description="The Pareto front over the proxy objectives, best first on the first.")
    baselines: list[ProxyBaselineRow] = Field(description="The evaluated baselines on the proxies.")
    validated_baselines: list[ValidatedRow] = Field(description="The baselines with target runs.")
