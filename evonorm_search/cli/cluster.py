"""`stop ID`, `resume ID`, and the Ray options that `run` shares: searches on a Ray cluster.

Evaluations run on Ray by default: a local Ray started for the run, or the cluster given by
`--ray-address` / EVONORM_RAY_ADDRESS. `--in-process` evaluates in the controller's process instead
(one at a time; for debugging). Ray is imported only when a command needs it.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ..search.config import SearchConfig
from ..search.control import check_resumable, request_stop, wait_until_stopped
from ..search.evaluator import Evaluator, InProcessEvaluator
from ..store import SearchState, StoreError
from .app import app, console, err_console, fail
from .db import DbOption

EXIT_FAILED = 1  # the cluster or the database could not be used, or the search cannot be driven

RayAddressOption = Annotated[
    str | None,
    typer.Option(
        "--ray-address",
        metavar="ADDR",
        envvar="EVONORM_RAY_ADDRESS",
        help="Ray cluster to run evaluations on: HOST:PORT of the head node (port 6379 by default), "
        "ray://HOST:10001, or auto. Default: start a local Ray. A multi-node cluster needs a PostgreSQL --db.",
    ),
]
InProcessOption = Annotated[
    bool,
    typer.Option("--in-process", help="Evaluate in this process without Ray, one candidate at a time (debugging)."),
]
CpusOption = Annotated[
    float | None,
    typer.Option(
        "--cpus-per-evaluation", metavar="N", help="CPUs Ray reserves per evaluation (default: training.threads, or 1)."
    ),
]
GpusOption = Annotated[
    float | None,
    typer.Option(
        "--gpus-per-evaluation",
        "--gpus",
        metavar="N",
        help="GPUs Ray reserves per evaluation; fractions share a GPU (0.25: four per GPU); 0 trains on CPU. "
        "Default: the search's workers.gpus_per_evaluation (1) when training.device is cuda, or auto on a "
        "cluster with GPUs; else 0.",
    ),
]
TimeoutOption = Annotated[
    float | None,
    typer.Option("--evaluation-timeout", metavar="SECONDS", help="Fail an evaluation running longer than this."),
]
RetriesOption = Annotated[
    int,
    typer.Option("--retries", metavar="N", help="Start an evaluation again up to N times when its worker dies."),
]


def make_evaluator(
    store: Any,
    config: SearchConfig,
    *,
    ray_address: str | None = None,
    in_process: bool = False,
    cpus: float | None = None,
    gpus: float | None = None,
    timeout: float | None = None,
    retries: int = 2,
    report: Any = console,
) -> Evaluator:
    """The evaluator for a run of `config`: on Ray (connecting now, and saying where on `report`), or in
    this process."""
    if in_process:  # wins over EVONORM_RAY_ADDRESS: no Ray at all
        return InProcessEvaluator()
    from workers import ClusterError, RayEvaluator, RaySettings, capacity_problem, check_settings, connect

    try:
        settings = RaySettings(cpus=cpus, gpus=gpus, timeout=timeout, retries=retries)
        settings.resources_for(config)  # a bad setting fails before any Ray starts
        check_settings(retries=retries, timeout=timeout)
    except ValueError as e:
        raise fail(str(e)) from None
    try:
        connection = connect(ray_address, store=store)
    except ClusterError as e:
        raise fail(str(e), EXIT_FAILED) from None
    resources = settings.resources_for(config, cluster_gpus=connection.total("GPU"))
    report.print(
        f"evaluating on {connection.describe()}, each evaluation with {resources.describe()}",
        highlight=False,
        markup=False,
    )
    if (problem := capacity_problem(connection, resources)) is not None:
        if connection.address is None:  # a local Ray will never grow: say so rather than wait forever
            connection.close()
            raise fail(f"{problem}; lower --cpus-per-evaluation or --gpus-per-evaluation", EXIT_FAILED)
        err_console.print(f"warning: {problem} now; waiting for nodes that can join the cluster", highlight=False)
    try:
        return RayEvaluator(
            resources,
            retries=retries,
            timeout=timeout,
            max_calls=settings.max_calls_for(config),
            on_close=connection.close,
        )
    except BaseException:
        connection.close()
        raise


@app.command("resume")
def resume_command(
    search_id: Annotated[int, typer.Argument(metavar="ID", help="the search to resume")],
    db: DbOption = None,
    ray_address: RayAddressOption = None,
    in_process: InProcessOption = False,
    cpus: CpusOption = None,
    gpus: GpusOption = None,
    timeout: TimeoutOption = None,
    retries: RetriesOption = 2,
    live: Annotated[
        bool | None, typer.Option("--live/--no-live", help="live display (default: when stdout is a terminal)")
    ] = None,
) -> None:
    """Resume a stopped, failed or interrupted search until its budget is spent.

    Completed evaluations are kept; candidates that were in flight are evaluated again.
    """
    from .search import drive, opened_store, progress_line, stored_config  # search.py imports this module

    with opened_store(db) as store:
        search = _resumable(store, search_id)
        config = stored_config(store, search_id)
        evaluator = make_evaluator(
            store,
            config,
            ray_address=ray_address,
            in_process=in_process,
            cpus=cpus,
            gpus=gpus,
            timeout=timeout,
            retries=retries,
        )
        console.print(f"resuming search {search_id} ({search.name}) in {store.url}", highlight=False, markup=False)
        final = drive(store, search_id, evaluator, live)
        console.print(progress_line(final), highlight=False, markup=False)


def _resumable(store: Any, search_id: int) -> Any:
    """The search, or a clean exit saying why it cannot be resumed now."""
    try:
        return check_resumable(store, search_id)
    except StoreError as e:
        raise fail(str(e), EXIT_FAILED) from None


@app.command("stop")
def stop_command(
    search_id: Annotated[int, typer.Argument(metavar="ID", help="the search to stop")],
    db: DbOption = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="wait until its controller has stopped")] = True,
    timeout: Annotated[float, typer.Option("--timeout", metavar="SECONDS", help="how long to wait")] = 120.0,
) -> None:
    """Stop a search: its controller cancels the evaluations in flight and ends it `stopped`.

    Completed evaluations are kept; `evonorm-search resume ID` continues it.
    """
    from .search import opened_store

    with opened_store(db) as store:
        try:
            state = request_stop(store, search_id)
            if state is SearchState.STOPPING and wait:
                state = wait_until_stopped(store, search_id, timeout=timeout)
        except StoreError as e:  # no such search, one that is finished, or the database is unreachable
            raise fail(str(e), EXIT_FAILED) from None
    if state is SearchState.STOPPING and wait:
        raise fail(
            f"search {search_id} is still stopping after {timeout:g}s: its controller has not answered "
            "(it checks between evaluations); run this again to keep waiting",
            EXIT_FAILED,
        )
    console.print(f"search {search_id}: {state}", highlight=False, markup=False)
