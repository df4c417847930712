"""Objectives: names, directions, Pareto fronts and hypervolume (moocore does the geometry).

A search's objectives are a list of `{"name", "direction"}` (direction "max" or "min"), stored with
the search; every Pareto computation here honours the directions, so callers never flip signs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence

import moocore
import numpy as np

from ..ir import Graph

ObjectiveSpec = Sequence[Mapping[str, str]]
DIRECTIONS = ("max", "min")


def plan_cost_function() -> Callable[[Graph], float] | None:
    """`evonorm_search.compiler.plan_cost(graph) -> float` when the compiler provides it, else None."""
    try:
        module = importlib.import_module("evonorm_search.compiler")
    except ImportError:
        return None
    fn = getattr(module, "plan_cost", None)
    return fn if callable(fn) else None


def names(spec: ObjectiveSpec) -> list[str]:
    return [o["name"] for o in spec]


def maximise_flags(spec: ObjectiveSpec) -> list[bool]:
    flags = []
    for o in spec:
        if o["direction"] not in DIRECTIONS:
            raise ValueError(f"objective {o['name']!r}: direction must be 'max' or 'min', got {o['direction']!r}")
        flags.append(o["direction"] == "max")
    return flags


def as_vector(values: Mapping[str, float], spec: ObjectiveSpec) -> tuple[float, ...]:
    """The objective values in the spec's order; a missing objective is an error naming it."""
    missing = [n for n in names(spec) if n not in values]
    if missing:
        raise KeyError(f"objective value(s) missing: {missing}")
    return tuple(float(values[n]) for n in names(spec))


def pareto_mask(points: Sequence[Sequence[float]], spec: ObjectiveSpec) -> np.ndarray:
    """True for the non-dominated points (ties with a front point stay on the front)."""
    if len(points) == 0:
        return np.zeros(0, dtype=bool)
    data = np.asarray(points, dtype=float).reshape(len(points), len(spec))
    return moocore.is_nondominated(data, maximise=maximise_flags(spec), keep_weakly=True)


def hypervolume(points: Sequence[Sequence[float]], spec: ObjectiveSpec, reference: Sequence[float]) -> float:
    """Hypervolume dominated by `points` relative to `reference` (0 when no point improves on it)."""
    if len(points) == 0:
        return 0.0
    data = np.asarray(points, dtype=float).reshape(len(points), len(spec))
    return float(moocore.hypervolume(data, ref=np.asarray(reference, dtype=float), maximise=maximise_flags(spec)))
