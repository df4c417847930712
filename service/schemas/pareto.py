"""Schemas of Pareto fronts."""

from __future__ import annotations

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
