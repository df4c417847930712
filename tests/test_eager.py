"""The eager backend computes the reference's function: values, gradients and running estimates of every
library layer and of random graphs of the search space agree with `backend="torch"`, in train and eval
mode; a layer runs natively exactly when its canonical form is a native row's and the native op can keep
every running estimate it has; and a search gives the same verdicts on either backend."""

from __future__ import annotations

import copy
import pickle
import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import evonorm_search as es
from evonorm_search import eager
from evonorm_search.search import InProcessEvaluator, SearchSpace, random_graph
from evonorm_search.search.controller import create_search, run_search
from evonorm_search.store import CandidateStatus, list_candidates, open_store

from .search.conftest import tiny_config

C = 8
GROUPS = 4
SHAPES = {0: (6, C), 1: (5, C, 7), 2: (4, C, 3, 5), 3: (3, C, 2, 3, 2)}
# What the Triton kernels are held to against the reference (tests/compiler/test_compiler.py), per dtype.
TOLERANCE = {torch.float64: 1e-9, torch.float32: 1e-4}


def _pair(layer: es.Graph | str, dtype: torch.dtype, *, affine: bool = True) -> tuple[es.NormAct, es.NormAct]:
    """A reference module and an eager one with the same (perturbed, so gradients differ) parameters."""
    reference = es.NormAct(layer, C, groups=GROUPS, affine=affine, backend="torch").to(dtype)
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(0.3 * torch.randn_like(p))
    fast = copy.deepcopy(reference)
    fast.backend = "eager"
    return reference, fast


def _assert_same_function(reference: es.NormAct, fast: es.NormAct, x: torch.Tensor, steps: int = 3) -> None:
    """Several train steps then eval: outputs, input and parameter gradients, and buffers agree."""
    tol = TOLERANCE[x.dtype]
    for training in [True] * steps + [False]:
        reference.train(training)
        fast.train(training)
        xr, xf = x.clone().requires_grad_(), x.clone().requires_grad_()
        yr, yf = reference(xr), fast(xf)
        torch.testing.assert_close(yf, yr, rtol=tol, atol=tol, equal_nan=True)
        cotangent = torch.randn_like(yr)
        reference.zero_grad()
        fast.zero_grad()
        (yr * cotangent).sum().backward()
        (yf * cotangent).sum().backward()
        torch.testing.assert_close(xf.grad, xr.grad, rtol=tol, atol=tol, equal_nan=True)
        for (name, pr), (_, pf) in zip(reference.named_parameters(), fast.named_parameters(), strict=True):
            assert (pr.grad is None) == (pf.grad is None), name
            if pr.grad is not None:
                torch.testing.assert_close(pf.grad, pr.grad, rtol=tol, atol=tol, equal_nan=True, msg=name)
        for (name, br), (_, bf) in zip(reference.named_buffers(), fast.named_buffers(), strict=True):
            torch.testing.assert_close(bf, br, rtol=tol, atol=tol, equal_nan=True, msg=name)
        x = x + 0.1 * torch.randn_like(x)


@pytest.mark.parametrize("name", es.library.names())
@pytest.mark.parametrize("spatial", sorted(SHAPES))
def test_every_library_layer_matches_the_reference(name, spatial):
    torch.manual_seed(spatial)
    for dtype in (torch.float64, torch.float32):
        reference, fast = _pair(name, dtype)
        _assert_same_function(reference, fast, torch.randn(SHAPES[spatial], dtype=dtype))
    reference, fast = _pair(name, torch.float64, affine=False)
    _assert_same_function(reference, fast, torch.randn(SHAPES[spatial], dtype=torch.float64), steps=1)


NATIVE_NAMES = [row.name for row in eager.NATIVE]


def test_the_native_rows_are_library_layers_and_bind_to_them():
    assert set(NATIVE_NAMES) <= set(es.library.names())
    for name in es.library.names():
        binding = eager.native_binding(es.library.get(name))
        assert (binding is not None) == (name in NATIVE_NAMES), name


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", NATIVE_NAMES)
def test_native_rows_compute_half_inputs_in_float32_like_the_reference(name, dtype):
    torch.manual_seed(0)
    reference, fast = _pair(name, dtype)
    x = torch.randn(SHAPES[1], dtype=dtype)
    yr, yf = reference(x), fast(x)
    assert yf.dtype == dtype
    torch.testing.assert_close(yf.float(), yr.float(), rtol=2e-2, atol=2e-2)


# The same layers as the library's, written as a search could write them: the match is on the canonical form.
REWRITTEN = {
    "bn_relu": "t1 = std(x, batch)\nt2 = x - mean(x, batch)\ny = relu(v0 + t2 * v1 / t1)",
    "gn_relu": "relu(v0 + (x - mean(x, group)) / std(x, group) * v1)",
    "layernorm": "t1 = x - mean(x, layer)\ny = t1 / std(x, layer)",
    "layernorm_channel": "t1 = x - mean(x, channel)\ny = t1 * (1 / std(x, channel))",
}


