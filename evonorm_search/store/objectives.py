"""Objectives of a search: names, directions, hypervolume references; dominance through moocore."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import moocore
import numpy as np

from .errors import InvalidInputError

Direction = Literal["max", "min"]
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,99}$")

# Every subset of up to this many objectives gets an exactly maintained Pareto front (2^K - 1 fronts).
# Searches with more objectives keep the full front and one front per objective; other subsets are
# then answered from the full front (see `Store` in docs/architecture.md).
ALL_SUBSETS_MAX_OBJECTIVES = 5


@dataclass(frozen=True)
class Objective:
    name: str
    direction: Direction
    reference: float | None = None  # hypervolume reference value; defaults to 0.0 for "max"
    # The row of `search.objectives.OBJECTIVE_KINDS` it comes from; None for objectives named by hand
    # (the API's bare names, searches stored before kinds were recorded). Stored in the search's JSON
    # only when set, so rows without it read as before and need no migration.
    kind: str | None = None

    @classmethod
    def from_json(cls, stored: Mapping[str, Any]) -> Objective:
        """An objective as a search stores it (`to_json`; checked when the search was created)."""
        return cls(stored["name"], stored["direction"], stored.get("reference"), stored.get("kind"))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "direction": self.direction, "reference": self.reference}
        if self.kind is not None:
            out["kind"] = self.kind
        return out


def parse_objectives(specs: Sequence[Mapping[str, Any] | Objective]) -> list[Objective]:
    """Validate a search's objectives; each a mapping `{"name", "direction", "reference"?, "kind"?}` or an Objective."""
    if isinstance(specs, (str, bytes, Mapping)) or not isinstance(specs, Sequence) or not specs:
        raise InvalidInputError('objectives must be a non-empty list of {"name": ..., "direction": "max"|"min"}')
    objectives = [_parse_one(spec, i) for i, spec in enumerate(specs)]
    names = [o.name for o in objectives]
    if dupes := sorted({n for n in names if names.count(n) > 1}):
        raise InvalidInputError(f"objective names must be unique; repeated: {', '.join(dupes)}")
    return objectives


def _parse_one(spec: Mapping[str, Any] | Objective, index: int) -> Objective:
    if isinstance(spec, Objective):
        spec = spec.to_json()
    if not isinstance(spec, Mapping):
        raise InvalidInputError(f"objective {index} must be a mapping with 'name' and 'direction', got {spec!r}")
    if unknown := sorted(set(spec) - {"name", "direction", "reference", "kind"}):
        raise InvalidInputError(
            f"objective {index} has unknown keys {unknown}; allowed: name, direction, reference, kind"
        )
    name, direction = spec.get("name"), spec.get("direction")
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidInputError(
            f"objective {index} needs a 'name' of letters, digits, '_', '.', '-' (starting with a letter or '_'), "
            f"got {name!r}"
        )
    if direction not in ("max", "min"):
        raise InvalidInputError(f"objective {name!r} needs 'direction' 'max' or 'min', got {direction!r}")
    reference = spec.get("reference")
    if reference is None and direction == "max":
        reference = 0.0
    if reference is not None:
        if isinstance(reference, bool) or not isinstance(reference, (int, float)) or not math.isfinite(reference):
            raise InvalidInputError(f"objective {name!r} has reference {reference!r}; give a finite number")
        reference = float(reference)
    kind = spec.get("kind")
    if kind is not None and not isinstance(kind, str):
        raise InvalidInputError(f"objective {name!r} has kind {kind!r}; give a string or leave it out")
    return Objective(name, direction, reference, kind)


def objective_values(objectives: Sequence[Objective], values: Mapping[str, Any]) -> dict[str, float]:
    """The reported values of every objective, checked: all present, nothing extra, all finite numbers."""
    if not isinstance(values, Mapping):
        raise InvalidInputError(f"objectives must map objective names to numbers, got {type(values).__name__}")
    expected = [o.name for o in objectives]
    if missing := [n for n in expected if n not in values]:
        raise InvalidInputError(f"objective values missing for {', '.join(missing)} (the search has {expected})")
    if extra := sorted(set(values) - set(expected)):
        raise InvalidInputError(f"unknown objectives {', '.join(map(str, extra))} (the search has {expected})")
    checked = {}
    for name in expected:
        value = values[name]
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise InvalidInputError(
                f"objective {name!r} = {value!r} is not a finite number; record the candidate as failed or "
                "rejected instead of evaluated"
            )
        checked[name] = float(value)
    return checked


# -- subsets of objectives as bit masks (bit i = the search's i-th objective) ------------------------------


def full_mask(count: int) -> int:
    return (1 << count) - 1


def tracked_masks(count: int) -> list[int]:
    """The objective subsets whose fronts are maintained exactly for a search with `count` objectives."""
    if count <= ALL_SUBSETS_MAX_OBJECTIVES:
        return list(range(1, full_mask(count) + 1))
    singles = [1 << i for i in range(count)]
    return [*singles, full_mask(count)]


def mask_of(objectives: Sequence[Objective], names: Sequence[str]) -> int:
    index = {o.name: i for i, o in enumerate(objectives)}
    if isinstance(names, str) or not names:
        raise InvalidInputError("choose at least one objective (a list of names)")
    if unknown := [n for n in names if n not in index]:
        raise InvalidInputError(f"unknown objectives {unknown}; this search has {list(index)}")
    if len(set(names)) != len(names):
        raise InvalidInputError(f"objectives repeated in {list(names)}")
    mask = 0
    for name in names:
        mask |= 1 << index[name]
    return mask


def mask_indices(mask: int) -> list[int]:
    return [i for i in range(mask.bit_length()) if mask >> i & 1]


# -- dominance ------------------------------------------------------------------------------------------


def non_dominated(points: np.ndarray, maximise: Sequence[bool] | np.ndarray) -> np.ndarray:
    """Boolean mask of the rows no other row dominates. Equal rows are all kept (weak non-dominance),
    so tied candidates all belong to the front."""
    if len(points) == 0:
        return np.zeros(0, dtype=bool)
    return np.asarray(moocore.is_nondominated(points, maximise=list(maximise), keep_weakly=True), dtype=bool)


def dominated_by(
    point: np.ndarray, others: np.ndarray, maximise: Sequence[bool] | np.ndarray
) -> tuple[bool, np.ndarray]:
    """(is `point` dominated by some row of `others`, which rows of `others` `point` dominates)."""
    if len(others) == 0:
        return False, np.zeros(0, dtype=bool)
    sign = np.where(np.asarray(maximise), 1.0, -1.0)
    p, q = point * sign, others * sign  # now larger is better everywhere
    others_ge = (q >= p).all(axis=1)
    others_gt = (q > p).any(axis=1)
    point_ge = (p >= q).all(axis=1)
    point_gt = (p > q).any(axis=1)
    return bool((others_ge & others_gt).any()), np.asarray(point_ge & point_gt, dtype=bool)


def hypervolume(points: np.ndarray, objectives: Sequence[Objective]) -> float | None:
    """Hypervolume of `points` against the objectives' references; None when some objective has none."""
    if any(o.reference is None for o in objectives):
        return None
    if len(points) == 0:
        return 0.0
    reference = [o.reference for o in objectives]
    maximise = [o.direction == "max" for o in objectives]
    return float(moocore.hypervolume(points, ref=reference, maximise=maximise))
