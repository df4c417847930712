"""The IR: validation, deduplication, canonical order, JSON form and printing."""

from __future__ import annotations

import math

import pytest

from evonorm_search.ir import OPS, Graph, GraphBuilder, GraphError, Node, parse
from evonorm_search.ir.printer import MAX_INLINE_DEPTH


def test_builder_deduplicates_equal_nodes():
    b = GraphBuilder()
    x1, x2 = b.leaf("x"), b.leaf("x")
    s1, s2 = b.add_node("sigmoid", (x1,)), b.add_node("sigmoid", (x2,))
    assert x1 == x2 and s1 == s2
    assert len(b.nodes) == 2


def test_graph_equality_ignores_construction_order():
    a = GraphBuilder()
    ax = a.leaf("x")
    out_a = a.add_node("mul", (a.add_node("sigmoid", (ax,)), a.add_node("exp", (ax,))))
    b = GraphBuilder()
    bx = b.leaf("x")
    e = b.add_node("exp", (bx,))
    s = b.add_node("sigmoid", (bx,))
    out_b = b.add_node("mul", (s, e))
    assert a.build(out_a) == b.build(out_b)
    assert hash(a.build(out_a)) == hash(b.build(out_b))


def test_graph_construction_merges_duplicates_and_prunes_unreachable_nodes():
    nodes = [Node("x"), Node("x"), Node("exp", (0,)), Node("exp", (1,)), Node("add", (2, 3)), Node("tanh", (0,))]
    g = Graph(nodes, 4)
    assert g == parse("exp(x) + exp(x)")
    assert len(g) == 3
    assert not g.uses("tanh")


def test_negated_constant_folds_everywhere():
    b = GraphBuilder()
    out = b.add_node("mul", (b.leaf("x"), b.add_node("neg", (b.const(2.0),))))
    g = b.build(out)
    assert g == parse("x * -2")
    assert Graph([Node("x"), Node("const", value=2.0), Node("neg", (1,)), Node("mul", (0, 2))], 3) == g


INVALID_NODES = [
    ([Node("nope")], 0, "unknown op 'nope'"),
    ([Node("x"), Node("add", (0,))], 1, "add takes 2 argument"),
    ([Node("x"), Node("exp", (1,))], 1, "must be the index of an earlier node"),
    ([Node("x"), Node("exp", (5,))], 1, "must be the index of an earlier node"),
    ([Node("x"), Node("mean", (0,))], 1, "mean needs an axis"),
    ([Node("x"), Node("mean", (0,), axis="rows")], 1, "mean needs an axis"),
    ([Node("x"), Node("exp", (0,), axis="batch")], 1, "exp takes no axis"),
    ([Node("const", value=math.inf)], 0, "finite float"),
    ([Node("const")], 0, "finite float"),
    ([Node("x", value=1.0)], 0, "only constants carry a value"),
    ([Node("x")], 3, "output 3 is not the index of a node"),
]


@pytest.mark.parametrize(("nodes", "output", "fragment"), INVALID_NODES)
def test_invalid_graphs_raise_graph_error(nodes, output, fragment):
    with pytest.raises(GraphError, match=fragment):
        Graph(nodes, output)


def test_graph_node_limit():
    g = parse("x" + " + x" * 30)
    with pytest.raises(GraphError, match="more than the limit of 10"):
        Graph(g.nodes, g.outputs, max_nodes=10)


def test_dict_round_trip_and_format():
    g = parse("x * sigmoid(v1 * x) / std(x, group)")
    d = g.to_dict()
    assert d["version"] == 1
    assert d["nodes"][0] == {"op": "x"}
    assert any(n.get("axis") == "group" for n in d["nodes"])
    assert Graph.from_dict(d) == g


