"""The table of architecture kinds: every row goes through config, build, one training step and validation,
a new row needs nothing else, and moving the built-in kinds onto the table changed none of their scores."""

from __future__ import annotations

import math
from typing import Literal, get_args

import pytest
import torch
from torch import nn

import evonorm_search as es
from evonorm_search.proxies import (
    ARCHITECTURES,
    ArchitectureConfig,
    DataConfig,
    ProxyTrainer,
    TrainingConfig,
    build_model,
    count_slots,
    load_data,
)
from evonorm_search.proxies.architectures import ArchitectureRow, check_spatial_dims
from evonorm_search.proxies.config import ArchitectureKind
from tests import optional_packages

IMAGES = DataConfig(name="synthetic", synthetic_shape=[1, 8, 8], synthetic_classes=3, samples=60)
SEQUENCES = DataConfig(name="synthetic", synthetic_shape=[2, 16], synthetic_classes=3, samples=60)
ONE_STEP = TrainingConfig(steps=1, batch_size=8, device="cpu", threads=1)

# One small configuration per row, and the data it trains on (of the spatial dims the row takes).
EXAMPLES: dict[str, tuple[dict, DataConfig]] = {
    "resnet": ({"kind": "resnet", "width": 4, "blocks": [1]}, IMAGES),
    "mobilenetv2": ({"kind": "mobilenetv2", "width": 4, "blocks": [1]}, SEQUENCES),
    "efficientnet": ({"kind": "efficientnet", "width": 4, "blocks": [1], "kernel_size": 5}, IMAGES),
    "transformer": ({"kind": "transformer", "width": 8, "depth": 1}, SEQUENCES),
    "vit": ({"kind": "vit", "width": 8, "depth": 1}, IMAGES),
    "python": ({"kind": "python", "factory": "tests.proxies.factories:small_cnn", "kwargs": {"width": 4}}, IMAGES),
    "torchvision": ({"kind": "torchvision", "model": "resnet18"}, IMAGES),
    "timm": ({"kind": "timm", "model": "resnet10t"}, IMAGES),
}


def one_step(arch: ArchitectureConfig, data_config: DataConfig, layer: str = "bn_relu"):
    """Build `arch` on the data, train one step, score it: (model, metrics)."""
    data = load_data(data_config)
    model = build_model(
        arch,
        es.library.get(layer),
        in_channels=data.in_channels,
        classes=data.num_classes,
        spatial_dims=data.spatial_dims,
        groups=2,
        eps=1e-5,
        seed=0,
    )
    trainer = ProxyTrainer(model, data, ONE_STEP, seed=0)
    trainer.train_until(1)
    return model, trainer.evaluate()


def test_every_kind_a_config_can_name_is_a_row_with_an_example():
    assert set(get_args(ArchitectureKind)) == set(ARCHITECTURES) == set(EXAMPLES)


@pytest.mark.parametrize("kind", list(ARCHITECTURES))
def test_every_row_goes_through_config_build_one_training_step_and_validation(kind):
    row = ARCHITECTURES[kind]
    if row.requires is not None:
        optional_packages.package(row.requires)
    config, data = EXAMPLES[kind]
    arch = ArchitectureConfig.model_validate(config)
    assert isinstance(arch, row.config) and arch.kind == kind
    assert ArchitectureConfig(**config) == arch  # constructing the base validates through the same union
    model, metrics = one_step(arch, data)
    assert count_slots(model) > 0
    assert metrics.steps == 1 and not metrics.diverged and metrics.loss is not None and math.isfinite(metrics.loss)


class MlpArchitecture(ArchitectureConfig):
    """A throwaway kind: flatten, linear, the candidate, linear."""

    kind: Literal["mlp"]
    hidden: int = 6


def _mlp(arch: MlpArchitecture, dims: int, in_channels: int, classes: int, norm) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.LazyLinear(arch.hidden), norm(arch.hidden), nn.Linear(arch.hidden, classes))


def test_a_new_row_needs_nothing_else(monkeypatch):
    monkeypatch.setitem(ARCHITECTURES, "mlp", ArchitectureRow(MlpArchitecture, _mlp, spatial_dims=(2,)))
    arch = MlpArchitecture.model_validate({"kind": "mlp", "hidden": 4, "name": "tiny"})
    model, metrics = one_step(arch, IMAGES)
    assert count_slots(model) == 1 and metrics.steps == 1 and metrics.loss is not None
    with pytest.raises(ValueError, match=r"architecture 'tiny' \(kind mlp\) takes 2-D inputs, the data has 1"):
        check_spatial_dims(arch, 1)


