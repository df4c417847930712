"""The compiler's table: the Triton expression and the derivative rule of every op of `ir.ops`, by name.

`codegen` writes each node of a program as its `TRITON` template, and `autodiff` builds the backward
program from `DERIVATIVES`. Both are keyed by the op name of the `ir.ops` row (`tests/ir/test_tables.py`
fails on a row missing here).

Templates: an op's are over its arguments ({0}, {1}, ...); an aggregation's finishes its statistic
({0}: the plane `stat.plane` of its row); a leaf's are over `{name}`, `{value!r}` (a constant's float)
and `{ptr}` (the pointer argument of the leaf's tensor). `eps` and `accurate_tanh` are defined by the
kernels and the kernel library. NaN propagates as in torch (max/min/relu/sign, and the gates pass g
on where the gate is NaN, as autograd masks relu/max/min gradients).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ..ir.ops import PARAMETERS

# --------------------------------------------------------------------------------------------------
# Triton expressions
# --------------------------------------------------------------------------------------------------

# How kernels read a leaf tensor: the input-shaped tile, or one value per channel of the tile.
TILE_LOAD = "tl.load({ptr} + offs, mask=inside, other=0.0).to(COMPUTE)"
CHANNEL_LOAD = "tl.load({ptr} + c, mask=c_in, other=0.0).to(COMPUTE)"
_SIGNUM = "tl.where({0} > 0, 1.0, tl.where({0} < 0, -1.0, 0.0))"

TRITON: dict[str, str] = {
    # Leaves (the compiler's own inputs included)
    "x": TILE_LOAD,
    **{name: CHANNEL_LOAD for name in PARAMETERS},
    "eps": "eps",
    "const": "tl.full([1, 1], {value!r}, COMPUTE)",
    "grad": TILE_LOAD,
    "weight": CHANNEL_LOAD,
    "bias": CHANNEL_LOAD,
    # Element-wise
    "add": "({0} + {1})",
    "sub": "({0} - {1})",
    "mul": "({0} * {1})",
    "div": "({0} / {1})",
    "max": "tl.maximum({0}, {1}, tl.PropagateNan.ALL)",
    "min": "tl.minimum({0}, {1}, tl.PropagateNan.ALL)",
    "neg": "(-{0})",
    "sigmoid": "(1.0 / (1.0 + tl.exp(-{0})))",
    "tanh": "accurate_tanh({0})",
    "erf": "tl.math.erf({0})",  # libdevice's erf on NVIDIA GPUs (float32 and float64), math.erf under the interpreter
    "exp": "tl.exp({0})",
    "log": f"({_SIGNUM} * tl.log(tl.abs({{0}})))",
    "abs": "tl.abs({0})",
    "square": "({0} * {0})",
    "sqrt": f"({_SIGNUM} * tl.sqrt(tl.abs({{0}})))",
    "relu": "tl.maximum({0}, 0.0, tl.PropagateNan.ALL)",
    "sign": "tl.where({0} > 0, 1.0, tl.where({0} < 0, -1.0, tl.where({0} == 0, 0.0, {0})))",
    "heaviside": "tl.where({0} > 0, 1.0, 0.0)",
    "gt_half": "tl.where({0} > {1}, 1.0, tl.where({0} == {1}, 0.5, 0.0))",
    # Selects closed where a <= 0 (a < b), so NaN or inf in g never leaks through a closed gate as 0 * inf.
    "gate": "tl.where({1} <= 0, 0.0, {0})",
    "gate_half": "tl.where({1} < {2}, 0.0, tl.where({1} == {2}, 0.5 * {0}, {0}))",
    # Aggregations: the finish applied to the statistic
    "mean": "{0}",
    "var": "{0}",
    "std": "tl.sqrt({0} + eps)",
    "rms": "tl.sqrt({0} + eps)",
}


# --------------------------------------------------------------------------------------------------
# Derivative rules
# --------------------------------------------------------------------------------------------------

# A derivative rule receives (b, args, out, g, axis): `b` builds graph expressions (`GradBuilder` in
# autodiff), `args` are the node's inputs, `out` the node itself and `g` the gradient flowing into it,
# all as expression handles supporting + - * / and unary minus. It returns one gradient per argument,
# or None where the argument gets no gradient.
GradRule = Callable[..., tuple[Any, ...]]

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


# Every op but the leaves has a row; None: no gradient flows through (the step functions, whose
# derivative is zero wherever it exists).
DERIVATIVES: dict[str, GradRule | None] = {
    # Element-wise
    "add": lambda b, args, out, g, axis: (g, g),
    "sub": lambda b, args, out, g, axis: (g, -g),
    "mul": lambda b, args, out, g, axis: (g * args[1], g * args[0]),
    "div": lambda b, args, out, g, axis: (g / args[1], -(g * out) / args[1]),
    "max": lambda b, args, out, g, axis: (
        g * b.call("gt_half", args[0], args[1]),
        g * b.call("gt_half", args[1], args[0]),
    ),
    "min": lambda b, args, out, g, axis: (
        g * b.call("gt_half", args[1], args[0]),
        g * b.call("gt_half", args[0], args[1]),
    ),
    "neg": lambda b, args, out, g, axis: (-g,),
    "sigmoid": lambda b, args, out, g, axis: (g * out * _one_minus(b, out),),
    "tanh": lambda b, args, out, g, axis: (g * _one_minus(b, out * out),),
    "erf": lambda b, args, out, g, axis: (g * b.const(_TWO_OVER_SQRT_PI) * b.call("exp", -(args[0] * args[0])),),
    "exp": lambda b, args, out, g, axis: (g * out,),
    "log": lambda b, args, out, g, axis: (g / b.call("abs", args[0]),),
    "abs": lambda b, args, out, g, axis: (g * b.call("sign", args[0]),),
    "square": lambda b, args, out, g, axis: (g * b.const(2.0) * args[0],),
    "sqrt": lambda b, args, out, g, axis: (g / (b.const(2.0) * b.call("abs", out)),),
    "relu": lambda b, args, out, g, axis: (g * b.call("heaviside", args[0]),),
    "sign": None,
    "heaviside": None,
    "gt_half": None,
    "gate": lambda b, args, out, g, axis: (b.call("gate", g, args[1]), None),
    "gate_half": lambda b, args, out, g, axis: (b.call("gate_half", g, args[1], args[2]), None, None),
    # Aggregations
    "mean": lambda b, args, out, g, axis: (b.call("mean", g, axis=axis),),
    "var": lambda b, args, out, g, axis: (b.const(2.0) * _centered(b, args[0], axis) * b.call("mean", g, axis=axis),),
    "std": lambda b, args, out, g, axis: (_centered(b, args[0], axis) * b.call("mean", g, axis=axis) / out,),
    "rms": lambda b, args, out, g, axis: (args[0] * b.call("mean", g, axis=axis) / out,),
}
