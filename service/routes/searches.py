"""/api/v1/searches: launch, list, status, stop, resume, candidates, Pareto front, live events."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import HTMLResponse
from fastapi.sse import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool

from evonorm_search.search.config import ConfigError
from evonorm_search.search.report import ReportInputs, build_report, read_report_inputs

from .. import bodies, events, views
from .. import repository as repo
from ..context import ServiceContext
from ..deps import (
    ContextDep,
    DatabaseDep,
    FormulasDep,
    LauncherDep,
    ReadAccess,
    SearchId,
    StoreDep,
    StreamSlotDep,
    WriteAccess,
)
from ..errors import ApiError, error_responses
from ..schemas.candidates import CandidatePage
from ..schemas.pareto import ParetoFront, SearchFronts
from ..schemas.searches import BaselineOut, SearchLaunched, SearchPage, SearchProgressChart, SearchStatus
from ..views import API_PREFIX

log = logging.getLogger("evonorm_search.service")

router = APIRouter(prefix=f"{API_PREFIX}/searches", tags=["searches"])

MAX_API_PAGE = 500
Limit = Annotated[int, Query(ge=1, le=MAX_API_PAGE, description="Page size.")]
Cursor = Annotated[
    str | None, Query(max_length=1000, description="The `next_cursor` of the previous page; omit for the first page.")
]
ObjectiveNames = Annotated[
    list[str] | None,
    Query(
        alias="objective",
        max_length=32,
        description="An objective to compare on; repeat for several. Default: every objective of the search.",
    ),
]

SEARCH_BODY = {
    "required": True,
    "description": "A SearchConfig, as JSON or as YAML (the same text as a config file for `evonorm-search run`).",
    "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/SearchConfig"}},
        "application/yaml": {"schema": {"type": "string"}},
        "text/yaml": {"schema": {"type": "string"}},
    },
}


@router.post(
    "",
    status_code=201,
    dependencies=[WriteAccess],
    responses=error_responses(401, 403, 409, 413, 415, 422, 503),
    openapi_extra={"requestBody": SEARCH_BODY},
    summary="Launch a search",
)
async def launch_search(
    request: Request,
    response: Response,
    store: StoreDep,
    launcher: LauncherDep,
    context: ContextDep,
    start: Annotated[bool, Query(description="Start driving it now; false only stores it (state `created`).")] = True,
) -> SearchLaunched:
    """Store a search for the configuration in the body and, unless `start=false` or this server launches
    nothing (EVONORM_LAUNCHER=none), start driving it."""
    config = bodies.search_config(await request.body(), request.headers.get("content-type"), context.settings)
    search = await run_in_threadpool(repo.create_search, store, config)
    launched = start and launcher.launches
    if launched:
        await run_in_threadpool(_launch, launcher.start, search.id)
        context.metrics.launches.labels("start").inc()
    response.headers["Location"] = views.search_links(search.id).status
    return SearchLaunched(
        **views.search_brief(search).model_dump(), launched=launched, links=views.search_links(search.id)
    )


def _launch(action: Callable[[int], None], search_id: int) -> None:
    """Start or resume; a launcher that fails (a cluster out of reach, ...) leaves the search stored, as a 503."""
    try:
        action(search_id)
    except (repo.StoreError, repo.ControllerError):
        raise  # answered as 404/409/503 by their handlers
    except Exception as e:
        log.exception("search %d could not be launched", search_id)
        raise ApiError(
            503,
            "launch_failed",
            f"search {search_id} is stored but could not be started ({type(e).__name__}: {e}); "
            f"resume it (POST {API_PREFIX}/searches/{search_id}/resume) once that is fixed",
        ) from None


@router.get("", dependencies=[ReadAccess], responses=error_responses(401, 422, 503), summary="List searches")
async def list_searches(
    store: StoreDep,
    database: DatabaseDep,
    state: Annotated[list[repo.SearchState] | None, Query(description="Only searches in these states.")] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> SearchPage:
    """Searches, newest first, a page at a time."""

    def read() -> SearchPage:
        with store.session(readonly=True) as s:
            page = repo.list_searches(s, states=state, limit=limit, cursor=cursor)
            return SearchPage(items=[views.search_brief(x) for x in page.items], next_cursor=page.next_cursor)

    return await database.run(read)


@router.get(
    "/{search_id}",
    dependencies=[ReadAccess],
    responses=error_responses(401, 404, 422, 503),
    summary="A search's status",
)
async def search_status(context: ContextDep, store: StoreDep, search_id: SearchId) -> SearchStatus:
    """State, candidates by status and rejection reason, best value per objective, hypervolume, elapsed
    time, throughput and the estimated time to finish."""
    return await events.current_status(context, store, search_id)


def _changed_status(context: ServiceContext, store: repo.Store, search_id: int) -> SearchStatus:
    context.reads.invalidate(search_id)
    return events.read_status(context, store, search_id)


@router.post(
    "/{search_id}/stop",
    status_code=202,
    dependencies=[WriteAccess],
    responses=error_responses(401, 403, 404, 409, 422, 503),
    summary="Stop a search",
)
def stop_search(context: ContextDep, store: StoreDep, launcher: LauncherDep, search_id: SearchId) -> SearchStatus:
    """Ask the search's controller to stop: the state becomes `stopping`, then `stopped` once the
    controller has noticed (after its current evaluation). Stopping a stopping search changes nothing."""
    launcher.stop(search_id)
    return _changed_status(context, store, search_id)


@router.post(
    "/{search_id}/resume",
    status_code=202,
    dependencies=[WriteAccess],
    responses=error_responses(401, 403, 404, 409, 422, 503),
    summary="Resume a search",
)
def resume_search(store: StoreDep, launcher: LauncherDep, context: ContextDep, search_id: SearchId) -> SearchStatus:
    """Drive a created, stopped or failed search again (or a running one whose controller died), from
    what the database holds: nothing finished is evaluated twice."""
    repo.check_resumable(store, search_id)
    _launch(launcher.resume, search_id)
    context.metrics.launches.labels("resume").inc()
    return _changed_status(context, store, search_id)


@router.get(
    "/{search_id}/candidates",
    dependencies=[ReadAccess],
    responses=error_responses(401, 404, 422, 503),
    summary="A search's candidates",
)
async def search_candidates(
    store: StoreDep,
    database: DatabaseDep,
    search_id: SearchId,
    status: Annotated[
        list[repo.CandidateStatus] | None, Query(description="Only candidates with these statuses.")
    ] = None,
    reason: Annotated[
        list[repo.RejectionStage] | None, Query(description="Only candidates rejected at these stages.")
    ] = None,
    sort: Annotated[
        str,
        Query(max_length=100, description="`birth`, or an objective's name (then only evaluated candidates)."),
    ] = "birth",
    order: Annotated[
        Literal["asc", "desc"] | None,
        Query(description="Default: births oldest first, objectives best first."),
    ] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> CandidatePage:
    """Candidates filtered by status and rejection reason, sorted by birth or by any objective, a page at a
    time (pass `next_cursor` back as `cursor`, with the same filters and order)."""
    descending = None if order is None else order == "desc"

    def read() -> CandidatePage:
        with store.session(readonly=True) as s:
            page = repo.list_candidates(
                s,
                search_id,
                statuses=status,
                stages=reason,
                sort=sort,
                descending=descending,
                limit=limit,
                cursor=cursor,
                brief=True,  # the columns a page shows, read lean
            )
        return CandidatePage(items=[views.candidate_brief(c) for c in page.items], next_cursor=page.next_cursor)

    # async, with the read in one database thread: a plain `def` route would also validate its answer in a
    # second trip through the thread pool, which at 8 clients costs more than the page's query.
    return await database.run(read)


@router.get(
    "/{search_id}/pareto",
    dependencies=[ReadAccess],
    responses=error_responses(401, 404, 422, 503),
    summary="A search's Pareto front",
)
async def search_pareto(
    context: ContextDep, store: StoreDep, formulas: FormulasDep, search_id: SearchId, objective: ObjectiveNames = None
) -> ParetoFront:
    """The candidates no other candidate of the search beats on every chosen objective."""

    def read() -> tuple[repo.Search, list, dict]:
        with store.session(readonly=True) as s:
            search = repo.get_search(s, search_id)
            points = repo.pareto_front(s, search_id, objective, brief=True)
            graphs = repo.candidate_graphs(s, [c.id for c in points if not formulas.has(c.canonical_hash)])
        return search, points, graphs

    async def load() -> ParetoFront:
        search, points, graphs = await context.database.run(read)
        chosen = views.objectives_of(search)
        if objective is not None:
            chosen = [next(o for o in chosen if o.name == name) for name in objective]
        symbolic = await formulas.of_stored_many(views.point_graphs(points, repo.graph_reader(store, graphs)))
        return views.pareto_front(points, chosen, [search_id], symbolic)

    return await context.reads.aget(("pareto", search_id, None if objective is None else tuple(objective)), load)


@router.get(
    "/{search_id}/fronts",
    dependencies=[ReadAccess],
    responses=error_responses(401, 404, 409, 422, 503),
    summary="A search's fronts at each rung of the fidelity ladder",
)
async def search_fronts(context: ContextDep, store: StoreDep, search_id: SearchId) -> SearchFronts:
    """The search's answer, as `evonorm-search pareto ID --json` prints it: the validated front (rung 1:
    layers trained on the target task by the fidelity ladder or `evonorm-search validate`, best mean first,
    with mean ± std over the stored target seeds, each target network's mean and the difference to each
    validated baseline), the proxy front (rung 0, best first on the first objective), and the baselines at
    both rungs. 409 when the search's stored configuration cannot be read by this version."""

    def read() -> SearchFronts:
        with store.session(readonly=True) as s:
            try:
                fronts = repo.read_fronts(s, search_id)
            except ConfigError as e:
                raise ApiError(409, "conflict", f"search {search_id}'s fronts cannot be read: {e}") from None
            return SearchFronts.model_validate(fronts.to_json())

    return await context.reads.aget(("fronts", search_id), lambda: context.database.run(read))


