"""`evonorm-search layers`, `check` and `export --layer`."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

import evonorm_search as es
from evonorm_search.cli import app

runner = CliRunner()


def test_layers_lists_the_library_with_formulas():
    result = runner.invoke(app, ["layers"])
    assert result.exit_code == 0
    for name in es.library.names():
        assert name in result.output
    assert "x * sigmoid(v1 * x) / std(x, group)" in result.output


def test_check_prints_canonical_form_latex_and_hash(tmp_path):
    path = tmp_path / "s0.dsl"
    path.write_text("# EvoNorm-S0\ny = x * sigmoid(v1 * x) / std(x, group)\n")
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 0, result.output
    g = es.library.get("evonorm_s0")
    assert es.canonical_hash(g) in result.output
    assert es.latex(g) in result.output
    assert "canonical:" in result.output and "Sigmoid(" in result.output


def test_check_reads_stdin():
    result = runner.invoke(app, ["check", "-"], input="relu(x)\n")
    assert result.exit_code == 0
    assert es.canonical_hash(es.parse("relu(x)")) in result.output


@pytest.mark.parametrize(
    ("text", "position", "fragment"),
    [
        ("x * sigmod(x)\n", "1:5", "unknown function 'sigmod'"),
        ("a = x\nb = mean(a)\nb", "2:5", "mean needs an axis"),
        ("(x + 1\n", "1:1", "never closed"),
        ("", "1:1", "empty program"),
    ],
)
def test_check_exits_2_with_the_error_and_its_position(tmp_path, text, position, fragment):
    path = tmp_path / "bad.dsl"
    path.write_text(text)
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 2
    assert f"bad.dsl:{position}" in result.output
    assert fragment in result.output


def test_check_compiles_every_kernel_for_a_gpu_target_without_a_gpu(tmp_path):
    pytest.importorskip("triton.backends.nvidia", reason="Triton's CUDA backend (Linux wheels) compiles here")
    path = tmp_path / "rms.dsl"
    path.write_text("x / rms(x, group)\n")
    result = runner.invoke(app, ["check", str(path), "--target", "cuda:90"])
    assert result.exit_code == 0, result.output
    assert "kernels for cuda:90" in result.output and "bfloat16" in result.output
    assert "compiles for cuda:90 (all kernels" in result.output


def test_check_refuses_a_target_it_cannot_compile_for(tmp_path):
    pytest.importorskip("triton.backends.nvidia", reason="Triton's CUDA backend (Linux wheels) compiles here")
    path = tmp_path / "relu.dsl"
    path.write_text("relu(x)\n")
    result = runner.invoke(app, ["check", str(path), "--target", "rocm:942"])
    assert result.exit_code == 2
    assert "does not compile for rocm:942" in result.output and "cuda:90" in result.output


def test_check_missing_and_binary_files(tmp_path):
    result = runner.invoke(app, ["check", str(tmp_path / "nope.dsl")])
    assert result.exit_code == 2 and "no such file" in result.output
    binary = tmp_path / "junk.dsl"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    result = runner.invoke(app, ["check", str(binary)])
    assert result.exit_code == 2 and "not UTF-8" in result.output


def test_export_library_layer_and_file(tmp_path):
    out = tmp_path / "s0.py"
    result = runner.invoke(app, ["export", "--layer", "evonorm_s0", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "class EvonormS0(nn.Module)" in out.read_text()
    layer_file = tmp_path / "my_layer.dsl"
    layer_file.write_text("x / rms(x, channel)")
    result = runner.invoke(app, ["export", "--layer", str(layer_file), "--class-name", "MyNorm"])
    assert result.exit_code == 0
    assert "class MyNorm(nn.Module)" in result.output
    compile(result.output, "exported.py", "exec")


def test_export_errors(tmp_path):
    assert runner.invoke(app, ["export"]).exit_code == 2
    result = runner.invoke(app, ["export", "--layer", "no_such_layer"])
    assert result.exit_code == 2 and "neither a library layer" in result.output
    result = runner.invoke(app, ["export", "--layer", "evonorm_s0", "--class-name", "not valid"])
    assert result.exit_code == 2 and "class_name must be a Python identifier" in result.output


def test_console_script_is_installed():
    proc = subprocess.run(
        [sys.executable, "-m", "evonorm_search", "check", "-"],
        input="x / std(x, layer)",
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "hash:" in proc.stdout
