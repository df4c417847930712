"""Tables of numbers that fit the terminal.

A rich `Table` wider than the console folds its cells: `0.9495` becomes `0.94` over `95`, which reads as
two numbers. A `FittedTable` never folds a cell. When its columns do not fit the console's width, it
prints as several tables, each with as many columns as fit, each repeating the key columns (the ones that
name a row), so every number stays whole and beside its row's name at any width.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.table import Table
from rich.text import Text

# A column of a rich table with its default box and padding (0, 1): one border character and a space
# either side of the widest cell; a table adds one more border on its right.
COLUMN_FRAME = 3
TABLE_FRAME = 1


@dataclass
class FittedColumn:
    header: str
    justify: str  # rich's JustifyMethod: "left", "right", ...
    widest: int = 0

    def width(self) -> int:
        return max(cell_len(self.header), self.widest) + COLUMN_FRAME


@dataclass
class FittedTable:
    """The part of rich's `Table` the CLI uses (`add_column`, `add_row`, a title), rendered as as many
    tables as the console's width needs; the first `keys` columns are repeated in each."""

    title: str | None = None
    keys: int = 1
    columns: list[FittedColumn] = field(default_factory=list)
    rows: list[tuple[list[str], str | None]] = field(default_factory=list)

    def add_column(self, header: str, justify: str = "left") -> None:
        self.columns.append(FittedColumn(header, justify))

    def add_row(self, *cells: str, style: str | None = None) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"a row of {len(cells)} cells in a table of {len(self.columns)} columns")
        for column, cell in zip(self.columns, cells, strict=True):
            column.widest = max(column.widest, max((cell_len(line) for line in cell.splitlines()), default=0))
        self.rows.append((list(cells), style))

    def column_groups(self, width: int) -> list[list[int]]:
        """Column indices per printed table: the key columns, then the others in order while they fit.
        A column too wide for any table gets a table of its own beside the keys."""
        keys = list(range(min(self.keys, len(self.columns))))
        base = TABLE_FRAME + sum(self.columns[i].width() for i in keys)
        groups: list[list[int]] = []
        current: list[int] = []
        used = base
        for index in range(len(keys), len(self.columns)):
            needed = self.columns[index].width()
            if current and used + needed > width:
                groups.append(keys + current)
                current, used = [], base
            current.append(index)
            used += needed
        if current or not groups:
            groups.append(keys + current)
        return groups

    def tables(self, width: int) -> list[Table]:
        groups = self.column_groups(width)
        out = []
        for number, group in enumerate(groups):
            title = self.title if number == 0 or self.title is None else f"{self.title} (continued)"
            table = Table(title=title)
            for index in group:
                column = self.columns[index]
                table.add_column(column.header, justify=column.justify, no_wrap=True)  # type: ignore[arg-type]
            for cells, style in self.rows:
                table.add_row(*(Text(cells[i]) for i in group), style=style)
            out.append(table)
        return out

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield from self.tables(options.max_width)
