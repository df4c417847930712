"""A search's report: one document, read from the store, written as self-contained HTML or as Markdown
with its PNG files beside it. `evonorm-search report` and the API (`GET /api/v1/searches/{id}/report`)
both call `search_report`.

The report is a list of sections (`SECTION_TITLES`), each a list of blocks (text, tables, code, images);
the two writers render the same blocks, so both formats say the same. The HTML needs no network: styles
are inline, pictures are base64 PNGs in `data:` URLs and formulas are text beside a typeset PNG, so the
file opens anywhere, offline, and can be mailed as it is. Without matplotlib the pictures are left out
and the report says so; every number is in a table either way.
"""

from __future__ import annotations

import base64
import html
import json
import math
import platform
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

import yaml
from sqlalchemy.orm import Session

from .. import store as db
from .._version import __version__
from ..ir import Graph, GraphError
from ..symbolic import FormulaTooLarge, latex, to_sympy
from . import report_plots as plots
from .baselines import differences
from .fronts import SearchFronts, read_fronts
from .objectives import mean_accuracy
from .validation import BASELINE, LAYER, difference

SECTION_TITLES = (
    "Configuration",
    "Funnel",
    "Best value so far",
    "Pareto front",
    "Best layers",
    "Validated front",
    "Lineage of the best layers",
    "Machine and versions",
)
BEST_LAYERS = 5  # the front's layers with the highest mean accuracy, shown in full with their lineage
LINEAGE_LIMIT = 30  # ancestors listed per best layer
NO_PLOTS = "matplotlib is not installed (pip install 'evonorm-search[dev]'): the pictures are left out; the tables hold every number."

# -- the document -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Heading:
    text: str


@dataclass(frozen=True)
class Table:
    headers: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class Code:
    text: str
    caption: str = ""
    folded: bool = False  # HTML shows it closed, under its caption (a long text the reader opens when wanted)


@dataclass(frozen=True)
class Image:
    name: str  # a file name stem, unique in the report (Markdown writes `<prefix>-<name>.png`)
    png: bytes
    alt: str


Block = Text | Heading | Table | Code | Image


@dataclass(frozen=True)
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)

    @property
    def anchor(self) -> str:
        return self.title.lower().replace(" ", "-")


@dataclass(frozen=True)
class Report:
    title: str
    sections: list[Section]

    def images(self) -> list[Image]:
        return [block for section in self.sections for block in section.blocks if isinstance(block, Image)]

    def to_html(self) -> str:
        return render_html(self)

    def to_markdown(self, image_prefix: str) -> tuple[str, dict[str, bytes]]:
        """The Markdown text and {file name: PNG} of its pictures, which it links as `<prefix>-<name>.png`
        (relative: write them beside the text)."""
        return render_markdown(self, image_prefix)


# -- reading a search -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportInputs:
    """Everything a report shows, read from the store in one session; building the report from it (the
    formulas and pictures, the slow part) needs no database, so a server can do it off its database threads."""

    fronts: SearchFronts
    summary: db.SearchSummary
    results: list[tuple[int, dict[str, float]]]  # evaluated candidates in the order their results came
    leaders: list[Any]  # the best layers, whole rows
    lineages: dict[int, db.CandidateDetail]  # each best layer's chain of ancestors


def search_report(session: Session, search_id: int, *, best: int = BEST_LAYERS) -> Report:
    """The report of a search, from the store alone. NotFoundError for an unknown search; ConfigError
    when its stored configuration cannot be read by this version."""
    return build_report(read_report_inputs(session, search_id, best=best))


def read_report_inputs(session: Session, search_id: int, *, best: int = BEST_LAYERS) -> ReportInputs:
    fronts = read_fronts(session, search_id)
    summary = db.search_summary(session, search_id)
    results = db.results_in_commit_order(session, search_id)
    leaders = best_layers(session, results, best)
    lineages = {c.id: db.candidate_detail(session, c.id, lineage_limit=LINEAGE_LIMIT) for c in leaders}
    return ReportInputs(fronts, summary, results, leaders, lineages)


def build_report(inputs: ReportInputs) -> Report:
    fronts = inputs.fronts
    search = fronts.search
    return Report(
        f"Search {search.id} ({search.name})",
        [
            configuration_section(fronts),
            funnel_section(inputs.summary),
            progress_section(fronts, inputs.results),
            front_section(fronts),
            best_layers_section(fronts, inputs.leaders),
            validated_section(fronts),
            lineage_section(inputs.leaders, inputs.lineages),
            machine_section(search),
        ],
    )


