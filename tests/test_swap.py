"""swap_norm_act: every norm and the activation right after it (found from the traced data flow) become the
layer; activations elsewhere stay; the model runs forward and backward, in train and eval, and compiles."""

from __future__ import annotations

import copy
import importlib.util
import io
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import evonorm_search as es
from evonorm_search.swap import Replacement, SwapError
from tests import optional_packages

# The candidate "x" with affine off is the identity: a swapped model then computes its convolutions and
# the activations that were not removed, and nothing else, which the expected forwards below spell out.
IDENTITY = {"layer": "x", "affine": False}


_torchvision = optional_packages.torchvision
_timm = optional_packages.timm


def _norms(model: nn.Module) -> list[str]:
    bases = (nn.modules.batchnorm._NormBase, nn.GroupNorm)
    return [path for path, m in model.named_modules() if isinstance(m, bases)]


def _count(model: nn.Module, kind: type[nn.Module]) -> int:
    return sum(type(m) is kind for m in model.modules())


def _train_and_eval(model: nn.Module, shape=(2, 3, 32, 32)) -> None:
    """Forward and backward in train and eval mode; every parameter that takes part gets a finite gradient."""
    torch.manual_seed(0)
    for training in (True, False):
        model.train(training)
        model.zero_grad()
        out = model(torch.randn(*shape))
        assert torch.isfinite(out).all()
        out.square().mean().backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)


# -- torchvision ----------------------------------------------------------------------------------------


