"""Schemas of the layers resource: checking DSL text."""

from __future__ import annotations

from pydantic import Field

from .common import Schema


class LayerCheckRequest(Schema):
    dsl: str = Field(description="A layer in the DSL, e.g. `y = x * sigmoid(v1 * x) / std(x, group)`.")


class LayerCheckResult(Schema):
    text: str = Field(description="The layer printed back from its graph (the DSL's normal form).")
    canonical: str = Field(description="sympy's canonical form (srepr).")
    latex: str
    hash: str = Field(description="The canonical hash: equal for layers equal up to sympy's canonicalisation.")
    nodes: int
    parameters: list[str] = Field(description="Trainable vectors it uses (v0, v1).")
    axes: list[str] = Field(description="Aggregation axes it uses.")
    depends_on_x: bool