BAD_DICTS = [
    ([], "a graph must be an object"),
    ({"nodes": [{"op": "x"}]}, "'output' .* is required"),
    ({"nodes": [], "output": 0}, "non-empty list"),
    ({"nodes": "x", "output": 0}, "non-empty list"),
    ({"nodes": [{"op": "x"}], "output": 0, "version": 7}, "unsupported graph format version 7"),
    ({"nodes": [{"op": "x"}], "output": 0, "extra": 1}, "unknown field"),
    ({"nodes": [{"op": "x", "colour": "red"}], "output": 0}, "unknown field"),
    ({"nodes": [3], "output": 0}, "expected an object"),
    ({"nodes": [{"op": 3}], "output": 0}, "'op' must be a string"),
    ({"nodes": [{"op": "x"}, {"op": "exp", "args": "0"}], "output": 1}, "'args' must be a list"),
    ({"nodes": [{"op": "x"}, {"op": "exp", "args": [True]}], "output": 1}, "'args' must be a list"),
    ({"nodes": [{"op": "x"}, {"op": "exp", "args": [1]}], "output": 1}, "earlier node"),
    ({"nodes": [{"op": "x"}, {"op": "mean", "args": [0], "axis": 3}], "output": 1}, "'axis' must be a string"),
    ({"nodes": [{"op": "const", "value": "1"}], "output": 0}, "'value' must be a number"),
    ({"nodes": [{"op": "x"}], "output": 0, "outputs": [0]}, "either 'output' or 'outputs'"),
    ({"nodes": [{"op": "x"}], "output": "0"}, "is not the index of a node"),
]


@pytest.mark.parametrize(("data", "fragment"), BAD_DICTS)
def test_from_dict_rejects_malformed_json_with_a_message(data, fragment):
    with pytest.raises(GraphError, match=fragment):
        Graph.from_dict(data)


def test_from_dict_refuses_more_nodes_than_the_limit_before_building():
    nodes = [{"op": "x"}] + [{"op": "exp", "args": [i]} for i in range(5000)]
    with pytest.raises(GraphError, match="more than the limit"):
        Graph.from_dict({"nodes": nodes, "output": 5000})


def test_structure_queries():
    g = parse("x / max(std(x, batch), v1 * x + std(x, instance)) + mean(v0, batch)")
    assert g.parameters == ("v0", "v1")
    assert g.axes == frozenset({"batch", "instance"})
    assert g.depends_on_x
    assert not parse("v1 * 2").depends_on_x
    assert list(g.running_buffers().values()) == ["running_var_0", "running_mean_1"]
    assert g.depth() == 6  # x, v1*x, +std, max, x/max, + mean


def test_multi_output_graph_has_no_single_output_or_text():
    b = GraphBuilder()
    x = b.leaf("x")
    g = b.build([b.add_node("exp", (x,)), b.add_node("tanh", (x,))])
    assert len(g.outputs) == 2
    with pytest.raises(GraphError, match="2 outputs"):
        _ = g.output
    with pytest.raises(GraphError, match="single-output"):
        g.to_text()


def test_printer_names_shared_subexpressions():
    g = parse("t = v1 * (x - mean(x, group)) / std(x, group) + v0\ny = t * sigmoid(t)")
    text = g.to_text()
    assert text.splitlines()[-1] == "y = t1 * sigmoid(t1)"
    assert parse(text) == g


def test_printer_breaks_chains_deeper_than_the_parser_accepts():
    b = GraphBuilder()
    node = b.leaf("x")
    for _ in range(500):
        node = b.add_node("tanh", (node,))
    g = b.build(node)
    text = g.to_text()
    assert max(line.count("(") for line in text.splitlines()) <= MAX_INLINE_DEPTH + 1
    assert parse(text) == g


def test_printer_parenthesises_by_precedence():
    cases = {
        "(x + v1) * v0": "(x + v1) * v0",
        "x - (v1 - v0)": "x - (v1 - v0)",
        "x - v1 - v0": "x - v1 - v0",
        "x / (v1 * v0)": "x / (v1 * v0)",
        "-(x * v1)": "-(x * v1)",
        "-x * v1": "-x * v1",
        "x * -2.5": "x * -2.5",
        "x + (v1 + v0)": "x + (v1 + v0)",
        "-(-x)": "-(-x)",
        "1e-07 * x": "1e-07 * x",
    }
    for text, printed in cases.items():
        assert parse(text).to_text() == printed


def test_every_public_op_prints_and_parses():
    for name, op in OPS.items():
        if op.internal or op.arity == 0:
            continue
        args = ", ".join(["x", "v1"][: op.arity])
        text = f"{name}(x, group)" if op.stat else f"{name}({args})"
        g = parse(text)
        assert parse(g.to_text()) == g