@router.get(
    "/{search_id}/baselines",
    dependencies=[ReadAccess],
    responses=error_responses(401, 404, 422, 503),
    summary="A search's baselines",
)
async def search_baselines(store: StoreDep, database: DatabaseDep, search_id: SearchId) -> list[BaselineOut]:
    """The reference layers the search evaluated under its own proxies (config `baselines`), in config
    order: outside its budget, counts, population and Pareto front; compare its layers against them."""

    def read() -> list[BaselineOut]:
        with store.session(readonly=True) as s:
            repo.get_search(s, search_id)
            return [views.baseline_out(c) for c in repo.baselines_of(s, search_id)]

    return await database.run(read)


@router.get(
    "/{search_id}/progress",
    dependencies=[ReadAccess],
    responses=error_responses(401, 404, 422, 503),
    summary="A search's best value so far",
)
async def search_progress(store: StoreDep, database: DatabaseDep, search_id: SearchId) -> SearchProgressChart:
    """Per objective, each change of the best value over the evaluated candidates (in the order their
    results were stored), and the evaluated baselines' objectives: the dashboard's progress chart, which
    reloads it as the search's events report new evaluations."""

    def read() -> SearchProgressChart:
        with store.session(readonly=True) as s:
            search = repo.get_search(s, search_id)
            results = repo.results_in_commit_order(s, search_id)
            baselines = repo.baselines_of(s, search_id)
        return views.progress_chart(search, results, baselines)

    return await database.run(read)


