"""The Typer application every command module registers on."""

from __future__ import annotations

import typer
from rich.console import Console

app = typer.Typer(
    name="evonorm-search",
    help="Search for normalization-activation layers: the layer language, searches, the database and the service.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

EXIT_USAGE = 2  # bad input: a malformed layer, config or argument


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    """Print an error to stderr and return the Exit to raise."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)
