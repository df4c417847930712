"""Transformer proxies: encoders on sequences and ViTs on image patches, under every norm placement."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError
from torch import nn

import evonorm_search as es
from evonorm_search.proxies import ArchitectureConfig, DataConfig, ProxyData, ProxyTrainer, TrainingConfig, build_model
from evonorm_search.proxies.config import TRANSFORMER_KINDS
from evonorm_search.proxies.transformers import TokenNorm, block_placements, patchify
from evonorm_search.search.config import ConfigError, SearchConfig

PLACEMENTS = ("pre", "post", "peri", "mix")
INPUT = {"transformer": (1, (3, 24)), "vit": (2, (3, 8, 8))}  # spatial dims, input shape after N


def make(kind: str, layer: str = "layernorm_channel", **arch) -> nn.Module:
    config = ArchitectureConfig(kind=kind, width=8, heads=2, **arch)
    dims = INPUT[kind][0]
    return build_model(
        config, es.library.get(layer), in_channels=3, classes=4, spatial_dims=dims, groups=2, eps=1e-5, seed=0
    )


def _slots(model: nn.Module) -> list[es.NormAct]:
    return [m for m in model.modules() if isinstance(m, es.NormAct)]


def _tiny_data(kind: str) -> ProxyData:
    gen = torch.Generator().manual_seed(0)
    shape = INPUT[kind][1]
    x = torch.randn(24, *shape, generator=gen)
    y = torch.arange(24) % 4
    return ProxyData("tiny", x[:16], y[:16], x[16:], y[16:], 4)


@pytest.mark.parametrize("kind", TRANSFORMER_KINDS)
@pytest.mark.parametrize("placement", PLACEMENTS)
def test_each_placement_builds_and_trains_a_step(kind, placement):
    model = make(kind, placement=placement, depth=4)
    slots = _slots(model)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    config = TrainingConfig(optimizer="adamw", lr=1e-2, steps=2, batch_size=8, device="cpu", threads=1)
    trainer = ProxyTrainer(model, _tiny_data(kind), config, seed=0)
    trainer.train_until(1)
    assert trainer.step == 1 and not trainer.diverged
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert changed == set(before)  # every weight moved, the candidate's in every slot included
    assert all(m.weight.grad is not None and torch.isfinite(m.weight.grad).all() for m in slots)
    metrics = trainer.evaluate()
    assert 0.0 <= metrics.accuracy <= 1.0 and metrics.loss is not None


@pytest.mark.parametrize("kind", TRANSFORMER_KINDS)
def test_the_candidate_fills_every_norm_slot_and_the_final_norm(kind):
    depth = 4
    # pre: two per block and the final norm; post: two per block, none after (the last block ends
    # in a norm); peri: four per block and the final norm; mix: two per block and the final norm.
    expected = {"pre": 2 * depth + 1, "post": 2 * depth, "peri": 4 * depth + 1, "mix": 2 * depth + 1}
    for placement, count in expected.items():
        model = make(kind, "rmsnorm", placement=placement, depth=depth)
        slots = _slots(model)
        assert len(slots) == count, placement
        assert all(m.graph == es.library.get("rmsnorm") and m.num_features == 8 for m in slots)
        assert not any(isinstance(m, nn.LayerNorm | nn.RMSNorm | nn.BatchNorm1d) for m in model.modules())


def test_where_each_placement_puts_its_norms():
    def wired(placement: str, depth: int = 1) -> list[list[str]]:
        model = make("transformer", placement=placement, depth=depth)
        return [sorted(block.attention.norms) for block in model.blocks]

    assert wired("pre") == [["input"]]
    assert wired("post") == [["residual"]]
    assert wired("peri") == [["input", "output"]]
    assert wired("mix", 4) == [["residual"], ["input"], ["input"], ["input"]]
    assert block_placements("mix", 1) == ["post"]
    assert block_placements("mix", 3) == ["post", "pre", "pre"]
    assert block_placements("mix", 8) == ["post", "post"] + ["pre"] * 6
    assert block_placements("peri", 2) == ["peri", "peri"]


def test_post_norm_normalises_the_residual_sum_and_pre_norm_the_sublayer_input():
    # With the identity as the sublayer, the placements differ in exactly where the norm applies.
    norm = TokenNorm(es.NormAct("layernorm_channel", 6, backend="torch"))
    h = torch.randn(2, 5, 6) * 3 + 1
    reference = nn.functional.layer_norm
    from evonorm_search.proxies.transformers import Residual

    for slots, expected in (
        (("input",), h + reference(h, (6,), eps=1e-5)),
        (("residual",), reference(h + h, (6,), eps=1e-5)),
        (("input", "output"), h + reference(reference(h, (6,), eps=1e-5), (6,), eps=1e-5)),
    ):
        block = Residual(nn.Identity(), slots, 6, lambda c: es.NormAct("layernorm_channel", c, backend="torch"))
        torch.testing.assert_close(block(h), expected, rtol=1e-5, atol=1e-5)
    assert norm(h).shape == h.shape


def test_a_token_norm_hands_the_layer_a_view_of_the_hidden_states():
    seen = []
    layer = es.NormAct("rmsnorm", 6, backend="torch")
    layer.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    h = torch.randn(2, 5, 6)
    out = TokenNorm(layer)(h)
    (x,) = seen
    assert x.shape == (2, 6, 5) and x.data_ptr() == h.data_ptr() and x.stride() == (30, 1, 6)
    torch.testing.assert_close(out, nn.functional.rms_norm(h, (6,), eps=1e-5))


def test_a_batch_free_candidate_makes_the_transformer_batch_independent():
    x = torch.randn(5, *INPUT["transformer"][1])
    free = make("transformer", "layernorm_channel", placement="peri").train()
    torch.testing.assert_close(free(x[:1]), free(x)[:1], rtol=1e-5, atol=1e-5)
    powernorm_like = make("transformer", "bn_relu").train()  # `batch` over N and tokens: PowerNorm's axis
    assert not torch.allclose(powernorm_like(x[:2])[:1], powernorm_like(x)[:1], atol=1e-5)


def test_patches_cover_the_input_in_order_with_zero_padding():
    x = torch.arange(2 * 3 * 10.0).reshape(2, 3, 10)
    tokens = patchify(x, 4)
    assert tokens.shape == (2, 3, 12)
    torch.testing.assert_close(tokens[0, 0], torch.tensor([0, 1, 2, 3, 10, 11, 12, 13, 20, 21, 22, 23.0]))
    torch.testing.assert_close(tokens[0, 2], torch.tensor([8, 9, 0, 0, 18, 19, 0, 0, 28, 29, 0, 0.0]))
    image = torch.arange(2 * 4 * 4.0).reshape(1, 2, 4, 4)
    patches = patchify(image, 2)
    assert patches.shape == (1, 4, 8)  # row-major: the second patch is the top right one
    torch.testing.assert_close(patches[0, 1], torch.tensor([2, 3, 6, 7, 18, 19, 22, 23.0]))


def test_default_patch_sizes():
    assert ArchitectureConfig(kind="transformer").tokens_per_patch_side == 4  # MNIST-1D: 10 tokens
    assert ArchitectureConfig(kind="vit").tokens_per_patch_side == 2  # digits: 16 tokens
    assert ArchitectureConfig(kind="vit", patch_size=4).tokens_per_patch_side == 4


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"kind": "transformer", "width": 10, "heads": 4}, "heads (4) must divide width (10)"),
        ({"kind": "vit", "placement": "sandwich"}, "Input should be 'pre', 'post', 'peri' or 'mix'"),
        ({"kind": "transformer", "depth": 0}, "greater than or equal to 1"),
        ({"kind": "transformer", "heads": 0}, "greater than or equal to 1"),
        ({"kind": "vit", "mlp_ratio": 9}, "less than or equal to 8"),
        ({"kind": "transformer", "patch_size": 0}, "greater than or equal to 1"),
        ({"kind": "resnet", "depth": 4}, "depth only apply to transformer kinds, not to kind 'resnet'"),
        ({"kind": "resnet", "placement": "post"}, "placement only apply to transformer kinds"),
        ({"kind": "vit", "blocks": [2, 2]}, "blocks only apply to convolutional kinds, not to kind 'vit'"),
        ({"kind": "transformer", "depth": "2"}, "valid integer"),
    ],
)
def test_transformer_settings_are_validated(kwargs, fragment):
    with pytest.raises(ValidationError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        ArchitectureConfig(**kwargs)


def test_a_dumped_configuration_of_either_family_loads_again():
    for config in (ArchitectureConfig(kind="resnet", blocks=[2]), ArchitectureConfig(kind="vit", depth=3)):
        assert ArchitectureConfig.model_validate(config.model_dump()) == config


@pytest.mark.parametrize(
    ("kind", "data", "fragment"),
    [
        ("transformer", {"name": "digits"}, "takes 1-D inputs, the data has 2 spatial dim(s); use kind 'vit'"),
        ("vit", {"name": "mnist1d"}, "takes 2-D inputs, the data has 1 spatial dim(s); use kind 'transformer'"),
    ],
)
def test_a_kind_that_cannot_read_the_data_is_a_configuration_error(kind, data, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        SearchConfig.from_mapping({"name": "t", "architectures": [{"kind": kind}], "data": data})
    wrong_dims = 2 if kind == "transformer" else 1
    with pytest.raises(ValueError, match="use kind"):
        build_model(
            ArchitectureConfig(kind=kind),
            es.library.get("rmsnorm"),
            in_channels=1,
            classes=2,
            spatial_dims=wrong_dims,
            groups=1,
            eps=1e-5,
        )


def test_a_transformer_search_configuration_loads():
    config = SearchConfig.from_mapping(
        {
            "name": "transformers",
            "architectures": [
                {"kind": "transformer", "name": "pre", "placement": "pre"},
                {"kind": "transformer", "name": "peri", "placement": "peri", "depth": 3, "heads": 4},
            ],
            "data": {"name": "recall"},
        }
    )
    assert [a.placement for a in config.architectures] == ["pre", "peri"]
    assert config.input_shape() == (25, 1, 8)
    assert SearchConfig.from_yaml(config.to_yaml()) == config


def test_recall_data_loads_with_a_stratified_validation_split():
    data = es.proxies.load_data(DataConfig(name="recall", samples=400))
    assert data.train_x.shape[1:] == (25, 7) and data.num_classes == 8
    assert len(data.train_y) + len(data.val_y) == 400