def best_layers(session: Session, results: Sequence[tuple[int, dict[str, float]]], count: int) -> list[Any]:
    """The evaluated layers with the highest mean accuracy (oldest first among equals), read whole. The
    best is on the front; the ones after it need not be, so the report shows what came close too."""
    scored = [(mean, cid) for cid, values in results if (mean := mean_accuracy(values)) is not None]
    chosen = sorted(scored, key=lambda pair: (-pair[0], pair[1]))[:count]
    return [db.get_candidate(session, cid) for _, cid in chosen]


def evaluated_baselines(fronts: SearchFronts) -> list[plots.Reference]:
    return [plots.Reference(_label(b), _objectives(b)) for b in fronts.baselines]


def _objectives(candidate: db.Candidate) -> dict[str, float]:
    """An evaluated candidate's objectives (the front and the evaluated baselines always have them)."""
    return candidate.objectives or {}


def _label(baseline: db.Candidate) -> str:
    return baseline.label or f"baseline {baseline.id}"


# -- sections ---------------------------------------------------------------------------------------


def configuration_section(fronts: SearchFronts) -> Section:
    search = fronts.search
    facts = [
        ["search", f"{search.id} ({search.name})"],
        ["state", str(search.state) + (f": {search.error}" if search.error else "")],
        ["created", _moment(search.created_at)],
        ["finished", _moment(search.finished_at)],
        ["objectives", ", ".join(f"{o.name} ({o.direction})" for o in search.objective_specs)],
    ]
    text = yaml.safe_dump(search.config, sort_keys=False)
    return Section(
        "Configuration", [Table(["", ""], facts), Code(text, "the stored configuration (YAML)", folded=True)]
    )


def funnel_section(summary: db.SearchSummary) -> Section:
    """Where the candidates went: each status, each rejection stage, and the duplicates that reused a result."""
    budget = summary.search.budget
    rows = [["proposed", str(summary.total) + (f" of a budget of {budget}" if budget else "")]]
    rows += [[str(status), str(count)] for status, count in summary.by_status.items() if count]
    rows += [[f"rejected at {stage}", str(count)] for stage, count in summary.rejected_by_stage.items()]
    rows.append(["duplicate hits", str(summary.duplicate_hits)])
    rows.append(["on the Pareto front", str(summary.front_size)])
    hypervolume = "-" if summary.hypervolume is None else f"{summary.hypervolume:.4f}"
    rows.append(["hypervolume", hypervolume])
    note = Text(
        "Counts per candidate status and per rejection stage; a duplicate hit is a proposal whose layer was "
        "already evaluated (it reuses that result and spends no training)."
    )
    return Section("Funnel", [Table(["stage", "candidates"], rows), note])


def best_so_far(values: Sequence[float], maximise: bool) -> list[float]:
    """The running best of `values`, in their order."""
    out: list[float] = []
    for value in values:
        if not out:
            out.append(value)
        else:
            out.append(max(out[-1], value) if maximise else min(out[-1], value))
    return out


def progress_section(fronts: SearchFronts, results: Sequence[tuple[int, dict[str, float]]]) -> Section:
    """Per objective: the best value over the evaluated candidates, in the order their results came, with
    the baselines as reference lines; then each improvement as a table row."""
    if not results:
        return Section("Best value so far", [Text("No candidate has been evaluated yet.")])
    references = evaluated_baselines(fronts)
    blocks: list[Block] = [
        Text(
            f"Over the {len(results)} evaluated candidates, in the order their results were stored "
            "(duplicates, which reuse a result, are not counted again)."
        )
    ]
    if not plots.plots_available():
        blocks.append(Text(NO_PLOTS))
    rows = []
    for objective in fronts.search.objective_specs:
        scored = [(cid, values[objective.name]) for cid, values in results if objective.name in values]
        running = best_so_far([value for _, value in scored], objective.direction == "max")
        png = plots.progress_png(objective.name, running, references)
        if png is not None:
            blocks.append(Image(f"progress-{objective.name}", png, f"best {objective.name} so far"))
        rows += [
            [objective.name, str(i.evaluated), str(i.candidate_id), _value(i.value)]
            for i in improvements(results, objective)
        ]
    blocks.append(Heading("Improvements"))
    blocks.append(Table(["objective", "evaluated", "candidate", "best so far"], rows))
    if references:
        headers = ["baseline", *(o.name for o in fronts.search.objective_specs)]
        cells = [[r.label, *(_value(r.values.get(o.name)) for o in fronts.search.objective_specs)] for r in references]
        blocks += [Heading("Baselines (the reference lines)"), Table(headers, cells)]
    return Section("Best value so far", blocks)


