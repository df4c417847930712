"""Rejection protocols: each stage catches what it should, passes good layers, and the chain times itself."""

from __future__ import annotations

import random

import pytest

import evonorm_search as es
from evonorm_search.search import DuplicateIndex, SearchSpace, cheap_rejections, random_graph
from evonorm_search.search.rejection import (
    CheapRejections,
    DuplicateCheck,
    Facts,
    NumericCheck,
    Rejection,
    StabilityCheck,
    StaticCheck,
)

GOOD = ["gn_relu", "evonorm_s0", "evonorm_b0", "layernorm", "rmsnorm", "in_relu", "bn_relu"]


def graph(text: str) -> es.Graph:
    return es.library.get(text) if text in es.library.names() else es.parse(text)


@pytest.fixture(scope="module")
def numeric():
    return NumericCheck(groups=4, eps=1e-5)


@pytest.fixture(scope="module")
def stability():
    return StabilityCheck(groups=4, eps=1e-5, threshold=1e8, steps=10, step_size=0.5)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("v1 + 1", "does not depend on x"),
        ("x - x", "simplifies to 0"),
        ("sigmoid(x) / sigmoid(x)", "simplifies to 1"),
        ("x * 2", "constant 2.0 is not in the space"),
        ("mean(x, batch)", "axis batch is not in the space"),
        ("tanh(x)", "op tanh is not in the space"),
    ],
)
def test_static_check_rejects_what_needs_no_running(text, fragment):
    space = SearchSpace(ops=("add", "sub", "mul", "div", "sigmoid", "mean", "std"), axes=("group", "layer"))
    rejection = StaticCheck(space).check(graph(text), Facts())
    assert rejection is not None and rejection.stage == "static" and fragment in rejection.reason


def test_static_check_enforces_the_minimum_size_and_accepts_good_layers():
    assert "fewer than min_ops=3" in StaticCheck(SearchSpace(min_ops=3)).check(graph("relu(x)"), Facts()).reason
    for name in GOOD:
        assert StaticCheck(SearchSpace(max_ops=16)).check(graph(name), Facts()) is None


def test_a_negated_constant_is_inside_a_space_that_allows_neg():
    # Graphs fold neg(1) into the constant -1; the space must accept what its own random graphs make.
    assert SearchSpace().contains(graph("x * -1"))
    assert not SearchSpace(ops=("mul", "add")).contains(graph("x * -1"))


def test_duplicates_by_canonical_hash_and_by_fingerprint():
    index = DuplicateIndex()
    check = DuplicateCheck(index)
    first = Facts()
    assert check.check(graph("v1 * x + x"), first) is None
    index.add(11, first.canonical_hash, first.fingerprint)
    same_form = check.check(graph("x + x * v1"), Facts())
    assert same_form == Rejection("duplicate", "same canonical form as candidate 11", 11)
    # mean(mean(x)) equals mean(x) over the same axis: sympy keeps them apart, the fingerprint does not.
    facts = Facts()
    assert check.check(graph("x - mean(x, group)"), facts) is None
    index.add(12, facts.canonical_hash, facts.fingerprint)
    functional = check.check(graph("x - mean(mean(x, group), group)"), Facts())
    assert functional is not None and functional.duplicate_of == 12 and "fingerprint" in functional.reason
    assert index.hits == 2
    without = DuplicateCheck(index, use_fingerprint=False)
    assert without.check(graph("x - mean(mean(x, group), group)"), Facts()) is None


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("x / v0", "non-finite output on random input"),
        ("exp(exp(exp(exp(x))))", "non-finite output on random input"),
        ("mean(x - mean(x, layer), layer)", "the output does not change with x"),
    ],
)
def test_numeric_check(numeric, text, fragment):
    rejection = numeric.check(graph(text), Facts())
    assert rejection is not None and rejection.stage == "numeric" and fragment in rejection.reason


def test_numeric_check_catches_non_finite_gradients(numeric):
    # With v0 = 0 the square root's argument is exactly 0, where its derivative is infinite.
    rejection = numeric.check(graph("x * sqrt(relu(x) - relu(x) + abs(v0))"), Facts())
    assert rejection is not None and rejection.reason == "non-finite gradient on random input"


@pytest.mark.parametrize("name", GOOD)
def test_good_layers_pass_numeric_and_stability(numeric, stability, name):
    facts = Facts()
    assert numeric.check(graph(name), facts) is None
    assert stability.check(graph(name), facts) is None
    assert 0 < facts.gradient_norm < 1e5


