"""Rejection protocols: each stage catches what it should, passes good layers, and the chain times itself."""

from __future__ import annotations

import random

import pytest

import evonorm_search as es
from evonorm_search.search import DuplicateIndex, SearchSpace, cheap_rejections, random_graph
from evonorm_search.search.rejection import (
    BoundedDuplicateIndex,
    CheapRejections,
    DuplicateCheck,
    Facts,
    KeyFilter,
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


# -- the controller's bounded index -------------------------------------------------------------------


def _keys(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [f"{rng.getrandbits(256):064x}" for _ in range(count)]


def test_a_key_filter_never_forgets_a_key_and_rarely_claims_one():
    added, never = _keys(5000, seed=1), _keys(20000, seed=2)
    key_filter = KeyFilter(5000, 0.01)
    size = key_filter.nbytes
    for key in added:
        key_filter.add(key)
    assert all(key in key_filter for key in added)
    false_positives = sum(key in key_filter for key in never) / len(never)
    assert false_positives < 0.02  # sized for 1%
    assert key_filter.nbytes == size  # fixed when made
    with pytest.raises(ValueError, match="capacity >= 1"):
        KeyFilter(0)


def test_the_bounded_index_answers_what_the_exact_index_answers():
    # 600 candidates over 250 distinct layers: most keys come back, long after they left `recent`.
    rng = random.Random(3)
    pool = _keys(250, seed=4)
    stored: list[tuple[int, str, str | None]] = []  # (id, hash, fingerprint) in birth order: "the store"
    exact = DuplicateIndex()

    def lookup(column: str, key: str) -> int | None:
        position = 1 if column == "canonical_hash" else 2
        return next((row[0] for row in stored if row[position] == key), None)

    bounded = BoundedDuplicateIndex(600, lookup, recent=8)
    for candidate_id in range(1, 601):
        key = rng.choice(pool)
        print_ = None if rng.random() < 0.3 else key[::-1]
        assert bounded.first_with_hash(key) == exact.first_with_hash(key)
        if print_ is not None:
            assert bounded.first_with_fingerprint(print_) == exact.first_with_fingerprint(print_)
        stored.append((candidate_id, key, print_))
        exact.add(candidate_id, key, print_)
        bounded.add(candidate_id, key, print_)
    for key in pool + _keys(50, seed=5):
        assert bounded.first_with_hash(key) == exact.first_with_hash(key)
    assert all(len(recent) <= 8 for recent in bounded.recent.values())
    assert bounded.lookups > 0  # old keys were found in the store


def test_the_controller_finds_an_old_candidate_in_the_store(any_store):
    """The look-up the bounded index makes, on both backends: the first candidate by birth with the key,
    baselines aside."""
    from evonorm_search import store as db
    from evonorm_search.search.controller import create_search

    from .conftest import tiny_config

    search_id = create_search(any_store, tiny_config())
    layer = es.parse("y = x")
    with any_store.session() as s:
        first = db.add_candidate(
            s, search_id, graph=layer.to_dict(), dsl="y = x", canonical_hash="a" * 64, fingerprint="f" * 64
        )
        db.add_candidate(
            s, search_id, graph=layer.to_dict(), dsl="y = x", canonical_hash="a" * 64, fingerprint="e" * 64
        )
    with any_store.session(readonly=True) as s:
        assert db.first_candidate_with(s, search_id, "canonical_hash", "a" * 64) == first.id
        assert db.first_candidate_with(s, search_id, "fingerprint", "e" * 64) == first.id + 1
        assert db.first_candidate_with(s, search_id, "canonical_hash", "b" * 64) is None
        with pytest.raises(db.InvalidInputError, match="unknown key column"):
            db.first_candidate_with(s, search_id, "dsl", "x")
