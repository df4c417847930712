"""Proxy networks: every norm-activation slot holds the candidate, nothing else normalises, 1-D and 2-D."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError
from torch import nn

import evonorm_search as es
from evonorm_search.proxies import ArchitectureConfig, build_model, count_slots

KINDS = ("resnet", "mobilenetv2", "efficientnet")


def make(kind: str, layer: str = "gn_relu", dims: int = 2, **arch):
    config = ArchitectureConfig(kind=kind, width=4, **arch)
    return build_model(
        config, es.library.get(layer), in_channels=3, classes=5, spatial_dims=dims, groups=2, eps=1e-5, seed=0
    )


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dims", [1, 2])
def test_every_slot_is_the_candidate_and_the_output_has_one_logit_per_class(kind, dims):
    model = make(kind, dims=dims, blocks=[1, 2])
    shape = (4, 3, 16) if dims == 1 else (4, 3, 8, 8)
    assert model(torch.randn(shape)).shape == (4, 5)
    slots = [m for m in model.modules() if isinstance(m, es.NormAct)]
    assert count_slots(model) == len(slots) >= 4
    assert all(m.graph == es.library.get("gn_relu") and m.groups == 2 and m.eps == 1e-5 for m in slots)
    norms = (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm, nn.ReLU, nn.ReLU6, nn.SiLU)
    assert not any(isinstance(m, norms) for m in model.modules())


def test_slot_counts_follow_the_architecture():
    # ResNet-v2: two per block plus the final one; MobileNetV2: stem, two per block, head.
    assert count_slots(make("resnet", blocks=[2, 1])) == 2 * 3 + 1
    assert count_slots(make("mobilenetv2", blocks=[1, 1])) == 1 + 2 * 2 + 1
    assert count_slots(make("mobilenetv2", blocks=[1], expansion=1)) == 1 + 1 + 1
    assert count_slots(make("efficientnet", blocks=[1, 1, 1])) == 1 + 2 * 3 + 1


@pytest.mark.parametrize("kind", KINDS)
def test_a_batch_free_candidate_makes_a_batch_independent_network(kind):
    model = make(kind, layer="evonorm_s0").train()
    x = torch.randn(6, 3, 8, 8)
    alone = model(x[:1])
    together = model(x)[:1]
    assert torch.allclose(alone, together, atol=1e-5)
    batch_model = make(kind, layer="bn_relu").train()
    assert not torch.allclose(batch_model(x[:2])[:1], batch_model(x)[:1], atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_gradients_reach_the_candidates_parameters(kind):
    model = make(kind)
    model(torch.randn(4, 3, 8, 8)).sum().backward()
    slots = [m for m in model.modules() if isinstance(m, es.NormAct)]
    assert all(m.v1.grad is not None and torch.isfinite(m.v1.grad).all() for m in slots)


def test_seed_fixes_the_initial_weights_without_touching_the_global_rng():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a, b = make("resnet"), make("resnet")
    after = torch.rand(1)
    assert torch.equal(before, after)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_three_dimensional_inputs_are_refused():
    with pytest.raises(ValueError, match="1-D or 2-D inputs"):
        build_model(
            ArchitectureConfig(kind="resnet"),
            es.library.get("relu"),
            in_channels=1,
            classes=2,
            spatial_dims=3,
            groups=1,
            eps=1e-5,
        )


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        (
            {"kind": "vgg"},
            "Input tag 'vgg' found using 'kind' does not match any of the expected tags: 'resnet', 'mobilenetv2'",
        ),
        ({"kind": ["resnet"]}, "Input tag .* found using 'kind' does not match any of the expected tags"),
        ({"width": 4}, "Unable to extract tag using discriminator 'kind'"),
        ({"kind": "resnet", "blocks": []}, "at least 1 item"),
        ({"kind": "resnet", "blocks": [1, 0]}, "every stage needs at least one block"),
        ({"kind": "efficientnet", "kernel_size": 4}, "kernel_size must be odd"),
        ({"kind": "resnet", "width": 0}, "greater than or equal to 1"),
        ({"kind": "resnet", "name": "Bad Name"}, "should match pattern"),
    ],
)
def test_architecture_config_rejects_bad_values(kwargs, fragment):
    with pytest.raises(ValidationError, match=fragment):
        ArchitectureConfig(**kwargs)
