"""The symbolic backend's table: the sympy form of every op and leaf of `ir.ops`, by name.

`symbolic.py` builds a layer's expression from these forms for its canonical hash and LaTeX. The
canonical hashes of stored candidates depend on them, so a form changes only with `HASH_VERSION`.
`SYMPY` is keyed by the op name of its `ir.ops` row (`tests/ir/test_tables.py` fails on a row missing
here): an element-wise form is f(*args), an aggregation's f(arg, axis name), a leaf's f(value), where
value is a constant's float (None for other leaves). The compiler's inputs (grad, weight, bias) have
no row: they are never part of a layer's formula.

Custom functions print as readable LaTeX and never auto-evaluate, so the canonical form stays a
faithful picture of the graph (sympy only applies identities that hold for these ops).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sympy

from .ir.ops import PARAMETERS, format_number

# --------------------------------------------------------------------------------------------------
# Functions sympy has no form of
# --------------------------------------------------------------------------------------------------


def _with_power(body: str, exp: str | None) -> str:
    # sympy asks for f(a)^n in one go when it prints a power of a function.
    return body if exp is None else rf"{body}^{{{exp}}}"


class _Named(sympy.Function):
    """A one-argument function printed as \\operatorname{name}(arg)."""

    latex_name = ""

    def _latex(self, printer: Any, exp: str | None = None) -> str:
        return _with_power(rf"{self.latex_name}\left({printer._print(self.args[0])}\right)", exp)


class Sigmoid(_Named):
    latex_name = r"\sigma"


class SignedLog(_Named):
    latex_name = r"\operatorname{slog}"


class SignedSqrt(_Named):
    latex_name = r"\operatorname{ssqrt}"


class _Statistic(sympy.Function):
    """stat(arg, axis): a statistic of `arg` over `axis`, broadcast back to the input's shape."""

    symbol = ""

    def _latex(self, printer: Any, exp: str | None = None) -> str:
        arg, axis = self.args
        body = rf"{self.symbol}_{{\mathrm{{{axis}}}}}\left({printer._print(arg)}\right)"
        return _with_power(rf"\left({body}\right)" if exp is not None else body, exp)


class Mean(_Statistic):
    symbol = r"\mu"


class Var(_Statistic):
    symbol = r"\sigma^{2}"


class _Extremum(sympy.Function):
    """max/min that never needs to compare its arguments (sympy.Max refuses sigmoid(1) and friends).

    Arguments are sorted canonically, so max(a, b) and max(b, a) are one expression, and
    max(a, a) is a. Two plain numbers evaluate.
    """

    nargs = 2
    latex_name = ""
    numeric: Any = None

    @classmethod
    def eval(cls, a: sympy.Expr, b: sympy.Expr) -> sympy.Expr | None:
        if a == b:
            return a
        if a.is_Number and b.is_Number:
            return cls.numeric(a, b)
        if sympy.default_sort_key(a) > sympy.default_sort_key(b):
            return cls(b, a)
        return None

    def _latex(self, printer: Any, exp: str | None = None) -> str:
        a, b = (printer._print(arg) for arg in self.args)
        return _with_power(rf"{self.latex_name}\left({a}, {b}\right)", exp)


class Maximum(_Extremum):
    latex_name = r"\max"
    numeric = sympy.Max


class Minimum(_Extremum):
    latex_name = r"\min"
    numeric = sympy.Min


EPS_SYMBOL = sympy.Symbol("epsilon", positive=True)


def _axis_symbol(axis: str) -> sympy.Symbol:
    return sympy.Symbol(axis)


def parameter_symbol(name: str) -> Callable[[Any], sympy.Expr]:
    """A parameter's form: v0 is the symbol v_0 (a parameter not named v<k> keeps its name)."""
    index = name[1:] if name[:1] == "v" and name[1:].isdigit() else name
    symbol = sympy.Symbol(f"v_{index}" if index != name else name)
    return lambda value: symbol


# --------------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------------

SYMPY: dict[str, Callable[..., sympy.Expr]] = {
    # Leaves
    "x": lambda value: sympy.Symbol("x"),
    **{name: parameter_symbol(name) for name in PARAMETERS},
    "eps": lambda value: EPS_SYMBOL,
    "const": lambda value: sympy.Rational(format_number(value)),
    # Element-wise
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "max": Maximum,
    "min": Minimum,
    "neg": lambda a: -a,
    "sigmoid": Sigmoid,
    "tanh": sympy.tanh,
    "erf": sympy.erf,
    "exp": sympy.exp,
    "log": SignedLog,
    "abs": sympy.Abs,
    "square": lambda a: a**2,
    "sqrt": SignedSqrt,
    "relu": lambda a: Maximum(a, sympy.Integer(0)),
    "sign": sympy.sign,
    "heaviside": lambda a: sympy.Heaviside(a, 0),
    "gt_half": lambda a, b: sympy.Heaviside(a - b, sympy.Rational(1, 2)),
    "gate": lambda g, a: g * sympy.Heaviside(a, 0),
    "gate_half": lambda g, a, b: g * sympy.Heaviside(a - b, sympy.Rational(1, 2)),
    # Aggregations
    "mean": lambda a, axis: Mean(a, _axis_symbol(axis)),
    "var": lambda a, axis: Var(a, _axis_symbol(axis)),
    "std": lambda a, axis: sympy.sqrt(Var(a, _axis_symbol(axis)) + EPS_SYMBOL),
    "rms": lambda a, axis: sympy.sqrt(Mean(a**2, _axis_symbol(axis)) + EPS_SYMBOL),
}
