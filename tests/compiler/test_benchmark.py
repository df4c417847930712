"""benchmarks/kernels.py cannot rot: its smoke mode runs the whole pipeline on the CPU interpreter, and
without CUDA the real run refuses clearly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "kernels.py"


def _run(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"} | {"TRITON_CACHE_DIR": str(tmp_path / "tc")}
    return subprocess.run(
        [sys.executable, "-W", "ignore", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=600
    )


def test_smoke_mode_writes_every_section(tmp_path):
    out = _run(
        "--smoke", "--layers", "evonorm_s0,bn_relu", "--dtypes", "float32", "--output", str(tmp_path), tmp_path=tmp_path
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = (tmp_path / "kernels-smoke.md").read_text()
    for heading in ("## Time per call", "## Bandwidth of ours", "## Cold compile", "## Training step", "## Token rows"):
        assert heading in report
    for name in ("rmsnorm", "layernorm_channel", "dyt"):
        assert f"| {name} | 10x8 | float32 |" in report
    assert "not a measurement" in report
    assert "| evonorm_s0 | 2x8x3x3 | float32 |" in report and "| bn_relu | 2x8x3x3 | float32 |" in report
    assert "| BatchNorm2d+ReLU (native) |" in report and "| evonorm_s0 (ours) |" in report


@pytest.mark.skipif(torch.cuda.is_available(), reason="with CUDA the real benchmark would run")
def test_without_cuda_the_benchmark_refuses(tmp_path):
    out = _run("--output", str(tmp_path), tmp_path=tmp_path)
    assert out.returncode == 2
    assert "needs a CUDA device" in out.stderr and "--smoke" in out.stderr
    assert not list(tmp_path.glob("kernels-*.md"))


def test_bad_arguments_are_rejected(tmp_path):
    out = _run("--smoke", "--layers", "batchnorm", tmp_path=tmp_path)
    assert out.returncode == 2 and "unknown layer(s) ['batchnorm']" in out.stderr