@dataclass(frozen=True)
class Improvement:
    """The best value of an objective changed: after `evaluated` evaluated candidates, to `value`, set by
    candidate `candidate_id`. The steps of a best-so-far curve, which the dashboard draws too."""

    evaluated: int
    candidate_id: int
    value: float


def improvements(results: Sequence[tuple[int, dict[str, float]]], objective: db.Objective) -> list[Improvement]:
    """Each change of the objective's best value over `results` (evaluated candidates in commit order)."""
    scored = [(cid, values[objective.name]) for cid, values in results if objective.name in values]
    running = best_so_far([value for _, value in scored], objective.direction == "max")
    return [
        Improvement(index + 1, cid, value)
        for index, ((cid, value), best) in enumerate(zip(scored, running, strict=True))
        if index == 0 or best != running[index - 1]
    ]


def front_section(fronts: SearchFronts) -> Section:
    names = fronts.objective_names
    if not fronts.front:
        return Section("Pareto front", [Text("The front is empty: no candidate has been evaluated yet.")])
    blocks: list[Block] = []
    if len(names) >= 2:
        png = plots.front_png(
            names[0], names[1], [(c.id, _objectives(c)) for c in fronts.front], evaluated_baselines(fronts)
        )
        if png is not None:
            blocks.append(Image("pareto-front", png, f"Pareto front on {names[0]} and {names[1]}"))
            if len(names) > 2:
                blocks.append(Text(f"The picture shows the first two of the {len(names)} objectives; the table all."))
        elif not plots.plots_available():
            blocks.append(Text(NO_PLOTS))
    labels = [_label(b) for b in fronts.baselines]
    headers = ["id", "birth", *names, "mean", *(f"vs {label}" for label in labels)]
    rows = []
    for c in fronts.front:
        versus = [_signed(d.mean) for d in differences(c.objectives, fronts.baselines)]
        rows.append(
            [
                str(c.id),
                str(c.birth),
                *(_value(_objectives(c).get(n)) for n in names),
                _value(mean_accuracy(c.objectives)),
                *versus,
            ]
        )
    blocks.append(Table(headers, rows))
    blocks.append(Text("mean: the mean proxy accuracy over the architectures; vs X: that mean minus baseline X's."))
    if fronts.baselines:
        cells = [
            [_label(b), str(b.id), *(_value(_objectives(b).get(n)) for n in names), _value(mean_accuracy(b.objectives))]
            for b in fronts.baselines
        ]
        blocks += [Heading("Baselines"), Table(["baseline", "id", *names, "mean"], cells)]
    return Section("Pareto front", blocks)


def best_layers_section(fronts: SearchFronts, leaders: Sequence[Any]) -> Section:
    if not leaders:
        return Section("Best layers", [Text("No layer has been evaluated yet.")])
    blocks: list[Block] = [
        Text(
            f"The {len(leaders)} evaluated layers with the highest mean proxy accuracy, each with its "
            "formula as the search wrote it (DSL), its canonical form, and its scores beside every baseline's."
        )
    ]
    for c in leaders:
        blocks += layer_blocks(c, fronts)
    return Section("Best layers", blocks)


def layer_blocks(candidate: Any, fronts: SearchFronts) -> list[Block]:
    on_front = any(c.id == candidate.id for c in fronts.front)
    where = f"birth {candidate.birth}" + (", on the Pareto front" if on_front else "")
    blocks: list[Block] = [Heading(f"Candidate {candidate.id} ({where})"), Code(candidate.dsl, "DSL")]
    canonical, tex = readable_forms(candidate.graph)
    blocks.append(Code(canonical, "canonical form (sympy)"))
    if tex is not None:
        png = plots.formula_png(tex)
        if png is not None:
            blocks.append(Image(f"formula-{candidate.id}", png, f"formula of candidate {candidate.id}"))
        blocks.append(Code(tex, "LaTeX"))
    blocks.append(scores_table(candidate, fronts))
    return blocks


