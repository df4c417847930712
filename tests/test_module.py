"""NormAct: construction, input checks, parameters and buffers, running estimates, eval mode, dtypes,
layouts, and what the README claims about torch.compile and TorchScript."""

from __future__ import annotations

import random

import pytest
import torch

import evonorm_search as es
from evonorm_search.search import SearchSpace, random_graph


def test_accepts_a_graph_dsl_text_or_library_name():
    g = es.parse("x * sigmoid(v1 * x) / std(x, group)")
    assert es.NormAct(g, 8).graph == g
    assert es.NormAct("x * sigmoid(v1 * x) / std(x, group)", 8).graph == g
    assert es.NormAct("evonorm_s0", 8).graph == g


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"num_features": 0}, "num_features must be a positive integer"),
        ({"num_features": 2.5}, "num_features must be a positive integer"),
        ({"num_features": True}, "num_features must be a positive integer"),
        ({"groups": 0}, "groups must be a positive integer"),
        ({"eps": -1.0}, "eps must be a finite number >= 0"),
        ({"eps": float("nan")}, "eps must be a finite number >= 0"),
        ({"momentum": 1.5}, "momentum must be a number in \\[0, 1\\]"),
        ({"backend": "cuda"}, "backend must be one of auto, torch, eager, triton"),
    ],
)
def test_bad_constructor_arguments(kwargs, fragment):
    args = {"num_features": 8} | kwargs
    with pytest.raises(ValueError, match=fragment):
        es.NormAct("evonorm_s0", args.pop("num_features"), **args)


def test_bad_layer_arguments():
    with pytest.raises(es.DSLError, match="unknown function"):
        es.NormAct("foo(x)", 8)
    with pytest.raises(TypeError, match="expected a Graph, DSL text or a library name"):
        es.NormAct(42, 8)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("channels", "groups", "expected"), [(64, 32, 32), (48, 32, 24), (8, 32, 8), (7, 4, 1), (30, 4, 3)]
)
def test_groups_fall_back_to_the_largest_divisor_below(channels, groups, expected):
    assert es.effective_groups(channels, groups) == expected
    assert es.NormAct("evonorm_s0", channels, groups=groups).groups == expected


def test_parameters_and_buffers_follow_the_graph():
    layer = es.NormAct("evonorm_b0", 6)
    assert set(dict(layer.named_parameters())) == {"v1", "weight", "bias"}
    assert set(dict(layer.named_buffers())) == {"running_var_0"}
    assert torch.equal(layer.v1, torch.ones(6)) and torch.equal(layer.weight, torch.ones(6))
    assert torch.equal(layer.bias, torch.zeros(6)) and torch.equal(layer.running_var_0, torch.ones(6))
    plain = es.NormAct("gn_relu", 6, affine=False)
    assert set(dict(plain.named_parameters())) == {"v0", "v1"}
    assert plain.weight is None and plain.bias is None
    assert torch.equal(plain.v0, torch.zeros(6))


@pytest.mark.parametrize(
    ("x", "error", "fragment"),
    [
        (torch.randn(4), ValueError, "0 to 3 spatial dims"),
        (torch.randn(2, 8, 2, 2, 2, 2), ValueError, "0 to 3 spatial dims"),
        (torch.randn(2, 5, 3), ValueError, "expected 8 channels"),
        (torch.ones(2, 8, 3, dtype=torch.int64), TypeError, "floating-point"),
        ([[1.0]], TypeError, "expected a tensor"),
    ],
)
def test_bad_inputs_raise_clear_errors(x, error, fragment):
    with pytest.raises(error, match=fragment):
        es.NormAct("evonorm_s0", 8, groups=4)(x)


def test_batch_statistics_need_more_than_one_value_per_channel_in_training():
    layer = es.NormAct("bn_relu", 8)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        layer(torch.randn(1, 8))
    layer.eval()
    assert layer(torch.randn(1, 8)).shape == (1, 8)


