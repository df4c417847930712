"""`run`, `status`, `pareto`, `stop` and `resume`: searches from the command line.

`run CONFIG` starts a search, or resumes the unfinished search of the same name and configuration
(so running the same command again after a crash or Ctrl-C continues where it stopped); `--resume ID`
resumes a search by id. A live display shows the budget, the rejection funnel and the best values.
`stop ID` asks a running search's controller to stop it; `resume ID` drives a stopped one again.

Evaluations run on Ray by default: a local Ray started for the run, or the cluster given by
`--ray-address` / EVONORM_RAY_ADDRESS. `--in-process` evaluates in the controller's process instead
(one at a time; for debugging). Ray is imported only when a command needs it (`common.make_evaluator`).
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.table import Table

from ..search.baselines import differences
from ..search.config import ConfigError, SearchConfig
from ..search.controller import create_search
from ..search.fronts import read_fronts
from ..search.ladder import search_compute, search_ladder
from ..search.lifecycle import check_resumable, request_stop, wait_until_stopped
from ..search.objectives import heading, mean_accuracy
from ..search.validation import BASELINE, LAYER, Validated, difference, stored_validation
from ..store import (
    Search,
    SearchState,
    Store,
    StoreError,
    baselines_of,
    get_search,
    list_searches,
    pareto_front,
    search_summary,
)
from .app import app, console, fail
from .common import (
    EXIT_FAILED,
    EXIT_STORE,
    CheckWorkersOption,
    DbOption,
    EvaluationOptions,
    db_flag,
    drive,
    exit_if_stopped,
    load_config,
    make_evaluator,
    opened_readonly_store,
    opened_store,
    print_formulas,
    progress_line,
    read_or_exit,
    resume_hint,
    shipped_folder,
    stored_config,
    with_db,
    with_evaluation_options,
)
from .config_check import refuse_unusable_models
from .tables import FittedTable

# Every state but completed: a search `run` may take up again when its name and config match.
NOT_COMPLETED_STATES = (
    SearchState.CREATED,
    SearchState.RUNNING,
    SearchState.STOPPING,
    SearchState.STOPPED,
    SearchState.FAILED,
)


# -- run ----------------------------------------------------------------------------------------------


def find_resumable(store: Store, config: SearchConfig) -> int | None:
    """The newest unfinished search with this name and exactly this configuration, if any."""
    wanted = config.model_dump(mode="json")
    with store.session(readonly=True) as s:
        cursor = None
        while True:
            page = list_searches(s, states=NOT_COMPLETED_STATES, limit=200, cursor=cursor)
            for search in page.items:
                if search.name == config.name and search.config == wanted:
                    return search.id
            if page.next_cursor is None:
                return None
            cursor = page.next_cursor


def choose_search(store: Store, config: SearchConfig) -> tuple[int, str]:
    """(search id, what is happening): the newest unfinished search of this config, or a new one."""
    found = find_resumable(store, config)
    if found is not None:
        return found, f"resuming unfinished search {found} ({config.name}) with the same configuration"
    return create_search(store, config), f"started search {{id}} ({config.name})"


@app.command("run")
@with_evaluation_options
def run_command(
    evaluation: EvaluationOptions,
    config_path: Annotated[
        Path | None, typer.Argument(metavar="CONFIG.yaml", help="search configuration (see examples/)")
    ] = None,
    db: DbOption = None,
    settings: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="KEY=VALUE",
            help="Override a setting of CONFIG.yaml, validated like the file: dotted keys for nested ones "
            "(training.steps=10), YAML values (seed=3, baselines=[bn_relu]); repeat for several.",
        ),
    ] = None,
    resume: Annotated[
        int | None, typer.Option("--resume", metavar="ID", help="resume search ID (the same as `resume ID`)")
    ] = None,
    live: Annotated[
        bool | None, typer.Option("--live/--no-live", help="live display (default: when stdout is a terminal)")
    ] = None,
    check_workers: CheckWorkersOption = 0,
    # Where evaluations run (Ray by default; see evonorm_search/cli/common.py and docs/cluster.md): the
    # evaluation options, added by with_evaluation_options.
) -> None:
    """Run a search from a YAML configuration, or resume one; results go to the database.

    Exit status:
    0: the budget is spent;
    3: `evonorm-search stop` stopped the search (`evonorm-search resume ID` continues it);
    130: Ctrl-C stopped it (resumable too);
    2: a bad configuration or argument;
    1: the database or the cluster cannot be used.
    """
    if config_path is None and resume is None:
        raise fail("give CONFIG.yaml, or --resume ID")
    if settings and config_path is None:
        raise fail("--set applies to CONFIG.yaml; a resumed search keeps its stored configuration")
    config = load_config(config_path) if config_path is not None else None
    if resume is not None:  # `resume ID` under another name; CONFIG, if given, must be the search's
        with opened_store(db) as store:
            resume_search(store, resume, evaluation, live, db, config=config, check_workers=check_workers)
        return
    assert config is not None
    if settings:
        config = overridden(config, settings, origin=f"{config_path} with --set")
    shipped_folder(evaluation.working_dir, config)  # the user's code importable here before the models build
    refuse_unusable_models(config)  # a user's model that cannot be a proxy fails before anything is stored
    with opened_store(db) as store:
        try:
            search_id, what = choose_search(store, config)
        except StoreError as e:
            raise fail(str(e), EXIT_STORE) from None
        console.print(what.format(id=search_id) + f" in {store.url}", highlight=False, markup=False)
        evaluator = make_evaluator(store, config, evaluation)
        final = drive(store, search_id, evaluator, live, db=db, check_workers=check_workers)
        console.print(progress_line(final), highlight=False, markup=False)
        exit_if_stopped(final, db)
        if config.fidelities is not None:  # the search's answer: what its ladder validated, beside the baselines
            with store.session(readonly=True) as s:
                validated = stored_validation(s, search_id, config)
            show_validated(search_id, validated, config.ladder_seeds())
        console.print(
            f"results: search {search_id} in {store.url}\n"
            f"  evonorm-search pareto {search_id}{db_flag(db)}      the Pareto front\n"
            f"  evonorm-search status {search_id}{db_flag(db)}      the funnel and best values\n"
            f"  evonorm-search candidates {search_id}{db_flag(db)}  every candidate, filtered and sorted (--csv)\n"
            f"  evonorm-search export --candidate CANDIDATE_ID{db_flag(db)} -o layer.py",
            highlight=False,
            markup=False,
        )


def overridden(config: SearchConfig, settings: list[str], *, origin: str) -> SearchConfig:
    """`config` with each KEY=VALUE of `--set` applied, validated again as a whole (so a misspelt key
    or a bad value is reported like one in the file)."""
    data = config.model_dump(mode="json")
    for setting in settings:
        key, value = parse_setting(setting)
        place_setting(data, key, value, setting)
    try:
        return SearchConfig.from_mapping(data, origin=origin)
    except ConfigError as e:
        raise fail(str(e)) from None


def parse_setting(setting: str) -> tuple[list[str], Any]:
    """`training.steps=10` -> (["training", "steps"], 10): the value is read as YAML, a number as a number."""
    key, equals, text = setting.partition("=")
    parts = key.strip().split(".")
    if not equals or not all(parts):
        raise fail(f"--set takes KEY=VALUE with a dotted KEY (training.steps=10), got {setting!r}")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise fail(f"--set {setting}: the value is not YAML ({e})") from None
    if isinstance(value, str) and NUMBER.fullmatch(value):  # YAML 1.1 reads 1e-3 as text, the config file not
        value = float(value)
    return parts, value


NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def place_setting(data: dict[str, Any], key: list[str], value: Any, setting: str) -> None:
    """Set `data[k1][k2]... = value`, making the mappings a section left out (null) needs."""
    node = data
    for depth, part in enumerate(key[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise fail(f"--set {setting}: {'.'.join(key[: depth + 1])} is not a mapping")
        node = child
    node[key[-1]] = value


# -- status -------------------------------------------------------------------------------------------


def age(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    seconds = (datetime.now(UTC) - moment).total_seconds()
    return f"{seconds:.0f}s ago" if seconds < 120 else f"{seconds / 60:.0f} min ago"


@app.command("status")
def status_command(
    search_id: Annotated[int | None, typer.Argument(metavar="[ID]", help="one search in detail")] = None,
    db: DbOption = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print one JSON object: the search's status as the API serves it (GET /api/v1/searches/ID) "
            'with its best layer and baselines; without ID, {"items": [...]} of those.',
        ),
    ] = False,
) -> None:
    """List searches, or show one search's progress, rejection funnel, best layer and baselines."""
    with opened_readonly_store(db) as store:
        try:
            with store.session(readonly=True) as s:
                if as_json:
                    typer.echo(json.dumps(status_json(s, search_id), indent=2))
                elif search_id is None:
                    show_searches(s, db)
                else:
                    show_search(s, search_id)
        except StoreError as e:
            raise fail(str(e), EXIT_STORE) from None


