"""What the command modules share: options, exit codes, opening the store, loading a configuration,
making an evaluator (Ray or in-process) and driving a search with its progress display.

The command modules import this one rather than each other (only `demo`, which runs `run`, `pareto` and
`serve` in sequence, imports their modules), so no two of them import each other. Ray (`workers`) is imported inside `make_evaluator`, when a command evaluates on it:
`evonorm-search layers` and the other commands never pay for Ray.
"""

from __future__ import annotations

import functools
import inspect
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from ..ir import Graph, GraphError
from ..search.config import ConfigError, SearchConfig
from ..search.controller import ControllerError, SearchProgress, run_search
from ..search.evaluator import Evaluator, InProcessEvaluator
from ..search.objectives import heading
from ..search.provenance import candidate_provenance
from ..store import (
    Candidate,
    CandidateStatus,
    ConflictError,
    Store,
    StoreError,
    get_candidate,
    get_search,
    open_readonly_store,
    open_store,
)
from .app import console, err_console, fail

T = TypeVar("T")

EXIT_FAILED = 1  # the database or the cluster could not be used, or the search cannot be driven
EXIT_STORE = EXIT_FAILED  # the database could not be reached, or the search cannot be driven
EXIT_INTERRUPTED = 130  # Ctrl-C: the search is stopped and can be resumed
EXIT_STOPPED = 3  # `evonorm-search stop` stopped the search before its budget was spent; it can be resumed

# -- options ------------------------------------------------------------------------------------------

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        metavar="URL",
        help="Database URL: sqlite:///PATH or postgresql://USER@HOST:PORT/DB. "
        "Default: sqlite:///$EVONORM_HOME/evonorm.db (EVONORM_HOME defaults to ./runs).",
    ),
]

# Where evaluations run: Ray by default (a local Ray, or --ray-address), or --in-process.
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
CheckWorkersOption = Annotated[
    int,
    typer.Option(
        "--check-workers",
        metavar="N",
        min=0,
        help="Processes beside the controller that compute the cheap checks of its next proposals ahead "
        "(the search is the same with any N; 0: in the controller). For searches on many workers: "
        "docs/cluster.md.",
    ),
]
WorkingDirOption = Annotated[
    Path | None,
    typer.Option(
        "--working-dir",
        metavar="DIR",
        help="A folder of your code (the modules your factories import) to ship to every Ray worker; "
        "overrides the config's `code:`.",
    ),
]


@dataclass(frozen=True)
class EvaluationOptions:
    """Where and how a command's evaluations run: the options above, as `with_evaluation_options` hands
    them to a command (field names are the commands' parameter names)."""

    ray_address: str | None = None
    in_process: bool = False
    cpus: float | None = None
    gpus: float | None = None
    evaluation_timeout: float | None = None
    retries: int = 2
    working_dir: Path | None = None


# Declared once: every command that evaluates takes these, under these names (`with_evaluation_options`).
_EVALUATION_PARAMETERS = [
    inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=getattr(EvaluationOptions(), name), annotation=kind)
    for name, kind in (
        ("ray_address", RayAddressOption),
        ("in_process", InProcessOption),
        ("cpus", CpusOption),
        ("gpus", GpusOption),
        ("evaluation_timeout", TimeoutOption),
        ("retries", RetriesOption),
        ("working_dir", WorkingDirOption),
    )
]


def with_evaluation_options(command: Callable[..., None]) -> Callable[..., None]:
    """Give a command the evaluation options: Typer sees them as its parameters (after the command's
    own), and the command receives them as one `evaluation: EvaluationOptions`."""
    own = inspect.signature(command, eval_str=True)
    kept = [p for p in own.parameters.values() if p.name != "evaluation"]
    names = [p.name for p in _EVALUATION_PARAMETERS]

    @functools.wraps(command)
    def with_options(*args: Any, **kwargs: Any) -> None:
        options = EvaluationOptions(**{name: kwargs.pop(name) for name in names if name in kwargs})
        command(*args, evaluation=options, **kwargs)

    # Typer reads the parameters from the signature and the annotations.
    with_options.__signature__ = own.replace(parameters=[*kept, *_EVALUATION_PARAMETERS])  # type: ignore[attr-defined]  # inspect reads it
    with_options.__annotations__ = {p.name: p.annotation for p in [*kept, *_EVALUATION_PARAMETERS]}
    return with_options


