"""/api/v1/candidates/{id}: one candidate, and its exports (standalone module, Triton kernels)."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse
from starlette.concurrency import run_in_threadpool

import evonorm_search as es
from evonorm_search.ir import Graph, GraphError
from evonorm_search.search.provenance import candidate_provenance
from evonorm_search.search.validation import Validated

from .. import repository as repo
from .. import views
from ..deps import CandidateId, DatabaseDep, FormulaRate, FormulasDep, ReadAccess, StoreDep
from ..errors import ApiError, error_responses
from ..schemas.candidates import CandidateDetailOut
from ..views import API_PREFIX

router = APIRouter(prefix=f"{API_PREFIX}/candidates", tags=["candidates"], dependencies=[ReadAccess])

PYTHON_SOURCE = {"content": {"text/x-python": {"schema": {"type": "string"}}}, "description": "Python source."}


@router.get(
    "/{candidate_id}",
    dependencies=[FormulaRate],
    responses=error_responses(401, 404, 422, 429, 503),
    summary="A candidate",
)
async def candidate(
    store: StoreDep,
    database: DatabaseDep,
    formulas: FormulasDep,
    candidate_id: CandidateId,
    lineage_limit: Annotated[
        int,
        Query(
            ge=0,
            le=10_000,
            description="Ancestors to list at most (each costs a row; `lineage_truncated` says more exist).",
        ),
    ] = 20,
) -> CandidateDetailOut:
    """The DSL, canonical form and LaTeX, metrics per architecture, parent lineage, evaluation history, and
    its scores at every rung of the fidelity ladder (proxies, target task) with the highest it reached."""

    def read() -> tuple[repo.CandidateDetail, Validated | None]:
        with store.session(readonly=True) as s:
            detail = repo.candidate_detail(s, candidate_id, lineage_limit=lineage_limit)
            return detail, repo.candidate_validation(s, detail.candidate)

    detail, target = await database.run(read)
    c = detail.candidate
    symbolic = await formulas.of_stored_many({c.canonical_hash: c.graph})
    return views.candidate_detail(detail, symbolic[c.canonical_hash], target)


def _graph(store: repo.Store, candidate_id: int) -> Graph:
    with store.session(readonly=True) as s:
        stored = repo.get_candidate(s, candidate_id)
    return _readable_graph(stored.graph, candidate_id)


def _graph_and_provenance(store: repo.Store, candidate_id: int) -> tuple[Graph, dict[str, Any]]:
    """The layer and what its export records of it (search, candidate, scores), read in one session."""
    with store.session(readonly=True) as s:
        stored = repo.get_candidate(s, candidate_id).graph
        provenance = candidate_provenance(s, candidate_id)
    return _readable_graph(stored, candidate_id), provenance


def _readable_graph(stored: dict[str, Any], candidate_id: int) -> Graph:
    try:
        return Graph.from_dict(stored)
    except (GraphError, ValueError, TypeError, KeyError) as e:
        raise ApiError(
            409, "conflict", f"candidate {candidate_id}'s stored graph cannot be read by this version: {e}"
        ) from None


def _source_file(source: str, filename: str) -> PlainTextResponse:
    return PlainTextResponse(
        source,
        media_type="text/x-python",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


ClassName = Annotated[
    str | None,
    Query(
        max_length=100,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="The exported class's name. Default: EvoNormCandidate<id>.",
    ),
]


@router.get(
    "/{candidate_id}/module.py",
    response_class=PlainTextResponse,
    responses={200: PYTHON_SOURCE, **error_responses(401, 404, 409, 422, 503)},
    summary="Export as a standalone PyTorch module",
)
async def module_source(
    store: StoreDep, database: DatabaseDep, candidate_id: CandidateId, class_name: ClassName = None
) -> PlainTextResponse:
    """A Python file that needs only torch: the layer as an nn.Module with NormAct's constructor and
    state_dict keys, so trained weights load across."""
    name = class_name or f"EvoNormCandidate{candidate_id}"
    graph, provenance = await database.run(partial(_graph_and_provenance, store, candidate_id))

    def export() -> str:
        try:
            return es.export_module(graph, class_name=name, provenance=provenance)
        except ValueError as e:  # a keyword as class name
            raise ApiError(422, "invalid_request", str(e)) from None

    return _source_file(await run_in_threadpool(export), f"evonorm_candidate_{candidate_id}.py")


@router.get(
    "/{candidate_id}/kernels.py",
    response_class=PlainTextResponse,
    responses={200: PYTHON_SOURCE, **error_responses(401, 404, 409, 422, 503)},
    summary="Export the fused Triton kernels",
)
async def kernels_source(store: StoreDep, database: DatabaseDep, candidate_id: CandidateId) -> PlainTextResponse:
    """The Triton source of the layer's fused forward and backward kernels."""
    graph = await database.run(partial(_graph, store, candidate_id))
    source = await run_in_threadpool(es.kernel_source, graph)
    return _source_file(source, f"evonorm_candidate_{candidate_id}_kernels.py")
