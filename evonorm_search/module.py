"""`NormAct`: an nn.Module that runs any layer graph, with the reference or the Triton backend."""

from __future__ import annotations

import torch
from torch import nn

from . import compiler, eager
from .ir import OPS, Graph
from .layer import BACKENDS, DEFAULT_GROUPS, as_graph, check_arguments, effective_groups
from .reference import compile_forward

__all__ = ["BACKENDS", "SPATIAL_DIMS", "NormAct", "as_graph", "check_input", "effective_groups"]

SPATIAL_DIMS = (0, 1, 2, 3)


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
        groups: int = DEFAULT_GROUPS,
        eps: float = 1e-5,
        momentum: float = 0.1,
        affine: bool = True,
        backend: str = "auto",
    ):
        super().__init__()
        check_arguments(num_features, groups, eps, momentum, backend)
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
        state.pop("_native", None)
        return state

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self._reference_fn = compile_forward(self.graph)

    # -- state ------------------------------------------------------------------------------------

    def reset_running_stats(self) -> None:
        for i, name in self.graph.running_buffers().items():
            stat = self.graph.nodes[i].opdef.stat
            getattr(self, name).fill_(stat.init)  # type: ignore[union-attr]  # a running buffer belongs to a batch aggregation, which has a stat

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
        if self.backend in ("torch", "eager"):
            return False
        if self.backend == "triton":
            return True
        return x.is_cuda and _triton_available()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.num_features)
        if self.use_triton(x):
            return compiler.normact_forward(self, x)
        if self.backend == "torch" or torch.compiler.is_compiling():
            # torch.compile traces the reference: its own fusion does what the eager backend does by hand.
            return self.reference_forward(x)
        return self.eager_forward(x)

    def eager_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The eager backend (`eager.py`): the native fused normalization the layer is, else the reference."""
        binding = self._native_binding()
        if binding is None:
            return self.reference_forward(x)
        settings = eager.CallSettings(self.training, self.groups, self.eps, self.momentum)
        params = {name: getattr(self, name) for name in self.graph.parameters}
        buffers = [getattr(self, name) for name in binding.buffer_names]
        return eager.run_native(binding, x, params, self.weight, self.bias, buffers, settings)

    def _native_binding(self) -> eager.NativeBinding | None:
        """Resolved on the first eager call and kept: a lookup per call would cost as much as an op."""
        if "_native" not in self.__dict__:
            self.__dict__["_native"] = eager.native_binding(self.graph)
        return self.__dict__["_native"]

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
