"""The op table: the single source of truth for every primitive of the layer language.

Each row names a primitive and says everything the rest of the system needs to know about it: its
arity, how PyTorch computes it (a callable for the reference module and a source template for the
exporter), its sympy form (for canonical hashing and LaTeX), its Triton expression template (for the
kernel compiler), its derivative rule (for the autodiff pass) and how the printer writes it.

Adding an op is adding one row here. No other module keeps a list of op names: the parser, the
validator, mutation, the reference module, the exporter, the compiler and the LaTeX printer all read
`OPS` and `AXES`.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sympy
import torch


class Kind(enum.Enum):
    """What a row is: a leaf (no inputs), an element-wise function, or an aggregation over an axis."""

    LEAF = "leaf"
    ELEMENTWISE = "elementwise"
    AGGREGATION = "aggregation"


# --------------------------------------------------------------------------------------------------
# Axes
# --------------------------------------------------------------------------------------------------

# Each axis' reference reduction: the mean of `t` (shape (N, C, *spatial)) over the axis, kept
# broadcastable against `t`. The reference module and exported modules run exactly these functions
# (the exporter copies their source), so they stay TorchScript-compatible and self-contained.


def mean_over_batch(t: torch.Tensor, groups: int) -> torch.Tensor:
    return t.mean(dim=[0] + list(range(2, t.dim())), keepdim=True)  # noqa: RUF005 (TorchScript has no [*a])


def mean_over_layer(t: torch.Tensor, groups: int) -> torch.Tensor:
    return t.mean(dim=list(range(1, t.dim())), keepdim=True)


def mean_over_group(t: torch.Tensor, groups: int) -> torch.Tensor:
    n, c = t.shape[0], t.shape[1]
    ones = [1] * (t.dim() - 2)
    grouped = t.reshape([n, groups, c // groups] + list(t.shape[2:]))  # noqa: RUF005 (TorchScript)
    m = grouped.mean(dim=list(range(2, grouped.dim())), keepdim=True)
    return m.expand([n, groups, c // groups] + ones).reshape([n, c] + ones)  # noqa: RUF005 (TorchScript)


def mean_over_instance(t: torch.Tensor, groups: int) -> torch.Tensor:
    if t.dim() == 2:  # no spatial dims: each statistic covers one element
        return t
    return t.mean(dim=list(range(2, t.dim())), keepdim=True)


def mean_over_channel(t: torch.Tensor, groups: int) -> torch.Tensor:
    return t.mean(dim=1, keepdim=True)


@dataclass(frozen=True)
class AxisDef:
    """One aggregation axis. `uses_batch` marks axes whose statistics mix the samples of a batch."""

    name: str
    description: str
    uses_batch: bool
    reduce: Callable[[torch.Tensor, int], torch.Tensor]


AXES: dict[str, AxisDef] = {
    a.name: a
    for a in (
        AxisDef("batch", "over N and the spatial dims, per channel (BatchNorm statistics)", True, mean_over_batch),
        AxisDef("layer", "over C and the spatial dims, per sample", False, mean_over_layer),
        AxisDef("group", "over C/groups channels and the spatial dims, per sample and group", False, mean_over_group),
        AxisDef("instance", "over the spatial dims, per sample and channel", False, mean_over_instance),
        AxisDef("channel", "over C, per sample and position", False, mean_over_channel),
    )
}


# --------------------------------------------------------------------------------------------------
# Torch helpers for the ops whose definition is not a single torch call. The exporter copies their
# source into generated modules, so keep each one self-contained and TorchScript-compatible.
# --------------------------------------------------------------------------------------------------


def signed_log(a: torch.Tensor) -> torch.Tensor:
    """log(a) = sign(a) * ln|a|: defined for negative inputs, odd like the identity."""
    return torch.sign(a) * torch.log(torch.abs(a))


def signed_sqrt(a: torch.Tensor) -> torch.Tensor:
    """sqrt(a) = sign(a) * sqrt|a|."""
    return torch.sign(a) * torch.sqrt(torch.abs(a))


def heaviside(a: torch.Tensor) -> torch.Tensor:
    """1 where a > 0, else 0 (the derivative of relu, as autograd takes it)."""
    return (a > 0).to(a.dtype)


def gt_half(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """1 where a > b, 1/2 where a == b, 0 where a < b (how autograd splits max/min gradients at ties)."""
    return (a > b).to(a.dtype) + 0.5 * (a == b).to(a.dtype)


TORCH_HELPERS: tuple[Callable[..., torch.Tensor], ...] = (signed_log, signed_sqrt, heaviside, gt_half)


# --------------------------------------------------------------------------------------------------
# Sympy forms. Custom functions print as readable LaTeX and never auto-evaluate, so the canonical form
# stays a faithful picture of the graph (sympy only applies identities that hold for these ops).
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


# --------------------------------------------------------------------------------------------------
# Statistics behind the aggregations. `{r}` stands for the axis' mean-and-broadcast-back function
# (`mean_over_<axis>(t, groups)` below). `stat_src` is the statistic a `batch` aggregation keeps a
# running estimate of; `finish_src` turns that statistic ({s}) into the aggregation's value (in eval
# mode it is applied to the running estimate).
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StatDef:
    """How an aggregation is computed and what a `batch` aggregation tracks between batches."""

    running_name: str  # buffer name prefix: running_<running_name>_<k>
    init: float  # initial value of the running buffer
    unbiased_running: bool  # BatchNorm stores the unbiased variance; we follow it
    stat_src: str  # template over {a} (operand) and {r} (reduction function)
    finish_src: str  # template over {s} (statistic); `eps` is the layer's epsilon


# Variance in two passes (mean first) rather than E[a^2] - E[a]^2: no catastrophic cancellation.
_CENTRAL_SECOND_MOMENT = "{r}(torch.square({a} - {r}({a}, groups)), groups)"
MEAN_STAT = StatDef("mean", 0.0, False, "{r}({a}, groups)", "{s}")
VAR_STAT = StatDef("var", 1.0, True, _CENTRAL_SECOND_MOMENT, "{s}")
STD_STAT = StatDef("var", 1.0, True, _CENTRAL_SECOND_MOMENT, "torch.sqrt({s} + eps)")
RMS_STAT = StatDef("sqmean", 1.0, False, "{r}(torch.square({a}), groups)", "torch.sqrt({s} + eps)")


# --------------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------------

# A derivative rule receives (b, args, out, g, axis): `b` builds graph expressions (see
# GradBuilder in autodiff), `args` are the node's inputs, `out` the node itself and `g` the
# gradient flowing into it, all as expression handles supporting + - * / and unary minus. It
# returns one gradient per argument, or None where the argument gets no gradient.
GradRule = Callable[..., tuple[Any, ...]]


@dataclass(frozen=True)
class OpDef:
    """One primitive of the layer language."""

    name: str
    arity: int
    kind: Kind
    summary: str
    torch_src: str | None = None  # PyTorch source template ({0}, {1}) for the reference and exports
    sympy: Callable[..., sympy.Expr] | None = None  # element-wise: f(*args); aggregation: f(arg, axis)
    # Triton expression template ({0}, {1}) for generated kernels. Aggregations: the finish applied to
    # their statistic ({0}: the plane `stat.running_name`); `eps` and `accurate_tanh` are defined by
    # the compiler's kernels and kernel library. NaN propagates as in torch (max/min/relu/sign).
    triton: str | None = None
    grad: GradRule | None = None  # None: no gradient flows through (leaves, step functions)
    stat: StatDef | None = None  # aggregations only
    infix: str | None = None  # printed as an operator rather than a call
    precedence: int = 100  # printer precedence of the infix/prefix form
    internal: bool = False  # not part of the DSL: only the autodiff pass creates it
    parameter: bool = False  # a trainable per-channel vector (v0, v1)
    param_init: float = 0.0


# d/da erf(a) = 2/sqrt(pi) * exp(-a^2)
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)


def _one_minus(b: Any, t: Any) -> Any:
    return b.const(1.0) - t


def _centered(b: Any, a: Any, axis: str) -> Any:
    """a - mean(a), centered once more: (a - m) - mean(a - m) is what autograd computes for a variance
    (the second term is the mean's own backward). It is zero in exact arithmetic, but it cancels the
    rounding of the first, so gradients that should vanish (a shift of `a` along the axis) do."""
    c = a - b.call("mean", a, axis=axis)
    return c - b.call("mean", c, axis=axis)


def _rows() -> list[OpDef]:
    leaf = Kind.LEAF
    ew = Kind.ELEMENTWISE
    agg = Kind.AGGREGATION
    return [
        # Leaves -------------------------------------------------------------------------------
        OpDef("x", 0, leaf, "the layer input, shape (N, C, *spatial)", sympy=lambda: sympy.Symbol("x")),
        OpDef(
            "v0",
            0,
            leaf,
            "trainable per-channel vector, initialised to 0",
            sympy=lambda: sympy.Symbol("v_0"),
            parameter=True,
            param_init=0.0,
        ),
        OpDef(
            "v1",
            0,
            leaf,
            "trainable per-channel vector, initialised to 1",
            sympy=lambda: sympy.Symbol("v_1"),
            parameter=True,
            param_init=1.0,
        ),
        OpDef("eps", 0, leaf, "the layer's epsilon", sympy=lambda: EPS_SYMBOL),
        OpDef("const", 0, leaf, "a numeric literal"),
        # Element-wise -------------------------------------------------------------------------
        OpDef(
            "add",
            2,
            ew,
            "a + b",
            "({0} + {1})",
            lambda a, b: a + b,
            "({0} + {1})",
            lambda b, args, out, g, axis: (g, g),
            infix="+",
            precedence=10,
        ),
        OpDef(
            "sub",
            2,
            ew,
            "a - b",
            "({0} - {1})",
            lambda a, b: a - b,
            "({0} - {1})",
            lambda b, args, out, g, axis: (g, -g),
            infix="-",
            precedence=10,
        ),
        OpDef(
            "mul",
            2,
            ew,
            "a * b",
            "({0} * {1})",
            lambda a, b: a * b,
            "({0} * {1})",
            lambda b, args, out, g, axis: (g * args[1], g * args[0]),
            infix="*",
            precedence=20,
        ),
        OpDef(
            "div",
            2,
            ew,
            "a / b",
            "({0} / {1})",
            lambda a, b: a / b,
            "({0} / {1})",
            lambda b, args, out, g, axis: (g / args[1], -(g * out) / args[1]),
            infix="/",
            precedence=20,
        ),
        OpDef(
            "max",
            2,
            ew,
            "element-wise maximum",
            "torch.maximum({0}, {1})",
            Maximum,
            "tl.maximum({0}, {1}, tl.PropagateNan.ALL)",
            lambda b, args, out, g, axis: (
                g * b.call("gt_half", args[0], args[1]),
                g * b.call("gt_half", args[1], args[0]),
            ),
        ),
        OpDef(
            "min",
            2,
            ew,
            "element-wise minimum",
            "torch.minimum({0}, {1})",
            Minimum,
            "tl.minimum({0}, {1}, tl.PropagateNan.ALL)",
            lambda b, args, out, g, axis: (
                g * b.call("gt_half", args[1], args[0]),
                g * b.call("gt_half", args[0], args[1]),
            ),
        ),
        OpDef(
            "neg",
            1,
            ew,
            "-a",
            "(-{0})",
            lambda a: -a,
            "(-{0})",
            lambda b, args, out, g, axis: (-g,),
            infix="-",
            precedence=30,
        ),
        OpDef(
            "sigmoid",
            1,
            ew,
            "1 / (1 + exp(-a))",
            "torch.sigmoid({0})",
            Sigmoid,
            "(1.0 / (1.0 + tl.exp(-{0})))",
            lambda b, args, out, g, axis: (g * out * _one_minus(b, out),),
        ),
        OpDef(
            "tanh",
            1,
            ew,
            "hyperbolic tangent",
            "torch.tanh({0})",
            sympy.tanh,
            "accurate_tanh({0})",
            lambda b, args, out, g, axis: (g * _one_minus(b, out * out),),
        ),
        OpDef(
            "erf",
            1,
            ew,
            "error function, 2/sqrt(pi) * integral of exp(-t^2) from 0 to a",
            "torch.erf({0})",
            sympy.erf,
            # libdevice's erf on NVIDIA GPUs (float32 and float64), math.erf under the interpreter.
            "tl.math.erf({0})",
            lambda b, args, out, g, axis: (g * b.const(_TWO_OVER_SQRT_PI) * b.call("exp", -(args[0] * args[0])),),
        ),
        OpDef(
            "exp",
            1,
            ew,
            "e^a",
            "torch.exp({0})",
            sympy.exp,
            "tl.exp({0})",
            lambda b, args, out, g, axis: (g * out,),
        ),
        OpDef(
            "log",
            1,
            ew,
            "sign(a) * ln|a|",
            "signed_log({0})",
            SignedLog,
            "(tl.where({0} > 0, 1.0, tl.where({0} < 0, -1.0, 0.0)) * tl.log(tl.abs({0})))",
            lambda b, args, out, g, axis: (g / b.call("abs", args[0]),),
        ),
        OpDef(
            "abs",
            1,
            ew,
            "|a|",
            "torch.abs({0})",
            sympy.Abs,
            "tl.abs({0})",
            lambda b, args, out, g, axis: (g * b.call("sign", args[0]),),
        ),
        OpDef(
            "square",
            1,
            ew,
            "a * a",
            "torch.square({0})",
            lambda a: a**2,
            "({0} * {0})",
            lambda b, args, out, g, axis: (g * b.const(2.0) * args[0],),
        ),
        OpDef(
            "sqrt",
            1,
            ew,
            "sign(a) * sqrt|a|",
            "signed_sqrt({0})",
            SignedSqrt,
            "(tl.where({0} > 0, 1.0, tl.where({0} < 0, -1.0, 0.0)) * tl.sqrt(tl.abs({0})))",
            lambda b, args, out, g, axis: (g / (b.const(2.0) * b.call("abs", out)),),
        ),
        OpDef(
            "relu",
            1,
            ew,
            "max(a, 0)",
            "torch.relu({0})",
            lambda a: Maximum(a, sympy.Integer(0)),
            "tl.maximum({0}, 0.0, tl.PropagateNan.ALL)",
            lambda b, args, out, g, axis: (g * b.call("heaviside", args[0]),),
        ),
        # Internal element-wise ops: only the autodiff pass creates these ------------------------
        OpDef(
            "sign",
            1,
            ew,
            "sign(a)",
            "torch.sign({0})",
            sympy.sign,
            "tl.where({0} > 0, 1.0, tl.where({0} < 0, -1.0, tl.where({0} == 0, 0.0, {0})))",
            internal=True,
        ),
        OpDef(
            "heaviside",
            1,
            ew,
            "1 if a > 0 else 0",
            "heaviside({0})",
            lambda a: sympy.Heaviside(a, 0),
            "tl.where({0} > 0, 1.0, 0.0)",
            internal=True,
        ),
        OpDef(
            "gt_half",
            2,
            ew,
            "1 if a > b, 1/2 if a == b, else 0",
            "gt_half({0}, {1})",
            lambda a, b: sympy.Heaviside(a - b, sympy.Rational(1, 2)),
            "tl.where({0} > {1}, 1.0, tl.where({0} == {1}, 0.5, 0.0))",
            internal=True,
        ),
        # Aggregations -------------------------------------------------------------------------
        OpDef(
            "mean",
            1,
            agg,
            "mean over the axis",
            sympy=lambda a, axis: Mean(a, _axis_symbol(axis)),
            triton="{0}",
            grad=lambda b, args, out, g, axis: (b.call("mean", g, axis=axis),),
            stat=MEAN_STAT,
        ),
        OpDef(
            "var",
            1,
            agg,
            "biased variance over the axis",
            sympy=lambda a, axis: Var(a, _axis_symbol(axis)),
            triton="{0}",
            grad=lambda b, args, out, g, axis: (
                b.const(2.0) * _centered(b, args[0], axis) * b.call("mean", g, axis=axis),
            ),
            stat=VAR_STAT,
        ),
        OpDef(
            "std",
            1,
            agg,
            "sqrt(var(a) + eps)",
            sympy=lambda a, axis: sympy.sqrt(Var(a, _axis_symbol(axis)) + EPS_SYMBOL),
            triton="tl.sqrt({0} + eps)",
            grad=lambda b, args, out, g, axis: (_centered(b, args[0], axis) * b.call("mean", g, axis=axis) / out,),
            stat=STD_STAT,
        ),
        OpDef(
            "rms",
            1,
            agg,
            "sqrt(mean(a * a) + eps)",
            sympy=lambda a, axis: sympy.sqrt(Mean(a**2, _axis_symbol(axis)) + EPS_SYMBOL),
            triton="tl.sqrt({0} + eps)",
            grad=lambda b, args, out, g, axis: (args[0] * b.call("mean", g, axis=axis) / out,),
            stat=RMS_STAT,
        ),
    ]


OPS: dict[str, OpDef] = {row.name: row for row in _rows()}

# Views of the table that other modules ask for often.
LEAVES = tuple(name for name, op in OPS.items() if op.kind is Kind.LEAF)
PARAMETERS = tuple(name for name, op in OPS.items() if op.parameter)
NAMED_LEAVES = tuple(name for name in LEAVES if name != "const")  # names the DSL predefines
FUNCTIONS = tuple(name for name, op in OPS.items() if op.kind is not Kind.LEAF and not op.internal)
ELEMENTWISE = tuple(name for name in FUNCTIONS if OPS[name].kind is Kind.ELEMENTWISE)
AGGREGATIONS = tuple(name for name in FUNCTIONS if OPS[name].kind is Kind.AGGREGATION)
INFIX = {op.infix: name for name, op in OPS.items() if op.infix and op.arity == 2}


def op(name: str) -> OpDef:
    """The row of `name`; KeyError names the unknown op."""
    try:
        return OPS[name]
    except KeyError:
        raise KeyError(f"unknown op {name!r}") from None
