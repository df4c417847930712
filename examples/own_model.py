"""A model of your own for `examples/own-model.yaml`: a small CNN whose norm-activation slots take the layer
the search proposes.

The factory protocol (`kind: python`, `factory: "module:function"`): the search calls the function with the
config's `kwargs`, plus `num_classes` and `in_channels` from the data when the function names them, plus
`norm_act` when it names that: a callable `channels -> nn.Module` that makes the candidate layer (as timm's
`norm_layer`). A function without `norm_act` returns a model with ordinary norms (BatchNorm, GroupNorm,
LayerNorm, RMSNorm), and each of them, with the activation after it, is swapped for the candidate.

The module is imported by name: the command line puts the config file's directory on the Python path
(here and for the workers it starts), so keep this file next to the config.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class SmallCNN(nn.Module):
    """Two stages of two convolutions, each followed by a norm-activation slot; average pool; linear head."""

    def __init__(self, num_classes: int, in_channels: int, norm_act: Callable[[int], nn.Module], width: int):
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for stage, stage_width in enumerate((width, 2 * width)):
            for block in range(2):
                stride = 2 if stage > 0 and block == 0 else 1
                layers += [nn.Conv2d(channels, stage_width, 3, stride=stride, padding=1, bias=False)]
                layers += [norm_act(stage_width)]
                channels = stage_width
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


def small_cnn(num_classes: int, in_channels: int, norm_act: Callable[[int], nn.Module], width: int = 8) -> nn.Module:
    """The factory the config names: `own_model:small_cnn`."""
    return SmallCNN(num_classes, in_channels, norm_act, width)


def small_cnn_with_batchnorm(num_classes: int, in_channels: int, width: int = 8) -> nn.Module:
    """The same network written with BatchNorm and ReLU and no `norm_act`: the search swaps them."""
    return SmallCNN(num_classes, in_channels, lambda c: nn.Sequential(nn.BatchNorm2d(c), nn.ReLU()), width)
