"""A layer before it is a module: its graph and its arguments, read alike by `NormAct` and the compiler.

`module` (the `nn.Module`) calls the compiler, so what both need lives here, below both:
`as_graph` (a Graph from a Graph, DSL text or library name), `effective_groups` and the argument checks.
"""

from __future__ import annotations

import math

from . import library
from .ir import Graph, parse

BACKENDS = ("auto", "torch", "eager", "triton")
DEFAULT_GROUPS = 32  # GroupNorm's usual count; fewer when the channels are not divisible (effective_groups)


def effective_groups(num_features: int, groups: int) -> int:
    """`groups` if it divides `num_features`, else the largest divisor below it."""
    g = max(1, min(groups, num_features))
    while num_features % g:
        g -= 1
    return g


def as_graph(layer: Graph | str) -> Graph:
    """A Graph from a Graph, DSL text or the name of a library layer."""
    if isinstance(layer, Graph):
        return layer
    if isinstance(layer, str):
        if layer in library.names():
            return library.get(layer)
        return parse(layer)
    raise TypeError(f"expected a Graph, DSL text or a library name, got {type(layer).__name__}")


def check_arguments(num_features: int, groups: int, eps: float, momentum: float, backend: str = "auto") -> None:
    """Raise a ValueError naming the first argument of a layer that is out of range."""
    if isinstance(num_features, bool) or not isinstance(num_features, int) or num_features < 1:
        raise ValueError(f"num_features must be a positive integer, got {num_features!r}")
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ValueError(f"groups must be a positive integer, got {groups!r}")
    if isinstance(eps, bool) or not isinstance(eps, int | float) or not math.isfinite(eps) or eps < 0:
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
    if isinstance(momentum, bool) or not isinstance(momentum, int | float) or not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be a number in [0, 1], got {momentum!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