def shipped_folder(working_dir: Path | None, config: SearchConfig) -> Path | None:
    """The folder of user code to ship to Ray's workers (`--working-dir`, else the config's `code:`),
    checked, and importable in this process too (the driver builds the models before the first candidate)."""
    folder = working_dir if working_dir is not None else (Path(config.code) if config.code else None)
    if folder is None:
        return None
    folder = folder.expanduser().resolve()
    if not folder.is_dir():
        source = "--working-dir" if working_dir is not None else "the config's code:"
        raise fail(f"{source} {folder} is not a folder")
    importable_here(str(folder))
    return folder


def make_evaluator(
    store: Store | None,
    config: SearchConfig,
    options: EvaluationOptions | None = None,
    *,
    report: Console = console,
) -> Evaluator:
    """The evaluator for a run of `config`: on Ray (connecting now, and saying where on `report`), or in
    this process."""
    options = options or EvaluationOptions()
    code = shipped_folder(options.working_dir, config)
    if options.in_process:  # wins over EVONORM_RAY_ADDRESS: no Ray at all
        return InProcessEvaluator()
    cpus, gpus, evaluation_timeout, retries = options.cpus, options.gpus, options.evaluation_timeout, options.retries
    # Ray loads only when a command evaluates on it (`workers` imports ray at import time).
    from workers import ClusterError, RayEvaluator, RaySettings, capacity_problem, check_settings, connect

    try:
        settings = RaySettings(cpus=cpus, gpus=gpus, evaluation_timeout=evaluation_timeout, retries=retries)
        settings.resources_for(config)  # a bad setting fails before any Ray starts
        check_settings(retries=retries, evaluation_timeout=evaluation_timeout)
    except ValueError as e:
        raise fail(str(e)) from None
    try:
        connection = connect(options.ray_address, store=store, working_dir=code)
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
            evaluation_timeout=evaluation_timeout,
            max_calls=settings.max_calls_for(config),
            on_close=connection.close,
        )
    except BaseException:
        connection.close()
        raise


# -- the store and a search's configuration -------------------------------------------------------------


@contextmanager
def opened_store(url: str | None) -> Iterator[Store]:
    """The store, or a clean exit with the store's message when it cannot be opened."""
    with _opened(open_store, url) as store:
        yield store


@contextmanager
def opened_readonly_store(url: str | None) -> Iterator[Store]:
    """The existing store, opened only to read (nothing created, migrated or written), or a clean exit
    with the store's message ("no database at ...") when it cannot be opened."""
    with _opened(open_readonly_store, url) as store:
        yield store


def read_or_exit(url: str | None, read: Callable[[Any], T]) -> T:
    """`read(session)` in one read-only session of the existing store; a clean exit with the store's
    message (a missing search or database) or with the configuration's problems (a stored configuration
    this version cannot read)."""
    with opened_readonly_store(url) as store:
        try:
            with store.session(readonly=True) as s:
                return read(s)
        except StoreError as e:
            raise fail(str(e), EXIT_STORE) from None
        except ConfigError as e:
            raise fail(str(e), EXIT_FAILED) from None


@contextmanager
def _opened(opener: Callable[[str | None], Store], url: str | None) -> Iterator[Store]:
    try:
        store = opener(url)
    except StoreError as e:
        raise fail(str(e), EXIT_STORE) from None
    try:
        yield store
    finally:
        store.close()


def load_config(path: Path) -> SearchConfig:
    """The search config at `path`; a config naming a Python factory gets its directory importable."""
    try:
        config = SearchConfig.from_yaml(path)
    except ConfigError as e:
        raise fail(str(e)) from None
    if config.python_factories():
        import_beside(path)
    return config


def importable_here(directory: str) -> None:
    """Modules in `directory` importable in this process (first on the path, once)."""
    if directory not in sys.path:
        sys.path.insert(0, directory)


