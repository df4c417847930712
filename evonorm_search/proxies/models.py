"""Small proxy networks in the style of ResNet, MobileNetV2 and EfficientNet (transformer encoders and
ViTs live in `transformers`, users' models in `user_models`, the table of kinds in `architectures`).

Every norm-activation slot (where the original network has BatchNorm followed by ReLU or Swish) is
`NormAct(graph, channels, groups=..., eps=...)`, so the candidate layer is all the network uses to
normalise and to be non-linear. The networks contain no other normalisation, so a batch-free layer
makes a batch-independent network. Convolutions are 2-D for images and 1-D for sequences (MNIST-1D).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..ir import Graph
from ..module import NormAct
from .config import ConvolutionalArchitecture

NormFactory = Callable[[int], nn.Module]

_CONV = {1: nn.Conv1d, 2: nn.Conv2d}
_POOL = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d}


@dataclass(frozen=True)
class CandidateNorm:
    """The candidate's norm-activation module for a given channel count, and the settings it is built
    with, so a model built elsewhere can get the same layer through `swap_norm_act`."""

    layer: Graph
    groups: int
    eps: float
    backend: str = "auto"

    def __call__(self, channels: int) -> nn.Module:
        return NormAct(self.layer, channels, groups=self.groups, eps=self.eps, backend=self.backend)

    def settings(self) -> dict[str, int | float | str]:
        """The keyword arguments of `NormAct` (and so of `swap_norm_act`) besides the channels."""
        return {"groups": self.groups, "eps": self.eps, "backend": self.backend}


def norm_factory(layer: Graph, *, groups: int, eps: float, backend: str = "auto") -> CandidateNorm:
    """A callable that makes the candidate's norm-activation module for a given channel count."""
    return CandidateNorm(layer, groups, eps, backend)


def _conv(dims: int, c_in: int, c_out: int, kernel: int, *, stride: int = 1, groups: int = 1) -> nn.Module:
    return _CONV[dims](c_in, c_out, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False)


def _stage_widths(arch: ConvolutionalArchitecture) -> list[int]:
    return [arch.width * 2**s for s in range(len(arch.blocks))]


def _block_strides(arch: ConvolutionalArchitecture) -> list[tuple[int, int, int]]:
    """(input width, output width, stride) per block: stride 2 at the start of every later stage."""
    plan: list[tuple[int, int, int]] = []
    c_in = arch.width
    for stage, (width, count) in enumerate(zip(_stage_widths(arch), arch.blocks, strict=True)):
        for b in range(count):
            plan.append((c_in, width, 2 if stage > 0 and b == 0 else 1))
            c_in = width
    return plan


