"""`report SEARCH_ID`: a search's report as one self-contained HTML file, or Markdown with its PNGs.

The report is built by `evonorm_search.search.report.search_report`, which the API serves too; this
command reads the database read-only, as `status` and `pareto` do, and writes the file.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from ..search.report import Report, search_report
from .app import app, console, fail
from .common import DbOption, read_or_exit


class ReportFormat(StrEnum):
    HTML = "html"
    MD = "md"


@app.command("report")
def report_command(
    search_id: Annotated[int, typer.Argument(metavar="SEARCH_ID", help="the search to report on")],
    out: Annotated[
        Path | None,
        typer.Option(
            "-o", "--output", metavar="FILE", help="Where to write it. Default: report-SEARCH_ID.html (or .md)."
        ),
    ] = None,
    report_format: Annotated[
        ReportFormat | None,
        typer.Option(
            "--format",
            help="html: one self-contained file (pictures inline, no network); md: Markdown with its PNG "
            "files beside it. Default: md for an -o ending in .md, else html.",
        ),
    ] = None,
    db: DbOption = None,
) -> None:
    """Write a search's report: configuration, funnel, best value so far, Pareto front, best layers with
    their formulas and lineage, validated front, machine and versions."""
    chosen = report_format or (ReportFormat.MD if out is not None and out.suffix == ".md" else ReportFormat.HTML)
    target = out or Path(f"report-{search_id}.{chosen}")
    report = read_or_exit(db, lambda s: search_report(s, search_id))
    written = write_report(report, target, chosen)
    console.print(f"wrote {', '.join(str(p) for p in written)}", highlight=False, markup=False)


def write_report(report: Report, target: Path, report_format: ReportFormat) -> list[Path]:
    """Write the report (and, for Markdown, its PNGs beside it, named after it); the paths written."""
    if report_format is ReportFormat.HTML:
        files = {target: report.to_html().encode("utf-8")}
    else:
        text, images = report.to_markdown(target.stem)
        files = {target: text.encode("utf-8"), **{target.with_name(name): png for name, png in images.items()}}
    for path, content in files.items():
        try:
            path.write_bytes(content)
        except OSError as e:
            raise fail(f"cannot write {path}: {e.strerror}") from None
    return list(files)
