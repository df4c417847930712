"""`evaluate` and `validate`: score layers on the proxies, or re-train them on the target task.

`evaluate --layer NAME|FILE ... --config CONFIG` prints the proxy score a search would record for each
layer (rejections off); `evaluate --candidate ID` scores a stored candidate again, under its search's
stored configuration unless `--config` is given. `validate SEARCH_ID` re-trains the top layers of a
search's Pareto front and its baselines on the target task and stores the results (phase `validation`); `validate --layer ...
--config CONFIG` does the same for given layers, beside the config's baselines, storing nothing.
`--json` prints one JSON list on stdout and nothing else there (progress goes to stderr).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer

from ..ir import Graph, GraphError
from ..search.config import SearchConfig, resolve_layer
from ..search.evaluator import Evaluator
from ..search.scoring import LayerToScore, SeedRun
from ..search.validation import (
    BASELINE,
    TargetValidationError,
    Validated,
    difference,
    score_given,
    search_targets,
    validate_search,
)
from ..store import NotFoundError, Store, StoreError, get_candidate
from .app import app, console, err_console, fail
from .common import (
    EXIT_FAILED,
    DbOption,
    EvaluationOptions,
    load_config,
    make_evaluator,
    opened_readonly_store,
    opened_store,
    print_formulas,
    stored_config,
    with_evaluation_options,
)
from .tables import FittedTable

LayerOption = Annotated[
    list[str] | None,
    typer.Option("--layer", metavar="NAME|FILE", help="A library layer or a .dsl file; repeat for several."),
]
ConfigOption = Annotated[
    Path | None, typer.Option("--config", metavar="CONFIG.yaml", help="The search configuration to score under.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON list on stdout, one object per layer.")]


def _layers(names: Sequence[str]) -> list[LayerToScore]:
    layers = []
    for name in names:
        try:
            layers.append(LayerToScore(resolve_layer(name), name))
        except ValueError as e:
            raise fail(str(e)) from None
    return layers


def _config(path: Path | None, command: str) -> SearchConfig:
    if path is None:
        raise fail(f"{command} --layer needs --config CONFIG.yaml: the proxies or target task to train on")
    return load_config(path)


def _progress(as_json: bool):
    out = err_console if as_json else console

    def report(layer: LayerToScore, run: SeedRun) -> None:
        what = f"{run.score:.4f}" if run.error is None else f"failed: {run.error}"
        out.print(f"{layer.label or layer.dsl}: seed {run.seed}: {what}", highlight=False, markup=False)

    return report


def _evaluator(store: Store | None, config: SearchConfig, options: EvaluationOptions) -> Evaluator:
    return make_evaluator(store, config, options, report=err_console)  # stdout may be --json's alone


# -- evaluate -----------------------------------------------------------------------------------------


@app.command("evaluate")
@with_evaluation_options
def evaluate_command(
    evaluation: EvaluationOptions,
    layer: LayerOption = None,
    candidate: Annotated[
        list[int] | None,
        typer.Option(
            "--candidate",
            metavar="ID",
            help="A stored candidate (from --db); repeat for several. Scored under its search's stored "
            "configuration unless --config is given.",
        ),
    ] = None,
    config_path: ConfigOption = None,
    seeds: Annotated[int, typer.Option("--seeds", min=1, max=100, help="Seeds: config.seed, config.seed+1, ...")] = 1,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """The proxy score a search would record for each layer (mean accuracy over its architectures): given
    layers, or stored candidates scored again (under their search's configuration by default)."""
    if not layer and not candidate:
        raise fail("give at least one --layer NAME|FILE or --candidate ID")
    if db is not None and not candidate:
        raise fail("--db applies to --candidate: the database to read the candidates from")
    stored, stored_under = _stored_candidates(candidate or [], db, needs_config=config_path is None)
    layers = [*stored, *_layers(layer or [])]
    config = stored_under if config_path is None and stored_under is not None else _config(config_path, "evaluate")
    evaluator = _evaluator(None, config, evaluation)
    try:
        results = score_given(config, layers, [], evaluator, target=False, seeds=seeds, on_run=_progress(as_json))
    finally:
        evaluator.close()
    ids: list[int | None] = [*(candidate or []), *[None] * len(layer or [])]  # in the order of `layers`
    results = [_with_candidate_id(r, i) for r, i in zip(results, ids, strict=True)]
    _print(results, as_json, f"proxy scores under {config.name} ({seeds} seed(s))")


def _stored_candidates(
    ids: Sequence[int], db: str | None, *, needs_config: bool
) -> tuple[list[LayerToScore], SearchConfig | None]:
    """The layers of stored candidates, each labelled `candidate ID`, and (when `needs_config`) the
    stored configuration of their search, which must then be one search."""
    if not ids:
        return [], None
    with opened_readonly_store(db) as store:
        try:
            with store.session(readonly=True) as s:
                found = [get_candidate(s, i) for i in ids]
                stored = [(c.id, c.search_id, c.graph) for c in found]
        except StoreError as e:
            raise fail(str(e), EXIT_FAILED) from None
        searches = sorted({search_id for _, search_id, _ in stored})
        if needs_config and len(searches) > 1:
            raise fail(f"the candidates come from searches {searches}; give --config CONFIG.yaml to score them under")
        config = _stored_search_config(store, searches[0]) if needs_config else None
    return [LayerToScore(_stored_graph(i, graph), f"candidate {i}") for i, _, graph in stored], config


def _stored_search_config(store: Store, search_id: int) -> SearchConfig:
    try:
        return stored_config(store, search_id)
    except StoreError as e:
        raise fail(str(e), EXIT_FAILED) from None


def _stored_graph(candidate_id: int, stored: dict[str, Any]) -> Graph:
    try:
        return Graph.from_dict(stored)
    except GraphError as e:
        raise fail(f"candidate {candidate_id} holds an invalid graph: {e}", EXIT_FAILED) from None


def _with_candidate_id(result: Validated, candidate_id: int | None) -> Validated:
    """The result of a stored candidate names it by id (its `candidate_id` in --json)."""
    return result if candidate_id is None else replace(result, candidate_id=candidate_id)


# -- validate -----------------------------------------------------------------------------------------


@app.command("validate")
@with_evaluation_options
def validate_command(
    evaluation: EvaluationOptions,
    search_id: Annotated[int | None, typer.Argument(metavar="[SEARCH_ID]", help="the search to validate")] = None,
    layer: LayerOption = None,
    config_path: ConfigOption = None,
    top: Annotated[int, typer.Option("--top", min=1, max=1000, help="Front layers to validate, best first.")] = 3,
    seeds: Annotated[
        int | None, typer.Option("--seeds", min=1, max=1000, help="Validation seeds (default: validation.seeds).")
    ] = None,
    baselines: Annotated[
        bool, typer.Option("--baselines/--no-baselines", help="With --layer: also train the config's baselines.")
    ] = True,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Re-train layers on the target task with fresh seeds: a search's best layers and baselines
    (stored, phase `validation`; seeds already stored are reused), or given layers (nothing stored)."""
    if (search_id is None) == (not layer):
        raise fail("give SEARCH_ID, or --layer NAME|FILE (one or more) with --config CONFIG.yaml, not both")
    if search_id is not None:
        if config_path is not None:
            raise fail("SEARCH_ID validates under the search's stored configuration; drop --config")
        _validate_search(search_id, db, top, seeds, as_json, evaluation)
    else:
        if db is not None:
            raise fail("--db applies to SEARCH_ID: results of --layer are printed, not stored")
        _validate_layers(layer or [], config_path, seeds, baselines, as_json, evaluation)


def _validate_search(
    search_id: int, db: str | None, top: int, seeds: int | None, as_json: bool, options: EvaluationOptions
) -> None:
    with opened_store(db) as store:
        try:
            config, _ = search_targets(store, search_id, top)  # errors before any cluster starts
        except (TargetValidationError, NotFoundError) as e:
            raise fail(str(e)) from None
        except StoreError as e:
            raise fail(str(e), EXIT_FAILED) from None
        evaluator = _evaluator(store, config, options)
        try:
            results = validate_search(store, search_id, evaluator, top=top, seeds=seeds, on_run=_progress(as_json))
        except StoreError as e:
            raise fail(str(e), EXIT_FAILED) from None
        finally:
            evaluator.close()
    count = len(config.validation.seed_list(seeds))
    _print(results, as_json, f"target task of search {search_id} ({count} seed(s)), stored in {store.url}")


def _validate_layers(
    names: Sequence[str],
    config_path: Path | None,
    seeds: int | None,
    with_baselines: bool,
    as_json: bool,
    options: EvaluationOptions,
) -> None:
    layers = _layers(names)
    config = _config(config_path, "validate")
    given = {layer.dsl for layer in layers}
    references = [b for b in _layers(config.baselines) if b.dsl not in given] if with_baselines else []
    evaluator = _evaluator(None, config, options)
    try:
        results = score_given(
            config, layers, references, evaluator, target=True, seeds=seeds, on_run=_progress(as_json)
        )
    finally:
        evaluator.close()
    count = len(config.validation.seed_list(seeds))
    _print(results, as_json, f"target task of {config.name} ({count} seed(s))")


# -- output -------------------------------------------------------------------------------------------


def _print(results: Sequence[Any], as_json: bool, title: str) -> None:
    references = [r for r in results if r.role == BASELINE]
    if as_json:
        typer.echo(json.dumps([r.to_json(references) for r in results], indent=2))
    else:
        keys = _keys(results)
        console.print(_table(results, references, title, keys))
        if references:
            console.print(VERSUS_NOTE, highlight=False)
        print_formulas([(key, r.score.layer) for key, r in zip(keys, results, strict=True)], "formulas")
    failed = [f"{r.name}: {e}" for r in results for e in r.score.errors]
    for line in failed:
        err_console.print(f"[yellow]warning:[/] {line}", highlight=False)


VERSUS_NOTE = "vs X: the layer's mean score minus baseline X's (positive: the layer is better)"


def _keys(results: Sequence[Any]) -> list[str]:
    """What names each layer in the table and in the formulas below it: its label or candidate id, or
    `layer N` for one given only as a formula."""
    return [r.name if r.name != r.score.layer else f"layer {i}" for i, r in enumerate(results, 1)]


def _table(results: Sequence[Any], references: Sequence[Any], title: str, keys: Sequence[str]) -> FittedTable:
    """Numbers only, so the table fits any width (split by columns where it is wider than the terminal);
    the formulas are printed whole below it."""
    architectures = list(dict.fromkeys(a for r in results for a in r.score.per_architecture))
    table = FittedTable(title=title)
    table.add_column("layer")
    for name in architectures:
        table.add_column(name, justify="right")
    table.add_column("mean ± std", justify="right")
    for b in references:
        table.add_column(f"vs {b.name}", justify="right")
    for key, r in zip(keys, results, strict=True):
        per_arch = _per_architecture_spread(r.score)
        row = [key]
        row += [per_arch.get(name, "-") for name in architectures]
        row.append(_mean_std(r.score.mean, r.score.std))
        row += ["" if b is r else _signed(difference(r, b)) for b in references]
        table.add_row(*row, style="dim" if r.role == "baseline" else None)
    return table


def _per_architecture_spread(score: Any) -> dict[str, str]:
    import statistics

    out = {}
    for name, mean in score.per_architecture.items():
        values = [run.accuracies[name] for run in score.succeeded if name in run.accuracies]
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        out[name] = _mean_std(mean, std)
    return out


def _mean_std(mean: float, std: float) -> str:
    if not math.isfinite(mean):
        return "-"
    return f"{mean:.4f} ± {std:.4f}" if math.isfinite(std) else f"{mean:.4f}"


def _signed(value: float) -> str:
    return f"{value:+.4f}" if math.isfinite(value) else "-"
