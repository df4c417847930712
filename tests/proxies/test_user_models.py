"""Users' models as proxies: a Python factory injected or swapped, torchvision and timm models built for the
data and swapped, and every way one can fail refused before a search starts, naming the factory and cause."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError
from torch import nn

import evonorm_search as es
from evonorm_search.proxies import ArchitectureConfig, DataConfig, TrainingConfig, build_model, count_slots, load_data
from evonorm_search.proxies.probe import probe_architecture
from evonorm_search.proxies.user_models import ArchitectureError
from evonorm_search.swap import ChannelsLast
from tests import optional_packages

FACTORIES = "tests.proxies.factories"
IMAGES = DataConfig(name="synthetic", synthetic_shape=[1, 8, 8], synthetic_classes=3, samples=60)


def build(arch: ArchitectureConfig | dict, *, in_channels: int = 1, classes: int = 3, dims: int = 2) -> nn.Module:
    if isinstance(arch, dict):
        arch = ArchitectureConfig.model_validate(arch)
    return build_model(
        arch, es.library.get("bn_relu"), in_channels=in_channels, classes=classes, spatial_dims=dims, groups=2, eps=1e-4
    )


def python(function: str, **kwargs) -> dict:
    return {"kind": "python", "factory": f"{FACTORIES}:{function}", "kwargs": kwargs}


def test_a_factory_that_takes_norm_act_gets_the_candidate_and_the_datas_sizes():
    model = build(python("small_cnn", width=6), in_channels=2, classes=5)
    slots = [m for m in model.modules() if isinstance(m, es.NormAct)]
    assert len(slots) == count_slots(model) == 2
    assert all(m.graph == es.library.get("bn_relu") and m.groups == 2 and m.eps == 1e-4 for m in slots)
    assert model[0].in_channels == 2 and model[0].out_channels == 6
    assert model(torch.randn(4, 2, 8, 8)).shape == (4, 5)


def test_a_factory_without_norm_act_is_swapped():
    model = build(python("batchnorm_cnn"), in_channels=3, classes=4)
    assert count_slots(model) == 1 and type(model[2]) is nn.Identity  # the ReLU after the BatchNorm went too
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 4)


def test_the_seed_fixes_a_users_model_as_it_fixes_the_proxies():
    arch = ArchitectureConfig.model_validate(python("small_cnn"))
    a, b = (
        build_model(
            arch, es.library.get("bn_relu"), in_channels=1, classes=3, spatial_dims=2, groups=2, eps=1e-5, seed=7
        )
        for _ in range(2)
    )
    assert all(torch.equal(pa, pb) for pa, pb in zip(a.parameters(), b.parameters(), strict=True))


@pytest.mark.parametrize(
    ("factory", "fragment"),
    [
        ("tests.proxies.missing_module:f", "module 'tests.proxies.missing_module' cannot be imported (ModuleNotFound"),
        (f"{FACTORIES}:missing", f"module '{FACTORIES}' has no attribute 'missing'"),
        (f"{FACTORIES}:NOT_CALLABLE", "'NOT_CALLABLE' is a int, not a callable"),
        (f"{FACTORIES}:raises", "raised ValueError: unsupported number of classes"),
        (f"{FACTORIES}:not_a_module", "returned a str, not a torch.nn.Module"),
        (f"{FACTORIES}:without_norms", "the model has no norm slot"),
        (f"{FACTORIES}:ignores_norm_act", "takes 'norm_act' but the model it built never called it"),
    ],
)
def test_a_factory_that_cannot_make_a_proxy_is_refused_naming_it_and_the_cause(factory, fragment):
    with pytest.raises(ArchitectureError) as info:
        build({"kind": "python", "factory": factory})
    assert str(info.value).startswith(f"factory {factory!r}") and fragment in str(info.value)


def test_a_model_that_rejects_the_datas_shape_is_refused_on_one_batch():
    data = load_data(IMAGES)
    arch = ArchitectureConfig.model_validate(python("sequence_cnn"))
    with pytest.raises(ArchitectureError, match=rf"factory '{FACTORIES}:sequence_cnn': the model rejects the data's "):
        probe_architecture(arch, es.library.get("bn_relu"), data, TrainingConfig(device="cpu"), groups=2, eps=1e-5)


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ({"kind": "python", "factory": "no_colon"}, "should match pattern"),
        ({"kind": "python", "factory": "m:f", "kwargs": {"num_classes": 3}}, "num_classes must not be in kwargs"),
        ({"kind": "torchvision", "model": "resnet18", "kwargs": {"norm_layer": 1}}, "norm_layer must not be in"),
        ({"kind": "timm", "model": "resnet10t", "width": 3}, "Extra inputs are not permitted"),
        ({"kind": "python"}, "Field required"),
    ],
)
def test_user_model_settings_are_validated(config, fragment):
    with pytest.raises(ValidationError, match=fragment):
        ArchitectureConfig.model_validate(config)


# -- torchvision and timm ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_a_torchvision_model_is_built_for_the_data_and_swapped(name):
    optional_packages.torchvision()
    model = build({"kind": "torchvision", "model": name}, in_channels=1, classes=3)
    assert count_slots(model) > 10 and not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first.in_channels == 1  # the first convolution takes the data's channels
    out = model(torch.randn(2, 1, 16, 16))
    assert out.shape == (2, 3)
    out.sum().backward()


def test_a_timm_model_is_built_for_the_data_and_swapped():
    optional_packages.timm()
    model = build({"kind": "timm", "model": "resnet10t"}, in_channels=2, classes=4)
    assert count_slots(model) > 5 and model(torch.randn(2, 2, 16, 16)).shape == (2, 4)


def test_an_unknown_torchvision_model_is_refused_by_name():
    optional_packages.torchvision()
    with pytest.raises(ArchitectureError, match="torchvision model 'resnet1': Unknown model resnet1"):
        build({"kind": "torchvision", "model": "resnet1"})


@pytest.mark.parametrize(("kind", "package"), [("torchvision", "torchvision"), ("timm", "timm")])
def test_a_library_that_does_not_import_is_refused_with_the_reason(monkeypatch, kind, package):
    real_import = importlib.import_module

    def broken(name: str, *args, **kwargs):
        if name == package:
            raise RuntimeError("operator torchvision::nms does not exist")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", broken)
    with pytest.raises(ArchitectureError) as info:
        build({"kind": kind, "model": "resnet18"})
    assert str(info.value) == (
        f"{kind} model 'resnet18' needs {package}, which could not be imported: "
        "RuntimeError: operator torchvision::nms does not exist"
    )


def test_a_missing_library_says_which_extra_installs_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # what an import of an absent package sees
    with pytest.raises(ArchitectureError, match=r"needs timm, which could not be imported \(pip install"):
        build({"kind": "timm", "model": "resnet10t"})


def test_a_transformer_factory_with_layer_norms_is_swapped_over_the_channel_view():
    model = build(python("token_mixer", width=8), in_channels=2, classes=3, dims=1)
    assert count_slots(model) == 2 and sum(isinstance(m, ChannelsLast) for m in model.modules()) == 2
    assert model(torch.randn(2, 2, 6)).shape == (2, 3)


def test_the_example_factory_injected_and_swapped_builds_the_same_network(monkeypatch):
    # examples/own_model.py writes one network twice: taking `norm_act`, and with BatchNorm-ReLU pairs that
    # the swap replaces. At one seed both are the same proxy, weights and outputs.
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "examples"))
    models = [
        build_model(
            ArchitectureConfig(kind="python", factory=f"own_model:{name}", kwargs={"width": 4}),
            es.library.get("gn_relu"),
            in_channels=1,
            classes=10,
            spatial_dims=2,
            groups=2,
            eps=1e-5,
            seed=0,
        )
        for name in ("small_cnn", "small_cnn_with_batchnorm")
    ]
    injected, swapped = models
    assert count_slots(injected) == count_slots(swapped) == 4
    assert [p.shape for p in injected.parameters()] == [p.shape for p in swapped.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(injected.parameters(), swapped.parameters(), strict=True))
    x = torch.randn(3, 1, 8, 8)
    torch.testing.assert_close(swapped(x), injected(x), rtol=0, atol=0)
