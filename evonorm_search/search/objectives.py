"""The objective kinds a search can optimise: one row per kind, read by everything that names objectives.

A row says what the kind is called, whether it is maximised or minimised, how a search's config turns
it on and sets its hypervolume reference, how its value is computed from an evaluation, and how reports
show it. A kind measured on every proxy architecture (`per_architecture`, accuracy) gives one objective
per architecture, named `<kind>_<architecture label>`; another gives one objective named after the kind.

The config (`SearchConfig.objectives_spec`), the evaluator, scoring, baselines, the CLI and the API
read these rows; nothing else builds or parses objective names. Searches record each objective's kind
(`store.Objective.kind`); objectives stored without one (searches created before kinds were recorded,
or through the API with bare names) are read by name (`objective_kind`).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..compiler import plan_cost
from ..ir import Graph
from ..store import Objective
from ..store.objectives import Direction

if TYPE_CHECKING:
    from .config import ObjectivesConfig


@dataclass(frozen=True)
class Evaluated:
    """What objective values are computed from: the layer and, per architecture label, the metrics of
    its full proxy training (accuracy, loss, steps, ...)."""

    graph: Graph
    metrics: Mapping[str, Mapping[str, Any]]


@dataclass(frozen=True)
class ObjectiveKind:
    """One kind of objective. `value(evaluated, architecture)` gets an architecture label when the kind
    is `per_architecture`, else None."""

    name: str
    direction: Direction
    label: str  # how reports name it; per architecture, the architecture's label follows
    per_architecture: bool
    wanted: Callable[[ObjectivesConfig], bool]
    reference: Callable[[ObjectivesConfig], float]
    value: Callable[[Evaluated, str | None], float]

    def objective_name(self, architecture: str | None = None) -> str:
        return f"{self.name}_{architecture}" if self.per_architecture else self.name


def _accuracy(evaluated: Evaluated, architecture: str | None) -> float:
    assert architecture is not None  # a per-architecture kind is always asked with one
    return float(evaluated.metrics[architecture]["accuracy"])


def _plan_cost(evaluated: Evaluated, architecture: str | None) -> float:
    return float(plan_cost(evaluated.graph))


ACCURACY = ObjectiveKind(
    name="accuracy",
    direction="max",
    label="accuracy",
    per_architecture=True,
    wanted=lambda config: True,  # always: a search is about accuracy
    reference=lambda config: 0.0,
    value=_accuracy,
)
COST = ObjectiveKind(
    name="cost",
    direction="min",
    label="cost (bytes per element)",
    per_architecture=False,
    wanted=lambda config: config.cost == "plan",
    reference=lambda config: config.cost_reference,
    value=_plan_cost,
)

# Registry order is objective order: every search lists its objectives kind by kind in this order.
OBJECTIVE_KINDS: dict[str, ObjectiveKind] = {kind.name: kind for kind in (ACCURACY, COST)}


def objective_specs(config: ObjectivesConfig, architectures: Sequence[str]) -> list[Objective]:
    """The search's objectives, in order: each kind the config wants, per architecture label or once."""
    specs = []
    for kind in OBJECTIVE_KINDS.values():
        if kind.wanted(config):
            for architecture in architectures if kind.per_architecture else [None]:
                specs.append(
                    Objective(kind.objective_name(architecture), kind.direction, kind.reference(config), kind.name)
                )
    return specs


def objective_values(config: ObjectivesConfig, evaluated: Evaluated) -> dict[str, float]:
    """The value of every objective the config wants, in `objective_specs` order."""
    values = {}
    for kind in OBJECTIVE_KINDS.values():
        if kind.wanted(config):
            for architecture in evaluated.metrics if kind.per_architecture else [None]:
                values[kind.objective_name(architecture)] = kind.value(evaluated, architecture)
    return values


@dataclass(frozen=True)
class ObjectiveInfo:
    """An objective as reports show it: its kind (None when no row claims it), architecture and label."""

    kind: str | None
    architecture: str | None
    label: str


def objective_kind(name: str, kind: str | None = None) -> ObjectiveInfo:
    """What an objective is, from its recorded kind or, when none was recorded, from its name."""
    row = OBJECTIVE_KINDS.get(kind) if kind is not None else _kind_named(name)
    if row is None:
        return ObjectiveInfo(None, None, name)
    if not row.per_architecture:
        return ObjectiveInfo(row.name, None, row.label)
    architecture = name.removeprefix(row.name + "_")
    return ObjectiveInfo(row.name, architecture, f"{row.label} ({architecture})")


def _kind_named(name: str) -> ObjectiveKind | None:
    for row in OBJECTIVE_KINDS.values():
        if row.per_architecture and name.startswith(row.name + "_"):
            return row
        if not row.per_architecture and name == row.name:
            return row
    return None


def describe(objective: Objective) -> ObjectiveInfo:
    return objective_kind(objective.name, objective.kind)


def accuracies(values: Mapping[str, float] | None) -> dict[str, float]:
    """Accuracy per architecture label, from a layer's objective values."""
    out = {}
    for name, value in (values or {}).items():
        info = objective_kind(name)
        if info.kind == ACCURACY.name and info.architecture is not None:
            out[info.architecture] = value
    return out


def accuracy_name(architecture: str) -> str:
    """The objective holding the accuracy on `architecture`."""
    return ACCURACY.objective_name(architecture)


def mean_accuracy(values: Mapping[str, float] | None) -> float | None:
    """The mean of a layer's accuracy objectives over architectures (None when it has none)."""
    by_architecture = accuracies(values)
    return statistics.fmean(by_architecture.values()) if by_architecture else None


def heading(name: str) -> str:
    """A short column heading: the architecture for a per-architecture objective, else its name."""
    return objective_kind(name).architecture or name