def _expected_resnet(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """ResNet-18 with every norm the identity and the ReLUs after norms gone: only the post-add ReLUs stay."""
    x = model.maxpool(model.conv1(x))
    for layer in (model.layer1, model.layer2, model.layer3, model.layer4):
        for block in layer:
            shortcut = x if block.downsample is None else block.downsample[0](x)
            x = torch.relu(block.conv2(block.conv1(x)) + shortcut)
    return model.fc(torch.flatten(model.avgpool(x), 1))


def test_resnet18_every_norm_and_the_relu_after_it_replaced():
    tv = _torchvision()
    model = tv.models.resnet18(weights=None, num_classes=10)
    batch_norms = _norms(model)
    replaced = es.swap_norm_act(model, "bn_relu")

    assert [r.path for r in replaced] == batch_norms and len(replaced) == 20
    assert _norms(model) == []
    assert all(type(model.get_submodule(p)) is es.NormAct for p in batch_norms)
    # The stem's ReLU follows bn1 only: it becomes Identity. Each block's shared ReLU follows bn1 and the add:
    # the block is rewritten, without the call after bn1. bn2 and the shortcut's norm feed the add.
    assert replaced[0] == Replacement("bn1", "BatchNorm2d", 64, activation="ReLU", activation_module="relu")
    assert type(model.relu) is nn.Identity
    block = replaced[1]
    assert (block.path, block.activation, block.activation_module, block.rewritten) == (
        "layer1.0.bn1",
        "ReLU",
        "layer1.0.relu",
        "layer1.0",
    )
    after_add = [r for r in replaced if r.path.endswith(("bn2", "downsample.1"))]
    assert len(after_add) == 11 and all(r.activation is None and r.note == "" for r in after_add)
    assert sum(r.activation == "ReLU" for r in replaced) == 9
    assert all(r.num_features == model.get_submodule(r.path).num_features for r in replaced)
    _train_and_eval(model)


def test_resnet18_numerically_keeps_exactly_the_post_add_relus():
    tv = _torchvision()
    model = tv.models.resnet18(weights=None, num_classes=10).double()
    keys_before = set(model.state_dict())
    replaced = es.swap_norm_act(model, **IDENTITY)
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    for training in (True, False):
        model.train(training)
        torch.testing.assert_close(model(x), _expected_resnet(model, x), rtol=1e-12, atol=1e-12)
    # Untouched modules keep their state_dict keys; the norms' keys go (this layer has no parameters).
    norm_paths = tuple(f"{r.path}." for r in replaced)
    assert set(model.state_dict()) == {k for k in keys_before if not k.startswith(norm_paths)}


def test_resnet18_block_is_rewritten_and_keeps_its_submodules():
    tv = _torchvision()
    model = tv.models.resnet18(weights=None)
    downsample = model.layer2[0].downsample
    es.swap_norm_act(model, "evonorm_s0")
    block = model.layer2[0]
    assert isinstance(block, torch.fx.GraphModule) and type(block).__name__ == "BasicBlock"
    assert block.downsample is downsample  # kept as it was, a Sequential (its norm replaced in it)
    relu_calls = [n for n in block.graph.nodes if n.op == "call_module" and n.target == "relu"]
    assert len(relu_calls) == 1 and relu_calls[0].args[0].target is __import__("operator").add


def test_mobilenet_v2_relu6_become_identity():
    tv = _torchvision()
    model = tv.models.mobilenet_v2(weights=None, num_classes=10)
    batch_norms, relu6 = _norms(model), _count(model, nn.ReLU6)
    replaced = es.swap_norm_act(model, "evonorm_b0")

    assert len(replaced) == len(batch_norms) == 52 and _norms(model) == []
    # Every ReLU6 of MobileNetV2 follows a norm in a Conv-BN-ReLU6 Sequential; the projections have none.
    assert _count(model, nn.ReLU6) == 0 and _count(model, nn.Identity) == relu6 == 35
    assert sum(r.activation == "ReLU6" for r in replaced) == relu6
    assert all(r.rewritten is None for r in replaced)
    assert not any(isinstance(m, torch.fx.GraphModule) for m in model.modules())
    # 64x64, not 32x32: the last stage then has 2x2 pixels per channel, not one, where a batch of two
    # leaves EvoNorm-B0's statistics nearly degenerate in training (as it would BatchNorm's).
    _train_and_eval(model, shape=(2, 3, 64, 64))


# -- timm -----------------------------------------------------------------------------------------------


def test_timm_resnet_passes_over_identity_between_norm_and_activation():
    timm = _timm()
    model = timm.create_model("resnet10t", pretrained=False, num_classes=10)
    batch_norms = _norms(model)
    replaced = es.swap_norm_act(model, "gn_relu")
    assert [r.path for r in replaced] == batch_norms and _norms(model) == []
    # bn1 -> drop_block (an nn.Identity) -> act1: act1 goes; act2 follows the add and stays.
    first_block = {r.path: r for r in replaced}["layer1.0.bn1"]
    assert first_block.activation_module == "layer1.0.act1"
    assert type(model.layer1[0].act1) is nn.Identity and type(model.layer1[0].act2) is nn.ReLU
    _train_and_eval(model)


def test_timm_norm_with_its_own_activation():
    timm = _timm()
    model = timm.create_model("mobilenetv3_small_050", pretrained=False, num_classes=10)
    batch_norms = _norms(model)
    replaced = es.swap_norm_act(model, "evonorm_b0")
    assert [r.path for r in replaced] == batch_norms and _norms(model) == []
    assert {r.norm for r in replaced} == {"BatchNormAct2d"}
    with_own = [r for r in replaced if r.activation_module and r.activation_module.endswith(".act")]
    assert with_own and {r.activation for r in with_own} <= {"ReLU", "Hardswish"}
    _train_and_eval(model, shape=(2, 3, 64, 64))


# -- small models: each rule on its own ------------------------------------------------------------------


class Block(nn.Module):
    """A ResNet-like block with a functional activation after the first norm and one after the add."""

    def __init__(self, channels: int = 8):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm = nn.GroupNorm(2, channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm2 = nn.BatchNorm2d(channels)
        self.scale = nn.Parameter(torch.ones(1))
        self.unused = nn.Linear(2, 2)  # never called: must survive the rewrite with its keys
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, x):
        y = F.silu(self.norm(self.conv(x)))
        return torch.relu(self.norm2(self.conv2(y)) * self.scale + x)


def test_functional_activation_erased_from_the_block_code():
    model = nn.Sequential(nn.Conv2d(3, 8, 1), Block())
    keys_before = set(model.state_dict())
    replaced = es.swap_norm_act(model, "evonorm_s0")
    assert [(r.path, r.norm, r.activation, r.activation_module, r.rewritten) for r in replaced] == [
        ("1.norm", "GroupNorm", "SiLU", None, "1"),
        ("1.norm2", "BatchNorm2d", None, None, None),
    ]
    block = model[1]
    assert isinstance(block, torch.fx.GraphModule)
    targets = [n.target for n in block.graph.nodes if n.op == "call_function"]
    assert F.silu not in targets and torch.relu in targets
    new_keys = {k for k in set(model.state_dict()) if not k.startswith(("1.norm.", "1.norm2."))}
    assert new_keys == {k for k in keys_before if not k.startswith(("1.norm.", "1.norm2."))}
    assert "1.unused.weight" in new_keys and "1.calls" in new_keys
    _train_and_eval(model, shape=(2, 3, 6, 6))


def test_functional_activation_numerically():
    torch.manual_seed(0)
    model = nn.Sequential(Block()).double()
    reference = copy.deepcopy(model)
    es.swap_norm_act(model, **IDENTITY)
    x = torch.randn(2, 8, 5, 5, dtype=torch.float64)
    block = reference[0]
    expected = torch.relu(block.conv2(block.conv(x)) * block.scale + x)
    torch.testing.assert_close(model(x), expected, rtol=1e-12, atol=1e-12)


def test_group_norm_groups_carried_unless_given():
    def model():
        return nn.Sequential(nn.Conv2d(3, 16, 1), nn.GroupNorm(4, 16), nn.ReLU(), nn.Conv2d(16, 16, 1))

    m = model()
    (replaced,) = es.swap_norm_act(m, "gn_relu")
    assert replaced == Replacement("1", "GroupNorm", 16, activation="ReLU", activation_module="2", groups=4)
    assert m[1].groups == 4 and type(m[2]) is nn.Identity
    m = model()
    (replaced,) = es.swap_norm_act(m, "gn_relu", groups=2)
    assert replaced.groups == 2 and m[1].groups == 2


def test_batch_norm_takes_the_callers_groups_and_the_norm_dtype_and_mode():
    model = nn.Sequential(nn.Conv1d(3, 12, 1), nn.BatchNorm1d(12), nn.Tanh()).double().eval()
    (replaced,) = es.swap_norm_act(model, "gn_relu", groups=3, eps=1e-3)
    layer = model[1]
    assert (replaced.groups, layer.groups, layer.eps) == (3, 3, 1e-3)
    assert layer.weight.dtype == torch.float64 and not layer.training
    assert replaced.activation == "Tanh"


def test_exported_class_as_the_layer(tmp_path):
    source = es.export_module("evonorm_s0", "FoundNorm")
    path = tmp_path / "found_norm.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("found_norm", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = nn.Sequential(nn.Conv2d(3, 16, 1), nn.GroupNorm(8, 16), nn.SiLU(), nn.Conv2d(16, 4, 1), nn.BatchNorm2d(4))
    replaced = es.swap_norm_act(model, module.FoundNorm, momentum=0.2)
    assert [type(m).__name__ for m in model] == ["Conv2d", "FoundNorm", "Identity", "Conv2d", "FoundNorm"]
    assert (model[1].groups, model[1].momentum, model[4].num_features) == (8, 0.2, 4)
    assert [r.activation for r in replaced] == ["SiLU", None]
    _train_and_eval(model, shape=(2, 3, 4, 4))


class Wrapped(nn.Module):
    def forward(self, x):
        return F.gelu(x)


def test_module_wrapping_only_an_activation_becomes_identity():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.Identity(), Wrapped())
    (replaced,) = es.swap_norm_act(model, "bn_relu")
    assert (replaced.activation, replaced.activation_module) == ("GELU", "3")
    assert type(model[3]) is nn.Identity and type(model[2]) is nn.Identity


