"""Schemas shared by every resource: the error body and objectives."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Schema(BaseModel):
    """Base of every response schema: attributes can be read from the store's objects."""

    model_config = ConfigDict(from_attributes=True)


class Problem(Schema):
    field: str = Field(description="Where the problem is: a dotted path into the request or configuration.")
    message: str


class ErrorBody(Schema):
    """Every 4xx and 5xx answer has this body."""

    code: str = Field(description="Machine-readable kind, e.g. not_found, invalid_request, dsl_error, conflict.")
    message: str = Field(description="What went wrong and, where it helps, what to do.")
    problems: list[Problem] = Field(default_factory=list, description="Each invalid field, for validation errors.")
    line: int | None = Field(default=None, description="1-based line of a DSL error.")
    column: int | None = Field(default=None, description="1-based column of a DSL error.")


class ObjectiveOut(Schema):
    """An objective and what it is (the rows of `evonorm_search.search.objectives`), so that clients
    read its kind and label here instead of parsing its name."""

    name: str
    direction: Literal["max", "min"]
    reference: float | None = Field(default=None, description="The hypervolume reference value.")
    kind: str | None = Field(
        default=None, description="accuracy, cost, ...; null for an objective no registered kind claims."
    )
    architecture: str | None = Field(default=None, description="The proxy architecture it is measured on, if any.")
    label: str | None = Field(default=None, description="How to show it, e.g. `accuracy (resnet)`.")
