"""The report's pictures as PNG bytes: best value so far per objective, the Pareto front with the
baselines, and a layer's formula typeset by matplotlib's mathtext.

matplotlib is optional (the `dev` extra installs it): `plots_available()` says whether it is there, and
every function returns None without it, so the report falls back to its tables. Figures are made with
matplotlib's object API (`Figure` and the Agg canvas), never pyplot, so the API can draw reports in
several threads at once without pyplot's global state.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

DPI = 110
BASELINE_COLOURS = ("#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


@dataclass(frozen=True)
class Reference:
    """A baseline drawn as a reference: its label and value (a line) or point (a marker)."""

    label: str
    values: dict[str, float]


def _figure_class() -> Any | None:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return None
    return Figure


def plots_available() -> bool:
    return _figure_class() is not None


def _png(figure: Any, *, tight: bool = True) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight" if tight else None, pad_inches=0.08)
    return buffer.getvalue()


def progress_png(objective: str, best_so_far: Sequence[float], references: Sequence[Reference]) -> bytes | None:
    """Best value so far against the number of evaluated candidates, each baseline a labelled dashed line."""
    figure_class = _figure_class()
    if figure_class is None or not best_so_far:
        return None
    figure = figure_class(figsize=(6.4, 3.2))
    axes = figure.add_subplot()
    counts = range(1, len(best_so_far) + 1)
    axes.step(counts, best_so_far, where="post", color="#1f77b4", label="best so far")
    for colour, reference in zip(_colours(len(references)), references, strict=True):
        if objective in reference.values:
            axes.axhline(reference.values[objective], color=colour, linestyle="--", linewidth=1, label=reference.label)
    axes.set_xlabel("evaluated candidates")
    axes.set_ylabel(objective)
    axes.set_title(f"best {objective} so far")
    axes.grid(alpha=0.3)
    # Inside the axes, where the legend cannot be cut by the image's edge.
    axes.legend(loc="best", fontsize="small")
    return _png(figure)


def front_png(
    x_name: str,
    y_name: str,
    front: Sequence[tuple[int, dict[str, float]]],
    references: Sequence[Reference],
) -> bytes | None:
    """The front's layers (id, objectives) on two objectives, joined in order of the first, and each
    baseline as a labelled marker."""
    figure_class = _figure_class()
    if figure_class is None or not front:
        return None
    figure = figure_class(figsize=(6.4, 4.4))
    axes = figure.add_subplot()
    points = sorted((values[x_name], values[y_name], cid) for cid, values in front)
    axes.plot([p[0] for p in points], [p[1] for p in points], "o-", color="#1f77b4", label="Pareto front")
    for x, y, cid in points:
        axes.annotate(f"#{cid}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize="x-small")
    for colour, reference in zip(_colours(len(references)), references, strict=True):
        if x_name in reference.values and y_name in reference.values:
            at = (reference.values[x_name], reference.values[y_name])
            axes.plot(*at, marker="s", linestyle="none", color=colour, label=f"baseline {reference.label}")
    axes.set_xlabel(x_name)
    axes.set_ylabel(y_name)
    axes.set_title("Pareto front and baselines")
    axes.grid(alpha=0.3)
    axes.legend(loc="best", fontsize="small")
    return _png(figure)


def formula_png(latex: str) -> bytes | None:
    """The formula typeset by mathtext (a subset of LaTeX); None without matplotlib or when mathtext
    cannot read it (the report shows the text forms either way)."""
    figure_class = _figure_class()
    if figure_class is None:
        return None
    figure = figure_class(figsize=(0.1, 0.1))
    figure.text(0, 0, f"${latex}$", fontsize=15)
    try:
        return _png(figure)
    except ValueError:  # mathtext's parse errors are ValueErrors
        return None


def _colours(count: int) -> list[str]:
    return [BASELINE_COLOURS[i % len(BASELINE_COLOURS)] for i in range(count)]