@pytest.mark.parametrize("text", ["exp(x)", "exp(exp(x))", "x * exp(square(x))"])
def test_stability_rejects_exploding_gradients(stability, text):
    facts = Facts()
    rejection = stability.check(graph(text), facts)
    assert rejection is not None and rejection.stage == "stability"
    assert "exceeds 1e+08" in rejection.reason or "non-finite input gradient" in rejection.reason


def test_stability_threshold_is_respected():
    text = graph("x * x * x")
    strict = StabilityCheck(groups=4, eps=1e-5, threshold=10.0, steps=3)
    facts = Facts()
    rejection = strict.check(text, facts)
    assert rejection is not None and "exceeds 10" in rejection.reason and facts.gradient_norm > 10
    assert StabilityCheck(groups=4, eps=1e-5, threshold=1e12, steps=3).check(text, Facts()) is None


def test_a_linear_layer_needs_one_ascent_step():
    facts = Facts()
    assert StabilityCheck(groups=4, eps=1e-5, steps=50).check(graph("v1 * x"), facts) is None
    assert facts.gradient_norm == pytest.approx(StabilityCheck(groups=4, eps=1e-5).cotangent.norm().item())


def test_probes_work_for_sequences_too():
    assert NumericCheck(groups=2, eps=1e-5, spatial_dims=1).check(graph("evonorm_s0"), Facts()) is None
    assert StabilityCheck(groups=2, eps=1e-5, spatial_dims=1).check(graph("gn_relu"), Facts()) is None


def test_the_chain_stops_at_the_first_rejection_and_times_each_stage():
    index = DuplicateIndex()
    chain = cheap_rejections(
        SearchSpace(), groups=4, eps=1e-5, spatial_dims=2, index=index, stability={"threshold": 1e8, "steps": 4}
    )
    passed = chain.run(graph("evonorm_s0"))
    assert passed.rejection is None
    assert list(passed.seconds) == ["static", "duplicate", "numeric", "stability"]
    assert passed.facts.canonical_hash == es.canonical_hash(graph("evonorm_s0"))
    assert passed.facts.fingerprint is not None and passed.facts.gradient_norm > 0
    assert passed.cheap_seconds == pytest.approx(sum(passed.seconds[s] for s in ("static", "numeric", "stability")))
    static = chain.run(graph("x - x"))
    assert static.rejection.stage == "static" and list(static.seconds) == ["static"]
    unstable = chain.run(graph("exp(x)"))
    assert unstable.rejection.stage == "stability"


def test_a_check_that_raises_becomes_a_rejection_at_its_stage():
    class Broken:
        stage = "numeric"

        def check(self, graph, facts):
            raise RuntimeError("kernel exploded")

    verdict = CheapRejections([Broken()]).run(graph("x"))
    assert verdict.rejection.stage == "numeric"
    assert "RuntimeError: kernel exploded" in verdict.rejection.reason
    assert "numeric" in verdict.seconds


def test_random_candidates_are_mostly_decided_without_errors():
    space = SearchSpace(max_ops=8)
    chain = cheap_rejections(space, groups=4, eps=1e-5, spatial_dims=2, index=DuplicateIndex(), stability={})
    rng = random.Random(5)
    verdicts = [chain.run(random_graph(space, rng)) for _ in range(60)]
    assert not any("the check failed" in (v.rejection.reason if v.rejection else "") for v in verdicts)
    assert any(v.rejection is None for v in verdicts)
    assert any(v.rejection is not None for v in verdicts)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("x / sigmoid(mean(-1, batch))", "constant arithmetic 'mean(-1, batch)'"),
        ("x / sigmoid(mean(v1, batch))", "statistic of an expression without x 'mean(v1, batch)'"),
        ("x - var(v0, instance)", "statistic of an expression without x 'var(v0, instance)'"),
        ("x * sigmoid(1)", "constant arithmetic 'sigmoid(1)'"),
        ("x / (1 / 1)", "constant arithmetic '1 / 1'"),
    ],
)
def test_static_check_rejects_wasted_structure(text, fragment):
    verdict = StaticCheck(SearchSpace()).check(es.parse(text), Facts())
    assert verdict is not None and verdict.stage == "static" and fragment in verdict.reason


def test_static_check_keeps_parameter_arithmetic_and_statistics_of_x():
    for text in ("x / relu(tanh(v1))", "x * sigmoid(v1 * x) / std(x, group)", "x - mean(x * v0, layer)"):
        assert StaticCheck(SearchSpace()).check(es.parse(text), Facts()) is None, text