def test_norm_not_followed_by_an_activation_is_replaced_alone():
    shared = nn.ReLU()
    model = nn.Sequential(
        nn.Conv2d(3, 4, 1),
        nn.BatchNorm2d(4),
        nn.Dropout(0.1),  # between the norm and the activation: not "directly after"
        shared,
        nn.BatchNorm2d(4),
    )
    replaced = es.swap_norm_act(model, "bn_relu")
    assert [(r.activation, r.note) for r in replaced] == [(None, ""), (None, "")]
    assert type(model[3]) is nn.ReLU


class Twice(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = nn.BatchNorm2d(4)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.norm(x)) + self.norm(x)


def test_norm_called_twice_is_replaced_alone_with_a_note():
    model = nn.Sequential(Twice())
    with pytest.warns(UserWarning, match="called at 2 places"):
        (replaced,) = es.swap_norm_act(model, "bn_relu")
    assert replaced.activation is None and replaced.note == "called at 2 places: replaced alone"
    assert type(model[0].act) is nn.ReLU


class Untraceable(nn.Module):
    """Control flow on a tensor's value: fx cannot trace this forward, but it can trace `inner`."""

    def __init__(self):
        super().__init__()
        self.inner = nn.Sequential(nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4), nn.ReLU())
        self.norm = nn.BatchNorm2d(4)
        self.act = nn.ReLU()

    def forward(self, x):
        if x.sum() > 0:
            x = -x
        return self.act(self.norm(self.inner(x)))


