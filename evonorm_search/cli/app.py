"""The Typer application every command module registers on."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from typer.core import TyperOption

from .._version import __version__

_typed_display = TyperOption.display_type_rich


def _display_type_without_flags(option: TyperOption, ctx) -> str | None:
    """The value column of an option's help: none for a flag. Typer writes every option's type there,
    so `--json <bool>` and `--help <bool>` read as if the flag took a value (tests/cli/test_help.py)."""
    return None if option.is_flag else _typed_display(option, ctx)


TyperOption.display_type_rich = _display_type_without_flags  # type: ignore[method-assign,assignment]

app = typer.Typer(
    name="evonorm-search",
    help="Search for normalization-activation layers: the layer language, searches, the database and the service.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},  # every command inherits -h
)

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


def _print_version(asked: bool) -> None:
    if asked:
        typer.echo(f"evonorm-search {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Search for normalization-activation layers: the layer language, searches, the database and the service."""


EXIT_USAGE = 2  # bad input: a malformed layer, config or argument


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    """Print an error to stderr and return the Exit to raise."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)
