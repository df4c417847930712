"""Errors as good as the DSL's: a bad `--target` is exit 2 before anything compiles; unknown library
names and config fields get a suggestion; `--version` and `-h` exist."""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

import evonorm_search as es
from evonorm_search.cli import app
from evonorm_search.cli import layers as layers_cli
from tests.search.conftest import TINY_SEARCH

runner = CliRunner()


@pytest.fixture
def relu_file(tmp_path):
    path = tmp_path / "relu.dsl"
    path.write_text("relu(x)\n")
    return path


@pytest.fixture
def no_compiling(monkeypatch):
    """Any compile fails the test: the target must be refused before one starts."""

    def compile_ahead(*_args, **_kwargs):
        raise AssertionError("compiled for a target that should have been refused")

    monkeypatch.setattr(layers_cli, "compile_ahead", compile_ahead)


@pytest.mark.parametrize(
    ("target", "fragments"),
    [
        ("cuda:12", ["compute capability 12", "did you mean cuda:120", "cuda:90"]),
        ("cuda:9.0", ["did you mean cuda:90"]),
        ("rocm:942", ["does not compile for rocm:942", "cuda:90"]),
    ],
)
def test_a_bad_target_is_exit_2_before_any_compile(relu_file, no_compiling, target, fragments):
    pytest.importorskip("triton.backends.nvidia", reason="Triton's CUDA backend names the targets it knows")
    result = runner.invoke(app, ["check", str(relu_file), "--target", target])
    assert result.exit_code == 2, result.output
    for fragment in fragments:
        assert fragment in result.output, result.output
    assert "valid layer" not in result.output  # refused before the layer is even described


def _config_file(tmp_path, **changes):
    data = yaml.safe_load(TINY_SEARCH)
    data.update(changes)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_an_unknown_config_field_gets_a_suggestion(tmp_path):
    path = _config_file(tmp_path, populaton=3, training={"steps": 5, "batch_sise": 8})
    result = runner.invoke(app, ["run", str(path), "--db", f"sqlite:///{tmp_path / 'x.db'}"])
    assert result.exit_code == 2, result.output
    assert "populaton: Extra inputs are not permitted (did you mean 'population'?)" in result.output
    assert "training.batch_sise: Extra inputs are not permitted (did you mean 'batch_size'?)" in result.output


def test_an_unknown_baseline_name_gets_a_suggestion(tmp_path):
    path = _config_file(tmp_path, baselines=["gn_rleu"])
    result = runner.invoke(app, ["run", str(path), "--db", f"sqlite:///{tmp_path / 'x.db'}"])
    assert result.exit_code == 2, result.output
    assert "unknown layer 'gn_rleu' (did you mean 'gn_relu'?)" in result.output


@pytest.mark.parametrize("command", [["export", "--layer", "gn_rleu"], ["evaluate", "--layer", "gn_rleu"]])
def test_an_unknown_layer_on_the_command_line_gets_a_suggestion(command):
    result = runner.invoke(app, command)
    assert result.exit_code == 2, result.output
    assert "did you mean 'gn_relu'?" in result.output


def test_version_and_short_help():
    version = runner.invoke(app, ["--version"])
    assert version.exit_code == 0 and version.output.strip() == f"evonorm-search {es.__version__}"
    short = runner.invoke(app, ["-h"])
    assert short.exit_code == 0 and "Usage:" in short.output and "status" in short.output
    command = runner.invoke(app, ["check", "-h"])
    assert command.exit_code == 0 and "--target" in command.output