def test_untraceable_forward_traced_per_submodule():
    model = Untraceable()
    with pytest.warns(UserWarning, match=r"norm \(not traced \(the forward of the model: TraceError"):
        replaced = es.swap_norm_act(model, "bn_relu")
    inner, outer = replaced
    assert (inner.path, inner.activation, inner.activation_module) == ("inner.1", "ReLU", "inner.2")
    assert (outer.path, outer.activation) == ("norm", None) and outer.note.startswith("not traced")
    assert type(model.inner[2]) is nn.Identity and type(model.act) is nn.ReLU  # untraced code keeps its act
    _train_and_eval(model, shape=(2, 4, 3, 3))


class TopLevelActivation(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.norm = nn.BatchNorm2d(4)

    def forward(self, x):
        return F.relu(self.norm(self.conv(x)))


def test_activation_in_the_top_level_forward_is_an_error_that_changes_nothing():
    model = TopLevelActivation()
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(SwapError, match=r"wrap the model first"):
        es.swap_norm_act(model, "bn_relu")
    assert type(model.norm) is nn.BatchNorm2d
    assert model.state_dict().keys() == before.keys()
    wrapped = nn.Sequential(model)
    (replaced,) = es.swap_norm_act(wrapped, "bn_relu")
    assert replaced.rewritten == "0" and isinstance(wrapped[0], torch.fx.GraphModule)


def test_swapped_model_compiles_without_graph_breaks():
    tv = _torchvision()
    model = nn.Sequential(nn.Conv2d(3, 8, 1), tv.models.resnet.BasicBlock(8, 8), Block())
    es.swap_norm_act(model, "evonorm_s0")
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    x = torch.randn(2, 3, 6, 6)
    torch.testing.assert_close(compiled(x), model(x))
    compiled(x).sum().backward()


# -- bad input ------------------------------------------------------------------------------------------


def _small():
    return nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.ReLU())


@pytest.mark.parametrize(
    ("model", "layer", "kwargs", "error", "match"),
    [
        ("not a model", "bn_relu", {}, TypeError, "expected a torch.nn.Module"),
        (None, es.NormAct("bn_relu", 4), {}, TypeError, "not a NormAct instance"),
        (None, 42, {}, TypeError, "got int"),
        (None, "not_a_layer_name", {}, es.DSLError, "undefined name 'not_a_layer_name'"),
        (None, "x +", {}, es.DSLError, "unexpected end of input"),
        (None, "bn_relu", {"groups": 0}, ValueError, "groups must be a positive integer"),
        (None, "bn_relu", {"num_features": 4}, TypeError, "num_features comes from each norm"),
        (None, "bn_relu", {"colour": "red"}, TypeError, "colour"),
    ],
)
def test_bad_input_is_a_clear_error_and_changes_nothing(model, layer, kwargs, error, match):
    target = _small() if model is None else model
    with pytest.raises(error, match=match):
        es.swap_norm_act(target, layer, **kwargs)
    if model is None:
        assert [type(m).__name__ for m in target] == ["Conv2d", "BatchNorm2d", "ReLU"]


def test_model_without_norms_gives_an_empty_list():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.Dropout())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert es.swap_norm_act(model, "bn_relu") == []
    assert [type(m).__name__ for m in model] == ["Conv2d", "ReLU", "Dropout"]


# -- transformers: LayerNorm and RMSNorm over the channels of (N, L, C) hidden states ----------------------


class _Block(nn.Module):
    """A pre-norm transformer block from torch.nn parts: attention and a GELU MLP, each after a norm."""

    def __init__(self, width: int, norm):
        super().__init__()
        self.norm1 = norm(width)
        self.attention = nn.MultiheadAttention(width, 2, batch_first=True)
        self.norm2 = norm(width)
        self.up = nn.Linear(width, 2 * width)
        self.act = nn.GELU()
        self.down = nn.Linear(2 * width, width)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        x = self.norm1(h)
        h = h + self.attention(x, x, x, need_weights=False)[0]
        return h + self.down(self.act(self.up(self.norm2(h))))


def _small_transformer(norm) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 8), _Block(8, norm), _Block(8, norm), norm(8))