def status_json(s: Any, search_id: int | None) -> dict[str, Any]:
    """One search's status, or `{"items": [...]}` of every search's (newest 100)."""
    if search_id is not None:
        return search_status_json(s, search_id)
    return {"items": [search_status_json(s, search.id) for search in list_searches(s, limit=100).items]}


def search_status_json(s: Any, search_id: int) -> dict[str, Any]:
    """The API's status of the search (one shape for the same thing), plus the best single layer and
    the baselines in `pareto --json`'s shapes."""
    from service.views import search_status  # FastAPI loads only for --json

    summary = search_summary(s, search_id)
    status = search_status(summary, search_ladder(s, summary), search_compute(s, summary)).model_dump(mode="json")
    best = best_layer(s, search_id)
    status["best_layer"] = None if best is None else layer_json(best)
    status["baselines"] = [baseline_json(b) for b in baselines_of(s, search_id)]
    return status


def layer_json(c: Any) -> dict[str, Any]:
    return {
        "candidate": c.id,
        "birth": c.birth,
        "dsl": c.dsl,
        "objectives": c.objectives,
        "mean_accuracy": mean_accuracy(c.objectives),
    }


def baseline_json(b: Any) -> dict[str, Any]:
    return {
        "candidate": b.id,
        "label": b.label,
        "dsl": b.dsl,
        "objectives": b.objectives,
        "mean_accuracy": mean_accuracy(b.objectives),
        "status": str(b.status),
        "error": b.error,
    }


