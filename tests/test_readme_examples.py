"""Every example on the README's front page runs: its Python blocks are executed, and each shell command is
either run through the command line (against a small search this module runs first) or listed in
NOT_RUN with the reason it is not. A new command, or a code block in a language this module does not
know, fails here until it is run or listed."""

from __future__ import annotations

import itertools
import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from evonorm_search.cli import app
from tests import optional_packages
from tests.search.test_baselines import small_config

REPOSITORY = Path(__file__).resolve().parents[1]
README = (REPOSITORY / "README.md").read_text(encoding="utf-8")
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
SHELL = {"bash", "sh", "shell", "console"}
KNOWN = SHELL | {"python"}

# Commands the README shows that the suite does not run, each with the reason.
NOT_RUN = {
    "make demo": "a real 200-candidate search on local Ray, then a server: minutes; tests/cli/test_demo.py runs it small",
    "make test": "the test suite itself",
    "evonorm-search run examples/quick.yaml": (
        "a 200-candidate search with its ladder, about 8 minutes on 2 idle cores; the fixture below runs `run` on "
        "a tiny config"
    ),
}
# Options the suite adds: the test's database, and no Ray (each evaluation in the test's process).
READS_A_DATABASE = {"status", "pareto", "candidates", "candidate", "report", "validate", "export", "resume"}
IN_PROCESS = {"run", "resume", "evaluate", "validate"}


def blocks(language: set[str]) -> list[str]:
    return [body for lang, body in BLOCK.findall(README) if lang in language]


def shell_commands() -> list[str]:
    """Each command of the README's shell blocks, comments and `$ ` prompts dropped, output lines skipped."""
    commands = []
    for lang, body in BLOCK.findall(README):
        if lang not in SHELL:
            continue
        for line in body.splitlines():
            if lang == "console":
                if not line.startswith("$ "):
                    continue  # the output shown after a command
                line = line[2:]
            command = line.split(" #", 1)[0].strip()
            if command and not command.startswith("#"):
                commands.append(command)
    return commands


def test_every_code_block_is_in_a_language_this_module_runs():
    languages = {lang for lang, _ in BLOCK.findall(README)}
    assert languages <= KNOWN, f"blocks in {sorted(languages - KNOWN)}: run them here or change their language"


def test_the_readme_shows_the_two_commands_and_a_quick_start():
    commands = shell_commands()
    assert commands[:2] == ["make demo", "make test"]
    for name in ("run", "status", "pareto", "report", "validate", "export"):
        assert any(c.split()[:2] == ["evonorm-search", name] for c in commands), name


def test_every_shell_command_is_run_or_listed_with_a_reason():
    unknown = [c for c in shell_commands() if c not in NOT_RUN and not c.startswith("evonorm-search ")]
    assert not unknown, f"not run and not in NOT_RUN: {unknown}"
    shown = set(shell_commands())
    assert not set(NOT_RUN) - shown, f"NOT_RUN lists commands the README no longer shows: {set(NOT_RUN) - shown}"


@pytest.fixture(scope="module")
def search_db(tmp_path_factory) -> str:
    """Search 1: a real `run` of a tiny config with baselines and a tiny target task (so `validate` runs)."""
    folder = tmp_path_factory.mktemp("readme")
    config = folder / "tiny.yaml"
    config.write_text(small_config(budget=8).to_yaml())
    db = f"sqlite:///{folder / 'evonorm.db'}"
    result = CliRunner().invoke(app, ["run", str(config), "--db", db, "--no-live", "--in-process"])
    assert result.exit_code == 0, result.output
    assert "search 1" in result.output
    return db


RUN = [c for c in shell_commands() if c.startswith("evonorm-search ") and c not in NOT_RUN]


@pytest.mark.parametrize("command", RUN)
def test_each_shell_command_runs(command, search_db, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = shlex.split(command)[1:]
    if args[0] in READS_A_DATABASE:
        args += ["--db", search_db]
    if args[0] in IN_PROCESS:
        args += ["--in-process"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, (command, result.output, result.exception)
    assert result.output.strip(), command
    for flag, value in itertools.pairwise(args):
        if flag == "-o":  # a file it says it writes is written
            assert (tmp_path / value).stat().st_size > 0, command


@pytest.mark.parametrize("index", range(len(blocks({"python"}))))
def test_each_python_block_runs(index, tmp_path, monkeypatch):
    code = blocks({"python"})[index]
    if re.search(r"^import torchvision|^from torchvision", code, re.M):
        optional_packages.torchvision()  # a skip that says why, where torchvision cannot be imported
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"README.md python block {index}", "exec"), {"__name__": "__readme__"})
