"""`export_module(..., kernels=True)`: a standalone module that carries its Triton kernels."""

from __future__ import annotations

import os
import subprocess
import sys
import types

import pytest
import torch

import evonorm_search as es

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def _load(source: str, name: str) -> types.ModuleType:
    module = types.ModuleType(name)
    exec(compile(source, f"{name}.py", "exec"), module.__dict__)
    return module


@pytest.mark.parametrize("layer", ["evonorm_b0", "evonorm_s0", "derf"])
def test_exported_kernels_match_the_layer(layer):
    exported = _load(es.export_module(layer, "Exported", kernels=True), f"exported_{layer}")
    ours = exported.Exported(6, groups=3).double()
    reference = es.NormAct(layer, 6, groups=3, backend="torch").double()
    with torch.no_grad():
        for p in ours.parameters():
            p.uniform_(0.5, 1.5)
    reference.load_state_dict(ours.state_dict())
    x = torch.randn(2, 6, 3, 4, dtype=torch.float64)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = ours(xa), reference(xb)
    assert ya.grad_fn is not None and "LayerFunction" in type(ya.grad_fn).__name__  # the kernel path ran
    ya.square().sum().backward()
    yb.square().sum().backward()
    torch.testing.assert_close(ya, yb, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-10, atol=1e-10)
    for (name, a), (_, b) in zip(ours.named_buffers(), reference.named_buffers(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10, msg=name)


def test_exported_kernels_without_affine():
    exported = _load(es.export_module("rmsnorm", "Plain", kernels=True), "exported_plain")
    x = torch.randn(2, 6, 5)
    torch.testing.assert_close(exported.Plain(6, affine=False)(x), es.NormAct("rmsnorm", 6, affine=False)(x))


def test_an_exported_module_falls_back_to_torch_without_cuda(tmp_path):
    (tmp_path / "layer_s0.py").write_text(es.export_module("evonorm_s0", "S0", kernels=True))
    code = (
        "import torch, layer_s0\n"
        "m = layer_s0.S0(8, groups=4)\n"
        "y = m(torch.randn(2, 8, 4, 4))\n"
        "assert y.grad_fn is not None and 'LayerFunction' not in type(y.grad_fn).__name__\n"
        "assert layer_s0._KERNELS is None  # never executed on the CPU\n"
        "print('fallback ok')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "fallback ok" in out.stdout


def test_kernels_must_be_a_bool():
    with pytest.raises(TypeError, match="kernels must be True or False"):
        es.export_module("relu", "R", kernels="yes")  # type: ignore[arg-type]
