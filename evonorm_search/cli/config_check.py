"""`evonorm-search check CONFIG.yaml`: every architecture of a search config on one batch of its data, before
any compute is spent: built with bn_relu in its slots, one forward and backward, its slots counted and a
candidate's cost on it estimated. A model that cannot be a proxy fails here, naming the field and the cause.
Each data set is listed too: held in memory or streamed through a DataLoader, and why, with its size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

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
from ..proxies.data import DataError, LoadedData, ProxyData, Split, data_plan, load_data
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
    Console(width=max(console.width, 150)).print(_data_table(config))
    if problems:
        raise fail("; ".join(problems))
    console.print(
        f"[bold]config ok[/]: about {proxy_seconds:.1f} s of proxy training per candidate "
        f"({config.training.steps} steps on each of {len(config.architectures)} proxies), "
        f"at most {proxy_seconds * config.budget / 3600:.2f} h for the budget of {config.budget} on one worker "
        "(rejected candidates stop early)",
        highlight=False,
    )


def _data_table(config: SearchConfig) -> Table:
    """Each task's data: its examples, one example's shape, its size, and whether it is held in memory or
    streamed (and why: `in_memory` and the estimate against `in_memory_limit_mib`)."""
    table = Table(title="data: held in memory or streamed (size: every example decoded as float32)")
    for column in ("role", "field", "data set", "split", "train / scored", "example", "size", "held", "why"):
        justify: Literal["left", "right"] = "right" if column in ("train / scored", "size") else "left"
        table.add_column(column, justify=justify, no_wrap=True)
    for task, field in zip(_tasks(config), ("data", "validation.data"), strict=True):
        try:
            plan = data_plan(task.data)
            data = load_data(task.data, task.split)
        except DataError:
            continue  # the architectures' table has named the field
        table.add_row(
            task.role,
            field,
            task.data.name,
            task.split,
            f"{data.train_size:,} / {data.scored_size:,}",
            "x".join(str(s) for s in _example_shape(data)),
            _size(plan.estimated_bytes, data),
            "in memory" if isinstance(data, ProxyData) else f"streamed, {_workers(data.loader_workers)}",
            plan.reason,
        )
    return table


def _example_shape(data: LoadedData) -> tuple[int, ...]:
    x, _ = data.head(1)
    return tuple(x.shape[1:])


def _size(estimated: int | None, data: LoadedData) -> str:
    """The estimated decoded size of the whole data set, else (always in memory) this split's tensors."""
    size = estimated if estimated is not None else data.nbytes if isinstance(data, ProxyData) else 0
    return f"{size / 2**20:,.1f} MiB"


def _workers(workers: int) -> str:
    return f"{workers} worker{'s' if workers != 1 else ''}" if workers else "no workers"


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
