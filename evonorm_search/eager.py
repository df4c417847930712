"""The eager backend: layers at native speed on CPU.

The reference (`reference.py`) runs a layer as PyTorch composites with autograd through every
intermediate. Where a layer is exactly one of PyTorch's fused normalizations, this backend runs that
instead (`NATIVE`: BN-ReLU, GN-ReLU, IN-ReLU, LayerNorm over (C, *spatial) and over C, as
`F.batch_norm`, `F.group_norm`, `F.layer_norm`, with their fused backward passes), whatever DSL text wrote it: the match is on the canonical form. Running estimates use the
module's buffers under BatchNorm's convention, which is the layer's own (momentum, unbiased running
variance). Every other layer runs the reference (`reference.py`).

Why these two tiers and not others: `benchmarks/cpu_step.py` measured the levers on the proxies'
shapes (`benchmarks/results/cpu-step-cpu2.md`, "Levers"). On tensors of ~20k elements each PyTorch op
costs a few microseconds of dispatch whatever it computes, so only fewer ops pay: one fused native op
in place of a dozen is what brings a layer to its native module's step time; `torch.var_mean` is 4-10x
slower than a two-pass mean there; a fused `addcmul` affine is slower than a product and a sum under
autograd; RMSNorm's reference beats `F.rms_norm` over C (so RMSNorm has no row); and an
`autograd.Function` running the compiler's analytic backward program as PyTorch ops was slower than
autograd on most random candidates, its backward having as many ops as autograd's plus the cost of a
Python-level Function.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch
import torch.nn.functional as F

from . import library
from .ir import OPS, Graph, Kind
from .ir.vocabulary import LeafRole
from .reference import channel_view, compute_dtype, output
from .symbolic import canonical_hash


def affine(y: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None) -> torch.Tensor:
    """y * weight + bias per channel (either may be absent). Two ops: under autograd one `addcmul` was
    slower than a product and a sum (cpu-step-cpu2.md, "Levers")."""
    if weight is not None:
        y = y * channel_view(weight, y)
    if bias is not None:
        y = y + channel_view(bias, y)
    return y


# --------------------------------------------------------------------------------------------------
# Native rows: layers that are exactly one of PyTorch's fused normalizations (then an activation)
# --------------------------------------------------------------------------------------------------


def _bn_relu(xc: torch.Tensor, p: dict[str, torch.Tensor], b: list[torch.Tensor], s: Any) -> torch.Tensor:
    mean_buffer, var_buffer = b
    return torch.relu(F.batch_norm(xc, mean_buffer, var_buffer, p["v1"], p["v0"], s.training, s.momentum, s.eps))


def _gn_relu(xc: torch.Tensor, p: dict[str, torch.Tensor], b: list[torch.Tensor], s: Any) -> torch.Tensor:
    return torch.relu(F.group_norm(xc, s.groups, p["v1"], p["v0"], s.eps))


def _in_relu(xc: torch.Tensor, p: dict[str, torch.Tensor], b: list[torch.Tensor], s: Any) -> torch.Tensor:
    # GroupNorm with one channel a group is InstanceNorm, and also takes inputs without spatial dims.
    return torch.relu(F.group_norm(xc, xc.shape[1], p["v1"], p["v0"], s.eps))


@dataclass(frozen=True)
class NativeRow:
    """A library layer computed by PyTorch's fused ops. `body` gives the layer before the module's affine;
    `with_affine`, when set, computes the layer and the affine together (normalizations whose native form
    takes the per-channel weight and bias). `buffers` names the batch aggregations whose running
    estimates the native op keeps, in the order it takes them, as (op, axis) of `x`."""

    name: str
    body: Callable[..., torch.Tensor] | None = None
    with_affine: Callable[..., torch.Tensor] | None = None
    buffers: tuple[tuple[str, str], ...] = ()


def _layernorm(xc: torch.Tensor, w: torch.Tensor | None, b: torch.Tensor | None, s: Any) -> torch.Tensor:
    return F.group_norm(xc, 1, w, b, s.eps)  # one group: over C and the spatial dims, per-channel affine


def _layernorm_channel(xc: torch.Tensor, w: torch.Tensor | None, b: torch.Tensor | None, s: Any) -> torch.Tensor:
    last = xc.movedim(1, -1)  # (N, *spatial, C): for a transformer's (N, C, L) view, its contiguous storage
    return F.layer_norm(last, (xc.shape[1],), w, b, s.eps).movedim(-1, 1)


NATIVE: tuple[NativeRow, ...] = (
    NativeRow("bn_relu", body=_bn_relu, buffers=(("mean", "batch"), ("std", "batch"))),
    NativeRow("gn_relu", body=_gn_relu),
    NativeRow("in_relu", body=_in_relu),
    NativeRow("layernorm", with_affine=_layernorm),
    NativeRow("layernorm_channel", with_affine=_layernorm_channel),
    # No RMSNorm row: `F.rms_norm` over C (a moved view) made the proxy step 1.02-1.04x nn.RMSNorm's,
    # while the reference's three ops made it 0.88-0.91x (benchmarks/results/cpu-step-cpu2.md).
)


# Nodes of the largest layer a row computes, written as redundantly as a search could write it.
_LARGEST_ROW = 24


@lru_cache(maxsize=1)
def _native_by_hash() -> dict[str, NativeRow]:
    return {canonical_hash(library.get(row.name)): row for row in NATIVE}


@dataclass(frozen=True)
class NativeBinding:
    """A native row bound to a module's graph: which of its running buffers the native op updates."""

    row: NativeRow
    buffer_names: tuple[str, ...]