def readable_forms(stored_graph: dict[str, Any]) -> tuple[str, str | None]:
    """(the canonical form as sympy prints it, LaTeX), or why there is none and None."""
    try:
        layer = Graph.from_dict(stored_graph)
    except (GraphError, ValueError, TypeError, KeyError) as e:
        return f"the stored graph cannot be read by this version: {e}", None
    try:
        return str(to_sympy(layer)), latex(layer)
    except (FormulaTooLarge, RecursionError) as e:
        return f"no canonical form: {e}", None


def scores_table(candidate: Any, fronts: SearchFronts) -> Table:
    """Each objective and the mean: the layer's value, and its difference to each evaluated baseline."""
    versus = differences(candidate.objectives, fronts.baselines)
    headers = ["objective", "value", *(f"vs {d.label}" for d in versus)]
    rows = [
        [name, _value(_objectives(candidate).get(name)), *(_signed(d.per_objective.get(name)) for d in versus)]
        for name in fronts.objective_names
    ]
    rows.append(["mean accuracy", _value(mean_accuracy(candidate.objectives)), *(_signed(d.mean) for d in versus)])
    return Table(headers, rows)


def validated_section(fronts: SearchFronts) -> Section:
    """The layers trained on the target task (by the ladder or `validate`) beside the validated baselines."""
    if not fronts.validated:
        return Section(
            "Validated front",
            [
                Text(
                    "None: no layer of this search has target-task runs (a `fidelities:` ladder or "
                    f"`evonorm-search validate {fronts.search.id}` trains the best ones on the target task)."
                )
            ],
        )
    references = [v for v in fronts.validated if v.role == BASELINE]
    architectures = sorted({a for v in fronts.validated for a in v.score.per_architecture})
    headers = ["layer", "id", "seeds", "mean ± std", *architectures, *(f"vs {b.name}" for b in references)]
    rows = []
    for v in [v for v in fronts.validated if v.role == LAYER] + references:
        spread = f"{v.score.mean:.4f} ± {v.score.std:.4f}" if math.isfinite(v.score.mean) else "-"
        per = [_value(v.score.per_architecture.get(a)) for a in architectures]
        versus = [_signed(difference(v, b)) if v is not b else "" for b in references]
        name = "candidate" if v.role == LAYER else str(v.name)
        rows.append([name, str(v.candidate_id), str(len(v.score.runs)), spread, *per, *versus])
    note = Text("Target-task accuracy over the stored seeds; vs X: the mean minus baseline X's over the same seeds.")
    formulas = [Code(v.score.layer, f"candidate {v.candidate_id}") for v in fronts.validated if v.role == LAYER]
    return Section("Validated front", [Table(headers, rows), note, *formulas])


def lineage_section(leaders: Sequence[Any], lineages: dict[int, db.CandidateDetail]) -> Section:
    if not leaders:
        return Section("Lineage of the best layers", [Text("No layer has been evaluated yet.")])
    blocks: list[Block] = []
    for c in leaders:
        detail = lineages[c.id]
        blocks.append(Heading(f"Candidate {c.id}"))
        if not detail.lineage:
            blocks.append(Text("No parent: a seed layer or a random start."))
            continue
        chain = [detail.candidate, *detail.lineage]
        rows = [
            [
                str(depth),
                str(a.id),
                str(a.birth),
                str(a.status),
                _value(mean_accuracy(a.objectives)),
                _mutation(a.mutation),
            ]
            for depth, a in enumerate(chain)
        ]
        blocks.append(Table(["generation back", "id", "birth", "status", "mean", "made by"], rows))
        if detail.lineage_truncated:
            blocks.append(Text(f"The chain goes on beyond these {LINEAGE_LIMIT} ancestors."))
        blocks += [Code(a.dsl, f"ancestor {a.id}") for a in detail.lineage]
    return Section("Lineage of the best layers", blocks)


def machine_section(search: db.Search) -> Section:
    rows = [
        ["evonorm-search", __version__],
        ["python", sys.version.split()[0]],
        *[[name, _installed(name)] for name in ("torch", "sympy", "numpy", "sqlalchemy", "matplotlib")],
        ["platform", platform.platform()],
        ["report written on", socket.gethostname()],
        ["report written at", _moment(datetime.now(UTC))],
    ]
    if search.controller_host:  # cleared once a search ends
        rows.append(["search driven from", search.controller_host])
    return Section("Machine and versions", [Table(["", ""], rows)])