def import_beside(config_path: Path) -> None:
    """Make modules in the config file's directory importable here and in processes started from here
    (Ray's local workers inherit PYTHONPATH), so `factory: own_model:small_cnn` finds own_model.py next to
    the config wherever the command runs from."""
    directory = str(config_path.resolve().parent)
    importable_here(directory)
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if directory not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([directory, *paths])


def stored_config(store: Store, search_id: int) -> SearchConfig:
    with store.session(readonly=True) as s:
        stored = get_search(s, search_id).config
    try:
        return SearchConfig.from_mapping(stored, origin=f"stored configuration of search {search_id}")
    except ConfigError as e:
        raise fail(str(e), EXIT_STORE) from None


def drive(
    store: Store,
    search_id: int,
    evaluator: Evaluator,
    live: bool | None,
    *,
    db: str | None = None,
    check_workers: int = 0,
) -> SearchProgress:
    """Run the search to its end with a progress display; `db` is the --db the command was given, for
    the hint printed when Ctrl-C stops it."""
    view = ProgressView(console.is_terminal if live is None else live)
    try:
        with view:
            return run_search(store, search_id, evaluator, progress=view, check_workers=check_workers)
    except KeyboardInterrupt:
        err_console.print(
            f"interrupted: search {search_id} is stopped; {resume_hint(search_id, db)}", highlight=False, markup=False
        )
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except (ControllerError, ConflictError, StoreError) as e:
        raise fail(str(e), EXIT_STORE) from None
    finally:
        evaluator.close()


def db_flag(db: str | None) -> str:
    return f" --db {db}" if db else ""


def with_db(message: str, db: str | None) -> str:
    """`message` with the --db the command was given added to each `evonorm-search ...` command it
    suggests (the layers below the CLI do not know it), so the hint works as written."""
    if not db:
        return message
    return _SUGGESTED_COMMAND.sub(lambda m: m[0] if "--db" in m[1] else f"`{m[1]}{db_flag(db)}`", message)


_SUGGESTED_COMMAND = re.compile(r"`(evonorm-search [^`]*)`")


def resume_hint(search_id: int, db: str | None) -> str:
    return f"`evonorm-search resume {search_id}{db_flag(db)}` continues it"


def exit_if_stopped(final: SearchProgress, db: str | None) -> None:
    """A search that `stop` ended before its budget was spent exits EXIT_STOPPED, saying how to go on."""
    if final.state == "stopped":
        err_console.print(
            f"search {final.search_id} was stopped; {resume_hint(final.search_id, db)}", highlight=False, markup=False
        )
        raise typer.Exit(EXIT_STOPPED)


# -- progress -------------------------------------------------------------------------------------------


# A pipe (a log file, CI) gets at most one line per interval, and only when the search moved: a line per
# event made the demo's log a near-identical line every second.
PIPE_INTERVAL_S = 15.0


class ProgressView:
    """Renders `SearchProgress`: on a terminal a live bar (counts, elapsed time and an estimate of the
    time left) over a table with each objective's best value; elsewhere (logs, CI) at most a line per
    `interval` seconds, when the search moved. The caller prints the final state (`drive` returns it)."""

    def __init__(self, live: bool, interval: float = PIPE_INTERVAL_S, clock: Callable[[], float] = time.monotonic):
        self.live = live
        self.interval = interval
        self.clock = clock
        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=24),  # the line fits 80 columns; the best values are the table's rows below
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("left"),
            TimeRemainingColumn(),
            console=console,
        )
        self.task = self.bar.add_task("candidates", total=None)
        self.last_line: float | None = None
        self.last_printed: tuple | None = None
        self.latest: SearchProgress | None = None
        self.display: Live | None = None

    def __enter__(self) -> ProgressView:
        if self.live:
            self.display = Live(self.bar, console=console, refresh_per_second=4, transient=False)
            self.display.__enter__()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self.display is not None:
            self.display.__exit__(kind, error, trace)

    def __call__(self, p: SearchProgress) -> None:
        self.latest = p
        if self.display is not None:
            self.bar.update(self.task, total=p.budget, completed=p.proposed)
            self.display.update(Group(self.bar, progress_table(p)))
            return
        now = self.clock()
        moved = _moved(p) != self.last_printed
        due = self.last_line is None or now - self.last_line >= self.interval
        if moved and due and p.state == "running":  # the caller prints the final state once
            self.last_line, self.last_printed = now, _moved(p)
            console.print(progress_line(p), highlight=False, markup=False)