@lru_cache(maxsize=1024)
def native_binding(graph: Graph) -> NativeBinding | None:
    """The native row computing `graph`, if one does: same canonical form, and exactly the running
    estimates the native op keeps (one per statistic), so the module's buffers follow BatchNorm's."""
    if len(graph.nodes) > _LARGEST_ROW or not any(OPS[n.op].kind is Kind.AGGREGATION for n in graph.nodes):
        return None  # no row is one: skip the symbolic form (point-wise layers, and large ones sympy is slow on)
    row = _native_by_hash().get(canonical_hash(graph))
    if row is None:
        return None
    running = graph.running_buffers()
    names: list[str] = []
    for op, axis in row.buffers:
        found = [i for i in running if graph.nodes[i].op == op and graph.nodes[i].axis == axis]
        if len(found) != 1 or OPS[graph.nodes[graph.nodes[found[0]].args[0]].op].role is not LeafRole.INPUT:
            return None
        names.append(running[found[0]])
    if len(names) != len(running):
        return None  # more running estimates than the native op keeps: they would go stale
    return NativeBinding(row, tuple(names))


@dataclass(frozen=True)
class CallSettings:
    training: bool
    groups: int
    eps: float
    momentum: float


def run_native(
    binding: NativeBinding,
    x: torch.Tensor,
    params: dict[str, torch.Tensor],
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    buffers: list[torch.Tensor],
    settings: CallSettings,
) -> torch.Tensor:
    """The layer through its native row, in the reference's compute dtype (half types in float32)."""
    xc = x.to(compute_dtype(x))
    dtype = xc.dtype
    p = {k: v.to(dtype) for k, v in params.items()}
    w = None if weight is None else weight.to(dtype)
    b = None if bias is None else bias.to(dtype)
    row = binding.row
    if row.with_affine is not None:
        y = row.with_affine(xc, w, b, settings)
    else:
        assert row.body is not None
        # Running estimates update in the compute dtype, then go back to the buffers' own (half) dtype,
        # which is what the reference's update does.
        running = [buffer.to(dtype) for buffer in buffers]
        y = affine(row.body(xc, p, running, settings), w, b)
        for buffer, updated in zip(buffers, running, strict=True):
            if updated is not buffer:
                buffer.copy_(updated)
    return output(y, xc).to(x.dtype)
