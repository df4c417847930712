"""`candidates SEARCH_ID` and `candidate ID`: a search's candidates, listed and filtered, or one in full.

Both read the database read-only, as `status` and `pareto` do. Tables hold numbers and short words so
they fit any width; formulas, rejection reasons and mutations follow whole, keyed by candidate id.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ..ir import GraphError
from ..search.config import did_you_mean
from ..search.objectives import heading, mean_accuracy
from ..store import (
    CandidateDetail,
    CandidateStatus,
    EvaluationPhase,
    InvalidInputError,
    Objective,
    RejectionStage,
    StoreError,
    ValidationRun,
    candidate_detail,
    get_search,
    is_baseline,
    list_candidates,
    validation_runs,
)
from ..store.pages import MAX_PAGE
from ..symbolic import FormulaTooLarge, symbolic_forms
from .app import app, console, fail
from .common import EXIT_STORE, DbOption, opened_readonly_store, print_formulas
from .tables import FittedTable

CSV_LEADING_COLUMNS = ["id", "birth", "status", "rejection_stage", "rejection_reason"]


# -- candidates SEARCH_ID -----------------------------------------------------------------------------


@app.command("candidates")
def candidates_command(
    search_id: Annotated[int, typer.Argument(metavar="SEARCH_ID", help="the search whose candidates to list")],
    status: Annotated[
        list[CandidateStatus] | None,
        typer.Option("--status", help="Only candidates with this status; repeat for several."),
    ] = None,
    stage: Annotated[
        list[RejectionStage] | None,
        typer.Option("--stage", help="Only candidates rejected at this stage; repeat for several."),
    ] = None,
    sort: Annotated[
        str,
        typer.Option(
            "--sort",
            metavar="birth|OBJECTIVE",
            help="Order by birth (oldest first), or by an objective of the search, best first "
            "(then only candidates with that value: evaluated ones).",
        ),
    ] = "birth",
    reverse: Annotated[bool, typer.Option("--reverse", help="The other way round: newest or worst first.")] = False,
    limit: Annotated[int, typer.Option("--limit", metavar="N", min=1, help="Show at most N candidates.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON list, one object per candidate.")] = False,
    as_csv: Annotated[
        bool,
        typer.Option(
            "--csv",
            help="Write CSV: id, birth, status, rejection stage and reason, each objective, mean accuracy, DSL.",
        ),
    ] = False,
    out: Annotated[
        Path | None, typer.Option("-o", "--output", metavar="FILE", help="Write --csv or --json here, not stdout.")
    ] = None,
    db: DbOption = None,
) -> None:
    """List a search's candidates: filter by status or rejection stage, sort by birth or an objective."""
    if as_json and as_csv:
        raise fail("give --json or --csv, not both")
    if out is not None and not (as_json or as_csv):
        raise fail("-o writes --csv or --json; give one of them")
    with opened_readonly_store(db) as store:
        try:
            with store.session(readonly=True) as s:
                specs = get_search(s, search_id).objective_specs
                objectives = [o.name for o in specs]
                check_sort(sort, objectives)
                descending = sort_descending(sort, reverse, specs)
                rows = read_candidates(s, search_id, status, stage, sort, descending, limit)
        except InvalidInputError as e:
            raise fail(str(e)) from None
        except StoreError as e:
            raise fail(str(e), EXIT_STORE) from None
    if as_csv:
        write_text(candidates_csv(rows, objectives), out)
    elif as_json:
        write_text(json.dumps(candidates_json(rows), indent=2) + "\n", out)
    else:
        show_candidates(search_id, rows, objectives)


def check_sort(sort: str, objectives: list[str]) -> None:
    if sort != "birth" and sort not in objectives:
        choices = ["birth", *objectives]
        raise fail(f"cannot sort by {sort!r}{did_you_mean(sort, choices)}: sort by {', '.join(choices)}")


def read_candidates(
    s: Any,
    search_id: int,
    statuses: Sequence[CandidateStatus] | None,
    stages: Sequence[RejectionStage] | None,
    sort: str,
    descending: bool | None,
    limit: int,
) -> list[Any]:
    """Up to `limit` lean rows, page after page: a page holds at most MAX_PAGE rows."""
    rows: list[Any] = []
    cursor = None
    while len(rows) < limit:
        page = list_candidates(
            s,
            search_id,
            statuses=statuses or None,
            stages=stages or None,
            sort=sort,
            descending=descending,
            limit=min(limit - len(rows), MAX_PAGE),
            cursor=cursor,
            brief=True,
        )
        rows += page.items
        cursor = page.next_cursor
        if cursor is None:
            break
    return rows


def sort_descending(sort: str, reverse: bool, specs: Sequence[Objective]) -> bool | None:
    """The store's `descending`: by birth, oldest first unless reversed; by an objective, None (the store
    puts the best first), or with --reverse the worst first."""
    if sort == "birth":
        return reverse
    if not reverse:
        return None
    return next(o.direction != "max" for o in specs if o.name == sort)


