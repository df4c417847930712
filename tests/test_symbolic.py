"""Symbolic forms: equal layers written differently collide; different layers do not."""

from __future__ import annotations

import os
import random
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import evonorm_search as es
from evonorm_search.ir import Graph, GraphBuilder
from evonorm_search.search import SearchSpace, random_graph

EQUAL_PAIRS = [
    ("v1 * x", "x * v1"),
    ("x * 1", "x"),
    ("x + 0", "x"),
    ("-(-x)", "x"),
    ("s = std(x, group)\nx / s", "x / std(x, group)"),
    ("x * 0.5", "x / 2"),
    ("max(x, v1)", "max(v1, x)"),
    ("min(x, sigmoid(1))", "min(sigmoid(1), x)"),
    ("relu(x)", "max(x, 0)"),
    ("x + x", "2 * x"),
    ("x * x", "square(x)"),
    ("(x + v0) * v1 - v1 * (v0 + x)", "0 * x"),
    ("x * sigmoid(v1 * x) / std(x, group)", "sigmoid(x * v1) * x / std(x, group)"),
    ("erf(-x)", "-erf(x)"),  # erf is odd
    ("erf(v1 * x + v0)", "erf(v0 + x * v1)"),
]

DIFFERENT = [
    "x",
    "x / std(x, group)",
    "x / std(x, layer)",
    "x / rms(x, group)",
    "x / sqrt(var(x, group) + eps)",
    "x * sigmoid(x)",
    "x * sigmoid(v1 * x)",
    "erf(x)",
    "tanh(x)",
    "max(x, v1)",
    "min(x, v1)",
    "x - mean(x, batch)",
    "x - mean(x, instance)",
]


@pytest.mark.parametrize(("a", "b"), EQUAL_PAIRS)
def test_equal_layers_written_differently_collide(a, b):
    assert es.canonical_hash(es.parse(a)) == es.canonical_hash(es.parse(b))


def test_different_layers_do_not_collide():
    hashes = {es.canonical_hash(es.parse(t)) for t in DIFFERENT}
    assert len(hashes) == len(DIFFERENT)
    library_hashes = {es.canonical_hash(es.library.get(n)) for n in es.library.names()}
    assert len(library_hashes) == len(es.library.names())


def test_hash_is_stable_across_processes():
    text = "x / max(std(x, batch), v1 * x + std(x, instance))"
    code = f"import evonorm_search as es; print(es.canonical_hash(es.parse({text!r})))"
    outputs = set()
    for seed in ("0", "1", "12345"):
        env = os.environ | {"PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        outputs.add(out.stdout.strip())
    assert outputs == {es.canonical_hash(es.parse(text))}


def test_latex_renders_the_library_formulas():
    assert es.latex(es.library.get("evonorm_s0")) == (
        r"\frac{x \sigma\left(v_{1} x\right)}{\sqrt{\epsilon + \sigma^{2}_{\mathrm{group}}\left(x\right)}}"
    )
    assert r"\max\left(" in es.latex(es.library.get("evonorm_b0"))
    assert r"\mu_{\mathrm{channel}}\left(x^{2}\right)" in es.latex(es.library.get("rmsnorm"))
    assert str(es.to_sympy(es.parse("x * 2"))) == "2*x"
    assert es.latex(es.library.get("derf")) == r"\operatorname{erf}{\left(v_{0} + v_{1} x \right)}"
    assert es.latex(es.library.get("dyt")) == r"\tanh{\left(\frac{v_{1} x}{2} \right)}"


def test_canonical_form_survives_deep_graphs():
    b = GraphBuilder()
    node = b.leaf("x")
    for _ in range(900):
        node = b.add_node("sigmoid", (node,))
    assert len(es.canonical_hash(b.build(node))) == 64


def test_fingerprint_catches_what_the_symbolic_form_misses():
    a, b = es.parse("mean(mean(x, group), group)"), es.parse("mean(x, group)")
    assert es.canonical_hash(a) != es.canonical_hash(b)
    assert es.fingerprint(a) == es.fingerprint(b)
    c, d = es.parse("abs(relu(x))"), es.parse("relu(x)")
    assert es.fingerprint(c) == es.fingerprint(d)
    assert es.fingerprint(es.parse("x / std(x, group)")) != es.fingerprint(es.parse("x / std(x, layer)"))
    assert es.fingerprint(es.parse("x * v0")) != es.fingerprint(es.parse("x * v1"))


def _commuted(g: Graph, rng: random.Random) -> Graph:
    """The same layer with the arguments of commutative ops randomly swapped."""
    b = GraphBuilder()
    remap: list[int] = []
    for n in g.nodes:
        args = [remap[a] for a in n.args]
        if n.op in ("add", "mul", "max", "min") and rng.random() < 0.5:
            args.reverse()
        remap.append(b.add_node(n.op, args, n.axis, n.value))
    return b.build(remap[g.output])


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_hash_ignores_commutation_and_printing(seed):
    rng = random.Random(seed)
    g = random_graph(SearchSpace(max_ops=10), rng)
    h = es.canonical_hash(g)
    assert es.canonical_hash(_commuted(g, rng)) == h
    assert es.canonical_hash(es.parse(g.to_text())) == h


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_equal_hash_implies_equal_fingerprint(seed):
    rng = random.Random(seed)
    g = random_graph(SearchSpace(max_ops=8), rng)
    assert es.fingerprint(_commuted(g, rng)) == es.fingerprint(g)


def _doubling_chain(levels: int) -> es.Graph:
    text = "a0 = x\n" + "".join(f"a{i} = a{i - 1} * sigmoid(a{i - 1} + {i})\n" for i in range(1, levels + 1))
    return es.parse(text + f"a{levels}")


def test_formulas_too_large_to_write_out_are_refused_quickly(tmp_path):
    from evonorm_search.symbolic import MAX_FORMULA_SIZE, FormulaTooLarge, formula_size

    g = _doubling_chain(40)  # 120 nodes, a formula of 2^40 operations: sympy would never finish
    assert len(g) < 200 and formula_size(g) >= 2**40  # counted up to a cap of 2^40
    with pytest.raises(FormulaTooLarge, match=f"more than {MAX_FORMULA_SIZE} operations"):
        es.latex(g)
    assert es.canonical_form(g).startswith("structural[FormulaTooLarge]")
    assert es.canonical_hash(g) == es.canonical_hash(es.parse(g.to_text()))
    assert es.canonical_hash(g) != es.canonical_hash(_doubling_chain(41))
    exported = es.export_module(g, class_name="Big")
    assert "(not printed: the formula has more than" in exported
    namespace: dict = {}
    exec(compile(exported, "big.py", "exec"), namespace)  # the structural form, several lines, stays in place
    assert namespace["PROVENANCE"]["canonical_form"] == es.canonical_form(g)
    assert "\n".join("    " + line for line in es.canonical_form(g).splitlines()) in namespace["__doc__"]
    assert es.latex(_doubling_chain(8)).startswith(r"x \sigma\left(x + 1\right)")  # small enough: printed
