"""`NormAct`: an nn.Module that runs any layer graph, with the reference or the Triton backend."""

from __future__ import annotations

import math

import torch
from torch import nn

from .ir import OPS, Graph, parse
from .reference import compile_forward

BACKENDS = ("auto", "torch", "triton")
SPATIAL_DIMS = (0, 1, 2, 3)


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
        from . import library

        if layer in library.names():
            return library.get(layer)
        return parse(layer)
    raise TypeError(f"expected a Graph, DSL text or a library name, got {type(layer).__name__}")


def _check_arguments(num_features: int, groups: int, eps: float, momentum: float, backend: str) -> None:
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


def check_input(x: torch.Tensor, num_features: int) -> None:
    """Raise a clear error for inputs the layer cannot take."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected a tensor, got {type(x).__name__}")
    if x.dim() - 2 not in SPATIAL_DIMS:
        raise ValueError(f"expected input of shape (N, C, *spatial) with 0 to 3 spatial dims, got {list(x.shape)}")
    if x.shape[1] != num_features:
        raise ValueError(f"expected {num_features} channels (dim 1), got input of shape {list(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"expected a floating-point input, got {x.dtype}")


class NormAct(nn.Module):
    """A normalization-activation layer defined by a graph.

    y = graph(x) * weight + bias, with weight/bias per channel (omitted when `affine=False`).
    Parameters `v0`/`v1` exist when the graph uses them; every aggregation over `batch` keeps a
    running estimate (buffer `running_<stat>_<k>`) updated in training and used in eval mode.
    """

    def __init__(
        self,
        layer: Graph | str,
        num_features: int,
        *,
        groups: int = 32,
        eps: float = 1e-5,
        momentum: float = 0.1,
        affine: bool = True,
        backend: str = "auto",
    ):
        super().__init__()
        _check_arguments(num_features, groups, eps, momentum, backend)
        self.graph = as_graph(layer)
        self.num_features = num_features
        self.groups = effective_groups(num_features, groups)
        self.eps = float(eps)
        self.momentum = float(momentum)
        self.affine = bool(affine)
        self.backend = backend
        for name in self.graph.parameters:
            self.register_parameter(name, nn.Parameter(torch.empty(num_features)))
        if self.affine:
            self.weight = nn.Parameter(torch.empty(num_features))
            self.bias = nn.Parameter(torch.empty(num_features))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        for name in self.graph.running_buffers().values():
            self.register_buffer(name, torch.empty(num_features))
        self.reset_parameters()
        # Resolved once here rather than per call, so torch.compile sees a plain function call.
        self._reference_fn = compile_forward(self.graph)

    def __getstate__(self) -> dict:
        # The generated function is rebuilt on load: pickles stay portable across versions.
        state = self.__dict__.copy()
        state.pop("_reference_fn", None)
        return state

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self._reference_fn = compile_forward(self.graph)

    # -- state ------------------------------------------------------------------------------------

    def reset_running_stats(self) -> None:
        for i, name in self.graph.running_buffers().items():
            stat = self.graph.nodes[i].opdef.stat
            getattr(self, name).fill_(stat.init)  # type: ignore[union-attr]

    def reset_parameters(self) -> None:
        with torch.no_grad():
            for name in self.graph.parameters:
                getattr(self, name).fill_(OPS[name].param_init)
            if self.affine:
                self.weight.fill_(1.0)
                self.bias.fill_(0.0)
        self.reset_running_stats()

    def parameter_list(self) -> list[torch.Tensor]:
        """v0/v1 (those used), in table order: the order the forward functions take them."""
        return [getattr(self, name) for name in self.graph.parameters]

    def buffer_list(self) -> list[torch.Tensor]:
        return [getattr(self, name) for name in self.graph.running_buffers().values()]

    # -- forward ----------------------------------------------------------------------------------

    def use_triton(self, x: torch.Tensor) -> bool:
        if self.backend == "torch":
            return False
        if self.backend == "triton":
            return True
        return x.is_cuda and _triton_available()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.num_features)
        if self.use_triton(x):
            from .compiler import normact_forward

            return normact_forward(self, x)
        return self.reference_forward(x)

    def reference_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._reference_fn(
            x,
            *self.parameter_list(),
            self.weight,
            self.bias,
            *self.buffer_list(),
            self.training,
            self.groups,
            self.eps,
            self.momentum,
        )

    def extra_repr(self) -> str:
        text = self.graph.to_text().replace("\n", "; ")
        return (
            f"{text!r}, {self.num_features}, groups={self.groups}, eps={self.eps}, "
            f"momentum={self.momentum}, affine={self.affine}, backend={self.backend!r}"
        )


def _triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True