def show_candidates(search_id: int, rows: list[Any], objectives: list[str]) -> None:
    if not rows:
        console.print(f"search {search_id} has no candidates that match", highlight=False)
        return
    table = FittedTable(title=f"candidates of search {search_id} ({len(rows)} shown)")
    for column in ("id", "birth", "status", "stage", *(heading(n) for n in objectives), "mean"):
        table.add_column(column, justify="left" if column in ("status", "stage") else "right")
    for r in rows:
        values = [format_value((r.objectives or {}).get(n)) for n in objectives]
        stage = "" if r.rejection_stage is None else str(r.rejection_stage)
        table.add_row(str(r.id), str(r.birth), str(r.status), stage, *values, format_value(mean_accuracy(r.objectives)))
    console.print(table)
    console.print(
        "mean: the mean proxy accuracy over the architectures; stage: where a rejection happened", highlight=False
    )
    reasons = [(str(r.id), f"{r.rejection_stage}: {r.rejection_reason}") for r in rows if r.rejection_reason]
    if reasons:
        print_formulas(reasons, "rejection reasons (id: stage: reason)")
    print_formulas([(str(r.id), r.dsl) for r in rows], "formulas (id: layer)")


def candidates_json(rows: list[Any]) -> list[dict[str, Any]]:
    """Each row as the API's page of candidates lists it (one shape for the same thing), with its mean
    accuracy."""
    from service.views import candidate_brief  # FastAPI's schemas load only for --json

    return [{**candidate_brief(r).model_dump(mode="json"), "mean_accuracy": mean_accuracy(r.objectives)} for r in rows]


