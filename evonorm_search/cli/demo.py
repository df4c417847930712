"""`demo`: the README's main job. A real search on the embedded default (local Ray, SQLite, bundled
digits), its Pareto front, then the API and dashboard over the results."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..store import StoreError
from .app import app, console, fail
from .common import (
    EXIT_STORE,
    DbOption,
    EvaluationOptions,
    drive,
    load_config,
    make_evaluator,
    opened_store,
    progress_line,
    with_evaluation_options,
)
from .search import choose_search, pareto_command
from .serve import serve_command

DEFAULT_CONFIG = Path("examples/quick.yaml")


@app.command("demo")
@with_evaluation_options
def demo_command(
    evaluation: EvaluationOptions,
    config_path: Annotated[
        Path, typer.Argument(metavar="CONFIG.yaml", help="search to run (default: examples/quick.yaml)")
    ] = DEFAULT_CONFIG,
    db: DbOption = None,
    host: Annotated[str, typer.Option(help="interface the dashboard listens on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="dashboard port")] = 8000,
    serve: Annotated[bool, typer.Option("--serve/--no-serve", help="serve the dashboard afterwards")] = True,
) -> None:
    """Run a search on the embedded default (resuming it if an earlier demo was interrupted), print its
    Pareto front and where the results are, then serve the dashboard until Ctrl-C."""
    if not config_path.is_file():
        raise fail(f"no such configuration: {config_path} (run the demo from the repository root, or give a path)")
    config = load_config(config_path)
    with opened_store(db) as store:
        try:
            search_id, what = choose_search(store, config)
        except StoreError as e:
            raise fail(str(e), EXIT_STORE) from None
        console.print(f"{what.format(id=search_id)} in {store.url}", highlight=False, markup=False)
        evaluator = make_evaluator(store, config, evaluation)
        final = drive(store, search_id, evaluator, None, db=db)
        console.print(progress_line(final), highlight=False, markup=False)
        url = store.url
    pareto_command(search_id, db=db, as_json=False)
    console.print(f"results: search {search_id} in {url}", highlight=False, markup=False)
    if serve:
        serve_command(host=host, port=port, db=db)