class PreActBlock(nn.Module):
    """ResNet-v2 basic block: norm-act, conv, norm-act, conv, plus the (projected) shortcut."""

    def __init__(self, dims: int, c_in: int, c_out: int, stride: int, norm: NormFactory):
        super().__init__()
        self.norm1 = norm(c_in)
        self.conv1 = _conv(dims, c_in, c_out, 3, stride=stride)
        self.norm2 = norm(c_out)
        self.conv2 = _conv(dims, c_out, c_out, 3)
        self.shortcut = None if stride == 1 and c_in == c_out else _conv(dims, c_in, c_out, 1, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.norm1(x)
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv2(self.norm2(self.conv1(out)))
        return out + shortcut


class InvertedResidual(nn.Module):
    """MobileNetV2 block: expand 1x1, norm-act, depthwise, norm-act, (squeeze-excite), linear projection.

    With `squeeze_excite` and a larger kernel this is EfficientNet's MBConv.
    """

    def __init__(
        self,
        dims: int,
        c_in: int,
        c_out: int,
        stride: int,
        norm: NormFactory,
        *,
        expansion: int,
        kernel: int = 3,
        squeeze_excite: bool = False,
    ):
        super().__init__()
        hidden = c_in * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers += [_conv(dims, c_in, hidden, 1), norm(hidden)]
        layers += [_conv(dims, hidden, hidden, kernel, stride=stride, groups=hidden), norm(hidden)]
        if squeeze_excite:
            layers.append(SqueezeExcite(dims, hidden, max(1, c_in // 4)))
        layers.append(_conv(dims, hidden, c_out, 1))
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return x + out if self.residual else out


class SqueezeExcite(nn.Module):
    """Channel gating of EfficientNet; its own fixed activations, not a norm-activation slot."""

    def __init__(self, dims: int, channels: int, reduced: int):
        super().__init__()
        self.pool = _POOL[dims](1)
        self.reduce = _CONV[dims](channels, reduced, 1)
        self.expand = _CONV[dims](reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.expand(nn.functional.silu(self.reduce(self.pool(x)))))
        return x * gate


class ProxyNet(nn.Module):
    """Stem, blocks, head: the shared skeleton of the three proxy styles."""

    def __init__(
        self, stem: nn.Module, blocks: Sequence[nn.Module], head: nn.Module, features: int, classes: int, dims: int
    ):
        super().__init__()
        self.stem = stem
        self.blocks = nn.Sequential(*blocks)
        self.head = head
        self.pool = _POOL[dims](1)
        self.classifier = nn.Linear(features, classes)
        self._init_weights()

    def _init_weights(self) -> None:
        """He initialisation (fan-out) for convolutions, as torchvision's and TensorFlow's reference
        models use: PyTorch's default scale shrinks signals layer by layer, so networks whose layer
        does not normalise could not train at all and every such candidate would look alike."""
        for m in self.modules():
            if isinstance(m, nn.Conv1d | nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(self.blocks(self.stem(x)))
        return self.classifier(torch.flatten(self.pool(out), 1))


def resnet(arch: ConvolutionalArchitecture, dims: int, in_channels: int, classes: int, norm: NormFactory) -> ProxyNet:
    """Pre-activation ResNet: every BN-ReLU of ResNet-v2 is the candidate."""
    blocks = [PreActBlock(dims, c_in, c_out, stride, norm) for c_in, c_out, stride in _block_strides(arch)]
    last = _stage_widths(arch)[-1]
    stem = _conv(dims, in_channels, arch.width, 3)
    return ProxyNet(stem, blocks, norm(last), last, classes, dims)


def _mobile(
    arch: ConvolutionalArchitecture, dims: int, in_channels: int, classes: int, norm: NormFactory, *, se: bool
) -> ProxyNet:
    kernel = arch.kernel_size if se else 3
    blocks: list[nn.Module] = [
        InvertedResidual(dims, c_in, c_out, stride, norm, expansion=arch.expansion, kernel=kernel, squeeze_excite=se)
        for c_in, c_out, stride in _block_strides(arch)
    ]
    last = _stage_widths(arch)[-1]
    features = 4 * last
    stem = nn.Sequential(_conv(dims, in_channels, arch.width, 3), norm(arch.width))
    head = nn.Sequential(_conv(dims, last, features, 1), norm(features))
    return ProxyNet(stem, blocks, head, features, classes, dims)


def mobilenetv2(
    arch: ConvolutionalArchitecture, dims: int, in_channels: int, classes: int, norm: NormFactory
) -> ProxyNet:
    """MobileNetV2: inverted residuals with linear bottlenecks; every BN-ReLU6 is the candidate."""
    return _mobile(arch, dims, in_channels, classes, norm, se=False)


def efficientnet(
    arch: ConvolutionalArchitecture, dims: int, in_channels: int, classes: int, norm: NormFactory
) -> ProxyNet:
    """EfficientNet: MBConv with squeeze-excitation and `kernel_size` depthwise; every BN-Swish is the candidate."""
    return _mobile(arch, dims, in_channels, classes, norm, se=True)


def count_slots(model: nn.Module) -> int:
    """How many norm-activation slots hold the candidate."""
    return sum(1 for m in model.modules() if isinstance(m, NormAct))
