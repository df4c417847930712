"""The words the tables and the compiler are written in, as enums: no other module spells them as strings.

Each is a `StrEnum`, so a member compares equal to its text and formats as it (generated source and
stored records keep the plain words), while a typo in the code is an AttributeError, not a silent miss.
This module imports nothing, so every part of the project may use it.
"""

from __future__ import annotations

from enum import StrEnum


class Kind(StrEnum):
    """What an op row is: a leaf (no inputs), an element-wise function, or an aggregation over an axis."""

    LEAF = "leaf"
    ELEMENTWISE = "elementwise"
    AGGREGATION = "aggregation"


class LeafRole(StrEnum):
    """Where a leaf's value comes from, which decides how each backend reads it."""

    INPUT = "input"  # the layer input x
    PARAMETER = "parameter"  # a trainable per-channel vector (v0, v1, ...)
    SETTING = "setting"  # a scalar setting of the call (eps)
    CONSTANT = "constant"  # a numeric literal; the node carries its value
    COMPILER = "compiler"  # an input only compiled programs have (grad, weight, bias): not in the DSL


class Dim(StrEnum):
    """The dims of an input (N, C, *spatial) seen as (N, C, S): what a value varies along."""

    N = "n"
    C = "c"
    S = "s"


class Domain(StrEnum):
    """What one kernel program covers of the (N, C, S) input (see `compiler/lower.py`)."""

    TILES = "tiles"
    INSTANCE = "instance"
    GROUP = "group"
    SAMPLE = "sample"
    CHANNEL = "channel"


class CombineStrategy(StrEnum):
    """How the partials of a reduction that no program completes are merged (kernel_library helpers)."""

    CHANNELS_ALL_SAMPLES = "channels_all_samples"  # per channel block, over every sample
    CHANNELS_ONE_SAMPLE = "channels_one_sample"  # per (sample, channel block)
    SCALAR_SAMPLE = "scalar_sample"  # one value per sample
    SCALAR_GROUP = "scalar_group"  # one value per (sample, group)


class Plane(StrEnum):
    """A statistic one reduction yields; an aggregation's value is its op's finish of one plane."""

    MEAN = "mean"
    VAR = "var"  # biased
    SQMEAN = "sqmean"  # mean of the squares
    SUM = "sum"  # a parameter gradient's per-channel sum


def dims(text: str) -> frozenset[Dim]:
    """`dims("nc")`: the set of dims named by their letters, the way the tables write them."""
    return frozenset(Dim(letter) for letter in text)
