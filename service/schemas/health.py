"""Schemas of liveness and readiness."""

from __future__ import annotations

from typing import Literal

from .common import Schema


class Health(Schema):
    status: Literal["ok"]
    version: str


class Readiness(Schema):
    status: Literal["ready"]
    database: str
    schema_revision: str | None
