"""The kinds of proxy architecture, one row each: its config model, builder, the inputs it takes and the
package it needs. `build_model` reads the table; a new kind is a row here (and, to be named in a search
config, its config model in the union `config.Architecture`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..ir import Graph
from . import models, transformers, user_models
from .config import (
    ArchitectureConfig,
    ConvolutionalArchitecture,
    PythonArchitecture,
    TimmArchitecture,
    TorchvisionArchitecture,
    TransformerArchitecture,
)
from .models import CandidateNorm, norm_factory

# (config, spatial dims, input channels, classes, the candidate) -> the model with the candidate in its slots
Builder = Callable[[ArchitectureConfig, int, int, int, CandidateNorm], nn.Module]
# Which kind of input takes which kind of transformer, for the hint when the dims do not fit.
_KIND_HINT = {1: "use kind 'transformer' for sequences", 2: "use kind 'vit' for images"}


@dataclass(frozen=True)
class ArchitectureRow:
    """One kind: `config` validates its fields, `build` makes the model, `spatial_dims` are the input
    dims it takes (None: whatever the model's forward takes, found by one forward), `requires` the
    optional package it imports (None: none)."""

    config: type[ArchitectureConfig]
    build: Builder
    spatial_dims: tuple[int, ...] | None
    requires: str | None = None

    def check_spatial_dims(self, arch: ArchitectureConfig, spatial_dims: int) -> None:
        """A ValueError naming the kind when it cannot take inputs with `spatial_dims` spatial dims."""
        if self.spatial_dims is None or spatial_dims in self.spatial_dims:
            return
        hint = _KIND_HINT.get(spatial_dims, "") if arch.kind in ("transformer", "vit") else ""
        taken = " or ".join(f"{d}-D" for d in self.spatial_dims)
        raise ValueError(
            f"architecture {arch.label!r} (kind {arch.kind}) takes {taken} inputs, the data has "
            f"{spatial_dims} spatial dim(s)" + (f"; {hint}" if hint else "")
        )


def _row(config: type[ArchitectureConfig], build: Callable[..., nn.Module], *dims: int, requires: str | None = None):
    return ArchitectureRow(config, build, dims or None, requires)


ARCHITECTURES: dict[str, ArchitectureRow] = {
    "resnet": _row(ConvolutionalArchitecture, models.resnet, 1, 2),
    "mobilenetv2": _row(ConvolutionalArchitecture, models.mobilenetv2, 1, 2),
    "efficientnet": _row(ConvolutionalArchitecture, models.efficientnet, 1, 2),
    "transformer": _row(TransformerArchitecture, transformers.transformer, 1),
    "vit": _row(TransformerArchitecture, transformers.vit, 2),
    "python": _row(PythonArchitecture, user_models.python_model),
    "torchvision": _row(TorchvisionArchitecture, user_models.torchvision_model, 2, requires="torchvision"),
    "timm": _row(TimmArchitecture, user_models.timm_model, 2, requires="timm"),
}


def check_spatial_dims(arch: ArchitectureConfig, spatial_dims: int) -> None:
    """A ValueError naming the architecture and its kind when it cannot take data of `spatial_dims` dims."""
    ARCHITECTURES[arch.kind].check_spatial_dims(arch, spatial_dims)


def build_model(
    arch: ArchitectureConfig,
    layer: Graph,
    *,
    in_channels: int,
    classes: int,
    spatial_dims: int,
    groups: int,
    eps: float,
    backend: str = "auto",
    seed: int | None = None,
) -> nn.Module:
    """The proxy network `arch` with `layer` in every norm-activation slot.

    With `seed`, the weights are initialised from that seed without touching the global RNG state, so
    every candidate of a search starts from the same weights (common random numbers make candidates
    comparable with fewer evaluations).
    """
    row = ARCHITECTURES[arch.kind]
    row.check_spatial_dims(arch, spatial_dims)
    norm = norm_factory(layer, groups=groups, eps=eps, backend=backend)
    if seed is None:
        return row.build(arch, spatial_dims, in_channels, classes, norm)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return row.build(arch, spatial_dims, in_channels, classes, norm)