# Validation accuracy and loss after 4 steps at seed 3 (groups 2, batch 16, one thread), per kind and
# layer: printed by the code before the kinds moved onto the table (main at 2f155c9, with the loop of
# `_reference_scores` below), and hard-coded here: the accuracies must stay the same, the losses within 1e-6.
REFERENCE_SCORES = {
    ("resnet", "bn_relu"): (0.116991643454039, 2.309016405705954),
    ("resnet", "gn_relu"): (0.0947075208913649, 2.3146074980414344),
    ("resnet", "evonorm_s0"): (0.10027855153203342, 2.308314076373172),
    ("resnet", "layernorm"): (0.10027855153203342, 2.3125341728869255),
    ("mobilenetv2", "bn_relu"): (0.10027855153203342, 2.307623478031424),
    ("mobilenetv2", "gn_relu"): (0.10027855153203342, 2.3289524599038125),
    ("mobilenetv2", "evonorm_s0"): (0.11420612813370473, 2.3040094827211),
    ("mobilenetv2", "layernorm"): (0.1615598885793872, 2.3022486439654424),
    ("efficientnet", "bn_relu"): (0.10027855153203342, 2.305949346600801),
    ("efficientnet", "gn_relu"): (0.10027855153203342, 2.332309053468837),
    ("efficientnet", "evonorm_s0"): (0.13649025069637882, 2.2897444276092442),
    ("efficientnet", "layernorm"): (0.18662952646239556, 2.274165331487204),
    ("vit", "bn_relu"): (0.10027855153203342, 2.4825923994059016),
    ("vit", "gn_relu"): (0.09749303621169916, 2.3584514819811977),
    ("vit", "evonorm_s0"): (0.10027855153203342, 2.3425894819594357),
    ("vit", "layernorm"): (0.09749303621169916, 2.330357628612465),
    ("transformer", "bn_relu"): (0.14, 2.468168029785156),
    ("transformer", "gn_relu"): (0.12, 2.356669921875),
    ("transformer", "evonorm_s0"): (0.16, 2.3426138305664064),
    ("transformer", "layernorm"): (0.16, 2.388142395019531),
}


def _reference_scores(kind: str) -> dict[tuple[str, str], tuple[float, float | None]]:
    data_name = "mnist1d" if kind == "transformer" else "digits"
    # The digits have a fixed size: the sizes are the generated MNIST-1D's (the digits ignored them when
    # these numbers were recorded; they are refused for them now).
    sizes = {"samples": 200, "test_samples": 40} if data_name == "mnist1d" else {}
    data = load_data(DataConfig(name=data_name, max_train_samples=120, **sizes))
    if kind in ("transformer", "vit"):
        arch = ArchitectureConfig(kind=kind, depth=1, width=8)
    else:
        arch = ArchitectureConfig(kind=kind, width=4, blocks=[1, 1])
    scores = {}
    for layer in ("bn_relu", "gn_relu", "evonorm_s0", "layernorm"):
        model = build_model(
            arch,
            es.library.get(layer),
            in_channels=data.in_channels,
            classes=data.num_classes,
            spatial_dims=data.spatial_dims,
            groups=2,
            eps=1e-5,
            seed=3,
        )
        training = TrainingConfig(steps=4, batch_size=16, device="cpu", threads=1, eval_batch_size=512)
        trainer = ProxyTrainer(model, data, training, seed=3)
        trainer.train_until(4)
        metrics = trainer.evaluate()
        scores[(kind, layer)] = (metrics.accuracy, metrics.loss)
    return scores


@pytest.mark.parametrize("kind", ["resnet", "mobilenetv2", "efficientnet", "vit", "transformer"])
def test_the_built_in_kinds_score_as_before_the_table(kind):
    torch.manual_seed(0)  # the global RNG is not used by building or training; this only rules it out
    expected = {key: value for key, value in REFERENCE_SCORES.items() if key[0] == kind}
    scores = _reference_scores(kind)
    assert scores.keys() == expected.keys()
    for key, (accuracy, loss) in scores.items():
        # The accuracy is a count of right answers: exact. The loss is a float32 mean whose last bits follow
        # the CPU's vector width (1.5e-7 apart between two x86 hosts of this project's CI), so it is held
        # to 1e-6 of itself; a change in what the table builds or trains moves it by far more.
        assert accuracy == expected[key][0], key
        assert loss == pytest.approx(expected[key][1], rel=1e-6), key
