"""/api/v1/layers/check: DSL text -> canonical text, canonical form, LaTeX and hash, or where it is wrong."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

import evonorm_search as es

from .. import bodies
from ..deps import ContextDep, FormulasDep, ReadAccess
from ..errors import ApiError, error_responses
from ..formulas import FormulaCache
from ..schemas.layers import LayerCheckResult
from ..views import API_PREFIX

router = APIRouter(prefix=f"{API_PREFIX}/layers", tags=["layers"], dependencies=[ReadAccess])

LAYER_BODY = {
    "required": True,
    "description": 'A layer in the DSL: JSON `{"dsl": "..."}`, or the text itself as text/plain.',
    "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/LayerCheckRequest"}},
        "text/plain": {"schema": {"type": "string"}},
    },
}


def check_layer(text: str, formulas: FormulaCache) -> LayerCheckResult:
    graph = es.parse(text)  # DSLError -> 422 with line and column
    symbolic = formulas.of_graph(graph)
    if symbolic.canonical is None or symbolic.latex is None:
        raise ApiError(422, "formula_too_large", f"the layer is valid, but {symbolic.note}")
    return LayerCheckResult(
        text=graph.to_text(),
        canonical=symbolic.canonical,
        latex=symbolic.latex,
        hash=es.canonical_hash(graph),
        nodes=len(graph),
        parameters=list(graph.parameters),
        axes=sorted(graph.axes),
        depends_on_x=graph.depends_on_x,
    )


@router.post(
    "/check",
    responses=error_responses(401, 413, 415, 422),
    openapi_extra={"requestBody": LAYER_BODY},
    summary="Check a layer",
)
async def check(request: Request, context: ContextDep, formulas: FormulasDep) -> LayerCheckResult:
    """Parse and validate a layer; answer its canonical text, canonical form, LaTeX and hash, or a 422
    whose `line` and `column` point at the problem."""
    text = bodies.layer_text(
        await request.body(), request.headers.get("content-type"), context.settings.max_layer_chars
    )
    return await run_in_threadpool(check_layer, text, formulas)
