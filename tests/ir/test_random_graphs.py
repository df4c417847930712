"""1,000 random valid graphs: printing, JSON, hashing, and a forward/backward pass that agrees with an
independent NumPy evaluation of the same graph, non-finite values included."""

from __future__ import annotations

import random

import numpy as np
import pytest
import scipy.special
import torch

import evonorm_search as es
from evonorm_search.search import SearchSpace, random_graph

N_GRAPHS = 1000
SHAPE = (4, 6, 3, 2)
GROUPS = 3
EPS = 1e-5


@pytest.fixture(scope="module")
def graphs() -> list[es.Graph]:
    rng = random.Random(1234)
    return [random_graph(SearchSpace(max_ops=14), rng) for _ in range(N_GRAPHS)]


def test_random_graphs_round_trip_through_text_and_json(graphs):
    for g in graphs:
        assert es.parse(g.to_text()) == g
        assert es.Graph.from_dict(g.to_dict()) == g


def test_random_graphs_hash_stably_and_print_latex(graphs):
    hashes = [es.canonical_hash(g) for g in graphs]
    assert all(es.latex(g) for g in graphs)
    assert not any(es.canonical_form(g).startswith("structural") for g in graphs)
    assert all(len(h) == 64 for h in hashes)
    assert [es.canonical_hash(es.parse(g.to_text())) for g in graphs[:100]] == hashes[:100]
    # Structurally different graphs mostly hash differently (equal ones legitimately collide).
    assert len(set(hashes)) > 0.7 * len(set(graphs))


# -- an independent evaluator: NumPy, float64, written from the DSL's definitions ------------------


def _np_mean(a: np.ndarray, axis: str) -> np.ndarray:
    n, c = a.shape[:2]
    spatial = tuple(range(2, a.ndim))
    if axis == "batch":
        return a.mean(axis=(0, *spatial), keepdims=True)
    if axis == "layer":
        return a.mean(axis=(1, *spatial), keepdims=True)
    if axis == "instance":
        return a.mean(axis=spatial, keepdims=True) if spatial else a
    if axis == "channel":
        return a.mean(axis=1, keepdims=True)
    grouped = a.reshape(n, GROUPS, c // GROUPS, -1)
    m = grouped.mean(axis=(2, 3), keepdims=True)
    return np.broadcast_to(m, grouped.shape).reshape(a.shape)


NP_ELEMENTWISE = {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "div": np.divide,
    "max": np.maximum,
    "min": np.minimum,
    "neg": np.negative,
    "sigmoid": lambda a: 1.0 / (1.0 + np.exp(-a)),
    "tanh": np.tanh,
    "erf": scipy.special.erf,
    "exp": np.exp,
    "log": lambda a: np.sign(a) * np.log(np.abs(a)),
    "abs": np.abs,
    "square": np.square,
    "sqrt": lambda a: np.sign(a) * np.sqrt(np.abs(a)),
    "relu": lambda a: np.maximum(a, 0.0),
}


def _np_aggregate(op: str, a: np.ndarray, axis: str) -> np.ndarray:
    if op == "mean":
        return _np_mean(a, axis)
    if op == "rms":
        return np.sqrt(_np_mean(a * a, axis) + EPS)
    var = _np_mean((a - _np_mean(a, axis)) ** 2, axis)
    return var if op == "var" else np.sqrt(var + EPS)


def _degenerate(op: str, a: np.ndarray, axis: str) -> bool:
    """The variance of a value that is constant along the axis: exactly 0 here, rounding noise of about
    1e-33 in torch's summation order, so whatever is divided by it or logged is noise in both."""
    if op not in ("var", "std"):
        return False
    var = _np_mean((a - _np_mean(a, axis)) ** 2, axis)
    return bool(np.any(np.isfinite(var) & (var <= 1e-24 * (1.0 + _np_mean(a * a, axis)))))


def numpy_forward(g: es.Graph, x: np.ndarray, params: dict[str, np.ndarray]) -> tuple[np.ndarray, bool]:
    """The output, and whether the graph takes the variance of something constant along the axis."""
    vals: list[np.ndarray] = []
    degenerate = False
    with np.errstate(all="ignore"):
        for node in g.nodes:
            if node.op == "x":
                v = x
            elif node.op in ("v0", "v1"):
                v = params[node.op].reshape(1, -1, *([1] * (x.ndim - 2)))
            elif node.op == "eps":
                v = np.float64(EPS)
            elif node.op == "const":
                v = np.float64(node.value)
            elif node.axis is not None:
                operand = np.broadcast_to(vals[node.args[0]], x.shape)
                degenerate = degenerate or _degenerate(node.op, operand, node.axis)
                v = _np_aggregate(node.op, operand, node.axis)
            else:
                v = NP_ELEMENTWISE[node.op](*(vals[a] for a in node.args))
            vals.append(np.asarray(v, dtype=np.float64))
        return np.broadcast_to(vals[g.output], x.shape), degenerate


def test_random_graphs_forward_matches_an_independent_numpy_evaluation(graphs):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(SHAPE, generator=gen, dtype=torch.float64)
    params = {"v0": torch.randn(SHAPE[1], generator=gen, dtype=torch.float64)}
    params["v1"] = 1 + torch.randn(SHAPE[1], generator=gen, dtype=torch.float64)
    mismatched, degenerate = [], 0
    for g in graphs:
        layer = es.NormAct(g, SHAPE[1], groups=GROUPS, eps=EPS, affine=False, backend="torch").double()
        with torch.no_grad():
            for name in g.parameters:
                getattr(layer, name).copy_(params[name])
            ours = layer(x).numpy()
        ref, ill_conditioned = numpy_forward(g, x.numpy(), {k: v.numpy() for k, v in params.items()})
        same_nonfinite = np.array_equal(np.isfinite(ours), np.isfinite(ref))
        finite = np.isfinite(ref) & np.isfinite(ours)
        close = np.allclose(ours[finite], ref[finite], rtol=1e-6, atol=1e-9)
        if not (same_nonfinite and close):
            if ill_conditioned:
                degenerate += 1  # rounding noise divided by rounding noise: no answer to compare
            else:
                mismatched.append(g.to_text())
    assert not mismatched, mismatched[:5]
    assert degenerate < 0.01 * len(graphs)  # the comparison still covers almost every graph


@pytest.mark.parametrize("ndim", [2, 3, 4, 5])
def test_random_graphs_run_forward_and_backward_on_every_rank(graphs, ndim):
    shape = (3, 6, 4, 3, 2)[:ndim]
    gen = torch.Generator().manual_seed(ndim)
    for g in graphs[ndim - 2 :: 4]:
        layer = es.NormAct(g, 6, groups=GROUPS, backend="torch")
        x = torch.randn(shape, generator=gen, requires_grad=True)
        y = layer(x)
        assert y.shape == x.shape and y.dtype == x.dtype
        y.square().mean().backward()
        assert x.grad is not None and x.grad.shape == x.shape
        if torch.isfinite(y).all() and torch.isfinite(x.grad).all():
            for p in layer.parameters():
                assert p.grad is not None and p.grad.shape == (6,)
