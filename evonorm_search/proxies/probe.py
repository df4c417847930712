"""One look at every architecture of a config before any compute is spent on it: build it on one batch of
the data with a library layer, run one forward and backward, count its slots, and time a few training steps
to estimate what one candidate costs on it. A model that cannot be a proxy fails here, naming the cause.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn

from ..ir import Graph
from .architectures import build_model
from .config import ArchitectureConfig, TrainingConfig
from .data import LoadedData
from .models import count_slots
from .training import ProxyTrainer
from .user_models import ArchitectureError, check_forward, describe

# Steps timed for the estimate, after one untimed step (first calls pay for allocation and dispatch).
TIMED_STEPS = 2


@dataclass(frozen=True)
class Probe:
    """What one architecture is on the data: its slots and parameters, and seconds per training step and
    per candidate (a whole proxy run of the configured steps, validation not counted)."""

    label: str
    kind: str
    slots: int
    parameters: int
    seconds_per_step: float
    seconds_per_candidate: float


def probe_architecture(
    arch: ArchitectureConfig,
    layer: Graph,
    data: LoadedData,
    training: TrainingConfig,
    *,
    groups: int,
    eps: float,
    backend: str = "auto",
    seed: int = 0,
) -> Probe:
    """Build `arch` around `layer`, check it on one batch, and time it; ArchitectureError when it fails."""
    model = checked_model(arch, layer, data, groups=groups, eps=eps, backend=backend, seed=seed)
    seconds = _seconds_per_step(model, data, training, seed)
    return Probe(
        label=arch.label,
        kind=arch.kind,
        slots=count_slots(model),
        parameters=sum(p.numel() for p in model.parameters()),
        seconds_per_step=seconds,
        seconds_per_candidate=seconds * training.steps,
    )


def checked_model(
    arch: ArchitectureConfig,
    layer: Graph,
    data: LoadedData,
    *,
    groups: int,
    eps: float,
    backend: str = "auto",
    seed: int = 0,
) -> nn.Module:
    """`arch` built around `layer` after one forward and backward on a batch of `data`; ArchitectureError,
    naming the architecture and the cause, when it cannot be built or cannot take the data."""
    try:
        model = build_model(
            arch,
            layer,
            in_channels=data.in_channels,
            classes=data.num_classes,
            spatial_dims=data.spatial_dims,
            groups=groups,
            eps=eps,
            backend=backend,
            seed=seed,
        )
    except ArchitectureError:
        raise
    except ValueError as e:  # a built-in kind's own refusal (the data's dims)
        raise ArchitectureError(f"{describe(arch)}: {e}") from e
    _forward_and_backward(model, arch, data)
    return model


def _forward_and_backward(model: nn.Module, arch: ArchitectureConfig, data: LoadedData) -> None:
    x, y = data.head(8)
    model.train()
    logits = check_forward(model, arch, x, data.num_classes)
    loss = nn.functional.cross_entropy(logits, y)
    try:
        loss.backward()
    except RuntimeError as e:
        raise ArchitectureError(f"{describe(arch)}: backward fails: {e}".splitlines()[0]) from e
    if not torch.isfinite(loss):
        raise ArchitectureError(f"{describe(arch)}: the loss of one batch is not finite ({float(loss)})")
    model.zero_grad(set_to_none=True)


def _seconds_per_step(model: nn.Module, data: LoadedData, training: TrainingConfig, seed: int) -> float:
    """Seconds per step of the configured recipe (its batch size, device and threads) on this model."""
    timed = training.model_copy(update={"steps": TIMED_STEPS + 1, "warmup_steps": 0})
    trainer = ProxyTrainer(model, data, timed, seed=seed)
    try:
        trainer.train_until(1, release=False)  # streamed data: its loader workers start here, untimed
        _synchronize(trainer.device)
        start = time.perf_counter()
        trainer.train_until(TIMED_STEPS + 1, release=False)
        _synchronize(trainer.device)
        return (time.perf_counter() - start) / TIMED_STEPS
    finally:
        trainer.close()


def _synchronize(device: torch.device) -> None:
    """Wait for the GPU's queued work, so the clock measures the steps and not their launches."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
