"""What one evaluation asks of a Ray node, and how many evaluations a cluster can run at once."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class WorkerResources:
    """The resources Ray reserves for one evaluation.

    `cpus` and `gpus` may be fractional (`gpus=0.25` packs four evaluations on one GPU); `memory_mb`
    reserves memory so Ray never crowds a node past it. Ray schedules on these declarations, so they
    must cover what an evaluation really uses (its `training.threads`, its device).
    """

    cpus: float = 1.0
    gpus: float = 0.0
    memory_mb: int | None = None

    def __post_init__(self) -> None:
        problems = []
        if not _is_finite_number(self.cpus) or self.cpus < 0:
            problems.append(f"cpus must be a finite number >= 0, got {self.cpus!r}")
        if not _is_finite_number(self.gpus) or self.gpus < 0:
            problems.append(f"gpus must be a finite number >= 0, got {self.gpus!r}")
        elif self.gpus > 1 and self.gpus != int(self.gpus):
            problems.append(f"gpus above 1 must be a whole number (Ray's rule), got {self.gpus!r}")
        if self.cpus == 0 and self.gpus == 0:
            problems.append("an evaluation needs some cpus or gpus, otherwise Ray would run every one at once")
        if self.memory_mb is not None and (isinstance(self.memory_mb, bool) or self.memory_mb < 1):
            problems.append(f"memory_mb must be a positive number of MiB, got {self.memory_mb!r}")
        if problems:
            raise ValueError("; ".join(problems))

    def ray_options(self) -> dict[str, Any]:
        """The resource part of `.options(...)` for a Ray task."""
        options: dict[str, Any] = {"num_cpus": self.cpus, "num_gpus": self.gpus}
        if self.memory_mb is not None:
            options["memory"] = self.memory_mb * 1024 * 1024
        return options

    def describe(self) -> str:
        parts = [f"{self.cpus:g} CPU{'s' if self.cpus != 1 else ''}"] if self.cpus else []
        if self.gpus:
            parts.append(f"{self.gpus:g} GPU{'s' if self.gpus != 1 else ''}")
        if self.memory_mb is not None:
            parts.append(f"{self.memory_mb} MiB of memory")
        return " and ".join(parts)

    def slots_on(self, node_resources: Mapping[str, float]) -> int:
        """How many evaluations fit on one node with these total resources (they never span nodes)."""
        fits = []
        for name, need in (("CPU", self.cpus), ("GPU", self.gpus)):
            if need > 0:
                fits.append(_fits(node_resources.get(name, 0.0), need))
        if self.memory_mb is not None:
            fits.append(_fits(node_resources.get("memory", 0.0), self.memory_mb * 1024 * 1024))
        return min(fits)

    def slots_in(self, nodes: Iterable[Mapping[str, Any]]) -> int:
        """Evaluations the alive nodes of `ray.nodes()` can run at once."""
        return sum(self.slots_on(node.get("Resources", {})) for node in nodes if node.get("Alive"))


def _fits(available: float, need: float) -> int:
    # Ray counts resources in units of 1/10000; round so 3 x 0.1 GPU fits in 0.3.
    return math.floor(round(available / need, 4))


def _is_finite_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
