"""`FittedTable`: a table of numbers that never folds a cell; wider than the console, it prints as
several tables split by columns, each repeating the key columns."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from evonorm_search.cli.tables import FittedTable

HEADERS = ["layer", "id", *(f"vs baseline_{i}" for i in range(6))]
ROWS = [[f"layer_{r}", str(r), *(f"{(r - i) / 7:+.4f}" for i in range(6))] for r in range(5)]


def table(keys: int = 2) -> FittedTable:
    fitted = FittedTable(title="scores", keys=keys)
    for header in HEADERS:
        fitted.add_column(header, justify="left" if header == "layer" else "right")
    for row in ROWS:
        fitted.add_row(*row)
    return fitted


def render(renderable: FittedTable, width: int) -> str:
    out = io.StringIO()
    Console(file=out, width=width, color_system=None).print(renderable)
    return out.getvalue()


def cells_of(line: str) -> list[str]:
    return [part.strip() for part in re.split("[│┃]", line)[1:-1]]


@pytest.mark.parametrize("width", [40, 60, 80, 120, 200])
def test_every_line_fits_and_every_cell_is_whole_beside_its_key(width):
    output = render(table(), width)
    assert max(len(line) for line in output.splitlines()) <= width, output
    rows = [cells_of(line) for line in output.splitlines() if line.startswith("│")]
    for row in ROWS:
        printed = [r for r in rows if r[:2] == row[:2]]  # the key columns repeat in every part
        assert printed, output
        assert sorted(c for r in printed for c in r[2:]) == sorted(row[2:]), (row, output)


def test_a_wide_console_prints_one_table_and_a_narrow_one_several_in_column_order():
    assert "(continued)" not in render(table(), 200)
    narrow = render(table(), 60)
    headers = [cells_of(line) for line in narrow.splitlines() if line.startswith("┃")]
    assert len(headers) >= 2 and all(h[:2] == ["layer", "id"] for h in headers), narrow
    assert [c for h in headers for c in h[2:]] == HEADERS[2:]
    assert narrow.count("scores (continued)") == len(headers) - 1


def test_a_column_wider_than_the_console_gets_a_table_of_its_own():
    fitted = FittedTable(title=None, keys=1)
    for header in ("id", "a very long header that no narrow console holds", "b"):
        fitted.add_column(header, justify="right")
    fitted.add_row("1", "0.5000", "0.2500")
    assert fitted.column_groups(30) == [[0, 1], [0, 2]]
    assert "0.5000" in render(fitted, 30)


def test_a_row_of_the_wrong_length_is_refused():
    fitted = FittedTable(title="t")
    fitted.add_column("id")
    with pytest.raises(ValueError, match="a row of 2 cells in a table of 1 columns"):
        fitted.add_row("1", "2")