def _moved(p: SearchProgress) -> tuple:
    """What a new line must differ in to be worth printing (not the elapsed time or the last event)."""
    return (p.state, p.proposed, p.evaluated, p.failed, p.duplicate_hits, tuple(sorted(p.best.items())))


def progress_line(p: SearchProgress) -> str:
    rejected = ", ".join(f"{k} {v}" for k, v in p.rejected.items()) or "none"
    return (
        f"[{p.elapsed:7.1f}s] {p.proposed}/{p.budget} candidates, {p.evaluated} evaluated, rejected: {rejected}, "
        f"duplicate hits {p.duplicate_hits}, failed {p.failed}, {best_values_text(p.best)} | {p.last_event}"
    )


def best_values_text(best: dict[str, float]) -> str:
    """Each objective's best value on its own: they may come from different layers, so they are never
    averaged into a score no layer has (`status` names the best single layer)."""
    values = ", ".join(f"{heading(name)} {value:.3f}" for name, value in best.items())
    return f"best per objective: {values or '-'}"


def progress_table(p: SearchProgress) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.add_row("search", f"{p.search_id} ({p.name}), {p.state}")
    table.add_row("evaluated", str(p.evaluated))
    table.add_row("in flight", str(p.in_flight))
    table.add_row("rejected", ", ".join(f"{k} {v}" for k, v in p.rejected.items()) or "none")
    table.add_row("duplicate hits", str(p.duplicate_hits))
    table.add_row("failed", str(p.failed))
    for name, value in p.best.items():
        table.add_row(f"best {name}", f"{value:.4f}")
    table.add_row("last", p.last_event)
    return table


# -- formulas -------------------------------------------------------------------------------------------


def print_formulas(keyed: list[tuple[str, str]], title: str) -> None:
    """Formulas whole, never cut to a column: `KEY: line`, every line of every program starting in the
    same column."""
    console.print(f"{title}:", highlight=False)
    indent = max((len(key) for key, _ in keyed), default=0) + 4
    for key, dsl in keyed:
        lines = dsl.strip().splitlines() or [""]
        console.print(f"  {key}:".ljust(indent) + lines[0], highlight=False, markup=False)
        for line in lines[1:]:
            console.print(" " * indent + line, highlight=False, markup=False)


# -- a stored candidate ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredLayer:
    """A stored candidate's layer as `export` writes it: the graph, a class name, and where it comes from."""

    graph: Graph
    class_name: str
    provenance: dict[str, Any]


def candidate_layer(candidate_id: int, db: str | None) -> StoredLayer:
    """The graph of a stored candidate, a class name for its export and its provenance."""
    with opened_readonly_store(db) as store:
        try:
            with store.session(readonly=True) as s:
                candidate = get_candidate(s, candidate_id)
                stored = candidate.graph
                provenance = candidate_provenance(s, candidate_id)
        except StoreError as e:
            raise fail(str(e), EXIT_STORE) from None
    try:
        graph = Graph.from_dict(stored)
    except GraphError as e:
        raise fail(f"candidate {candidate_id} holds an invalid graph: {e}", EXIT_STORE) from None
    warn_unless_evaluated(candidate)
    return StoredLayer(graph, f"EvoNormCandidate{candidate_id}", provenance)


def warn_unless_evaluated(candidate: Candidate) -> None:
    """A rejected (or never evaluated) candidate can still be exported, but not without a word: a reader
    of the file would take it for a layer the search found."""
    if candidate.status is CandidateStatus.EVALUATED:
        return
    if candidate.status is CandidateStatus.REJECTED:
        why = f"was rejected ({candidate.rejection_stage}: {candidate.rejection_reason})"
    else:
        why = f"was never evaluated (it is {candidate.status})"
    err_console.print(f"warning: candidate {candidate.id} {why}; exporting it anyway", highlight=False, markup=False)
