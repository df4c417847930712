"""POST /layers/check: canonical text, canonical form, LaTeX and hash, or exactly where the DSL is wrong."""

from __future__ import annotations

import pytest

import evonorm_search as es
from service.formulas import formula_size

from .conftest import client_for, settings_for

CHECK = "/api/v1/layers/check"
S0 = "y = x * sigmoid(v1 * x) / std(x, group)"


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('layers') / 'evonorm.db'}"
    with client_for(settings_for(url, max_layer_chars=2000, max_formula_size=200)) as client:
        yield client


def test_a_valid_layer_gets_its_symbolic_forms_and_hash(client):
    response = client.post(CHECK, json={"dsl": S0})
    assert response.status_code == 200, response.text
    body = response.json()
    graph = es.parse(S0)
    assert body == {
        "text": graph.to_text(),
        "canonical": es.canonical_form(graph),
        "latex": es.latex(graph),
        "hash": es.canonical_hash(graph),
        "nodes": len(graph),
        "parameters": ["v1"],
        "axes": ["group"],
        "depends_on_x": True,
    }


def test_equal_layers_written_differently_share_the_hash(client):
    first = client.post(CHECK, json={"dsl": "x * sigmoid(v1 * x) / std(x, group)"}).json()
    second = client.post(CHECK, json={"dsl": "a = sigmoid(x * v1)\n# comment\ny = (a * x) / std(x, group)"}).json()
    assert first["hash"] == second["hash"]
    assert first["canonical"] == second["canonical"]


def test_text_plain_bodies_are_read_as_the_layer(client):
    response = client.post(CHECK, content=S0.encode(), headers={"Content-Type": "text/plain; charset=utf-8"})
    assert response.status_code == 200
    assert response.json()["hash"] == es.canonical_hash(es.parse(S0))


@pytest.mark.parametrize(
    ("dsl", "line", "column"),
    [
        ("y = x * sigmoid(v1 * x", 1, None),
        ("a = x\nb = frobnicate(a)", 2, 5),
        ("a = x\nb = mean(a, sideways)", 2, None),
        ("y = z + 1", 1, 5),
        ("", 1, 1),
        ("\x00\x01", 1, None),
    ],
)
def test_bad_dsl_is_422_with_line_and_column(client, dsl: str, line: int, column: int | None):
    response = client.post(CHECK, json={"dsl": dsl})
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "dsl_error"
    with pytest.raises(es.DSLError) as raised:
        es.parse(dsl)
    assert (body["line"], body["column"]) == (raised.value.line, raised.value.column)
    assert body["line"] == line
    if column is not None:
        assert body["column"] == column
    assert body["message"].startswith(f"line {body['line']}, column {body['column']}: ")


@pytest.mark.parametrize(
    "body",
    [{"text": S0}, {"dsl": 5}, {"dsl": S0, "extra": 1}, [S0], "just a string", None, {"dsl": [[[[[S0]]]]]}],
)
def test_malformed_json_bodies_are_422(client, body):
    response = client.post(CHECK, json=body)
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_request"


def test_overlong_layers_are_refused_before_parsing(client):
    response = client.post(CHECK, json={"dsl": "y = x" + " " * 3000})
    assert response.status_code == 422
    assert "limit is 2000 characters" in response.json()["message"]


def test_layers_whose_written_out_formula_explodes_are_refused_quickly(client):
    # Each line uses the previous one twice: 30 lines write out to ~2^30 operations (sympy would never finish).
    lines = ["y0 = x"] + [f"y{i} = sigmoid(y{i - 1}) * x + std(y{i - 1}, group)" for i in range(1, 31)]
    graph = es.parse("\n".join(lines))
    assert formula_size(graph) > 2**30
    response = client.post(CHECK, json={"dsl": "\n".join(lines)})
    assert response.status_code == 422
    assert response.json()["code"] == "formula_too_large"
    assert "more than 200 operations" in response.json()["message"]


def test_formula_size_counts_shared_subexpressions_each_time_they_are_used():
    assert formula_size(es.parse("x")) == 1
    assert formula_size(es.parse("a = sigmoid(x)\ny = a * a")) == 5  # mul(sigmoid(x), sigmoid(x))
    # div(mul(x, sigmoid(mul(v1, x))), std(x)): 7 graph nodes, x written three times
    assert (len(es.parse(S0)), formula_size(es.parse(S0))) == (7, 9)


def test_json_nested_deeper_than_python_recurses_is_422(client):
    response = client.post(CHECK, content=b'{"dsl": ' + b"[" * 100_000, headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert response.json()["message"] == "the body's JSON nests too deeply"
