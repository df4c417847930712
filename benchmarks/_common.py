"""Shared helpers for benchmark scripts: machine description and Markdown tables."""

from __future__ import annotations

import datetime as _dt
import os
import platform
from pathlib import Path

from evonorm_search.search.score_cache import cpu_model

# EVONORM_RESULTS_DIR redirects the tables (the smoke tests write theirs to a temporary folder).
RESULTS = Path(os.environ.get("EVONORM_RESULTS_DIR") or Path(__file__).resolve().parent / "results")


def cpu_name() -> str:
    return cpu_model()  # one reading of the CPU model for the results files and the score cache


def machine_description() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}, load average {load:.2f} at start"


def machine_slug() -> str:
    return os.environ.get("EVONORM_MACHINE", f"cpu{os.cpu_count()}")


def one_line(dsl: str) -> str:
    """A layer's DSL on one line (statements joined by '; '), so that it fits a markdown table's cell."""
    return "; ".join(line.strip() for line in dsl.splitlines() if line.strip())


def markdown_table(headers: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_result(name: str, title: str, body: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}-{machine_slug()}.md"
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    path.write_text(f"# {title}\n\nMachine: {machine_description()}. Written {stamp}.\n\n{body}\n", encoding="utf-8")
    return path
