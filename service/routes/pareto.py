"""/api/v1/pareto: the best layers across searches, for a set of objectives or architectures."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from evonorm_search.search.objectives import accuracy_name

from .. import repository as repo
from .. import views
from ..deps import MAX_ID, ContextDep, FormulasDep, ReadAccess, StoreDep
from ..errors import ApiError, error_responses
from ..schemas.common import ObjectiveOut
from ..schemas.pareto import ParetoFront
from ..views import API_PREFIX

router = APIRouter(prefix=f"{API_PREFIX}/pareto", tags=["pareto"], dependencies=[ReadAccess])


@router.get("", responses=error_responses(401, 404, 422, 503), summary="The Pareto front across searches")
async def pareto_across(
    context: ContextDep,
    store: StoreDep,
    formulas: FormulasDep,
    objective: Annotated[
        list[str] | None, Query(max_length=32, description="An objective to compare on; repeat for several.")
    ] = None,
    architecture: Annotated[
        list[str] | None,
        Query(max_length=32, description="Shorthand for objective accuracy_<architecture>; repeat for several."),
    ] = None,
    search_id: Annotated[
        list[Annotated[int, Query(ge=1, le=MAX_ID)]] | None,
        Query(max_length=1000, description="Only these searches. Default: every search with all the objectives."),
    ] = None,
) -> ParetoFront:
    """The layers no other layer beats on every chosen objective, pooled over searches."""
    names = list(objective or []) + [accuracy_name(a) for a in architecture or []]
    if not names:
        raise ApiError(422, "invalid_request", "choose objectives (objective=...) or architectures (architecture=...)")

    def read() -> tuple[list, dict[int, repo.Search], dict]:
        with store.session(readonly=True) as s:
            points = repo.pareto_front_across(s, names, search_ids=search_id, brief=True)
            searches = {i: repo.get_search(s, i) for i in {c.search_id for c in points}}
            graphs = repo.candidate_graphs(s, [c.id for c in points if not formulas.has(c.canonical_hash)])
        return points, searches, graphs

    async def load() -> ParetoFront:
        points, searches, graphs = await context.database.run(read)
        directions = {o.name: o for search in searches.values() for o in views.objectives_of(search)}
        chosen = [directions.get(n, ObjectiveOut(name=n, direction="max")) for n in names]
        compared = sorted(searches) if search_id is None else sorted(set(search_id))
        symbolic = await formulas.of_stored_many(views.point_graphs(points, repo.graph_reader(store, graphs)))
        return views.pareto_front(points, chosen, compared, symbolic)

    key = ("pareto-across", None, tuple(names), None if search_id is None else tuple(sorted(set(search_id))))
    return await context.reads.aget(key, load)
