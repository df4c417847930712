"""The proxy training loop: learns, is reproducible, trains in stages, survives divergence."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError

import evonorm_search as es
from evonorm_search.proxies import ArchitectureConfig, DataConfig, ProxyTrainer, TrainingConfig, build_model, load_data
from evonorm_search.proxies.training import lr_factor, resolve_device

SYNTHETIC = DataConfig(name="synthetic", synthetic_shape=[1, 6, 6], synthetic_classes=3, samples=240)


def model_for(layer: str, data, kind: str = "resnet"):
    return build_model(
        ArchitectureConfig(kind=kind, width=4, blocks=[1]),
        es.parse(layer) if layer not in es.library.names() else es.library.get(layer),
        in_channels=data.in_channels,
        classes=data.num_classes,
        spatial_dims=data.spatial_dims,
        groups=2,
        eps=1e-5,
        seed=0,
    )


def train(layer: str, steps: int = 60, **training):
    data = load_data(SYNTHETIC)
    trainer = ProxyTrainer(
        model_for(layer, data),
        data,
        TrainingConfig(steps=steps, batch_size=32, device="cpu", threads=1, **training),
        seed=0,
    )
    trainer.train_until(steps)
    return trainer.evaluate()


def test_a_good_layer_learns_the_synthetic_task():
    metrics = train("evonorm_s0", steps=100)
    assert metrics.accuracy > 0.9
    assert metrics.loss is not None and metrics.loss < 0.5
    assert metrics.steps == 100 and not metrics.diverged and metrics.seconds > 0


def test_training_is_reproducible_from_the_seed():
    a, b = train("evonorm_s0", steps=20), train("evonorm_s0", steps=20)
    assert (a.accuracy, a.loss) == (b.accuracy, b.loss)


def test_training_in_stages_equals_training_at_once():
    data = load_data(SYNTHETIC)
    config = TrainingConfig(steps=30, batch_size=16, device="cpu", threads=1)
    staged = ProxyTrainer(model_for("gn_relu", data), data, config, seed=1)
    staged.train_until(10)
    staged.evaluate()
    staged.train_until(30)
    direct = ProxyTrainer(model_for("gn_relu", data), data, config, seed=1)
    direct.train_until(30)
    for p, q in zip(staged.model.parameters(), direct.model.parameters(), strict=True):
        assert torch.equal(p, q)
    staged.train_until(1000)  # capped at the configured steps
    assert staged.step == 30


def test_divergence_stops_training_and_is_reported_not_raised():
    metrics = train("exp(exp(exp(x)))", steps=20, lr=5.0, grad_clip=None)
    assert metrics.diverged
    assert metrics.steps < 20
    assert 0.0 <= metrics.accuracy <= 1.0
    assert metrics.loss is None or math.isfinite(metrics.loss)


def test_adamw_and_constant_schedule_train_too():
    metrics = train("gn_relu", steps=80, optimizer="adamw", lr=0.01, schedule="constant")
    assert metrics.accuracy > 0.8


def test_learning_rate_warms_up_then_follows_the_cosine():
    config = TrainingConfig(steps=100, warmup_steps=10)
    assert lr_factor(0, config) == pytest.approx(0.1)
    assert lr_factor(9, config) == pytest.approx(1.0)
    assert lr_factor(10, config) == pytest.approx(1.0)
    assert lr_factor(55, config) == pytest.approx(0.5)
    assert lr_factor(100, config) == pytest.approx(0.0)
    assert lr_factor(50, TrainingConfig(steps=100, schedule="constant")) == 1.0


def test_devices_resolve_and_a_missing_gpu_is_a_clear_error():
    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert resolve_device("auto").type == "cpu"
        with pytest.raises(RuntimeError, match="no CUDA device"):
            resolve_device("cuda")


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"optimizer": "adam"}, "Input should be 'sgd' or 'adamw'"),
        ({"lr": 0}, "greater than 0"),
        ({"lr": float("nan")}, "finite number"),
        ({"steps": 10, "warmup_steps": 10}, "warmup_steps .* must be below steps"),
        ({"batch_size": 1}, "greater than or equal to 2"),
        ({"device": "tpu"}, "Input should be 'auto', 'cpu' or 'cuda'"),
    ],
)
def test_training_config_rejects_bad_values(kwargs, fragment):
    with pytest.raises(ValidationError, match=fragment):
        TrainingConfig(**kwargs)
