"""Functional fingerprint: the layer's outputs on fixed random inputs and parameters, hashed.

Catches equal layers that the symbolic canonical form misses (mean(mean(x, group), group) and
mean(x, group), say), as AutoML-Zero's functional equivalence checking does. Computed in float64 and
rounded to a few significant digits, so reassociation noise does not split equal layers.
"""

from __future__ import annotations

import hashlib
import math

import torch

from .ir import OPS, Graph
from .ir.vocabulary import Dim, LeafRole
from .module import NormAct

FINGERPRINT_SHAPE = (6, 8, 3, 3)
FINGERPRINT_GROUPS = 4
SIGNIFICANT_DIGITS = 6
_SEED = 20200406  # fixed forever: fingerprints are stored and compared across runs


# The leaves drawn at random: the layer input and every parameter, in table order (a new parameter
# row is drawn after the existing ones, so stored fingerprints keep their values).
DRAWN_ROLES = (LeafRole.INPUT, LeafRole.PARAMETER)


def _leaf_shape(dims: frozenset[Dim]) -> tuple[int, ...]:
    """The shape of a leaf varying along `dims`: the input's, or (C,) for a per-channel vector."""
    if dims == frozenset(Dim):
        return FINGERPRINT_SHAPE
    if dims == frozenset({Dim.C}):
        return FINGERPRINT_SHAPE[1:2]
    raise ValueError(f"no fingerprint input for a leaf varying along {sorted(dims)}")


def fingerprint_inputs() -> dict[str, torch.Tensor]:
    """A value for every leaf row drawn at random (x, v0, v1, ...), from one fixed seed."""
    gen = torch.Generator().manual_seed(_SEED)
    inputs: dict[str, torch.Tensor] = {}
    for name, row in OPS.items():
        if row.role not in DRAWN_ROLES:
            continue
        value = torch.randn(_leaf_shape(row.dims), generator=gen, dtype=torch.float64)
        # Parameters around their initialisation (never at it), so a parameter's effect always shows.
        inputs[name] = row.param_init + value if row.param_init else value
    return inputs


def fingerprint_outputs(graph: Graph) -> torch.Tensor:
    """The layer's train-mode output (no affine) on the fixed inputs, in float64."""
    inputs = fingerprint_inputs()
    layer = NormAct(graph, FINGERPRINT_SHAPE[1], groups=FINGERPRINT_GROUPS, affine=False, backend="torch").double()
    with torch.no_grad():
        for name in graph.parameters:
            getattr(layer, name).copy_(inputs[name])
        return layer(inputs["x"])


def _quantize(value: float, scale: float) -> str:
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if abs(value) <= 1e-9 * scale:
        return "0"
    return f"{value:.{SIGNIFICANT_DIGITS - 1}e}"


def fingerprint(graph: Graph) -> str:
    """Hex SHA-256 of the rounded outputs: equal for functionally equal layers (with high probability)."""
    out = fingerprint_outputs(graph).flatten().tolist()
    finite = [abs(v) for v in out if math.isfinite(v)]
    scale = max(finite, default=1.0) or 1.0
    text = ",".join(_quantize(v, scale) for v in out)
    return hashlib.sha256(text.encode()).hexdigest()
