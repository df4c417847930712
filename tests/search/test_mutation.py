"""Mutations: every child is a valid graph that depends on x, fits the space and differs from its parent."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import evonorm_search as es
from evonorm_search.search import DeleteNode, InsertNode, Mutator, ReplaceOp, RewireInput, SearchSpace, random_graph
from evonorm_search.search.mutation import RANDOM_RESTART, Editable, make_mutations

SPACES = {
    "default": SearchSpace(max_ops=10),
    "batch_free": SearchSpace(axes=("group", "instance", "layer"), max_ops=8),
    "narrow": SearchSpace(ops=("mul", "sigmoid", "std"), axes=("group",), leaves=("x", "v1"), max_ops=4),
    "no_aggregations": SearchSpace(ops=("add", "mul", "tanh", "neg"), axes=(), max_ops=5),
    "sized": SearchSpace(min_ops=3, max_ops=5),
}
MUTATIONS = (ReplaceOp(), RewireInput(), InsertNode(), DeleteNode())


def check_child(child: es.Graph, parent: es.Graph, space: SearchSpace) -> None:
    assert isinstance(child, es.Graph) and child != parent
    assert child.depends_on_x
    assert space.contains(child), space.violations(child)
    assert space.min_ops <= space.op_count(child) <= space.max_ops
    assert es.parse(child.to_text()) == child


@settings(max_examples=150, deadline=None)
@given(space_name=st.sampled_from(sorted(SPACES)), seed=st.integers(0, 2**32 - 1))
def test_the_mutator_always_yields_a_valid_new_graph_inside_the_space(space_name, seed):
    space = SPACES[space_name]
    rng = random.Random(seed)
    parent = random_graph(space, rng)
    child, name = Mutator(space).mutate(parent, rng)
    check_child(child, parent, space)
    assert name in {m.name for m in MUTATIONS} | {RANDOM_RESTART}


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), which=st.integers(0, 3))
def test_each_mutation_builds_a_valid_graph_or_declines(seed, which):
    space = SPACES["default"]
    rng = random.Random(seed)
    parent = random_graph(space, rng)
    child = MUTATIONS[which].apply(parent, space, rng)
    assert child is None or isinstance(child, es.Graph)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_chains_of_mutations_stay_inside_the_space(seed):
    space = SPACES["batch_free"]
    rng = random.Random(seed)
    graph = random_graph(space, rng)
    mutator = Mutator(space)
    for _ in range(20):
        child, _ = mutator.mutate(graph, rng)
        check_child(child, graph, space)
        graph = child


def test_library_layers_mutate_within_a_space_that_holds_them():
    space = SearchSpace(max_ops=14)
    rng = random.Random(0)
    for name in es.library.names():
        parent = es.library.get(name)
        if not space.contains(parent):
            continue
        for _ in range(10):
            child, _ = Mutator(space).mutate(parent, rng)
            check_child(child, parent, space)


def test_replace_op_changes_one_op():
    space = SearchSpace()
    parent = es.parse("x * sigmoid(v1 * x)")
    rng = random.Random(1)
    children = {ReplaceOp().apply(parent, space, rng) for _ in range(50)} - {None}
    assert children
    for child in children:
        assert abs(space.op_count(child) - space.op_count(parent)) <= 2  # a new arity may pull in inputs


def test_insert_and_delete_change_the_size_by_one_op():
    space = SearchSpace()
    parent = es.parse("x * sigmoid(v1 * x)")
    rng = random.Random(2)
    for _ in range(30):
        grown = InsertNode().apply(parent, space, rng)
        if grown is not None and grown.depends_on_x:
            assert space.op_count(grown) <= space.op_count(parent) + 1
        shrunk = DeleteNode().apply(parent, space, rng)
        if shrunk is not None:
            assert space.op_count(shrunk) < space.op_count(parent)


def test_insert_after_the_output_keeps_the_old_output_as_an_input():
    space = SearchSpace(ops=("tanh",), axes=())
    child = InsertNode().apply(es.parse("x"), space, random.Random(0))
    assert child == es.parse("tanh(x)")


def test_delete_node_bypasses_the_node():
    space = SearchSpace(ops=("tanh", "sigmoid"), axes=())
    parent = es.parse("tanh(sigmoid(x))")
    seen = {DeleteNode().apply(parent, space, random.Random(s)) for s in range(20)}
    assert seen == {es.parse("tanh(x)"), es.parse("sigmoid(x)")}


def test_rewire_input_points_an_input_elsewhere():
    space = SearchSpace(ops=("add",), axes=(), leaves=("x", "v1"), constants=())
    parent = es.parse("x + v1")
    seen = {RewireInput().apply(parent, space, random.Random(s)) for s in range(40)} - {None}
    assert seen <= {es.parse("x + x"), es.parse("v1 + v1")}
    assert seen


def test_a_space_with_nowhere_to_go_falls_back_to_a_random_restart():
    # One op, one leaf, exactly one op allowed: tanh(x) is the only graph, so no mutation can be new.
    space = SearchSpace(ops=("tanh",), axes=(), leaves=("x",), constants=(), min_ops=1, max_ops=1)
    child, name = Mutator(space, max_attempts=10).mutate(es.parse("tanh(x)"), random.Random(0))
    assert name == RANDOM_RESTART and child == es.parse("tanh(x)")


def test_editable_lists_space_leaves_first_so_any_node_may_use_them():
    space = SearchSpace()
    e = Editable.of(es.parse("sigmoid(x)"), space)
    assert [n.op for n in e.nodes[: e.first_inner]] == ["x", "v0", "v1", "const"]
    assert [e.nodes[i].op for i in e.inner()] == ["sigmoid"]


def test_unknown_mutation_names_are_refused():
    with pytest.raises(ValueError, match=r"unknown mutation\(s\) \['swap'\]"):
        make_mutations(["swap"])
    with pytest.raises(ValueError, match="at least one mutation"):
        Mutator(SearchSpace(), [])


def test_normalize_node_divides_an_edge_or_the_output_by_its_own_statistic():
    from evonorm_search.search.mutation import NormalizeNode

    space = SearchSpace(ops=("min", "div", "rms"), axes=("group",))
    parent = es.parse("min(v1, x)")
    seen = {NormalizeNode().apply(parent, space, random.Random(s)) for s in range(40)}
    assert seen == {
        es.parse("min(v1, x / rms(x, group))"),
        es.parse("min(v1 / rms(v1, group), x)"),
        es.parse("t1 = min(v1, x)\ny = t1 / rms(t1, group)"),
    }
    for child in seen:
        check_child(child, parent, space)


@pytest.mark.parametrize("ops", [("min", "rms"), ("min", "div", "mean", "var")])
def test_normalize_node_needs_a_division_and_a_scale_statistic(ops):
    from evonorm_search.search.mutation import NormalizeNode

    space = SearchSpace(ops=ops, axes=("group",))
    assert all(NormalizeNode().apply(es.parse("min(v1, x)"), space, random.Random(s)) is None for s in range(10))


def test_normalize_node_is_opt_in():
    from evonorm_search.search import SearchConfig
    from evonorm_search.search.mutation import DEFAULT_MUTATIONS, NormalizeNode

    assert NormalizeNode.name not in DEFAULT_MUTATIONS
    assert [m.name for m in Mutator(SearchSpace()).mutations] == list(DEFAULT_MUTATIONS)
    assert SearchConfig.from_yaml("name: x").mutations == list(DEFAULT_MUTATIONS)
    chosen = SearchConfig.from_yaml("name: x\nmutations: [insert_node, normalize_node]").mutations
    assert [m.name for m in make_mutations(chosen)] == ["insert_node", "normalize_node"]
