"""The reference backend's table: how PyTorch computes every op, leaf and axis of `ir.ops`, by name.

The reference (`reference.py`) turns a graph into straight-line PyTorch source from these templates,
and exports copy that source and the functions below, so everything here stays self-contained and
TorchScript-compatible. Each table is keyed by the op or axis name of its `ir.ops` row;
`tests/ir/test_tables.py` fails on a row missing here.

- `TORCH`: source templates of leaves (over `{name}` and `{value!r}`; the reference's `xc` is the input
  in the compute dtype) and of element-wise ops (over their arguments `{0}`, `{1}`, ...).
- `TORCH_STATISTICS`: how each aggregation computes its statistic and finishes its value.
- `REDUCTIONS`: each axis' mean-and-broadcast-back function.
- `TORCH_HELPERS`: the functions the templates call by bare name (copied into exports).

The compiler's inputs (grad, weight, bias) have no row: the reference never reads them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .ir.ops import PARAMETERS

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


REDUCTIONS: dict[str, Callable[[torch.Tensor, int], torch.Tensor]] = {
    "batch": mean_over_batch,
    "layer": mean_over_layer,
    "group": mean_over_group,
    "instance": mean_over_instance,
    "channel": mean_over_channel,
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
# Leaves and element-wise ops
# --------------------------------------------------------------------------------------------------

# How the reference reads a per-channel vector: every parameter alike.
CHANNEL_VIEW = "channel_view({name}, xc)"

TORCH: dict[str, str] = {
    # Leaves
    "x": "xc",
    **{name: CHANNEL_VIEW for name in PARAMETERS},
    "eps": "scalar(eps, xc)",
    "const": "scalar({value!r}, xc)",
    # Element-wise
    "add": "({0} + {1})",
    "sub": "({0} - {1})",
    "mul": "({0} * {1})",
    "div": "({0} / {1})",
    "max": "torch.maximum({0}, {1})",
    "min": "torch.minimum({0}, {1})",
    "neg": "(-{0})",
    "sigmoid": "torch.sigmoid({0})",
    "tanh": "torch.tanh({0})",
    "erf": "torch.erf({0})",
    "exp": "torch.exp({0})",
    "log": "signed_log({0})",
    "abs": "torch.abs({0})",
    "square": "torch.square({0})",
    "sqrt": "signed_sqrt({0})",
    "relu": "torch.relu({0})",
    "sign": "torch.sign({0})",
    "heaviside": "heaviside({0})",
    "gt_half": "gt_half({0}, {1})",
    # The gates pass g on where the gate is NaN, as autograd masks relu/max/min gradients.
    "gate": "torch.where({1} <= 0, 0.0, {0})",
    "gate_half": "torch.where({1} < {2}, 0.0, torch.where({1} == {2}, 0.5 * {0}, {0}))",
}


# --------------------------------------------------------------------------------------------------
# Aggregations
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TorchStatistic:
    """How the reference computes an aggregation. `statistic` is what a `batch` aggregation keeps a
    running estimate of (in eval mode `finish` is applied to that estimate instead)."""

    statistic: str  # template over {a} (the operand) and {r} (the axis' function in REDUCTIONS)
    finish: str  # template over {s} (the statistic); `eps` is the layer's epsilon


# Variance in two passes (mean first) rather than E[a^2] - E[a]^2: no catastrophic cancellation.
_CENTRAL_SECOND_MOMENT = "{r}(torch.square({a} - {r}({a}, groups)), groups)"

TORCH_STATISTICS: dict[str, TorchStatistic] = {
    "mean": TorchStatistic("{r}({a}, groups)", "{s}"),
    "var": TorchStatistic(_CENTRAL_SECOND_MOMENT, "{s}"),
    "std": TorchStatistic(_CENTRAL_SECOND_MOMENT, "torch.sqrt({s} + eps)"),
    "rms": TorchStatistic("{r}(torch.square({a}), groups)", "torch.sqrt({s} + eps)"),
}
