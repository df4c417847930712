"""Every library layer against an independent implementation: torch.nn.functional's norms and the
published EvoNorm formulas written directly in torch. Train and eval mode, forward and gradients of
the input and of every parameter, running estimates included."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import evonorm_search as es

C, G, EPS, MOMENTUM = 8, 4, 1e-5, 0.1
REQUIRED = {
    "bn_relu", "gn_relu", "in_relu", "layernorm", "layernorm_channel", "rmsnorm",
    "evonorm_b0", "evonorm_b1", "evonorm_b2", "evonorm_s0", "evonorm_s1", "evonorm_s2", "identity", "dyt", "derf",
}  # fmt: skip


def test_library_lists_the_required_layers_with_sources():
    assert set(es.library.names()) >= REQUIRED
    for name in es.library.names():
        assert es.library.source(name).lstrip().startswith("#")
        assert es.library.get(name) == es.parse(es.library.source(name))
        assert es.library.description(name)
        assert es.library.find(es.library.get(name)) == name
    with pytest.raises(KeyError, match="no library layer named 'nope'"):
        es.library.source("nope")


def _cl(t: torch.Tensor) -> torch.Tensor:
    return t.movedim(1, -1)


def _uncl(t: torch.Tensor) -> torch.Tensor:
    return t.movedim(-1, 1)


def _view(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return v.view(1, -1, *([1] * (x.dim() - 2)))


def _instance_var(x):
    return x.var(dim=tuple(range(2, x.dim())), unbiased=False, keepdim=True)


def _instance_ms(x):
    return x.square().mean(dim=tuple(range(2, x.dim())), keepdim=True)


def _group_stats(x, square_mean=False):
    n = x.shape[0]
    g = x.reshape(n, G, -1)
    s = g.square().mean(-1, keepdim=True) if square_mean else g.var(-1, unbiased=False, keepdim=True)
    return s.expand_as(g).reshape(x.shape)


class BatchVar:
    """BatchNorm-style running variance kept by the reference formulas of EvoNorm-B*."""

    def __init__(self):
        self.running_var = torch.ones(C, dtype=torch.float64)

    def __call__(self, x, training):
        if not training:
            return _view(self.running_var, x)
        dims = (0, *range(2, x.dim()))
        var = x.var(dim=dims, unbiased=False)
        n = x.numel() / x.shape[1]
        with torch.no_grad():
            self.running_var.mul_(1 - MOMENTUM).add_(MOMENTUM * var.detach() * n / (n - 1))
        return _view(var, x)


def reference_layer(name: str):
    """(forward(x, p, training) -> y, names of NormAct parameters it reads, running-stat getter)."""
    bv = BatchVar()
    bn_state = {"mean": torch.zeros(C, dtype=torch.float64), "var": torch.ones(C, dtype=torch.float64)}

    def bn_relu(x, p, training):
        return F.relu(F.batch_norm(x, bn_state["mean"], bn_state["var"], p["v1"], p["v0"], training, MOMENTUM, EPS))

    def affine(y, p, x):
        return y * _view(p["weight"], x) + _view(p["bias"], x)

    forms = {
        "bn_relu": lambda x, p, t: affine(bn_relu(x, p, t), p, x),
        "gn_relu": lambda x, p, t: affine(F.relu(F.group_norm(x, G, p["v1"], p["v0"], EPS)), p, x),
        "in_relu": lambda x, p, t: affine(
            F.relu(F.instance_norm(x, weight=p["v1"], bias=p["v0"], eps=EPS, use_input_stats=True)), p, x
        ),
        "layernorm": lambda x, p, t: affine(F.layer_norm(x, x.shape[1:], eps=EPS), p, x),
        "layernorm_channel": lambda x, p, t: _uncl(F.layer_norm(_cl(x), (C,), p["weight"], p["bias"], EPS)),
        "rmsnorm": lambda x, p, t: _uncl(F.rms_norm(_cl(x), (C,), p["weight"], EPS)) + _view(p["bias"], x),
        "evonorm_b0": lambda x, p, t: affine(
            x / torch.maximum((bv(x, t) + EPS).sqrt(), _view(p["v1"], x) * x + (_instance_var(x) + EPS).sqrt()), p, x
        ),
        "evonorm_b1": lambda x, p, t: affine(
            x / torch.maximum((bv(x, t) + EPS).sqrt(), (x + 1) * (_instance_ms(x) + EPS).sqrt()), p, x
        ),
        "evonorm_b2": lambda x, p, t: affine(
            x / torch.maximum((bv(x, t) + EPS).sqrt(), (_instance_ms(x) + EPS).sqrt() - x), p, x
        ),
        "evonorm_s0": lambda x, p, t: affine(
            x * torch.sigmoid(_view(p["v1"], x) * x) / (_group_stats(x) + EPS).sqrt(), p, x
        ),
        "evonorm_s1": lambda x, p, t: affine(F.silu(x) / (_group_stats(x) + EPS).sqrt(), p, x),
        "evonorm_s2": lambda x, p, t: affine(F.silu(x) / (_group_stats(x, True) + EPS).sqrt(), p, x),
        "gn_silu": lambda x, p, t: affine(F.silu(F.group_norm(x, G, p["v1"], p["v0"], EPS)), p, x),
        "relu": lambda x, p, t: affine(F.relu(x), p, x),
        "identity": lambda x, p, t: affine(x, p, x),
        # DyT's alpha is 0.5 * v1 (see dyt.dsl); Derf's alpha and shift are v1 and v0.
        "dyt": lambda x, p, t: affine(torch.tanh(0.5 * _view(p["v1"], x) * x), p, x),
        "derf": lambda x, p, t: affine(torch.special.erf(_view(p["v1"], x) * x + _view(p["v0"], x)), p, x),
    }
    running = {
        "bn_relu": lambda: {"running_mean_0": bn_state["mean"], "running_var_1": bn_state["var"]},
        "evonorm_b0": lambda: {"running_var_0": bv.running_var},
        "evonorm_b1": lambda: {"running_var_0": bv.running_var},
        "evonorm_b2": lambda: {"running_var_0": bv.running_var},
    }
    return forms[name], running.get(name, dict)


SHAPES = {2: (16, C), 3: (6, C, 5), 4: (4, C, 5, 3), 5: (3, C, 3, 2, 4)}


def _layers_and_ranks():
    for name in es.library.names():
        for rank in SHAPES:
            if name in ("evonorm_s0", "evonorm_s1", "evonorm_s2", "gn_silu", "gn_relu") or rank > 2:
                yield name, rank
            elif name not in ("in_relu", "evonorm_b0", "evonorm_b1", "evonorm_b2"):
                yield name, rank  # instance statistics over no spatial dims are degenerate on 2-D input


@pytest.mark.parametrize(("name", "rank"), list(_layers_and_ranks()))
def test_library_layer_matches_independent_implementation(name, rank):
    torch.manual_seed(rank)
    layer = es.NormAct(name, C, groups=G, eps=EPS, momentum=MOMENTUM, backend="torch").double()
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn(C, dtype=torch.float64) * 0.5 + 1.0)
    ref_params = {k: v.detach().clone().requires_grad_(True) for k, v in layer.named_parameters()}
    forward, running = reference_layer(name)
    for training in (True, True, False):
        layer.train(training)
        x = torch.randn(SHAPES[rank], dtype=torch.float64) * 2 + 0.3
        x_ours = x.clone().requires_grad_(True)
        x_ref = x.clone().requires_grad_(True)
        y_ours = layer(x_ours)
        y_ref = forward(x_ref, ref_params, training)
        torch.testing.assert_close(y_ours, y_ref, rtol=1e-9, atol=1e-10)
        upstream = torch.randn_like(y_ref)
        y_ours.backward(upstream)
        y_ref.backward(upstream)
        torch.testing.assert_close(x_ours.grad, x_ref.grad, rtol=1e-8, atol=1e-9)
        for pname, p in layer.named_parameters():
            torch.testing.assert_close(p.grad, ref_params[pname].grad, rtol=1e-8, atol=1e-9, msg=pname)
            p.grad = None
            ref_params[pname].grad = None
        for buf_name, value in running().items():
            torch.testing.assert_close(getattr(layer, buf_name), value, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["evonorm_s0", "gn_relu", "bn_relu", "layernorm", "rmsnorm", "evonorm_b0"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_inputs_compute_statistics_in_float32(name, dtype):
    torch.manual_seed(0)
    layer32 = es.NormAct(name, C, groups=G, backend="torch")
    layer16 = es.NormAct(name, C, groups=G, backend="torch")
    x = (torch.randn(4, C, 6, 6) * 3 + 5).to(dtype)  # a large mean: float16 statistics would lose it
    y16 = layer16(x)
    y32 = layer32(x.float())
    assert y16.dtype == dtype
    torch.testing.assert_close(y16.float(), y32.to(dtype).float(), rtol=0, atol=0)
    y16.float().sum().backward()
    for name_, buf in layer16.named_buffers():
        torch.testing.assert_close(buf, getattr(layer32, name_))


class PaperDyT(torch.nn.Module):
    """DyT as its paper writes it, on (N, L, C) tokens: one scalar alpha (initialised to 0.5), weight, bias."""

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = torch.nn.Parameter(torch.full((1,), 0.5, dtype=torch.float64))
        self.weight = torch.nn.Parameter(torch.ones(channels, dtype=torch.float64))
        self.bias = torch.nn.Parameter(torch.zeros(channels, dtype=torch.float64))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.alpha * tokens) * self.weight + self.bias


def test_fresh_dyt_starts_where_the_paper_starts_and_its_alpha_gradient_is_the_channel_sum():
    torch.manual_seed(0)
    ours = es.NormAct("dyt", C, backend="torch").double()
    paper = PaperDyT(C)
    tokens = torch.randn(3, 7, C, dtype=torch.float64) * 3
    y_paper = paper(tokens)
    y_ours = ours(tokens.transpose(1, 2)).transpose(1, 2)
    torch.testing.assert_close(y_ours, y_paper, rtol=1e-12, atol=1e-12)
    upstream = torch.randn_like(y_paper)
    y_paper.backward(upstream)
    y_ours.backward(upstream)
    # alpha = 0.5 * v1, so d/d(v1) is 0.5 * d/d(alpha): per channel here, summed over channels in the paper.
    torch.testing.assert_close(ours.v1.grad.sum(), 0.5 * paper.alpha.grad[0], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ours.weight.grad, paper.weight.grad, rtol=1e-10, atol=1e-12)
