"""/api/v1/layers/check: DSL text -> canonical text, canonical form, LaTeX and hash, or where it is wrong."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

import evonorm_search as es
from evonorm_search.symbolic import FormulaTooLarge

from .. import bodies
from ..deps import ContextDep, FormulaRate, FormulasDep, ReadAccess
from ..errors import ApiError, error_responses
from ..formulas import FormulaBusy, FormulaCache, FormulaTimeout
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
    try:
        checked = formulas.check(graph)
    except FormulaTooLarge as e:
        raise ApiError(422, "formula_too_large", f"the layer is valid, but {e}") from None
    except FormulaTimeout as e:
        raise ApiError(422, "formula_timeout", f"the layer is valid, but {e}") from None
    except FormulaBusy as e:
        raise ApiError(503, "formula_workers_busy", f"{e}; try again shortly", headers={"Retry-After": "5"}) from None
    return LayerCheckResult(
        text=graph.to_text(),
        canonical=checked.canonical,
        latex=checked.latex,
        hash=checked.hash,
        nodes=len(graph),
        parameters=list(graph.parameters),
        axes=sorted(graph.axes),
        depends_on_x=graph.depends_on_x,
    )


@router.post(
    "/check",
    dependencies=[FormulaRate],
    responses=error_responses(401, 413, 415, 422, 429, 503),
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