def test_running_estimates_follow_batchnorm_convention():
    layer = es.NormAct("x / std(x, batch) + mean(x, batch) + rms(x, batch)", 3, momentum=0.25).double()
    x = torch.randn(5, 3, 4, dtype=torch.float64) + 2
    layer(x)
    n = 5 * 4
    dims = (0, 2)
    var_unbiased = x.var(dim=dims, unbiased=True)
    torch.testing.assert_close(layer.running_var_0, 0.75 * 1 + 0.25 * var_unbiased)
    torch.testing.assert_close(layer.running_mean_1, 0.25 * x.mean(dim=dims))
    torch.testing.assert_close(layer.running_sqmean_2, 0.75 + 0.25 * x.square().mean(dim=dims))
    assert n > 1


def test_eval_output_of_any_graph_never_depends_on_the_rest_of_the_batch():
    rng = random.Random(7)
    space = SearchSpace(max_ops=10)
    for _ in range(60):
        g = random_graph(space, rng)
        layer = es.NormAct(g, 6, groups=2).double()
        layer(torch.randn(8, 6, 3, dtype=torch.float64))  # move running estimates off their init
        layer.eval()
        x = torch.randn(8, 6, 3, dtype=torch.float64)
        torch.testing.assert_close(layer(x)[:1], layer(x[:1]), equal_nan=True)


def test_eval_mode_passes_no_gradient_through_running_estimates():
    layer = es.NormAct("x - mean(x, batch)", 4).eval()
    x = torch.randn(3, 4, 2, requires_grad=True)
    layer(x).sum().backward()
    torch.testing.assert_close(x.grad, torch.ones_like(x))


def test_channels_last_input_gives_the_same_result():
    layer = es.NormAct("gn_relu", 8, groups=4)
    x = torch.randn(2, 8, 5, 5)
    torch.testing.assert_close(layer(x.to(memory_format=torch.channels_last)), layer(x))


def test_output_owns_its_memory_even_for_constant_layers():
    layer = es.NormAct("v1 * 2", 4, affine=False)
    y = layer(torch.randn(2, 4, 3))
    y.add_(1)  # would fail on an expanded view
    assert y.shape == (2, 4, 3)


def test_module_moves_between_dtypes_and_keeps_state_dict_keys():
    layer = es.NormAct("evonorm_b0", 4).double()
    y = layer(torch.randn(3, 4, 2, dtype=torch.float64))
    assert y.dtype == torch.float64
    assert list(layer.state_dict()) == ["v1", "weight", "bias", "running_var_0"]
    assert "evonorm_b0" not in repr(layer) and "x / max(std(x, batch)" in repr(layer)


def test_torch_compile_matches_eager():
    torch._dynamo.reset()
    layer = es.NormAct("evonorm_s0", 8, groups=4)
    compiled = torch.compile(layer, backend="aot_eager", fullgraph=True)
    x = torch.randn(2, 8, 4, 4, requires_grad=True)
    torch.testing.assert_close(compiled(x), layer(x))
    compiled(x).sum().backward()
    assert x.grad is not None


def test_torch_compile_with_inductor_runs_a_batch_layer_in_train_and_eval():
    torch._dynamo.reset()
    layer = es.NormAct("evonorm_b0", 4)
    reference = es.NormAct("evonorm_b0", 4)
    compiled = torch.compile(layer)
    x = torch.randn(3, 4, 3, 3)
    torch.testing.assert_close(compiled(x), reference(x))
    torch.testing.assert_close(layer.running_var_0, reference.running_var_0)
    layer.eval()
    reference.eval()
    torch.testing.assert_close(compiled(x), reference(x))


def test_pickled_module_round_trips(tmp_path):
    layer = es.NormAct("evonorm_b0", 4)
    layer(torch.randn(3, 4, 2))
    path = tmp_path / "layer.pt"
    torch.save(layer, path)
    loaded = torch.load(path, weights_only=False)
    x = torch.randn(3, 4, 2)
    torch.testing.assert_close(loaded.eval()(x), layer.eval()(x))
