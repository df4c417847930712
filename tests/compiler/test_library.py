"""Every library layer on the Triton kernels against the reference module: output, input gradient,
parameter gradients and running estimates, in training and eval mode, float64 and float32, with the
stages fused into one kernel and split into pass and combine kernels, on 2-D to 5-D inputs."""

from __future__ import annotations

import pytest
import torch

import evonorm_search as es

from .helpers import Case, check, run

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

SHAPES = {"4d": (3, 6, 5, 3), "2d": (5, 6), "3d": (2, 6, 7), "5d": (2, 6, 2, 3, 2)}


@pytest.mark.parametrize("name", es.library.names())
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("fusion", ["always", "never"])
def test_library_layer_matches_the_reference(name, dtype, fusion):
    for i, training in enumerate((True, False)):
        case = Case(es.library.get(name), SHAPES["4d"], dtype, training, fusion, groups=3, seed=i)
        assert check(case) == [], case.label()


@pytest.mark.parametrize("name", es.library.names())
@pytest.mark.parametrize("rank", ["2d", "3d", "5d"])
def test_library_layer_on_other_ranks(name, rank):
    case = Case(es.library.get(name), SHAPES[rank], torch.float64, training=True, groups=2, seed=7)
    assert check(case) == [], case.label()


@pytest.mark.parametrize("name", ["evonorm_s0", "bn_relu", "layernorm_channel", "evonorm_b0"])
def test_channels_last_inputs_are_handled_and_keep_their_layout(name):
    case = Case(es.library.get(name), (2, 6, 3, 5), torch.float64, True, groups=3, channels_last=True)
    assert check(case) == [], case.label()
    layer = es.NormAct(name, 6, groups=3, backend="triton").double()
    x = torch.randn(2, 6, 3, 5, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    assert layer(x).is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "f16"])
@pytest.mark.parametrize("name", ["evonorm_s0", "bn_relu", "rmsnorm"])
def test_half_precision_inputs_compute_in_float32(name, dtype):
    case = Case(es.library.get(name), (2, 6, 4, 4), dtype, training=True, groups=3)
    reference, ours = run(case, "torch"), run(case, "triton")
    for key, value in reference.items():
        assert ours[key].dtype == value.dtype, key
        # Both compute in float32 from the same half-precision input: they differ by output rounding.
        torch.testing.assert_close(ours[key].float(), value.float(), rtol=1e-2, atol=1e-2, msg=key)


def test_affine_false_and_uneven_groups():
    case = Case(es.library.get("gn_silu"), (2, 6, 3, 3), torch.float64, True, groups=4, affine=False)
    assert es.NormAct("gn_silu", 6, groups=4).groups == 3
    assert check(case) == [], case.label()