def _installed(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def _mutation(mutation: Any) -> str:
    """How a candidate was made: a mutation's name (`random`: a fresh start), or its JSON record."""
    if mutation is None:
        return "-"
    return mutation if isinstance(mutation, str) else json.dumps(mutation)


def _moment(moment: datetime | None) -> str:
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _value(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.4f}"


def _signed(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:+.4f}"


# -- HTML -------------------------------------------------------------------------------------------

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 72rem; padding: 0 1rem; color: #222; }
h1 { font-size: 1.6rem; } h2 { border-bottom: 1px solid #ccc; margin-top: 2.2rem; } h3 { margin-top: 1.4rem; }
table { border-collapse: collapse; margin: 0.6rem 0; }
th, td { border: 1px solid #ddd; padding: 0.2rem 0.6rem; text-align: right; vertical-align: top; }
th:first-child, td:first-child { text-align: left; }
th { background: #f4f4f4; }
pre { background: #f7f7f7; border: 1px solid #e4e4e4; padding: 0.5rem; overflow-x: auto; white-space: pre-wrap; }
figure { margin: 0.8rem 0; } figcaption, .caption { color: #666; font-size: 0.85rem; }
img { max-width: 100%; }
nav li { display: inline; margin-right: 1rem; }
"""


def render_html(report: Report) -> str:
    contents = "".join(f'<li><a href="#{s.anchor}">{html.escape(s.title)}</a></li>' for s in report.sections)
    body = "\n".join(_html_section(s) for s in report.sections)
    title = html.escape(report.title)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        f"<h1>{title}</h1>\n<nav><ul>{contents}</ul></nav>\n{body}\n</body>\n</html>\n"
    )


def _html_section(section: Section) -> str:
    blocks = "\n".join(_html_block(b) for b in section.blocks)
    return f'<section id="{section.anchor}">\n<h2>{html.escape(section.title)}</h2>\n{blocks}\n</section>'


def _html_block(block: Block) -> str:
    if isinstance(block, Text):
        return f"<p>{html.escape(block.text)}</p>"
    if isinstance(block, Heading):
        return f"<h3>{html.escape(block.text)}</h3>"
    if isinstance(block, Code):
        text = f"<pre>{html.escape(block.text.rstrip())}</pre>"
        if block.folded:
            return f"<details><summary>{html.escape(block.caption)}</summary>{text}</details>"
        caption = f'<div class="caption">{html.escape(block.caption)}</div>' if block.caption else ""
        return caption + text
    if isinstance(block, Image):
        data = base64.b64encode(block.png).decode("ascii")
        alt = html.escape(block.alt)
        return f'<figure><img src="data:image/png;base64,{data}" alt="{alt}"><figcaption>{alt}</figcaption></figure>'
    head = "".join(f"<th>{html.escape(h)}</th>" for h in block.headers)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in block.rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


# -- Markdown ---------------------------------------------------------------------------------------


def render_markdown(report: Report, image_prefix: str) -> tuple[str, dict[str, bytes]]:
    files = {f"{image_prefix}-{image.name}.png": image.png for image in report.images()}
    parts = [f"# {report.title}", ""]
    parts += [f"- [{s.title}](#{s.anchor})" for s in report.sections]
    for section in report.sections:
        parts += ["", f"## {section.title}", ""]
        for block in section.blocks:
            parts += [*_markdown_block(block, image_prefix), ""]
    return "\n".join(parts).rstrip() + "\n", files


def _markdown_block(block: Block, image_prefix: str) -> list[str]:
    if isinstance(block, Text):
        return [block.text]
    if isinstance(block, Heading):
        return [f"### {block.text}"]
    if isinstance(block, Code):
        caption = [f"*{block.caption}*", ""] if block.caption else []
        return [*caption, "```", block.text.rstrip(), "```"]
    if isinstance(block, Image):
        alt = block.alt.replace("[", "(").replace("]", ")")
        return [f"![{alt}]({image_prefix}-{block.name}.png)"]
    rows = [block.headers, ["---"] * len(block.headers), *block.rows]
    return ["| " + " | ".join(_markdown_cell(c) for c in row) + " |" for row in rows]


def _markdown_cell(cell: str) -> str:
    return cell.replace("|", "\\|").replace("\n", " ")