def show_searches(s: Any, db: str | None) -> None:
    searches = list_searches(s, limit=100).items
    if not searches:
        console.print(
            f"no searches yet; start one with `evonorm-search run examples/quick.yaml{db_flag(db)}`",
            highlight=False,
            markup=False,
        )
        return
    table = Table(title="searches")
    # Short headers: the table must fit an 80-column terminal without cutting the values.
    for column in ("id", "name", "state", "candidates", "evaluated", "best (id)", "HV", "updated"):
        table.add_column(column, no_wrap=column != "name", overflow="fold", min_width=len(column))
    for search in searches:
        summary = search_summary(s, search.id)
        table.add_row(
            str(search.id),
            search.name,
            str(search.state),
            f"{summary.total}/{search.budget or '-'}",
            str(summary.evaluated),
            best_layer_text(best_layer(s, search.id)),
            "-" if summary.hypervolume is None else f"{summary.hypervolume:.4f}",
            age(search.updated_at),
        )
    console.print(table)
    console.print("best (id): the mean accuracy of the search's best layer, and that layer's id", highlight=False)


def best_layer(s: Any, search_id: int) -> Any | None:
    """The evaluated layer with the highest mean accuracy: one real layer, never a mix of the best value
    of each objective taken from different layers. It lies on the front over all objectives (a layer
    dominating it has a mean at least as high), so the front is all there is to read."""
    scored = [c for c in pareto_front(s, search_id) if mean_accuracy(c.objectives) is not None]
    return max(scored, key=lambda c: (mean_accuracy(c.objectives), -c.birth), default=None)