@pytest.mark.parametrize("name", sorted(REWRITTEN))
def test_a_layer_written_differently_runs_natively_and_keeps_its_buffers_right(name):
    graph = es.parse(REWRITTEN[name])
    binding = eager.native_binding(graph)
    assert binding is not None and binding.row.name == name
    torch.manual_seed(1)
    reference, fast = _pair(graph, torch.float64)
    _assert_same_function(reference, fast, torch.randn(SHAPES[1], dtype=torch.float64))


def test_a_layer_with_a_running_estimate_the_native_op_cannot_keep_runs_the_reference():
    # Equal to bn_relu up to sympy (1 * x = x, min(a, a) = a), but with a second running mean the native op would leave stale.
    graph = es.parse("relu(v1 * (x - min(mean(x, batch), mean(1 * x, batch))) / std(x, batch) + v0)")
    assert es.canonical_hash(graph) == es.canonical_hash(es.library.get("bn_relu"))
    assert len(graph.running_buffers()) == 3
    assert eager.native_binding(graph) is None
    torch.manual_seed(2)
    reference, fast = _pair(graph, torch.float64)
    _assert_same_function(reference, fast, torch.randn(SHAPES[1], dtype=torch.float64))


def test_a_native_batch_layer_refuses_one_value_per_channel_in_training():
    layer = es.NormAct("bn_relu", C, backend="eager")
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        layer(torch.randn(1, C))


def test_a_native_layer_differentiates_its_gradient_as_the_stability_rejection_does():
    torch.manual_seed(3)
    reference, fast = _pair("gn_relu", torch.float64, affine=False)
    grads = []
    x0, u = torch.randn(SHAPES[1], dtype=torch.float64), torch.randn(SHAPES[1], dtype=torch.float64)
    for layer in (reference, fast):
        x = x0.clone().requires_grad_()
        (g,) = torch.autograd.grad((layer(x) * u).sum(), x, create_graph=True)
        (gg,) = torch.autograd.grad(g.norm(), x)
        grads.append(gg)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-9, atol=1e-9)


def test_an_eager_module_pickles_and_copies_after_running():
    layer = es.NormAct("bn_relu", C, backend="eager")
    x = torch.randn(SHAPES[1])
    layer(x)
    for clone in (pickle.loads(pickle.dumps(layer)), copy.deepcopy(layer)):
        clone.eval()
        layer.eval()
        torch.testing.assert_close(clone(x), layer(x))


def test_auto_runs_the_eager_backend_on_cpu():
    layer = es.NormAct("bn_relu", C)
    assert layer.backend == "auto" and not layer.use_triton(torch.randn(SHAPES[1]))
    layer(torch.randn(SHAPES[1]))
    assert layer._native_binding() is not None


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), spatial=st.sampled_from(sorted(SHAPES)))
def test_random_layers_of_the_search_space_match_the_reference(seed, spatial):
    # NaN where the reference has NaN counts as agreement, in running statistics too: seed 614 draws
    # `t1 = std(log(relu(x)), batch); y = t1 / t1`, whose running variance is NaN on both backends.
    rng = random.Random(seed)
    graph = random_graph(SearchSpace(max_ops=8), rng)
    torch.manual_seed(seed)
    reference, fast = _pair(graph, torch.float64)
    _assert_same_function(reference, fast, torch.randn(SHAPES[spatial], dtype=torch.float64), steps=2)


def _verdicts(tmp_path, backend: str) -> list[tuple[str, str, str | None]]:
    store = open_store(f"sqlite:///{tmp_path / f'{backend}.db'}")
    try:
        config = tiny_config(budget=10, backend=backend, baselines=["bn_relu", "gn_relu"])
        search_id = create_search(store, config)
        evaluator = InProcessEvaluator()
        try:
            run_search(store, search_id, evaluator, poll_interval=0.05)
        finally:
            evaluator.close()
        with store.session(readonly=True) as s:
            candidates = list_candidates(s, search_id, limit=1000).items
        return [(c.dsl, c.status.value, c.rejection_stage) for c in sorted(candidates, key=lambda c: c.id)]
    finally:
        store.close()


def test_a_search_accepts_and_rejects_the_same_candidates_on_either_backend(tmp_path):
    eager_verdicts = _verdicts(tmp_path, "eager")
    assert eager_verdicts == _verdicts(tmp_path, "torch")
    assert any(status == CandidateStatus.EVALUATED.value for _, status, _ in eager_verdicts)
