"""Kernel program domains as data: what one program of each domain covers of the (N, C, S) input, from
which the runtime derives its launch grid, blocking, chunking and single-pass and fusion rules; and the
statistics' sizes per axis and the combine kernels' programs per strategy.

`runtime.Geometry` plans every launch from these rows and names no domain; codegen writes a combine
kernel's program ranges from `COMBINE_PROGRAMS`. Like `bounded.py`, this module imports only the
standard library: the runtime imports it, and standalone exports carry its text ahead of the runtime's
(`cache.standalone_source`), so an exported module holds these tables as literals.

Counts and sizes are written in one small vocabulary over the call's sizes: `N`, `C`, `S`, `G` (groups)
and `CG` (channels per group) are those sizes; `C/BLOCK_C` and `S/BLOCK_S` the blocks of a launch's
tile that cover C and S; `S/CHUNK` the chunks of S of a split pass (the rows of its partials); `1` one.

`tests/compiler/test_domains.py` holds the tables to the IR (a row for every `Domain` and no other, a
domain completing an axis holds the axis's reduced dims whole, the sizes are the axis rows'
`stat_size`, a program count for every `CombineStrategy`) and plans a throwaway row through the runtime.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Size = Literal["N", "C", "S", "G", "CG"]
Count = Literal["1", "N", "G", "C/BLOCK_C", "S/BLOCK_S", "S/CHUNK"]
Channels = Literal["C", "CG", "BLOCK_C"]
Positions = Literal["S", "BLOCK_S", "CHUNK"]


@dataclass(frozen=True)
class DomainDef:
    """What one program of a domain covers, and the rules a shape's plan follows from it.

    The tiles follow from the coverage. A program holding its channels whole (`C` or `CG`) tiles them
    whole, at the next power of two, and loops over S in blocks that fill `Tuning.tile`; one covering a
    block of positions (`BLOCK_S`) loops over C; one covering a block of channels (`BLOCK_C`) blocks
    them by the storage order, the contiguous dimension first. A single-pass tile holds the program's
    reduced extent whole: all of S, and its channels where it holds them whole.
    """

    name: str
    channels: Channels  # the channels one program covers: all of C, one group's, a block of BLOCK_C
    positions: Positions  # the positions it covers: all of S, one block of BLOCK_S, a chunk of a split pass
    grid: tuple[Count, Count]  # programs per sample along the launch grid's axes 1 and 2 (axis 0: the samples)
    # Its channels (CG) are at most `Tuning.max_group_channels`, or no single-pass or fused kernel runs it.
    capped: bool = False
    # Fused (looping) only where its channels, at the next power of two, fit one row of `Tuning.tile`.
    row_fits_tile: bool = False
    # Every stage over it runs fused, whatever the shape and the fusion policy: it is never split.
    always_fused: bool = False
    # Over channels-last storage its channels stride by C: a single-pass CTA holds at most
    # `Tuning.single_pass_channels_last_group`.
    channels_last_cap: bool = False
    # Where a single-pass tile may span a thread block cluster: "always", or "rows" (only where S = 1,
    # the rows of a transformer: a sample of (N, C, S) storage holds thousands of channels' rows with
    # their parameters, and spilled on 4 CTAs).
    clusters: Literal["always", "rows"] = "always"


DOMAINS: dict[str, DomainDef] = {
    d.name: d
    for d in (
        DomainDef(name="tiles", channels="BLOCK_C", positions="CHUNK", grid=("C/BLOCK_C", "S/CHUNK")),
        DomainDef(name="instance", channels="BLOCK_C", positions="S", grid=("C/BLOCK_C", "1")),
        DomainDef(name="group", channels="CG", positions="S", grid=("G", "1"), capped=True, channels_last_cap=True),
        DomainDef(name="sample", channels="C", positions="S", grid=("1", "1"), row_fits_tile=True, clusters="rows"),
        DomainDef(name="channel", channels="C", positions="BLOCK_S", grid=("S/BLOCK_S", "1"), always_fused=True),
    )
}

# The number of statistics of each axis (the axis rows' `stat_size`, `ir/ops.py`), as a product of sizes;
# "sum": a parameter gradient's per-channel sums.
STATISTIC_SIZES: dict[str, tuple[Size, ...]] = {
    "batch": ("C",),
    "layer": ("N",),
    "group": ("N", "G"),
    "instance": ("N", "C"),
    "channel": ("N", "S"),
    "sum": ("C",),
}

# Programs of a combine kernel per strategy (`CombineStrategy`), as a product of counts; BLOCK_C is
# `Tuning.combine_block` there. Codegen writes each as a program range of the kernel, the runtime
# launches their sum.
COMBINE_PROGRAMS: dict[str, tuple[Count, ...]] = {
    "channels_all_samples": ("C/BLOCK_C",),  # a program per channel block, over every sample
    "channels_one_sample": ("N", "C/BLOCK_C"),  # per (sample, channel block)
    "scalar_sample": ("N",),  # per sample
    "scalar_group": ("N", "G"),  # per (sample, group)
}
