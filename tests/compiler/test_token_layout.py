"""Transformer hidden states: (N, L, C) storage seen by the layer as the (N, C, L) view `h.transpose(1, 2)`.

The kernels must read that view in place (to them it is channels-last storage), write an output with
the same strides and take the upstream gradient in that layout too: no copy of the input, no
`.contiguous()` anywhere, forward or backward, with the reference path and the Triton path agreeing.
"""

from __future__ import annotations

import pytest
import torch

import evonorm_search as es
from evonorm_search.compiler import runtime

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

# Per-token norms (channel), DyT/Derf (point-wise), PowerNorm-like (batch: over N and L, per channel),
# and a per-sample statistic over tokens and channels (layer).
LAYERS = ["rmsnorm", "layernorm_channel", "dyt", "derf", "bn_relu", "x / std(x, layer)"]
N, L, C = 3, 5, 8


class CopySpy:
    """Records every `.contiguous()` call on a tensor sharing storage with the watched ones."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.watched: set[int] = set()
        self.copies: list[tuple[int, ...]] = []
        original = torch.Tensor.contiguous

        def contiguous(tensor: torch.Tensor, *args, **kwargs):
            if tensor.untyped_storage().data_ptr() in self.watched:
                self.copies.append(tuple(tensor.shape))
            return original(tensor, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, "contiguous", contiguous)

    def watch(self, tensor: torch.Tensor) -> torch.Tensor:
        self.watched.add(tensor.untyped_storage().data_ptr())
        return tensor


def _layer(name: str, backend: str) -> es.NormAct:
    layer = es.NormAct(name, C, groups=2, backend=backend).double()
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.linspace(0.5, 1.5, C, dtype=torch.float64))
    return layer


def _run(name: str, backend: str, spy: CopySpy, training: bool) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    hidden = spy.watch(torch.randn(N, L, C, generator=gen, dtype=torch.float64).requires_grad_(True))
    upstream = spy.watch(torch.randn(N, L, C, generator=gen, dtype=torch.float64))
    layer = _layer(name, backend).train(training)
    x = hidden.transpose(1, 2)  # what a transformer's norm slot hands the layer
    assert x.data_ptr() == hidden.data_ptr() and runtime.channels_last(x) is True
    y = layer(x)
    out = y.transpose(1, 2)
    out.backward(upstream)
    grads = {f"d{n}": p.grad.clone() for n, p in layer.named_parameters()}
    return {
        "out": out.detach(),
        "dx": hidden.grad.clone(),
        **grads,
        "out_contiguous": torch.tensor(out.is_contiguous()),
    }


@pytest.mark.parametrize("name", LAYERS)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_the_token_view_is_read_in_place_and_matches_the_reference(name, training, monkeypatch):
    spy = CopySpy(monkeypatch)
    launched_on: list[int] = []
    original_init = runtime.Geometry.__init__

    def record(self, x, *args, **kwargs):
        launched_on.append(x.untyped_storage().data_ptr())
        original_init(self, x, *args, **kwargs)

    monkeypatch.setattr(runtime.Geometry, "__init__", record)
    reference = _run(name, "torch", spy, training)
    assert not launched_on  # the reference path launches no kernel
    ours = _run(name, "triton", spy, training)
    assert spy.copies == []  # neither path copied the hidden states or the upstream gradient
    # Forward and backward launched on the hidden states' own storage, never on a copy.
    assert launched_on and set(launched_on) <= spy.watched
    assert bool(ours["out_contiguous"])  # the output is (N, L, C) storage again, as the model wants it
    for key, value in reference.items():
        torch.testing.assert_close(ours[key], value, rtol=1e-9, atol=1e-10, msg=key)


def test_the_token_view_has_the_channels_last_layout_class():
    hidden = torch.randn(2, 16, 32)
    assert runtime.layout_class(hidden.transpose(1, 2)) == "channels_last/C:16/S:16"


@pytest.mark.parametrize("name", ["rmsnorm", "layernorm_channel", "dyt"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_token_norms_run_forward_as_one_fused_kernel(name, training, monkeypatch):
    # Per-token statistics: one program holds whole rows, so the forward is a single launch.
    launches: list[str] = []
    original_run = runtime.Geometry._run

    def record(self, kernel, domain, *args, **kwargs):
        launches.append(domain)
        return original_run(self, kernel, domain, *args, **kwargs)

    monkeypatch.setattr(runtime.Geometry, "_run", record)
    layer = _layer(name, "triton").train(training)
    hidden = torch.randn(2, 6, C, dtype=torch.float64)
    with torch.no_grad():
        layer(hidden.transpose(1, 2))
    assert len(launches) == 1, launches
