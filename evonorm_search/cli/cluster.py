"""`stop ID` and `resume ID`: stopping a running search, and driving a stopped one again.

Evaluations run on Ray by default: a local Ray started for the run, or the cluster given by
`--ray-address` / EVONORM_RAY_ADDRESS. `--in-process` evaluates in the controller's process instead
(one at a time; for debugging). Ray is imported only when a command needs it.
"""

from __future__ import annotations

from typing import Annotated

import typer

from ..search.control import check_resumable, request_stop, wait_until_stopped
from ..store import Search, SearchState, Store, StoreError
from .app import app, console, fail
from .common import (
    EXIT_FAILED,
    CpusOption,
    DbOption,
    GpusOption,
    InProcessOption,
    RayAddressOption,
    RetriesOption,
    TimeoutOption,
    drive,
    make_evaluator,
    opened_store,
    progress_line,
    stored_config,
)


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


def _resumable(store: Store, search_id: int) -> Search:
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