def best_layer_text(best: Any | None) -> str:
    return "-" if best is None else f"{mean_accuracy(best.objectives):.4f} ({best.id})"


def show_search(s: Any, search_id: int) -> None:
    summary = search_summary(s, search_id)
    search = summary.search
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.add_row("search", f"{search.id} ({search.name})")
    table.add_row("state", str(search.state) + (f": {search.error}" if search.error else ""))
    mode = search.config.get("mode", "?")
    table.add_row("mode", str(mode))
    table.add_row("candidates", f"{summary.total} of {search.budget or '-'}")
    if (compute := search_compute(s, summary)) is not None:
        table.add_row("compute", f"{compute.spent:,} of {compute.budget:,} training examples")
    controller = "-"
    if search.controller_pid is not None:
        controller = (
            f"pid {search.controller_pid} on {search.controller_host}, heartbeat {age(search.controller_heartbeat_at)}"
        )
    table.add_row("controller", controller)
    for status, count in summary.by_status.items():
        if count:  # a stopped search lists no `running 0`: only what it holds
            table.add_row(f"  {status}", str(count))
    for stage, count in summary.rejected_by_stage.items():
        table.add_row(f"  rejected ({stage})", str(count))
    table.add_row("duplicate hits", str(summary.duplicate_hits))
    table.add_row("front size", str(summary.front_size))
    table.add_row("hypervolume", "-" if summary.hypervolume is None else f"{summary.hypervolume:.4f}")
    throughput = candidates_per_minute(summary)
    table.add_row("throughput", "-" if throughput is None else f"{throughput:.1f} candidates/min")
    console.print(table)
    show_ladder(s, summary)
    show_best_beside_baselines(search, best_layer(s, search_id), baselines_of(s, search_id))


def show_ladder(s: Any, summary: Any) -> None:
    rungs = search_ladder(s, summary)
    if not rungs:
        return
    table = Table(title="fidelity ladder")
    for column in ("rung", "", "complete", "promoted", "pending", "examples"):
        table.add_column(column, justify="left" if column == "" else "right", overflow="fold")
    for r in rungs:
        table.add_row(str(r.rung), r.name, str(r.evaluated), str(r.promoted), str(r.pending), f"{r.examples:,}")
    console.print(table)
    spent = sum(r.examples for r in rungs)
    console.print(
        f"compute: {spent:,} training examples in all; the target rung {sum(r.examples for r in rungs[1:]) / max(spent, 1):.0%}"
        " of it (examples = steps x batch size x networks, per seed)",
        highlight=False,
        markup=False,
    )


def show_best_beside_baselines(search: Search, best: Any | None, baselines: list[Any]) -> None:
    """The best single layer and the baselines, one row each (id, mean accuracy, every objective), then
    the best layer's formula whole and what keeps a baseline from having scores."""
    if best is None and not baselines:
        console.print("no layer evaluated yet", highlight=False)
        return
    names = search.objective_names
    table = FittedTable(title="best layer and baselines", keys=2)
    table.add_column("layer")
    table.add_column("id", justify="right")
    table.add_column("mean", justify="right")
    for name in names:
        table.add_column(heading(name), justify="right")
    if best is not None:
        table.add_row("best layer", str(best.id), *objective_cells(best, names))
    for baseline in baselines:
        table.add_row(f"baseline {baseline.label}", str(baseline.id), *objective_cells(baseline, names), style="dim")
    console.print(table)
    console.print("mean: the mean proxy accuracy over the architectures", highlight=False)
    if best is not None:
        print_formulas([(f"{best.id} (birth {best.birth})", best.dsl)], "formula of the best layer")
    for baseline in baselines:
        if baseline.objectives is None:
            why = f": {baseline.error}" if baseline.error else ""
            console.print(
                f"baseline {baseline.label} has no scores: {baseline.status}{why}", highlight=False, markup=False
            )


