"""DSL v1 parser: valid programs, and every kind of malformed input answered with a DSLError."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import evonorm_search as es
from evonorm_search.ir import DSLError, Graph, parse
from evonorm_search.ir.parser import DEFAULT_MAX_DEPTH, MAX_TEXT_BYTES


def test_dsl_error_is_a_value_error_with_position():
    with pytest.raises(ValueError) as info:
        es.parse("a = x\nb = a + foo(x)")
    err = info.value
    assert isinstance(err, es.DSLError)
    assert (err.line, err.column) == (2, 9)
    assert "unknown function 'foo'" in err.message
    assert str(err).startswith("line 2, column 9:")


@pytest.mark.parametrize(
    "text",
    [
        "x * sigmoid(v1 * x) / std(x, group)",
        "# EvoNorm-S0\ny = x * sigmoid(v1 * x) / std(x, group)\n",
        "s = std(x, group)\nx * sigmoid(v1 * x) / s",
        "a = x\r\nb = a * 2\r\nb",
        "y = ((x\n     - mean(x, batch))\n  / std(x, batch))",
        "max(x, -1) + min(v0, v1) - -x",
        "1.5e-3 * x + .5 * x + 2. * x",
        "add(x, mul(v1, sub(x, div(x, 2))))",
        "neg(x) + abs(x) + square(x) + sqrt(x) + log(x) + exp(x) + tanh(x) + erf(x) + relu(x)",
        "var(x, layer) + rms(x, channel) + mean(x, instance) + std(x, batch)",
        "x # trailing comment",
        "\n\n  x  \n\n# done\n",
        "y = eps * x",
    ],
)
def test_valid_programs_parse_and_round_trip(text):
    g = parse(text)
    assert isinstance(g, Graph)
    assert parse(g.to_text()) == g
    assert Graph.from_dict(g.to_dict()) == g


def test_names_shadowing_nothing_and_inlining_give_the_same_graph():
    assert parse("s = std(x, group)\nt = sigmoid(v1 * x)\ny = x * t / s") == parse(
        "x * sigmoid(v1 * x) / std(x, group)"
    )


def test_unused_assignments_are_dropped():
    assert parse("a = exp(x)\ny = x") == parse("x")


def test_bytes_input_is_decoded():
    assert parse(b"relu(x)") == parse("relu(x)")


def test_constant_folding_of_negation_keeps_one_representation():
    assert parse("-1 * x") == parse("(-1) * x") == parse("-(1) * x")
    assert parse("--1 * x") == parse("1 * x")


BAD_PROGRAMS = [
    # (text, line, column, message fragment)
    ("", 1, 1, "empty program"),
    ("   \n\t\n", 1, 1, "empty program"),
    ("# only a comment\n", 1, 1, "empty program"),
    ("foo(x)", 1, 1, "unknown function 'foo'"),
    ("sigmod(x)", 1, 1, "did you mean 'sigmoid'"),
    ("sigmoid(x, x)", 1, 1, "sigmoid takes 1 argument, got 2"),
    ("max(x)", 1, 1, "max takes 2 arguments, got 1"),
    ("exp()", 1, 1, "exp takes 1 argument, got 0"),
    ("mean(x)", 1, 1, "mean needs an axis"),
    ("std(x, group, batch)", 1, 1, "takes an expression and an axis"),
    ("var(x, groups)", 1, 8, "unknown axis 'groups'"),
    ("rms(x, x + 1)", 1, 8, "the axis of rms must be one of"),
    ("x * y", 1, 5, "undefined name 'y'"),
    ("a = b\nb = x\na", 1, 5, "'b' is used before it is assigned"),
    ("a = x\na = x * 2\na", 2, 1, "'a' is assigned twice"),
    ("x = v1 * 2", 1, 1, "'x' is predefined"),
    ("v0 = x", 1, 1, "'v0' is predefined"),
    ("v1 = x", 1, 1, "'v1' is predefined"),
    ("eps = 1", 1, 1, "'eps' is predefined"),
    ("mean = x", 1, 1, "'mean' is a function name"),
    ("group = x", 1, 1, "'group' is an axis name"),
    ("sigmoid * x", 1, 1, "'sigmoid' is a function"),
    ("x * batch", 1, 5, "axis 'batch' can only appear"),
    ("(x + 1", 1, 1, "'(' is never closed"),
    ("x + 1)", 1, 6, "')' has no matching '('"),
    ("exp(x))", 1, 7, "')' has no matching '('"),
    ("x $ 2", 1, 3, "unexpected character '$'"),
    ("x @ 2", 1, 3, "unexpected character '@'"),
    ("x\x00", 1, 2, "stray character"),
    ("x + \x07", 1, 5, "stray character"),
    ("x +", 1, 4, "incomplete"),
    ("x +\ny = x", 1, 4, "incomplete"),
    ("x x", 1, 3, "unexpected 'x'"),
    ("a = x\nb\nc = x", 2, 1, "only the last line may be a bare expression"),
    ("1e999 * x", 1, 1, "out of range"),
    ("y = ", 1, 4, "incomplete"),
    ("= x", 1, 1, "unexpected '='"),
    ("x ** 2", 1, 4, "unexpected '*'"),
    ("x, x", 1, 2, "unexpected ','"),
    ("é + x", 1, 1, "unexpected character 'é'"),
]


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("text", "line", "column", "fragment"), BAD_PROGRAMS)
def test_malformed_programs_name_the_problem_and_position(text, line, column, fragment):
    with pytest.raises(DSLError) as info:
        parse(text)
    err = info.value
    assert fragment in err.message
    assert (err.line, err.column) == (line, column)


@pytest.mark.timeout(30)
def test_binary_junk_is_rejected():
    with pytest.raises(DSLError, match="not UTF-8"):
        parse(bytes(range(256)))
    with pytest.raises(DSLError, match="expected DSL text"):
        parse(12345)  # type: ignore[arg-type]


@pytest.mark.timeout(30)
def test_text_over_one_megabyte_is_rejected_before_parsing():
    with pytest.raises(DSLError, match=f"larger than {MAX_TEXT_BYTES} bytes"):
        parse("x" + " " * MAX_TEXT_BYTES)


@pytest.mark.timeout(30)
def test_deep_nesting_is_rejected_without_recursion_error():
    ok = "(" * DEFAULT_MAX_DEPTH + "x" + ")" * DEFAULT_MAX_DEPTH
    assert parse(ok) == parse("x")
    deep = "exp(" * 100_000 + "x" + ")" * 100_000
    with pytest.raises(DSLError, match="nested deeper than 64") as info:
        parse(deep)
    assert info.value.column == 4 * (DEFAULT_MAX_DEPTH + 1)  # the 65th "(" of "exp("
    with pytest.raises(DSLError, match="nested deeper than 8"):
        parse("(" * 9 + "x" + ")" * 9, max_depth=8)


@pytest.mark.timeout(30)
def test_node_limit_is_configurable():
    chain = "x" + " + x" * 40
    assert len(parse(chain)) == 41
    with pytest.raises(DSLError, match="more than the limit of 20 nodes"):
        parse(chain, max_nodes=20)


@pytest.mark.timeout(30)
def test_long_unary_and_operator_chains_stop_at_the_token_limit():
    for text in ("-" * 900_000 + "x", "x" + "+x" * 400_000, "a = x\n" + "b = a\n" * 100_000):
        with pytest.raises(DSLError, match=r"more than \d+ tokens|assigned twice"):
            parse(text)


@pytest.mark.timeout(60)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=st.sampled_from(list("xv01e+-*/()=,.# \n\tabgmnsqrtpliychu")), max_size=80))
def test_any_text_gives_a_graph_or_a_dsl_error(text):
    try:
        g = parse(text)
    except DSLError as e:
        assert e.line >= 1 and e.column >= 1
        assert e.message
    else:
        assert parse(g.to_text()) == g


@pytest.mark.timeout(60)
@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_give_a_graph_or_a_dsl_error(data):
    with contextlib.suppress(DSLError):
        parse(data)
