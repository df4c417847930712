"""`evonorm-search check CONFIG.yaml`: every architecture of a search config on one batch of its data, before
any compute is spent: built with bn_relu in its slots, one forward and backward, its slots counted and a
candidate's cost on it estimated. A model that cannot be a proxy fails here, naming the field and the cause.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .. import library
from ..proxies.config import (
    ArchitectureConfig,
    DataConfig,
    PythonArchitecture,
    TimmArchitecture,
    TorchvisionArchitecture,
    TrainingConfig,
)
from ..proxies.data import DataError, Split, load_data
from ..proxies.probe import Probe, checked_model, probe_architecture
from ..proxies.user_models import ArchitectureError
from ..search.config import SearchConfig
from .app import console, fail
from .common import load_config, shipped_folder

# The layer every architecture is checked with: a library layer every kind must take.
CHECK_LAYER = "bn_relu"


@dataclass(frozen=True)
class _Task:
    """The architectures of one role (the proxies, the target task), their field and what they train on."""

    role: str
    field: str
    architectures: list[ArchitectureConfig]
    data: DataConfig
    training: TrainingConfig
    split: Split


def _tasks(config: SearchConfig) -> list[_Task]:
    validation = config.validation
    return [
        _Task("proxy", "architectures", list(config.architectures), config.data, config.training, "search"),
        _Task(
            "target",
            "validation.architectures",
            list(validation.architectures),
            validation.data,
            validation.training,
            "target",
        ),
    ]


def check_search_config(path: Path, working_dir: Path | None = None) -> None:
    """Probe every architecture; print the table, or fail (exit 2) naming each field that does not work.
    `working_dir` (else the config's `code:`) is the folder the factories import from, as Ray ships it."""
    config = load_config(path)
    shipped_folder(working_dir, config)
    table = Table(title=f"{path}: every architecture with {CHECK_LAYER} on one batch")
    for column in ("role", "field", "architecture", "kind", "slots", "parameters", "s/step", "s/candidate"):
        table.add_column(column, justify="right" if column in ("slots", "parameters") or "/" in column else "left")
    problems: list[str] = []
    proxy_seconds = 0.0
    for task in _tasks(config):
        for probe, field in _probes(task, config, problems):
            table.add_row(
                task.role,
                field,
                probe.label,
                probe.kind,
                str(probe.slots),
                f"{probe.parameters:,}",
                f"{probe.seconds_per_step:.4f}",
                f"{probe.seconds_per_candidate:.1f}",
            )
            proxy_seconds += probe.seconds_per_candidate if task.role == "proxy" else 0.0
    Console(width=max(console.width, 130)).print(table)  # fields and labels are never cut
    if problems:
        raise fail("; ".join(problems))
    console.print(
        f"[bold]config ok[/]: about {proxy_seconds:.1f} s of proxy training per candidate "
        f"({config.training.steps} steps on each of {len(config.architectures)} proxies), "
        f"at most {proxy_seconds * config.budget / 3600:.2f} h for the budget of {config.budget} on one worker "
        "(rejected candidates stop early)",
        highlight=False,
    )


def _probes(task: _Task, config: SearchConfig, problems: list[str]) -> list[tuple[Probe, str]]:
    """The probe of each architecture of `task` with its field; each failure goes to `problems`."""
    try:
        data = load_data(task.data, task.split)
    except DataError as e:
        problems.append(f"{task.field}: the data cannot be loaded: {e}")
        return []
    probes = []
    for index, arch in enumerate(task.architectures):
        field = f"{task.field}.{index}"
        try:
            probe = probe_architecture(
                arch,
                library.get(CHECK_LAYER),
                data,
                task.training,
                groups=config.groups,
                eps=config.eps,
                backend=config.backend,
                seed=config.seed,
            )
        except ArchitectureError as e:
            problems.append(f"{field}: {e}")
            continue
        probes.append((probe, field))
    return probes


# Kinds whose models are built from code the config names: they are checked before `run` starts.
_USERS_MODELS = (PythonArchitecture, TorchvisionArchitecture, TimmArchitecture)


def refuse_unusable_models(config: SearchConfig) -> None:
    """Before a search starts: build every user's model (python, torchvision, timm) on one batch of its
    data with bn_relu, forward and backward; fail (exit 2) naming each field that does not work. The
    built-in kinds always build, so they cost nothing here."""
    problems: list[str] = []
    for task in _tasks(config):
        indexed = [(i, a) for i, a in enumerate(task.architectures) if isinstance(a, _USERS_MODELS)]
        if not indexed:
            continue
        try:
            data = load_data(task.data, task.split)
        except DataError as e:
            raise fail(f"{task.field}: the data cannot be loaded: {e}") from None
        for index, arch in indexed:
            try:
                checked_model(
                    arch,
                    library.get(CHECK_LAYER),
                    data,
                    groups=config.groups,
                    eps=config.eps,
                    backend=config.backend,
                    seed=config.seed,
                )
            except ArchitectureError as e:
                problems.append(f"{task.field}.{index}: {e}")
    if problems:
        raise fail("; ".join(problems) + " (evonorm-search check CONFIG.yaml shows every architecture)")
