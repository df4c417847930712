"""Formulas whole at any width: `pareto`, `status`, `evaluate` and `validate` print tables of numbers
and every formula whole below them (a keyed list), never cut with an ellipsis, in a terminal of 80
columns and of 200; the `vs` columns are explained under the table; `birth` holds births only."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import evonorm_search as es
from evonorm_search import store as st
from tests.search.test_baselines import small_config

from .conftest import WIDE_BASELINES, StoredSearch

REPOSITORY = Path(__file__).resolve().parents[2]
# One line longer than an 80-column terminal, and a program of several lines.
LONG_LAYER = (
    "t1 = x / std(x, group)\n"
    "t2 = sigmoid(v1 * t1) * relu(t1 + v0) - tanh(mean(x, instance) * var(x, layer)) / rms(x, group)\n"
    "y = t1 * t2 + v0 * erf(t2)\n"
)
SCRIPT = """
import json, sys
from typer.testing import CliRunner
from evonorm_search.cli import app
results = {name: CliRunner().invoke(app, args) for name, args in json.loads(sys.argv[1]).items()}
print(json.dumps({name: [r.exit_code, r.stdout] for name, r in results.items()}))
"""


@pytest.fixture(scope="module")
def rendered(populated: StoredSearch, populated_wide: StoredSearch, tmp_path_factory) -> dict[int, dict[str, str]]:
    """Each command's stdout at COLUMNS=80 and COLUMNS=200 (the console takes its width at start)."""
    folder = tmp_path_factory.mktemp("widths")
    layer = folder / "long.dsl"
    layer.write_text(LONG_LAYER)
    config = folder / "tiny.yaml"
    config.write_text(small_config(baselines=["relu", "gn_relu"]).to_yaml())
    layers = ["--layer", str(layer), "--layer", "evonorm_b0", "--config", str(config), "--in-process"]
    commands = {
        "pareto": ["pareto", "1", "--db", populated.db],
        "pareto-wide": ["pareto", "1", "--db", populated_wide.db],
        "status": ["status", "1", "--db", populated.db],
        "evaluate": ["evaluate", *layers],
        "validate": ["validate", *layers, "--seeds", "1"],
    }
    out = {}
    for width in (80, 200):
        proc = subprocess.run(
            [sys.executable, "-c", SCRIPT, json.dumps(commands)],
            capture_output=True,
            text=True,
            cwd=REPOSITORY,
            env={**os.environ, "COLUMNS": str(width), "PYTHONPATH": str(REPOSITORY)},
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr
        results = json.loads(proc.stdout.splitlines()[-1])
        for name, (code, output) in results.items():
            assert code == 0, (width, name, output)
        out[width] = {name: output for name, (_, output) in results.items()}
    return out


def formulas_of(db: str) -> list[str]:
    """The DSL of every front layer and baseline of search 1."""
    with st.open_store(db) as store, store.session(readonly=True) as s:
        return [c.dsl for c in [*st.pareto_front(s, 1), *st.baselines_of(s, 1)]]


def assert_whole(formula: str, output: str) -> None:
    for line in formula.strip().splitlines():
        assert line.strip() in output, (line, output)


def column_cells(output: str, header: str) -> list[str]:
    """The cells under `header` in every table of `output` that has that column."""
    cells, index = [], None
    for line in output.splitlines():
        parts = [p.strip() for p in line.replace("┃", "│").split("│")]
        if header in parts:
            index = parts.index(header)
        elif line.startswith("└"):
            index = None
        elif index is not None and line.startswith("│"):
            cells.append(parts[index])
    return cells


@pytest.mark.parametrize("width", [80, 200])
@pytest.mark.parametrize("command", ["pareto", "pareto-wide", "status", "evaluate", "validate"])
def test_nothing_is_cut(rendered, width, command):
    assert "…" not in rendered[width][command], rendered[width][command]


@pytest.mark.parametrize("width", [80, 200])
def test_pareto_prints_every_formula_whole_and_explains_vs(rendered, populated: StoredSearch, width):
    output = rendered[width]["pareto"]
    for formula in formulas_of(populated.db):
        assert_whole(formula, output)
    assert "vs bn_relu" in output
    assert any(line.startswith("vs ") and "minus" in line for line in output.splitlines()), output
    births = column_cells(output, "birth")
    assert births and all(cell.isdigit() or cell == "" for cell in births), births


@pytest.mark.parametrize("width", [80, 200])
def test_status_prints_the_best_formula_whole(rendered, populated: StoredSearch, width):
    output = rendered[width]["status"]
    with st.open_store(populated.db) as store, store.session(readonly=True) as s:
        front = st.pareto_front(s, 1)
    shown = [c for c in front if f"{c.id} (birth {c.birth}): " in output]
    assert len(shown) == 1, output
    assert_whole(shown[0].dsl, output)


@pytest.mark.parametrize("width", [80, 200])
@pytest.mark.parametrize("command", ["evaluate", "validate"])
def test_scores_print_formulas_whole_and_explain_vs(rendered, width, command):
    assert ("vs relu" in rendered[width][command]) == (command == "validate")
    output = rendered[width][command]
    assert_whole(LONG_LAYER, output)
    assert_whole(es.library.get("evonorm_b0").to_text(), output)
    explained = any(line.startswith("vs ") and "minus" in line for line in output.splitlines())
    assert explained == ("vs relu" in output), output  # validate trains the baselines, evaluate does not


TABLE_LINE = re.compile(r"^[┏┃┡│└]")


@pytest.mark.parametrize("width", [80, 200])
@pytest.mark.parametrize("command", ["pareto", "pareto-wide", "status", "evaluate", "validate"])
def test_tables_fit_the_width(rendered, width, command):
    tables = [line for line in rendered[width][command].splitlines() if TABLE_LINE.match(line)]
    assert tables, rendered[width][command]
    assert max(len(line) for line in tables) <= width, rendered[width][command]


@pytest.mark.parametrize("width", [80, 200])
def test_a_front_wider_than_the_terminal_splits_by_columns_with_every_number_whole(rendered, width):
    """Five baselines' `vs` columns do not fit 80 columns: the front continues in a second table that
    repeats the id, and no number is folded over two lines (`-0.1` above `334`)."""
    output = rendered[width]["pareto-wide"]
    for label in WIDE_BASELINES:
        cells = column_cells(output, f"vs {label}")
        assert len(cells) == 8 and all(re.fullmatch(r"[+-]\d\.\d{4}", cell) for cell in cells), (label, output)
    ids = column_cells(output, "id")
    continued = "(continued)" in output
    assert continued == (width == 80), output
    assert len(ids) == (8 * (2 if continued else 1) + len(WIDE_BASELINES)), output