HTML_PAGE = {"content": {"text/html": {"schema": {"type": "string"}}}, "description": "One self-contained HTML page."}


@router.get(
    "/{search_id}/report",
    response_class=HTMLResponse,
    dependencies=[ReadAccess],
    responses={200: HTML_PAGE, **error_responses(401, 404, 409, 422, 503)},
    summary="A search's report",
)
async def search_report_page(store: StoreDep, database: DatabaseDep, search_id: SearchId) -> HTMLResponse:
    """The report `evonorm-search report ID` writes, as one self-contained HTML page (pictures inline, no
    network): configuration, funnel, best value so far with the baselines, Pareto front, best layers with
    formulas and scores against each baseline, validated front, lineage, machine and versions. 409 when the
    search's stored configuration cannot be read by this version."""

    def read() -> ReportInputs:
        with store.session(readonly=True) as s:
            try:
                return read_report_inputs(s, search_id)
            except ConfigError as e:
                raise ApiError(409, "conflict", f"search {search_id}'s report cannot be made: {e}") from None

    inputs = await database.run(read)
    # Formulas and pictures take a second or two: drawn off the database threads, which other reads share.
    return HTMLResponse(await run_in_threadpool(lambda: build_report(inputs).to_html()))


async def _existing_search(store: StoreDep, database: DatabaseDep, search_id: SearchId) -> int:
    """The id of a search that exists; 404 otherwise, before a stream's 200 goes out."""

    def lookup() -> int:
        with store.session(readonly=True) as s:
            return repo.get_search(s, search_id).id

    return await database.run(lookup)


@router.get(
    "/{search_id}/events",
    response_class=EventSourceResponse,
    dependencies=[ReadAccess],
    responses=error_responses(401, 404, 422, 503),
    summary="Live progress (server-sent events)",
)
async def search_events(
    context: ContextDep,
    store: StoreDep,
    search_id: Annotated[int, Depends(_existing_search)],
    slot: StreamSlotDep,  # after the search's lookup: a 404 takes no slot
) -> AsyncIterator[ServerSentEvent]:
    """`progress` events (data: the search's status) whenever it changes, then `end` once the search is
    completed, stopped or failed. Streams end after EVONORM_EVENTS_MAX_SECONDS; browsers reconnect.
    Beyond EVONORM_MAX_EVENT_STREAMS open streams, 503 with Retry-After."""
    try:
        async for event in events.progress_events(context, store, search_id):
            yield event
    finally:
        slot.release()
