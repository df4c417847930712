"""schemathesis against the app's own OpenAPI schema: for generated requests, valid and invalid, no 5xx,
no undocumented status, no response that breaks the documented schema or content type."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from evonorm_search import store as st
from service import create_app

from .conftest import AUTH, settings_for
from .factories import populate

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


# The schema is read when the module is collected, so the app exists then; its database is a file in a
# directory of its own, made only when the fixture below first opens it (collecting creates nothing).
DATABASE_DIR = Path(tempfile.gettempdir()) / f"evonorm-service-fuzz-{uuid.uuid4().hex}"
APP = create_app(
    settings_for(
        f"sqlite:///{DATABASE_DIR / 'evonorm.db'}", launcher="none", events_interval=0.05, events_max_seconds=0.3
    )
)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@pytest.fixture(scope="module", autouse=True)
def database():
    """Search 1 (completed, candidates 1..12: the ids the schema's examples name) and a running search."""
    try:
        with st.open_store(APP.state.context.settings.database_url) as store:
            populate(store, candidates=12)
            populate(store, candidates=3, seed=1, name="running", final_state=st.SearchState.RUNNING)
        yield
    finally:
        APP.state.context.close()
        shutil.rmtree(DATABASE_DIR, ignore_errors=True)


@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_every_operation_answers_as_documented(case):
    case.call_and_validate(headers=AUTH, checks=CHECKS)


@schema.parametrize()
@settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_without_a_key_every_operation_still_answers_as_documented(case):
    case.call_and_validate(checks=CHECKS)