def objective_cells(layer: Any, names: list[str]) -> list[str]:
    """Mean accuracy then each objective's value; a layer not evaluated shows its status instead."""
    if layer.objectives is None:
        return [str(layer.status), *["-"] * len(names)]
    mean = mean_accuracy(layer.objectives)
    return [format_value(mean), *[format_value(layer.objectives.get(n)) for n in names]]


def candidates_per_minute(summary: Any) -> float | None:
    first, last = summary.first_finished_at, summary.last_finished_at
    if first is None or last is None or last <= first:
        return None
    return summary.total / ((last - first).total_seconds() / 60)


# -- pareto -------------------------------------------------------------------------------------------


@app.command("pareto")
def pareto_command(
    search_id: Annotated[int, typer.Argument(metavar="ID")],
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """The search's answer: its validated front (layers trained on the target task, by the fidelity ladder
    or `validate`, best mean first, beside the validated baselines), then the Pareto front over the proxy
    objectives, best first on the first objective."""
    fronts = read_or_exit(db, lambda s: read_fronts(s, search_id))
    if as_json:
        typer.echo(json.dumps(fronts.to_json(), indent=2))
        return
    names, front, baselines = fronts.objective_names, fronts.front, fronts.baselines
    show_validated(search_id, fronts.validated, fronts.config.validation.seed_list())
    if not front:
        console.print(f"search {search_id} has no evaluated candidates yet", highlight=False)
        return
    for table in pareto_tables(search_id, names, front, baselines):
        console.print(table)
    if baselines:
        console.print(VERSUS_NOTE, highlight=False)
    keyed = [(str(c.id), c.dsl) for c in front] + [(f"{b.id} ({b.label})", b.dsl) for b in baselines]
    print_formulas(keyed, "formulas (id: layer)")


def show_validated(search_id: int, validated: list[Validated], seeds: list[int]) -> None:
    """The validated front: mean ± std over the target seeds, each target network's mean, the difference
    to each validated baseline; then the layers' formulas."""
    layers = [v for v in validated if v.role == LAYER]
    references = [v for v in validated if v.role == BASELINE]
    if not validated:
        console.print(
            f"validated front: none yet (no layer of search {search_id} has target-task runs; a search with a "
            f"`fidelities:` ladder trains its best on the target task, `evonorm-search validate {search_id}` does it by hand)",
            highlight=False,
            markup=False,
        )
        return
    architectures = sorted({a for v in validated for a in v.score.per_architecture})
    table = FittedTable(
        title=f"validated front of search {search_id}: the target task, seeds {seeds[0]}-{seeds[-1]}", keys=2
    )
    for column in ("layer", "id", "seeds", "mean ± std", *architectures, *(f"vs {b.name}" for b in references)):
        table.add_column(column, justify="left" if column == "layer" else "right")
    for v in layers + references:
        name = "candidate" if v.role == LAYER else v.name
        per = [format_value(v.score.per_architecture.get(a)) for a in architectures]
        versus = [signed(difference(v, b)) if v is not b else "" for b in references]
        spread = f"{v.score.mean:.4f} ± {v.score.std:.4f}" if math.isfinite(v.score.mean) else "-"
        table.add_row(name, str(v.candidate_id), str(len(v.score.runs)), spread, *per, *versus)
    console.print(table)
    console.print(
        "vs X: mean target accuracy minus baseline X's over the same seeds (a difference, not a test: "
        "benchmarks/search.py decides with a paired test over seeds)",
        highlight=False,
    )
    print_formulas([(str(v.candidate_id), v.score.layer) for v in layers], "validated layers (id: layer)")


VERSUS_NOTE = (
    "vs X: the layer's mean accuracy over the architectures minus baseline X's (positive: the layer is better)"
)


def pareto_tables(search_id: int, names: list[str], front: list[Any], baselines: list[Any]) -> list[FittedTable]:
    """Numbers only, so they fit any width (the formulas follow, keyed by id; a table wider than the
    terminal splits by columns): the front, then the baselines in a table of their own, where a label,
    not a birth, names each row."""
    table = FittedTable(title=f"Pareto front of search {search_id} ({len(front)} layers)")
    for column in ("id", "birth", *(heading(n) for n in names), "mean"):
        table.add_column(column, justify="right")
    for b in baselines:
        table.add_column(f"vs {b.label}", justify="right")
    for c in front:
        values = [format_value(c.objectives.get(n)) for n in names]
        versus = [signed(d.mean) for d in differences(c.objectives, baselines)]
        table.add_row(str(c.id), str(c.birth), *values, format_value(mean_accuracy(c.objectives)), *versus)
    if not baselines:
        return [table]
    reference = FittedTable(title="baselines")
    for column in ("baseline", "id", *(heading(n) for n in names), "mean"):
        reference.add_column(column, justify="left" if column == "baseline" else "right")
    for b in baselines:
        values = [format_value(b.objectives.get(n)) for n in names]
        reference.add_row(b.label, str(b.id), *values, format_value(mean_accuracy(b.objectives)))
    return [table, reference]


def signed(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:+.4f}"


def format_value(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.4f}"


# -- stop and resume -----------------------------------------------------------------------------------


@app.command("resume")
@with_evaluation_options
def resume_command(
    evaluation: EvaluationOptions,
    search_id: Annotated[int, typer.Argument(metavar="ID", help="the search to resume")],
    db: DbOption = None,
    live: Annotated[
        bool | None, typer.Option("--live/--no-live", help="live display (default: when stdout is a terminal)")
    ] = None,
    check_workers: CheckWorkersOption = 0,
) -> None:
    """Resume a stopped, failed or interrupted search until its budget is spent.

    Completed evaluations are kept; candidates that were in flight are evaluated again.

    Exit status as `run`'s: 0 when the budget is spent, 3 when `stop` stops it again, 130 after Ctrl-C.
    """
    with opened_store(db) as store:
        resume_search(store, search_id, evaluation, live, db, check_workers=check_workers)


def resume_search(
    store: Store,
    search_id: int,
    evaluation: EvaluationOptions,
    live: bool | None,
    db: str | None,
    *,
    config: SearchConfig | None = None,
    check_workers: int = 0,
) -> None:
    """Drive a resumable search to its budget (`resume ID` and `run --resume ID`); with `config`, only
    when it is the configuration the search was started with."""
    if config is not None:
        _refuse_another_config(store, search_id, config)
    search = _resumable(store, search_id, db)
    evaluator = make_evaluator(store, stored_config(store, search_id), evaluation)
    console.print(f"resuming search {search_id} ({search.name}) in {store.url}", highlight=False, markup=False)
    final = drive(store, search_id, evaluator, live, db=db, check_workers=check_workers)
    console.print(progress_line(final), highlight=False, markup=False)
    exit_if_stopped(final, db)


def _refuse_another_config(store: Store, search_id: int, config: SearchConfig) -> None:
    try:
        with store.session(readonly=True) as s:
            started_with = get_search(s, search_id).config
    except StoreError as e:
        raise fail(str(e), EXIT_STORE) from None
    if started_with != config.model_dump(mode="json"):
        raise fail(f"search {search_id} was started with a different configuration; drop CONFIG or use a new name")


def _resumable(store: Store, search_id: int, db: str | None) -> Search:
    """The search, or a clean exit saying why it cannot be resumed now."""
    try:
        return check_resumable(store, search_id)
    except StoreError as e:
        raise fail(with_db(str(e), db), EXIT_FAILED) from None


@app.command("stop")
def stop_command(
    search_id: Annotated[int, typer.Argument(metavar="ID", help="the search to stop")],
    db: DbOption = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="wait until its controller has stopped")] = True,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout",
            metavar="SECONDS",
            help="How long --wait waits for the controller (not an evaluation's limit: that is run's "
            "--evaluation-timeout).",
        ),
    ] = 120.0,
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
    hint = f"; {resume_hint(search_id, db)}" if state is SearchState.STOPPED else ""
    console.print(f"search {search_id}: {state}{hint}", highlight=False, markup=False)
