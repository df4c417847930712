"""Functional fingerprint: the layer's outputs on fixed random inputs and parameters, hashed.

Catches equal layers that the symbolic canonical form misses (mean(mean(x, group), group) and
mean(x, group), say), as AutoML-Zero's functional equivalence checking does. Computed in float64 and
rounded to a few significant digits, so reassociation noise does not split equal layers.
"""

from __future__ import annotations

import hashlib
import math

import torch

from .ir import Graph
from .module import NormAct

FINGERPRINT_SHAPE = (6, 8, 3, 3)
FINGERPRINT_GROUPS = 4
SIGNIFICANT_DIGITS = 6
_SEED = 20200406  # fixed forever: fingerprints are stored and compared across runs


def fingerprint_inputs() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(_SEED)
    _n, c = FINGERPRINT_SHAPE[:2]
    return {
        "x": torch.randn(FINGERPRINT_SHAPE, generator=gen, dtype=torch.float64),
        # Away from the 0/1 initialisation, so a parameter's effect always shows in the outputs.
        "v0": torch.randn(c, generator=gen, dtype=torch.float64),
        "v1": 1.0 + torch.randn(c, generator=gen, dtype=torch.float64),
    }


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