def candidates_csv(rows: list[Any], objectives: list[str]) -> str:
    """One row per candidate; a value a candidate does not have is an empty cell."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*CSV_LEADING_COLUMNS, *objectives, "mean_accuracy", "dsl"])
    for r in rows:
        values = [(r.objectives or {}).get(n) for n in objectives]
        stage = None if r.rejection_stage is None else str(r.rejection_stage)
        cells = [r.id, r.birth, str(r.status), stage, r.rejection_reason, *values, mean_accuracy(r.objectives), r.dsl]
        writer.writerow(["" if cell is None else cell for cell in cells])
    return buffer.getvalue()


def write_text(text: str, out: Path | None) -> None:
    if out is None:
        typer.echo(text, nl=False)
        return
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as e:
        raise fail(f"cannot write {out}: {e.strerror}") from None
    console.print(f"wrote {out}", highlight=False, markup=False)


def format_value(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.4f}"


# -- candidate ID -------------------------------------------------------------------------------------


@app.command("candidate")
def candidate_command(
    candidate_id: Annotated[int, typer.Argument(metavar="ID", help="the candidate's id (as `candidates` lists it)")],
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """One candidate: its formula, status and rejection, scores per phase, target-task runs and lineage."""
    with opened_readonly_store(db) as store:
        try:
            with store.session(readonly=True) as s:
                detail = candidate_detail(s, candidate_id)
                search_name = get_search(s, detail.candidate.search_id).name
                runs = validation_runs(s, [candidate_id])[candidate_id]
        except StoreError as e:
            raise fail(str(e), EXIT_STORE) from None
    forms = symbolic_forms_of(detail.candidate.graph)
    if as_json:
        typer.echo(json.dumps(candidate_json(detail, forms), indent=2))
    else:
        show_candidate(detail, search_name, runs, forms)


@dataclass(frozen=True)
class Forms:
    """A stored layer's canonical form and LaTeX, or why there are none (as the API's `formula` says)."""

    canonical: str | None
    latex: str | None
    note: str | None = None


def symbolic_forms_of(stored_graph: dict[str, Any]) -> Forms:
    try:
        canonical, formula, _ = symbolic_forms(stored_graph)
    except FormulaTooLarge as e:
        return Forms(None, None, str(e))
    except (GraphError, ValueError, TypeError, KeyError) as e:
        return Forms(None, None, f"the stored graph cannot be read by this version: {e}")
    return Forms(canonical, formula)


def show_candidate(detail: CandidateDetail, search_name: str, runs: list[ValidationRun], forms: Forms) -> None:
    c = detail.candidate
    console.print(f"candidate {c.id} ({birth_or_label(c)}) of search {c.search_id} ({search_name})", highlight=False)
    for label, value in candidate_facts(c):
        console.print(f"  {label}: {value}", highlight=False, markup=False)
    written = [(kind, text) for kind, text in (("canonical", forms.canonical), ("latex", forms.latex)) if text]
    if forms.note:
        written.append(("note", forms.note))
    print_formulas([("DSL", c.dsl), *written, ("hash", c.canonical_hash)], "formula")
    if c.objectives:
        objectives = ", ".join(f"{heading(n)} {format_value(v)}" for n, v in c.objectives.items())
        mean = format_value(mean_accuracy(c.objectives))
        console.print(f"proxy objectives: {objectives}; mean {mean}", highlight=False, markup=False)
    if evaluations := proxy_evaluations(detail):
        console.print(evaluations_table(evaluations))
    if runs:
        console.print(target_runs_table(runs))
    show_lineage(detail)


def birth_or_label(c: Any) -> str:
    """`birth N` for the search's own candidates; a baseline's stored birth only places it outside
    theirs, so its label names it instead."""
    return f"baseline {c.label}" if is_baseline(c) else f"birth {c.birth}"


def candidate_facts(c: Any) -> list[tuple[str, str]]:
    """Status, and whatever explains it: rejection, error, duplicate, parent, mutation."""
    facts = [("status", str(c.status))]
    if c.rejection_stage is not None:
        facts.append(("rejected", f"{c.rejection_stage}: {c.rejection_reason}"))
    if c.error:
        facts.append(("error", c.error))
    if c.duplicate_of is not None:
        facts.append(("duplicate of", str(c.duplicate_of)))
    if c.parent_id is not None:
        facts.append(("parent", str(c.parent_id)))
    if c.mutation is not None:
        facts.append(("mutation", json.dumps(c.mutation)))
    return facts


def proxy_evaluations(detail: CandidateDetail) -> list[Any]:
    """The evaluations of the search's own phases in the order they run (quality, then proxy); target-task
    runs are shown per seed on their own."""
    order = list(EvaluationPhase)
    chosen = [e for e in detail.evaluations if e.phase is not EvaluationPhase.VALIDATION]
    return sorted(chosen, key=lambda e: order.index(e.phase))  # stable: architecture and attempt stay sorted


def evaluations_table(evaluations: list[Any]) -> Table:
    table = Table(title="evaluations (quality: the short training of the quality rejection; proxy: the objectives)")
    for column in ("phase", "architecture", "attempt", "status", "accuracy", "seconds"):
        table.add_column(column, justify="right" if column in ("attempt", "accuracy", "seconds") else "left")
    for e in evaluations:
        accuracy = e.metrics.get("accuracy") if isinstance(e.metrics, dict) else None
        table.add_row(
            str(e.phase),
            e.architecture,
            str(e.attempt),
            str(e.status),
            format_value(accuracy if isinstance(accuracy, (int, float)) else None),
            f"{e.duration_seconds:.1f}",
        )
    return table


def target_runs_table(runs: list[ValidationRun]) -> FittedTable:
    """A row per seed of the target task, then the mean over seeds per architecture."""
    architectures = list(dict.fromkeys(a for run in runs for a in run.accuracies))
    table = FittedTable(title="target task (validation runs)")
    for column in ("seed", *architectures, "seconds"):
        table.add_column(column, justify="right")
    for run in runs:
        cells = [format_value(run.accuracies.get(a)) for a in architectures]
        table.add_row(str(run.seed), *cells, f"{run.seconds:.1f}")
    means = [format_value(statistics.fmean(r.accuracies[a] for r in runs if a in r.accuracies)) for a in architectures]
    table.add_row("mean", *means, "", style="bold")
    return table


def show_lineage(detail: CandidateDetail) -> None:
    if not detail.lineage:
        console.print("lineage: none (a seed layer or a random start)", highlight=False)
        return
    table = Table(title="lineage: parent, grandparent, ...")
    for column in ("id", "birth", "status", "mean"):
        table.add_column(column, justify="left" if column == "status" else "right")
    for a in detail.lineage:
        table.add_row(str(a.id), str(a.birth), str(a.status), format_value(mean_accuracy(a.objectives)))
    console.print(table)
    if detail.lineage_truncated:
        console.print("(the chain goes on beyond these)", highlight=False)
    made = [(str(detail.candidate.id), json.dumps(detail.candidate.mutation))] if detail.candidate.mutation else []
    made += [(str(a.id), json.dumps(a.mutation)) for a in detail.lineage if a.mutation is not None]
    if made:
        print_formulas(made, "mutations (id: the mutation that made it from its parent)")
    print_formulas([(str(a.id), a.dsl) for a in detail.lineage], "formulas of the lineage (id: layer)")


def candidate_json(detail: CandidateDetail, forms: Forms) -> dict[str, Any]:
    """The API's answer for the candidate (GET /api/v1/candidates/ID): one shape for the same thing."""
    from service.formulas import Symbolic  # FastAPI's schemas load only for --json
    from service.views import candidate_detail as api_candidate_detail

    symbolic = Symbolic(forms.canonical, forms.latex, forms.note)
    return api_candidate_detail(detail, symbolic).model_dump(mode="json")
