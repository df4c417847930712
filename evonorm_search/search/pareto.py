"""Pareto fronts and hypervolume over the search's in-memory population (moocore does the geometry).

A search's objectives are `store.Objective`s (name, direction "max" or "min", hypervolume reference),
stored with the search; every computation here honours the directions, so callers never flip signs.
The store keeps its own fronts over the database (`store.objectives`); this module serves selection.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import moocore
import numpy as np

from ..store import Objective

DIRECTIONS = ("max", "min")


def names(objectives: Sequence[Objective]) -> list[str]:
    return [o.name for o in objectives]


def maximise_flags(objectives: Sequence[Objective]) -> list[bool]:
    flags = []
    for o in objectives:
        if o.direction not in DIRECTIONS:
            raise ValueError(f"objective {o.name!r}: direction must be 'max' or 'min', got {o.direction!r}")
        flags.append(o.direction == "max")
    return flags


def as_vector(values: Mapping[str, float], objectives: Sequence[Objective]) -> tuple[float, ...]:
    """The objective values in the objectives' order; a missing objective is an error naming it."""
    missing = [n for n in names(objectives) if n not in values]
    if missing:
        raise KeyError(f"objective value(s) missing: {missing}")
    return tuple(float(values[n]) for n in names(objectives))


def pareto_mask(points: Sequence[Sequence[float]], objectives: Sequence[Objective]) -> np.ndarray:
    """True for the non-dominated points (ties with a front point stay on the front)."""
    if len(points) == 0:
        return np.zeros(0, dtype=bool)
    data = np.asarray(points, dtype=float).reshape(len(points), len(objectives))
    return np.asarray(moocore.is_nondominated(data, maximise=maximise_flags(objectives), keep_weakly=True), dtype=bool)


def hypervolume(
    points: Sequence[Sequence[float]], objectives: Sequence[Objective], reference: Sequence[float]
) -> float:
    """Hypervolume dominated by `points` relative to `reference` (0 when no point improves on it)."""
    if len(points) == 0:
        return 0.0
    data = np.asarray(points, dtype=float).reshape(len(points), len(objectives))
    flags = maximise_flags(objectives)
    return float(moocore.hypervolume(data, ref=np.asarray(reference, dtype=float), maximise=flags))
