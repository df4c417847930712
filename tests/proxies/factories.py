"""Model factories for the `kind: python` tests, imported by name as a user's would be
("tests.proxies.factories:small_cnn"): one of each way a factory can serve or fail."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def small_cnn(num_classes: int, in_channels: int, norm_act: Callable[[int], nn.Module], width: int = 8) -> nn.Module:
    """Takes the candidate: every norm-activation slot is `norm_act(channels)`."""
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
        norm_act(width),
        nn.Conv2d(width, width, 3, padding=1, bias=False),
        norm_act(width),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(width, num_classes),
    )


def batchnorm_cnn(num_classes: int, in_channels: int, width: int = 8) -> nn.Module:
    """No `norm_act`: its BatchNorm-ReLU pairs are swapped for the candidate."""
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(width, num_classes),
    )


def sequence_cnn(num_classes: int, in_channels: int) -> nn.Module:
    """1-D convolutions: refuses images."""
    return nn.Sequential(nn.Conv1d(in_channels, 4, 3), nn.BatchNorm1d(4), nn.Flatten(), nn.LazyLinear(num_classes))


def without_norms(num_classes: int) -> nn.Module:
    """No norm at all: nowhere to put the candidate."""
    return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))


def ignores_norm_act(num_classes: int, norm_act: Callable[[int], nn.Module]) -> nn.Module:
    """Takes `norm_act` and never calls it."""
    return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))


def not_a_module() -> str:
    return "a model"


def raises(num_classes: int) -> nn.Module:
    raise ValueError("unsupported number of classes")


NOT_CALLABLE = 3


class _TokenMixer(nn.Module):
    """Channels to tokens, a LayerNorm-MLP-LayerNorm block over (N, L, C), mean over tokens."""

    def __init__(self, num_classes: int, in_channels: int, width: int):
        super().__init__()
        self.embed = nn.Linear(in_channels, width)
        self.norm1 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, width))
        self.norm2 = nn.LayerNorm(width)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x.transpose(1, 2))
        h = h + self.mlp(self.norm1(h))
        return self.head(self.norm2(h).mean(dim=1))


def token_mixer(num_classes: int, in_channels: int, width: int = 8) -> nn.Module:
    """A transformer-style model on sequences with LayerNorm slots, swapped over the channel view."""
    return _TokenMixer(num_classes, in_channels, width)
