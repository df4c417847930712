"""Every command's help: flags show no value type (Typer would print `--json <bool>`, as if the flag took
a value), options that take one show their metavar."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from evonorm_search.cli import app

runner = CliRunner()


def command_paths(command, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [prefix]
    if hasattr(command, "commands"):  # a group (Typer's own click, not necessarily the installed one)
        for name, sub in command.commands.items():
            paths += command_paths(sub, (*prefix, name))
    return paths


def help_of(path: tuple[str, ...]) -> str:
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


def test_no_flag_in_any_help_shows_a_value_type():
    paths = command_paths(typer.main.get_command(app))
    assert len(paths) > 15  # every command and group, the root included
    for path in paths:
        text = help_of(path)
        assert "<bool>" not in text, (path, text)
        assert "--help" in text and "-h" in text


def test_options_that_take_a_value_still_show_it():
    run = help_of(("run",))
    row = next(line for line in run.splitlines() if "--working-dir" in line)
    assert "DIR" in row
    live = next(line for line in run.splitlines() if "--live" in line)
    assert "<" not in live.split("--no-live", 1)[1].split()[0]  # the help text follows, no type
    status = help_of(("status",))
    assert "<int>" in status  # the ID argument keeps its type


EVALUATING = [("run",), ("resume",), ("evaluate",), ("validate",), ("demo",)]
EVALUATION_OPTIONS = [
    "--ray-address",
    "--in-process",
    "--cpus-per-evaluation",
    "--gpus-per-evaluation",
    "--evaluation-timeout",
    "--retries",
    "--working-dir",
]


def test_every_command_that_evaluates_takes_the_same_evaluation_options():
    for path in EVALUATING:
        text = help_of(path)
        assert [option for option in EVALUATION_OPTIONS if option not in text] == [], path
        # One name for an evaluation's time limit: no bare --timeout beside --evaluation-timeout.
        assert " --timeout " not in text, path
