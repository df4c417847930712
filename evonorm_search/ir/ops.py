"""The tables: the single source of truth for every op, leaf and axis of the layer language.

Each row names a primitive and says everything the rest of the system needs to know about it: its
arity, how PyTorch computes it (a callable for the reference module and a source template for the
exporter), its sympy form (for canonical hashing and LaTeX), its Triton expression template (for the
kernel compiler), its derivative rule (for the autodiff pass) and how the printer writes it.

- `OPS`: one `OpDef` row per op. Leaves are rows too (x, the parameters v0/v1, eps, constants, and
  the compiler's own inputs grad/weight/bias): a leaf row says where its value comes from (`role`),
  which dims it varies along (`dims`), and how each backend reads it (templates over `{name}`,
  `{value}` and, in Triton, `{ptr}`).
- `AXES`: one `AxisDef` row per aggregation axis: the reference reduction, the dims a statistic
  varies along and reduces over, and how the compiler stores, counts, masks, completes and combines it.

Adding an op, a parameter or an axis is adding one row here. No other module keeps a list of op,
leaf or axis names: the parser, the validator, mutation, the search space, the fingerprint, the
reference module, the exporter, the compiler and the LaTeX printer all read these tables
(`tests/ir/test_tables.py` checks every row against every backend).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sympy
import torch

from .vocabulary import CombineStrategy, Dim, Domain, Kind, LeafRole, Plane, dims

# --------------------------------------------------------------------------------------------------
# Axes
# --------------------------------------------------------------------------------------------------

# Each axis' reference reduction: the mean of `t` (shape (N, C, *spatial)) over the axis, kept
# broadcastable against `t`. The reference module and exported modules run exactly these functions
# (the exporter copies their source), so they stay TorchScript-compatible and self-contained.


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


@dataclass(frozen=True, kw_only=True)
class AxisDef:
    """One aggregation axis: the reference reduction and everything the compiler needs to lower it.

    Triton expressions are over a kernel's `n`, `c`, `s` (element indices), the sizes `N`, `C`, `S`,
    `G` (groups) and `CG` (channels per group), and `zero` (an int32 [1, 1] tile, to give a
    per-sample index a tile shape); `stat_size` is over the same sizes on the host.
    """

    name: str
    description: str
    uses_batch: bool  # the statistics mix the samples of a batch (a running estimate in eval mode)
    reduce: Callable[[torch.Tensor, int], torch.Tensor]  # the reference reduction (mean, broadcast back)
    dims: frozenset[Dim]  # what a statistic varies along (it is broadcast back over the rest)
    reduced: frozenset[Dim]  # the dims it reduces over: an operand constant along them has an exact statistic
    stat_size: str  # host expression of the number of statistics (`runtime.Geometry.statistic` allocates it)
    stat_index: str  # Triton index of the statistic element (n, c, s) reads
    complete_in: frozenset[Domain]  # program domains whose programs hold whole reduction groups
    count: str | None  # Triton expression: elements behind one statistic completed in a program
    complete_index: str | None = None  # Triton index a completing program stores at (None: stat_index)
    complete_mask: str | None = None  # mask of that store (None: unmasked, one value per program)
    combine: CombineStrategy | None  # how partials merge when no program completes it; None: always complete
    across_channels: bool = False  # a statistic spans the channels of a program: per-row moments merge


AXES: dict[str, AxisDef] = {
    a.name: a
    for a in (
        AxisDef(
            name="batch",
            description="over N and the spatial dims, per channel (BatchNorm statistics)",
            uses_batch=True,
            reduce=mean_over_batch,
            dims=dims("c"),
            reduced=dims("ns"),
            stat_size="C",
            stat_index="c",
            complete_in=frozenset(),
            count=None,
            combine=CombineStrategy.CHANNELS_ALL_SAMPLES,
        ),
        AxisDef(
            name="layer",
            description="over C and the spatial dims, per sample",
            uses_batch=False,
            reduce=mean_over_layer,
            dims=dims("n"),
            reduced=dims("cs"),
            stat_size="N",
            stat_index="n + zero",
            complete_in=frozenset({Domain.SAMPLE}),
            count="(C * S)",
            combine=CombineStrategy.SCALAR_SAMPLE,
            across_channels=True,
        ),
        AxisDef(
            name="group",
            description="over C/groups channels and the spatial dims, per sample and group",
            uses_batch=False,
            reduce=mean_over_group,
            dims=dims("nc"),
            reduced=dims("cs"),
            stat_size="N * G",
            stat_index="n * G + c // CG",
            complete_in=frozenset({Domain.GROUP}),
            count="(CG * S)",
            complete_index="n * G + tl.program_id(1) + zero",
            combine=CombineStrategy.SCALAR_GROUP,
            across_channels=True,
        ),
        AxisDef(
            name="instance",
            description="over the spatial dims, per sample and channel",
            uses_batch=False,
            reduce=mean_over_instance,
            dims=dims("nc"),
            reduced=dims("s"),
            stat_size="N * C",
            stat_index="n * C + c",
            complete_in=frozenset({Domain.INSTANCE, Domain.GROUP, Domain.SAMPLE}),
            count="S",
            complete_mask="c_in",
            combine=CombineStrategy.CHANNELS_ONE_SAMPLE,
        ),
        AxisDef(
            name="channel",
            description="over C, per sample and position",
            uses_batch=False,
            reduce=mean_over_channel,
            dims=dims("ns"),
            reduced=dims("c"),
            stat_size="N * S",
            stat_index="n * S + s",
            complete_in=frozenset({Domain.CHANNEL}),
            count="C",
            complete_mask="s_in",
            combine=None,
        ),
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


def format_number(value: float) -> str:
    """Shortest text that reads back as the same float (integers without a trailing .0)."""
    if value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(value)


# --------------------------------------------------------------------------------------------------
# Statistics behind the aggregations. `{r}` stands for the axis' mean-and-broadcast-back function
# (`mean_over_<axis>(t, groups)` above). `stat_src` is the statistic a `batch` aggregation keeps a
# running estimate of; `finish_src` turns that statistic ({s}) into the aggregation's value (in eval
# mode it is applied to the running estimate).
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StatDef:
    """How an aggregation is computed and what a `batch` aggregation tracks between batches."""

    plane: Plane  # the statistic it finishes; buffer name prefix: running_<plane>_<k>
    init: float  # initial value of the running buffer
    unbiased_running: bool  # BatchNorm stores the unbiased variance; we follow it
    stat_src: str  # template over {a} (operand) and {r} (reduction function)
    finish_src: str  # template over {s} (statistic); `eps` is the layer's epsilon


# Variance in two passes (mean first) rather than E[a^2] - E[a]^2: no catastrophic cancellation.
_CENTRAL_SECOND_MOMENT = "{r}(torch.square({a} - {r}({a}, groups)), groups)"
MEAN_STAT = StatDef(Plane.MEAN, 0.0, False, "{r}({a}, groups)", "{s}")
VAR_STAT = StatDef(Plane.VAR, 1.0, True, _CENTRAL_SECOND_MOMENT, "{s}")
STD_STAT = StatDef(Plane.VAR, 1.0, True, _CENTRAL_SECOND_MOMENT, "torch.sqrt({s} + eps)")
RMS_STAT = StatDef(Plane.SQMEAN, 1.0, False, "{r}(torch.square({a}), groups)", "torch.sqrt({s} + eps)")


# --------------------------------------------------------------------------------------------------
# The op table
# --------------------------------------------------------------------------------------------------

# A derivative rule receives (b, args, out, g, axis): `b` builds graph expressions (see
# GradBuilder in autodiff), `args` are the node's inputs, `out` the node itself and `g` the
# gradient flowing into it, all as expression handles supporting + - * / and unary minus. It
# returns one gradient per argument, or None where the argument gets no gradient.
GradRule = Callable[..., tuple[Any, ...]]


@dataclass(frozen=True, kw_only=True)
class OpDef:
    """One primitive of the layer language.

    Templates: an op's are over its arguments ({0}, {1}, ...); a leaf's over `{name}` (the row's
    name), `{value!r}` (a constant's float), `{number}` (a constant as the DSL writes it) and, in
    Triton, `{ptr}` (the pointer argument of the leaf's tensor).
    """

    name: str
    arity: int
    kind: Kind
    summary: str
    torch_src: str | None = None  # PyTorch source for the reference and exports (the reference's `xc`: x)
    # Sympy form (canonical hashing and LaTeX): element-wise f(*args); aggregation f(arg, axis); leaf f(value).
    sympy: Callable[..., sympy.Expr] | None = None
    # Triton expression for generated kernels. Aggregations: the finish applied to their statistic
    # ({0}: the plane `stat.plane`); `eps` and `accurate_tanh` are defined by the compiler's kernels and
    # kernel library. NaN propagates as in torch (max/min/relu/sign).
    triton: str | None = None
    grad: GradRule | None = None  # None: no gradient flows through (leaves, step functions)
    stat: StatDef | None = None  # aggregations only
    infix: str | None = None  # printed as an operator rather than a call
    precedence: int = 100  # printer precedence of the infix/prefix form
    internal: bool = False  # not part of the DSL: only the compiler creates it
    # Leaves only:
    role: LeafRole | None = None  # where the value comes from
    dims: frozenset[Dim] = frozenset()  # what the value varies along (x: n, c, s; a parameter: c)
    text: str = "{name}"  # how the DSL writes it
    param_init: float = 0.0  # parameters: the initial value of every channel

    @property
    def parameter(self) -> bool:
        """A trainable per-channel vector (v0, v1): the module registers it, exports initialise it."""
        return self.role is LeafRole.PARAMETER


# d/da erf(a) = 2/sqrt(pi) * exp(-a^2)
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)

# How kernels read a leaf tensor: the input-shaped tile, or one value per channel of the tile.
TRITON_TILE_LOAD = "tl.load({ptr} + offs, mask=inside, other=0.0).to(COMPUTE)"
TRITON_CHANNEL_LOAD = "tl.load({ptr} + c, mask=c_in, other=0.0).to(COMPUTE)"
TORCH_CHANNEL_VIEW = "channel_view({name}, xc)"


def _one_minus(b: Any, t: Any) -> Any:
    return b.const(1.0) - t


def _centered(b: Any, a: Any, axis: str) -> Any:
    """a - mean(a), centered once more: (a - m) - mean(a - m) is what autograd computes for a variance
    (the second term is the mean's own backward). It is zero in exact arithmetic, but it cancels the
    rounding of the first, so gradients that should vanish (a shift of `a` along the axis) do."""
    c = a - b.call("mean", a, axis=axis)
    return c - b.call("mean", c, axis=axis)


def parameter_row(name: str, init: float, summary: str | None = None) -> OpDef:
    """The row of a trainable per-channel vector: a parameter is this one line in the table."""
    index = name[1:] if name[:1] == "v" and name[1:].isdigit() else name
    return OpDef(
        name=name,
        arity=0,
        kind=Kind.LEAF,
        summary=summary or f"trainable per-channel vector, initialised to {format_number(init)}",
        role=LeafRole.PARAMETER,
        dims=dims("c"),
        param_init=init,
        torch_src=TORCH_CHANNEL_VIEW,
        triton=TRITON_CHANNEL_LOAD,
        sympy=lambda value: sympy.Symbol(f"v_{index}" if index != name else name),
    )


def _leaf_rows() -> list[OpDef]:
    leaf = Kind.LEAF
    return [
        OpDef(
            name="x",
            arity=0,
            kind=leaf,
            summary="the layer input, shape (N, C, *spatial)",
            role=LeafRole.INPUT,
            dims=dims("ncs"),
            torch_src="xc",
            triton=TRITON_TILE_LOAD,
            sympy=lambda value: sympy.Symbol("x"),
        ),
        parameter_row("v0", 0.0),
        parameter_row("v1", 1.0),
        OpDef(
            name="eps",
            arity=0,
            kind=leaf,
            summary="the layer's epsilon",
            role=LeafRole.SETTING,
            torch_src="scalar(eps, xc)",
            triton="eps",
            sympy=lambda value: EPS_SYMBOL,
        ),
        OpDef(
            name="const",
            arity=0,
            kind=leaf,
            summary="a numeric literal",
            role=LeafRole.CONSTANT,
            torch_src="scalar({value!r}, xc)",
            triton="tl.full([1, 1], {value!r}, COMPUTE)",
            sympy=lambda value: sympy.Rational(format_number(value)),
            text="{number}",
        ),
        # Compiler inputs: only compiled forward/backward programs have them -------------------------
        OpDef(
            name="grad",
            arity=0,
            kind=leaf,
            summary="dL/dy, the gradient flowing into the layer's output",
            role=LeafRole.COMPILER,
            dims=dims("ncs"),
            triton=TRITON_TILE_LOAD,
            internal=True,
        ),
        OpDef(
            name="weight",
            arity=0,
            kind=leaf,
            summary="the module's per-channel affine scale",
            role=LeafRole.COMPILER,
            dims=dims("c"),
            triton=TRITON_CHANNEL_LOAD,
            internal=True,
        ),
        OpDef(
            name="bias",
            arity=0,
            kind=leaf,
            summary="the module's per-channel affine shift",
            role=LeafRole.COMPILER,
            dims=dims("c"),
            triton=TRITON_CHANNEL_LOAD,
            internal=True,
        ),
    ]


def _op_rows() -> list[OpDef]:
    ew, agg = Kind.ELEMENTWISE, Kind.AGGREGATION
    signum = "tl.where({0} > 0, 1.0, tl.where({0} < 0, -1.0, 0.0))"
    return [
        # Element-wise ---------------------------------------------------------------------------------
        OpDef(
            name="add", arity=2, kind=ew, summary="a + b", infix="+", precedence=10,
            torch_src="({0} + {1})", sympy=lambda a, b: a + b, triton="({0} + {1})",
            grad=lambda b, args, out, g, axis: (g, g),
        ),
        OpDef(
            name="sub", arity=2, kind=ew, summary="a - b", infix="-", precedence=10,
            torch_src="({0} - {1})", sympy=lambda a, b: a - b, triton="({0} - {1})",
            grad=lambda b, args, out, g, axis: (g, -g),
        ),
        OpDef(
            name="mul", arity=2, kind=ew, summary="a * b", infix="*", precedence=20,
            torch_src="({0} * {1})", sympy=lambda a, b: a * b, triton="({0} * {1})",
            grad=lambda b, args, out, g, axis: (g * args[1], g * args[0]),
        ),
        OpDef(
            name="div", arity=2, kind=ew, summary="a / b", infix="/", precedence=20,
            torch_src="({0} / {1})", sympy=lambda a, b: a / b, triton="({0} / {1})",
            grad=lambda b, args, out, g, axis: (g / args[1], -(g * out) / args[1]),
        ),
        OpDef(
            name="max", arity=2, kind=ew, summary="element-wise maximum",
            torch_src="torch.maximum({0}, {1})", sympy=Maximum, triton="tl.maximum({0}, {1}, tl.PropagateNan.ALL)",
            grad=lambda b, args, out, g, axis: (
                g * b.call("gt_half", args[0], args[1]),
                g * b.call("gt_half", args[1], args[0]),
            ),
        ),
        OpDef(
            name="min", arity=2, kind=ew, summary="element-wise minimum",
            torch_src="torch.minimum({0}, {1})", sympy=Minimum, triton="tl.minimum({0}, {1}, tl.PropagateNan.ALL)",
            grad=lambda b, args, out, g, axis: (
                g * b.call("gt_half", args[1], args[0]),
                g * b.call("gt_half", args[0], args[1]),
            ),
        ),
        OpDef(
            name="neg", arity=1, kind=ew, summary="-a", infix="-", precedence=30,
            torch_src="(-{0})", sympy=lambda a: -a, triton="(-{0})",
            grad=lambda b, args, out, g, axis: (-g,),
        ),
        OpDef(
            name="sigmoid", arity=1, kind=ew, summary="1 / (1 + exp(-a))",
            torch_src="torch.sigmoid({0})", sympy=Sigmoid, triton="(1.0 / (1.0 + tl.exp(-{0})))",
            grad=lambda b, args, out, g, axis: (g * out * _one_minus(b, out),),
        ),
        OpDef(
            name="tanh", arity=1, kind=ew, summary="hyperbolic tangent",
            torch_src="torch.tanh({0})", sympy=sympy.tanh, triton="accurate_tanh({0})",
            grad=lambda b, args, out, g, axis: (g * _one_minus(b, out * out),),
        ),
        OpDef(
            name="erf", arity=1, kind=ew, summary="error function, 2/sqrt(pi) * integral of exp(-t^2) from 0 to a",
            # libdevice's erf on NVIDIA GPUs (float32 and float64), math.erf under the interpreter.
            torch_src="torch.erf({0})", sympy=sympy.erf, triton="tl.math.erf({0})",
            grad=lambda b, args, out, g, axis: (g * b.const(_TWO_OVER_SQRT_PI) * b.call("exp", -(args[0] * args[0])),),
        ),
        OpDef(
            name="exp", arity=1, kind=ew, summary="e^a",
            torch_src="torch.exp({0})", sympy=sympy.exp, triton="tl.exp({0})",
            grad=lambda b, args, out, g, axis: (g * out,),
        ),
        OpDef(
            name="log", arity=1, kind=ew, summary="sign(a) * ln|a|",
            torch_src="signed_log({0})", sympy=SignedLog, triton=f"({signum} * tl.log(tl.abs({{0}})))",
            grad=lambda b, args, out, g, axis: (g / b.call("abs", args[0]),),
        ),
        OpDef(
            name="abs", arity=1, kind=ew, summary="|a|",
            torch_src="torch.abs({0})", sympy=sympy.Abs, triton="tl.abs({0})",
            grad=lambda b, args, out, g, axis: (g * b.call("sign", args[0]),),
        ),
        OpDef(
            name="square", arity=1, kind=ew, summary="a * a",
            torch_src="torch.square({0})", sympy=lambda a: a**2, triton="({0} * {0})",
            grad=lambda b, args, out, g, axis: (g * b.const(2.0) * args[0],),
        ),
        OpDef(
            name="sqrt", arity=1, kind=ew, summary="sign(a) * sqrt|a|",
            torch_src="signed_sqrt({0})", sympy=SignedSqrt, triton=f"({signum} * tl.sqrt(tl.abs({{0}})))",
            grad=lambda b, args, out, g, axis: (g / (b.const(2.0) * b.call("abs", out)),),
        ),
        OpDef(
            name="relu", arity=1, kind=ew, summary="max(a, 0)",
            torch_src="torch.relu({0})", sympy=lambda a: Maximum(a, sympy.Integer(0)),
            triton="tl.maximum({0}, 0.0, tl.PropagateNan.ALL)",
            grad=lambda b, args, out, g, axis: (g * b.call("heaviside", args[0]),),
        ),
        # Internal element-wise ops: only the autodiff pass and the compiler's rewrites create these ------
        OpDef(
            name="sign", arity=1, kind=ew, summary="sign(a)", internal=True,
            torch_src="torch.sign({0})", sympy=sympy.sign,
            triton="tl.where({0} > 0, 1.0, tl.where({0} < 0, -1.0, tl.where({0} == 0, 0.0, {0})))",
        ),
        OpDef(
            name="heaviside", arity=1, kind=ew, summary="1 if a > 0 else 0", internal=True,
            torch_src="heaviside({0})", sympy=lambda a: sympy.Heaviside(a, 0), triton="tl.where({0} > 0, 1.0, 0.0)",
        ),
        OpDef(
            name="gt_half", arity=2, kind=ew, summary="1 if a > b, 1/2 if a == b, else 0", internal=True,
            torch_src="gt_half({0}, {1})", sympy=lambda a, b: sympy.Heaviside(a - b, sympy.Rational(1, 2)),
            triton="tl.where({0} > {1}, 1.0, tl.where({0} == {1}, 0.5, 0.0))",
        ),
        # g * heaviside(a) and g * gt_half(a, b) as selects (`compiler/rewrite.py`): closed where a <= 0
        # (a < b), so NaN or inf in g never leaks through a closed gate as 0 * inf, and a NaN gate
        # passes g on, as autograd masks relu/max/min gradients.
        OpDef(
            name="gate", arity=2, kind=ew, summary="g * heaviside(a), as a select", internal=True,
            torch_src="torch.where({1} <= 0, 0.0, {0})", sympy=lambda g, a: g * sympy.Heaviside(a, 0),
            triton="tl.where({1} <= 0, 0.0, {0})",
            grad=lambda b, args, out, g, axis: (b.call("gate", g, args[1]), None),
        ),
        OpDef(
            name="gate_half", arity=3, kind=ew, summary="g * gt_half(a, b), as a select", internal=True,
            torch_src="torch.where({1} < {2}, 0.0, torch.where({1} == {2}, 0.5 * {0}, {0}))",
            sympy=lambda g, a, b: g * sympy.Heaviside(a - b, sympy.Rational(1, 2)),
            triton="tl.where({1} < {2}, 0.0, tl.where({1} == {2}, 0.5 * {0}, {0}))",
            grad=lambda b, args, out, g, axis: (b.call("gate_half", g, args[1], args[2]), None, None),
        ),
        # Aggregations ---------------------------------------------------------------------------------
        OpDef(
            name="mean", arity=1, kind=agg, summary="mean over the axis", stat=MEAN_STAT,
            sympy=lambda a, axis: Mean(a, _axis_symbol(axis)), triton="{0}",
            grad=lambda b, args, out, g, axis: (b.call("mean", g, axis=axis),),
        ),
        OpDef(
            name="var", arity=1, kind=agg, summary="biased variance over the axis", stat=VAR_STAT,
            sympy=lambda a, axis: Var(a, _axis_symbol(axis)), triton="{0}",
            grad=lambda b, args, out, g, axis: (
                b.const(2.0) * _centered(b, args[0], axis) * b.call("mean", g, axis=axis),
            ),
        ),
        OpDef(
            name="std", arity=1, kind=agg, summary="sqrt(var(a) + eps)", stat=STD_STAT,
            sympy=lambda a, axis: sympy.sqrt(Var(a, _axis_symbol(axis)) + EPS_SYMBOL), triton="tl.sqrt({0} + eps)",
            grad=lambda b, args, out, g, axis: (_centered(b, args[0], axis) * b.call("mean", g, axis=axis) / out,),
        ),
        OpDef(
            name="rms", arity=1, kind=agg, summary="sqrt(mean(a * a) + eps)", stat=RMS_STAT,
            sympy=lambda a, axis: sympy.sqrt(Mean(a**2, _axis_symbol(axis)) + EPS_SYMBOL),
            triton="tl.sqrt({0} + eps)",
            grad=lambda b, args, out, g, axis: (args[0] * b.call("mean", g, axis=axis) / out,),
        ),
    ]  # fmt: skip


OPS: dict[str, OpDef] = {row.name: row for row in (*_leaf_rows(), *_op_rows())}


def views(table: dict[str, OpDef]) -> dict[str, Any]:
    """The views of an op table other modules ask for often (recomputed by tests that add rows)."""
    leaves = tuple(name for name, op in table.items() if op.kind is Kind.LEAF)
    functions = tuple(name for name, op in table.items() if op.kind is not Kind.LEAF and not op.internal)
    return {
        "LEAVES": leaves,
        "PARAMETERS": tuple(name for name in leaves if table[name].parameter),
        # Names the DSL predefines: every leaf but constants (written as numbers) and compiler inputs.
        "NAMED_LEAVES": tuple(
            name for name in leaves if table[name].role not in (LeafRole.CONSTANT, LeafRole.COMPILER)
        ),
        "FUNCTIONS": functions,
        "ELEMENTWISE": tuple(name for name in functions if table[name].kind is Kind.ELEMENTWISE),
        "AGGREGATIONS": tuple(name for name in functions if table[name].kind is Kind.AGGREGATION),
        "INFIX": {op.infix: name for name, op in table.items() if op.infix and op.arity == 2},
    }


_VIEWS = views(OPS)
LEAVES: tuple[str, ...] = _VIEWS["LEAVES"]
PARAMETERS: tuple[str, ...] = _VIEWS["PARAMETERS"]
NAMED_LEAVES: tuple[str, ...] = _VIEWS["NAMED_LEAVES"]
FUNCTIONS: tuple[str, ...] = _VIEWS["FUNCTIONS"]
ELEMENTWISE: tuple[str, ...] = _VIEWS["ELEMENTWISE"]
AGGREGATIONS: tuple[str, ...] = _VIEWS["AGGREGATIONS"]
INFIX: dict[str, str] = _VIEWS["INFIX"]


def op(name: str) -> OpDef:
    """The row of `name`; KeyError names the unknown op."""
    try:
        return OPS[name]
    except KeyError:
        raise KeyError(f"unknown op {name!r}") from None
