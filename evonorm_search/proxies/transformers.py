"""Small transformer encoders as proxies: `transformer` on sequences, `vit` on image patches.

Every norm slot (where the original network has LayerNorm) and the final norm hold the candidate.
Hidden states stay (N, L, C) in the model, as in any transformer; each slot hands the layer the
`(N, C, L)` view `h.transpose(1, 2)` (no copy), so the layer's `channel` axis is LayerNorm's (over C,
per token), `batch` is PowerNorm's/BatchNorm's (over N and L, per channel), and `layer`, `group` and
`instance` keep their meaning for (N, C, *spatial) inputs. The compiled kernels read that view in place:
to them it is channels-last storage.

Where the norms sit is the architecture's `placement`, a table of rules per block (see `SLOTS`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from .config import TransformerArchitecture

NormFactory = Callable[[int], nn.Module]

# Which norm slots a block of each placement has around each sublayer (attention, MLP):
# "input" normalises the sublayer's input (pre-norm), "output" its output before the residual add
# (Peri-LN adds this to pre-norm), "residual" the sum after the add (post-norm).
SLOTS: dict[str, tuple[str, ...]] = {
    "pre": ("input",),
    "post": ("residual",),
    "peri": ("input", "output"),
}


def block_placements(placement: str, depth: int) -> list[str]:
    """The placement of each block: Mix-LN is post-norm in the first quarter (at least one), pre-norm after."""
    if placement != "mix":
        return [placement] * depth
    early = max(1, depth // 4)
    return ["post"] * early + ["pre"] * (depth - early)


class TokenNorm(nn.Module):
    """A norm slot on (N, L, C) hidden states: the layer sees the (N, C, L) view and returns one."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.layer(h.transpose(1, 2)).transpose(1, 2)


class SelfAttention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        n, length, width = h.shape
        q, k, v = self.qkv(h).view(n, length, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        mixed = nn.functional.scaled_dot_product_attention(q, k, v)
        return self.out(mixed.transpose(1, 2).reshape(n, length, width))


class Mlp(nn.Module):
    def __init__(self, width: int, ratio: int):
        super().__init__()
        self.up = nn.Linear(width, ratio * width)
        self.down = nn.Linear(ratio * width, width)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.down(nn.functional.gelu(self.up(h)))


class Residual(nn.Module):
    """One sublayer with its residual connection and the norm slots its placement asks for."""

    def __init__(self, sublayer: nn.Module, slots: tuple[str, ...], width: int, norm: NormFactory):
        super().__init__()
        self.sublayer = sublayer
        self.norms = nn.ModuleDict({slot: TokenNorm(norm(width)) for slot in slots})

    def _norm(self, slot: str, h: torch.Tensor) -> torch.Tensor:
        return self.norms[slot](h) if slot in self.norms else h

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        update = self._norm("output", self.sublayer(self._norm("input", h)))
        return self._norm("residual", h + update)


class EncoderBlock(nn.Module):
    def __init__(self, arch: TransformerArchitecture, placement: str, norm: NormFactory):
        super().__init__()
        slots = SLOTS[placement]
        self.attention = Residual(SelfAttention(arch.width, arch.heads), slots, arch.width, norm)
        self.mlp = Residual(Mlp(arch.width, arch.mlp_ratio), slots, arch.width, norm)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.attention(h))


def patchify(x: torch.Tensor, patch: int) -> torch.Tensor:
    """(N, C, *spatial) -> (N, tokens, C * patch**dims): zero-padded to whole patches, row-major tokens."""
    spatial = x.shape[2:]
    padding: list[int] = []
    for size in reversed(spatial):
        padding += [0, -size % patch]
    x = nn.functional.pad(x, padding)
    n, c = x.shape[:2]
    grid = [size // patch for size in x.shape[2:]]
    split = [n, c]
    for cells in grid:
        split += [cells, patch]
    dims = len(grid)
    # (N, C, g1, p1, g2, p2) -> (N, g1, g2, C, p1, p2)
    order = [0, *(2 + 2 * i for i in range(dims)), 1, *(3 + 2 * i for i in range(dims))]
    return x.reshape(split).permute(order).reshape(n, math.prod(grid), c * patch**dims)


def sinusoidal_positions(tokens: int, width: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The original Transformer's fixed position code, (tokens, width): needs no input size up front."""
    position = torch.arange(tokens, device=device, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, width, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / width))
    code = torch.zeros(tokens, width + width % 2, device=device)
    code[:, 0::2] = torch.sin(position * frequency)
    code[:, 1::2] = torch.cos(position * frequency)
    return code[:, :width].to(dtype)


class TransformerNet(nn.Module):
    """Patch embedding, fixed positions, encoder blocks, final norm, mean over tokens, linear head."""

    def __init__(self, arch: TransformerArchitecture, dims: int, in_channels: int, classes: int, norm: NormFactory):
        super().__init__()
        self.patch = arch.tokens_per_patch_side
        self.embed = nn.Linear(in_channels * self.patch**dims, arch.width)
        placements = block_placements(arch.placement, arch.depth)
        self.blocks = nn.ModuleList(EncoderBlock(arch, p, norm) for p in placements)
        # Post-norm's last block already ends in a norm, so it has no final norm (as BERT and the
        # original Transformer encoder); every other placement ends in a pre-norm block and has one.
        self.final_norm = TokenNorm(norm(arch.width)) if placements[-1] != "post" else nn.Identity()
        self.classifier = nn.Linear(arch.width, classes)
        self._init_weights()

    def _init_weights(self) -> None:
        """Xavier-uniform weights and zero biases, as PyTorch's nn.Transformer and JAX ViTs initialise."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(patchify(x, self.patch))
        h = tokens + sinusoidal_positions(tokens.shape[1], tokens.shape[2], tokens.device, tokens.dtype)
        for block in self.blocks:
            h = block(h)
        return self.classifier(self.final_norm(h).mean(dim=1))


def transformer(
    arch: TransformerArchitecture, dims: int, in_channels: int, classes: int, norm: NormFactory
) -> TransformerNet:
    """A transformer encoder on sequences (MNIST-1D, associative recall) cut into patches."""
    return TransformerNet(arch, dims, in_channels, classes, norm)


def vit(arch: TransformerArchitecture, dims: int, in_channels: int, classes: int, norm: NormFactory) -> TransformerNet:
    """A Vision Transformer on image patches (digits, CIFAR-10)."""
    return TransformerNet(arch, dims, in_channels, classes, norm)