@pytest.mark.parametrize(
    ("norm", "layer"),
    [
        (lambda c: nn.LayerNorm(c, eps=1e-5), "layernorm_channel"),
        (lambda c: nn.RMSNorm(c, eps=1e-5), "rmsnorm"),
    ],
    ids=["LayerNorm", "RMSNorm"],
)
def test_token_norms_of_a_transformer_become_the_layer_over_the_channel_view(norm, layer):
    # The library's per-token LayerNorm and RMSNorm in their place compute what the norms computed.
    model = _small_transformer(norm)
    swapped = copy.deepcopy(model)
    replaced = es.swap_norm_act(swapped, layer, backend="torch")
    assert [r.path for r in replaced] == ["1.norm1", "1.norm2", "2.norm1", "2.norm2", "3"]
    assert all(r.num_features == 8 and r.norm == type(model[3]).__name__ for r in replaced)
    assert all(isinstance(swapped.get_submodule(r.path), es.swap.ChannelsLast) for r in replaced)
    h = torch.randn(2, 5, 3)
    for training in (True, False):
        model.train(training)
        swapped.train(training)
        torch.testing.assert_close(swapped(h), model(h), rtol=1e-5, atol=1e-5)


def test_the_layer_in_a_token_norm_slot_sees_the_channels_second_without_a_copy():
    seen = []
    model = nn.Sequential(nn.Linear(3, 6), nn.LayerNorm(6), nn.GELU())
    es.swap_norm_act(model, "bn_relu", backend="torch")
    model[1].layer.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    out = model(torch.randn(2, 5, 3))
    (x,) = seen
    assert x.shape == (2, 6, 5) and x.stride() == (30, 1, 6)  # (N, L, C) storage read as (N, C, L)
    assert out.shape == (2, 5, 6) and type(model[2]) is nn.Identity  # the GELU after it went with it


def test_a_layer_norm_over_several_axes_stays_with_a_warning():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.LayerNorm([4, 6, 6]), nn.BatchNorm2d(4))
    with pytest.warns(UserWarning, match=r"stay as they are: 1 \(LayerNorm\)"):
        replaced = es.swap_norm_act(model, "bn_relu")
    assert [r.path for r in replaced] == ["2"] and type(model[1]) is nn.LayerNorm


def test_norm_subclasses_are_left_in_place_with_a_warning():
    class MyNorm(nn.BatchNorm2d):
        pass

    model = nn.Sequential(nn.Conv2d(3, 4, 1), MyNorm(4), nn.ReLU(), nn.BatchNorm2d(4))
    with pytest.warns(UserWarning, match=r"not of a class it replaces and stay as they are: 1 \(MyNorm\)"):
        replaced = es.swap_norm_act(model, "bn_relu")
    assert [r.path for r in replaced] == ["3"] and type(model[1]) is MyNorm and type(model[2]) is nn.ReLU


def test_readme_example_prints_what_it_shows():
    import re
    from pathlib import Path

    _torchvision()
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Use a found layer in your own model", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    shown = " ".join(line.strip("# ").strip() for line in code.splitlines() if line.startswith("# "))
    namespace: dict = {}
    exec(code, namespace)
    assert len(namespace["replaced"]) == 20
    assert repr(namespace["replaced"][1]) == shown


def test_swapped_model_saves_loads_and_copies():
    tv = _torchvision()
    model = nn.Sequential(nn.Conv2d(3, 8, 1), tv.models.resnet.BasicBlock(8, 8), Block()).eval()
    es.swap_norm_act(model, "evonorm_s0")
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    x = torch.randn(2, 3, 5, 5)
    assert torch.equal(loaded(x), model(x)) and torch.equal(copy.deepcopy(model)(x), model(x))
    assert loaded[1].stride == 1 and loaded[1].downsample is None  # plain attributes of the block kept
    assert loaded.state_dict().keys() == model.state_dict().keys()


class PlainNorm(nn.Module):
    """A layer class without a `groups` argument: a GroupNorm's num_groups is not passed to it."""

    def __init__(self, num_features: int, *, eps: float = 1e-5):
        super().__init__()
        self.norm = nn.InstanceNorm2d(num_features, eps=eps, affine=True)

    def forward(self, x):
        return self.norm(x)


def test_class_without_groups_gets_none():
    model = nn.Sequential(nn.Conv2d(3, 8, 1), nn.GroupNorm(2, 8), nn.Mish())
    (replaced,) = es.swap_norm_act(model, PlainNorm, eps=1e-3)
    assert (replaced.groups, replaced.activation, model[1].norm.eps) == (None, "Mish", 1e-3)
    assert type(model[2]) is nn.Identity
