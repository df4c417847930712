"""Single-pass kernels: the choice between single-pass, fused and split stages at a shape (on one CTA
or a thread block cluster), the kernels' one read of every input, and their values and gradients
against the reference under the interpreter (fitting and non-fitting shapes, clusters, channels-last,
parameter gradients through partials)."""

from __future__ import annotations

import contextlib
import dataclasses
import re

import pytest
import torch
import triton

import evonorm_search as es
from evonorm_search.compiler import compile_log, plan_cost, runtime, tuning
from evonorm_search.compiler.cost import _geometry

from .helpers import Case, check

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

# Layers whose statistics are over group, instance, channel or (2-D rows) layer axes.
SINGLE_PASS_LAYERS = ["gn_relu", "gn_silu", "evonorm_s0", "evonorm_s2", "in_relu", "rmsnorm", "layernorm_channel"]


@contextlib.contextmanager
def gpu_tuning(**changes):
    """The default (GPU) tuning with `changes`: `tuning()` would start from the interpreter's small one
    under TRITON_INTERPRET, and the plans here are a GPU's."""
    saved = runtime.TUNING
    runtime.TUNING = dataclasses.replace(runtime.Tuning(), **changes)
    try:
        yield
    finally:
        runtime.TUNING = saved


def _runs(name: str, shape: tuple[int, ...], direction: str, dtype: str = "float32") -> list[str]:
    cost = plan_cost(es.library.get(name), shape=shape, dtype=dtype)
    return [stage["run"] for stage in cost[direction]["chosen"]["stages"]]


# -- the choice, on each side of the budget ------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fits", "too_big"),
    [
        ("gn_relu", (64, 1024, 14, 14), (64, 256, 56, 56)),  # a group of 32 x 256 fits; 8 x 4,096 does not
        ("in_relu", (64, 256, 56, 56), (8, 64, 128, 160)),  # one plane of 4,096 fits; 32,768 does not
        ("rmsnorm", (64, 2048, 7, 7), (4, 32768, 2, 2)),  # 2,048 channels fit; 32,768 do not
        ("layernorm", (16384, 4096), (64, 256, 56, 56)),  # a row of 4,096 fits; a ResNet sample does not
    ],
)
def test_a_stage_runs_single_pass_on_one_cta_exactly_when_its_extent_fits_the_budget(name, fits, too_big):
    with gpu_tuning(cluster=1):
        assert _runs(name, fits, "forward") == ["single"]
        assert _runs(name, too_big, "forward") != ["single"]
        fitting = plan_cost(es.library.get(name), shape=fits)["forward"]["chosen"]
        assert fitting["bytes_per_element"] == fitting["minimum_bytes_per_element"] == 8  # read x, write y
        assert fitting["fraction_of_minimum"] == 1.0 and fitting["kernels"] == 1
        assert fitting["stages"][0]["ctas"] == 1
        split = plan_cost(es.library.get(name), shape=too_big)["forward"]["chosen"]
        assert split["bytes_per_element"] == 12 and split["fraction_of_minimum"] == pytest.approx(2 / 3)


clusters = pytest.mark.skipif(
    not runtime.clusters_compile(90), reason=f"Triton {triton.__version__} cannot split a tile across a cluster"
)


def _stages(name, shape, direction, dtype="float32", target="cuda:90", channels_last=False):
    cost = plan_cost(es.library.get(name), shape=shape, dtype=dtype, target=target, channels_last=channels_last)
    return [(st["run"], st.get("ctas"), st.get("warps")) for st in cost[direction]["chosen"]["stages"]]


@clusters
def test_a_tile_past_one_ctas_budget_spans_the_fewest_ctas_of_a_cluster_that_hold_it():
    # 8 x 4,096 = 32,768 elements: 2 CTAs of 16,384 forward (16 warps each), 4 of 8,192 backward.
    assert _stages("gn_relu", (64, 256, 56, 56), "forward") == [("single", 2, 16)]
    assert _stages("gn_relu", (64, 256, 56, 56), "backward") == [("single", 4, 32)]
    assert _stages("gn_relu", (64, 256, 56, 56), "forward", "bfloat16") == [("single", 1, 32)]  # its budget holds it
    assert _stages("evonorm_s0", (64, 512, 28, 28), "backward") == [("single", 2, 32)]  # 16 x 1,024
    assert _stages("in_relu", (8, 64, 128, 160), "forward") == [("single", 2, 16)]  # a plane of 20,480
    assert _stages("layernorm", (1024, 32768), "forward") == [("single", 2, 32)]  # a transformer row
    assert _stages("layernorm", (1024, 32768), "backward") == [("single", 4, 32)]
    # A ResNet sample's layer statistic holds thousands of channels' rows: no cluster (it spilled).
    assert _stages("layernorm", (64, 2048, 7, 7), "forward", "bfloat16")[0][0] != "single"
    cost = plan_cost(es.library.get("evonorm_s0"), shape=(64, 256, 56, 56))
    assert cost["step_bytes_per_element"] == 8 + 12  # the minimum both ways: every input read once
    # Past 4 CTAs' budget, or where clusters are not to be had, the stage loops as before.
    assert _stages("in_relu", (8, 64, 256, 320), "forward")[0][0] != "single"  # 131,072: 8 CTAs
    assert _stages("gn_relu", (64, 256, 56, 56), "backward", target="cuda:80")[0][0] != "single"  # no clusters
    with gpu_tuning(cluster=2):
        assert _stages("gn_relu", (64, 256, 56, 56), "backward")[0][0] == "fused"
        assert _stages("gn_relu", (64, 256, 56, 56), "forward") == [("single", 2, 16)]


@clusters
def test_a_channels_last_group_holds_less_per_cta_at_32_warps():
    # Channels strided by C: at most 8,192 elements a CTA forward and 4,096 backward, 32 warps each.
    assert _stages("gn_relu", (64, 256, 56, 56), "forward", channels_last=True) == [("single", 4, 32)]
    assert _stages("gn_relu", (64, 256, 56, 56), "forward", "bfloat16", channels_last=True) == [("single", 4, 32)]
    assert _stages("gn_relu", (64, 256, 56, 56), "backward", channels_last=True)[0][0] != "single"  # 8 CTAs
    assert _stages("evonorm_s0", (64, 512, 28, 28), "backward", channels_last=True) == [("single", 4, 32)]
    assert _stages("evonorm_s0", (64, 1024, 14, 14), "backward", channels_last=True) == [("single", 2, 32)]
    assert _stages("gn_relu", (64, 2048, 7, 7), "forward", channels_last=True) == [("single", 1, 32)]
    with gpu_tuning(single_pass_channels_last_group=None):  # as in (N, C, S) storage
        assert _stages("gn_relu", (64, 256, 56, 56), "forward", channels_last=True) == [("single", 2, 16)]
        assert _stages("gn_relu", (64, 2048, 7, 7), "forward", channels_last=True) == [("single", 1, 16)]


def test_clusters_are_planned_only_where_this_triton_compiles_them(monkeypatch):
    def rejected(*args, **kwargs):
        raise RuntimeError("PassManager::run failed")

    monkeypatch.setattr(runtime, "_CLUSTERS", {})
    monkeypatch.setattr(triton, "compile", rejected)
    assert not runtime.clusters_compile(90)
    refusal = runtime.cluster_refusal(90)
    assert list(runtime._CLUSTERS.items()) == [(90, refusal)]  # found once, kept
    assert "RuntimeError: PassManager::run failed" in refusal
    assert not runtime.clusters_compile(80) and 80 not in runtime._CLUSTERS  # sm_80 has no clusters at all
    assert runtime.cluster_refusal(80) == "sm_80 has no thread block clusters"
    geo = _geometry((64, 256, 56, 56), "float32", 32, False, "cuda:90", "backward")
    assert geo.cluster_limit() == 1 and geo.plan_of("group", True) == "fused"


@pytest.mark.skipif(
    tuple(int(v) for v in triton.__version__.split(".")[:2]) < (3, 9), reason="Triton 3.6-3.8 reject the split"
)
def test_this_triton_compiles_a_tile_split_across_a_cluster_for_hopper_and_newer(monkeypatch):
    monkeypatch.setattr(runtime, "_CLUSTERS", {})
    assert runtime.clusters_compile(90) and runtime.clusters_compile(100)


def test_the_budget_depends_on_the_direction_and_the_input_width():
    with gpu_tuning(cluster=1):  # the budget of one CTA
        _budget_depends_on_the_direction_and_the_input_width()


def _budget_depends_on_the_direction_and_the_input_width():
    # 16 x 1,024 = 16,384 elements: within the forward budget, above the backward's.
    assert _runs("gn_relu", (64, 512, 32, 32), "forward") == ["single"]
    assert _runs("gn_relu", (64, 512, 32, 32), "backward") != ["single"]
    assert _runs("gn_relu", (64, 1024, 14, 14), "backward") == ["single"]  # 32 x 256 = 8,192
    assert _runs("gn_relu", (64, 1024, 14, 14), "backward", "float64") != ["single"]  # float64 holds half
    backward = plan_cost(es.library.get("gn_relu"), shape=(64, 1024, 14, 14))["backward"]["chosen"]
    assert backward["bytes_per_element"] == 12  # read x and dy once, write dx; parameter sums as partials
    assert backward["stages"][0]["warps"] == 32  # 8 elements a thread: the backward's values fit registers
    # 8 x 4,096 = 32,768: above the forward budget of 32-bit inputs, within that of 16-bit ones.
    assert _runs("gn_relu", (64, 256, 56, 56), "forward", "bfloat16") == ["single"]
    assert _runs("gn_relu", (64, 256, 56, 56), "forward", "float32") != ["single"]
    assert _runs("gn_relu", (64, 256, 56, 56), "backward", "bfloat16") != ["single"]
    with tuning(single_pass=(16384, 8192)):  # a budget given alone holds for every width
        assert _runs("gn_relu", (64, 256, 56, 56), "forward", "bfloat16") != ["single"]


def test_the_plan_reports_blocks_warps_and_the_step_of_the_chosen_plan():
    cost = plan_cost(es.library.get("layernorm"), shape=(16384, 4096), dtype="bfloat16")
    (stage,) = cost["forward"]["chosen"]["stages"]
    assert stage == {"passes": [0, 1], "domain": "sample", "run": "single", "blocks": [4096, 1], "warps": 8, "ctas": 1}
    assert cost["step_bytes_per_element"] == 4 + 6
    # Without a shape: the split plan, as the search's cost objective always was, and the single-pass bound.
    plain = plan_cost(es.library.get("layernorm"))
    assert plain["step_bytes_per_element"] == 32 and "chosen" not in plain["forward"]
    assert plain["forward"]["single_pass_bytes_per_element"] == 8


def test_batch_statistics_never_run_single_pass():
    assert _runs("bn_relu", (64, 256, 7, 7), "forward") == ["split", "split"]
    assert _runs("evonorm_b0", (64, 256, 7, 7), "inference") == ["single"]  # eval reads the running estimate


def test_the_fusion_policy_and_the_group_width_limit_the_choice():
    geo = _geometry((64, 2048, 7, 7), "float32", 32, False, "cuda:90", "forward")
    assert geo.plan_of("group", False) == "single"
    with tuning(fusion="always"):
        assert (
            _geometry((64, 2048, 7, 7), "float32", 32, False, "cuda:90", "forward").plan_of("group", False) == "fused"
        )
    with tuning(fusion="never"):
        assert (
            _geometry((64, 2048, 7, 7), "float32", 32, False, "cuda:90", "forward").plan_of("group", False) == "split"
        )
    with tuning(max_group_channels=32):
        assert (
            _geometry((64, 2048, 7, 7), "float32", 32, False, "cuda:90", "forward").plan_of("group", False) == "split"
        )
    with tuning(single_pass=(0, 0)):
        assert (
            _geometry((64, 2048, 7, 7), "float32", 32, False, "cuda:90", "forward").plan_of("group", False) == "fused"
        )


def test_plan_cost_rejects_a_bad_shape_or_target():
    graph = es.library.get("gn_relu")
    with pytest.raises(ValueError, match="target must be one of"):
        plan_cost(graph, shape=(2, 4, 3, 3), target="cuda:7")
    with pytest.raises(ValueError, match=r"\(N, C, \*spatial\)"):
        plan_cost(graph, shape=(8,))
    with pytest.raises(ValueError, match=r"\(N, C, \*spatial\)"):
        plan_cost(graph, shape=(2, 0, 3))
    with pytest.raises(ValueError, match="channels_last needs spatial"):
        plan_cost(graph, shape=(2, 4), channels_last=True)


def test_a_single_pass_kernel_that_spills_on_the_gpu_falls_back_and_says_so():
    class Spilling:  # what a launch returns on a GPU: Triton's compiled kernel, with its spill count
        n_spills = 24

    class Kernel:
        __name__ = "fwd_train_w0"

        def __getitem__(self, grid):
            return lambda *args, **kwargs: Spilling()

    x = torch.empty(64, 2048, 7, 7, device="meta")
    geo = runtime.Geometry(x, 32, 1e-5, 0.1, layer="spilling", sms=132, tuning=runtime.TUNING)
    assert geo.single("group", False)
    with pytest.warns(RuntimeWarning, match="spills 24 registers"):
        geo.launch(Kernel(), "group", x, single=True)
    assert not geo.single("group", False) and geo.plan_of("group", False) == "fused"
    other = runtime.Geometry(x, 32, 1e-5, 0.1, layer="another", sms=132, tuning=runtime.TUNING)
    assert other.single("group", False)  # only that layer's kernel fell back
    runtime._SPILLED.clear()


# -- the kernels ------------------------------------------------------------------------------------------


def _kernel(source: str, name: str) -> str:
    match = re.search(rf"def {name}\(.*?(?=\n\n\n|\Z)", source, re.S)
    assert match, name
    return match.group(0)


@pytest.mark.parametrize("name", [*SINGLE_PASS_LAYERS, "layernorm"])
def test_single_pass_kernels_load_every_input_once_and_never_loop(name):
    source = es.kernel_source(name)
    forward, backward = _kernel(source, "fwd_train_w0"), _kernel(source, "bwd_train_w0")
    for kernel in (forward, backward):
        assert "for s0 in" not in kernel and "for c0 in" not in kernel
        assert kernel.count("tl.load(x_ptr + offs") == 1
    assert backward.count("tl.load(grad_ptr + offs") == 1
    assert "tl.atomic" not in source


# -- values and gradients under the interpreter ----------------------------------------------------------
# The interpreter's budget is 256 elements (runtime.INTERPRET_TUNING): (2, 6, 5, 3) with 3 groups holds
# 2 x 16 per group program, (2, 4, 16, 20) needs 2 x 512 and runs fused or split, as do 300 channels.


def _kernels_run(case: Case) -> set[str]:
    """The kernels `case` launches (the compile log records a kernel's first launch only)."""
    runtime._SEEN.clear()
    before = len(compile_log())
    assert check(case) == [], case.label()
    return {r["kernel"] for r in compile_log()[before:]}


@pytest.mark.parametrize("name", [*SINGLE_PASS_LAYERS, "layernorm"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_single_pass_layers_match_the_reference(name, dtype):
    for i, training in enumerate((True, False)):
        case = Case(es.library.get(name), (2, 6, 5, 3), dtype, training, "single", groups=3, seed=i)
        assert check(case) == [], case.label()
    case = Case(es.library.get(name), (2, 6, 5, 3), dtype, True, "auto", groups=3, seed=5)
    kernels = _kernels_run(case)
    assert {"fwd_train_w0", "bwd_train_w0"} <= kernels, kernels


@pytest.mark.parametrize(
    ("name", "shape"),
    [
        ("gn_relu", (2, 4, 16, 20)),
        ("evonorm_s0", (2, 4, 16, 20)),
        ("in_relu", (2, 4, 16, 20)),
        ("layernorm", (2, 4, 16, 20)),
        ("rmsnorm", (2, 300, 3)),  # the extent of a channel statistic is C
    ],
)
def test_shapes_beyond_the_budget_fall_back_and_still_match(name, shape):
    case = Case(es.library.get(name), shape, torch.float64, True, "auto", groups=2, seed=3)
    kernels = _kernels_run(case)
    assert not any("_w" in k for k in kernels), kernels


# With clusters of up to 4 CTAs (the GPU's default; the interpreter's tuning has none), the interpreter
# runs single-pass up to 4 x 256 elements a program: (2, 4, 16, 20) in groups of 2 holds 2 x 512 (4 CTAs); 300 channels 512 (2); a ResNet-like
# (2, 4, 32, 40) holds 2 x 2,048 and loops. The interpreter runs each program whole, so this checks the
# single-pass program at the sizes a cluster shares; tests/compiler/test_ahead.py checks the split.
@pytest.mark.parametrize(
    ("name", "shape", "ctas"),
    [
        ("gn_relu", (2, 4, 16, 20), 4),
        ("evonorm_s0", (2, 4, 16, 20), 4),
        ("in_relu", (2, 4, 16, 20), 2),
        ("rmsnorm", (2, 300, 3), 2),
        ("gn_relu", (2, 4, 32, 40), 0),
    ],
)
def test_tiles_a_cluster_shares_match_the_reference(name, shape, ctas):
    case = Case(es.library.get(name), shape, torch.float32, True, "auto", groups=2, seed=4)
    x = torch.empty(shape)  # float32: float64 programs hold half as many elements
    domain = {"gn_relu": "group", "evonorm_s0": "group", "in_relu": "instance", "rmsnorm": "channel"}[name]
    groups = 1 if domain == "instance" else 2
    with tuning(cluster=4):
        assert runtime.Geometry(x, groups, 1e-5, 0.1, backward=True).single_pass(domain, True).ctas == ctas
        kernels = _kernels_run(case)
    assert ("bwd_train_w0" in kernels) == (ctas > 0), kernels


def test_positions_run_in_fours_only_where_every_tile_starts_on_a_multiple_of_four():
    def geometry(shape, last=False):
        x = torch.empty(shape)
        return runtime.Geometry(x.movedim(1, -1).contiguous().movedim(-1, 1) if last else x, 2, 1e-5, 0.1)

    assert geometry((2, 4, 14, 14)).vec == 4 and runtime.layout_class(torch.empty(2, 4, 14, 14)).endswith("S:4")
    assert geometry((2, 4, 7, 7)).vec == 1  # S = 49
    assert geometry((2, 4, 28, 28)).vec == 1  # 16 divides S: Triton's specialisation already says so
    assert geometry((2, 4, 14, 14), last=True).vec == 1  # channels run contiguously, not positions
    g = geometry((2, 4, 14, 14))
    assert g.vec_for(block_s=256, chunk=196) == 4
    assert g.vec_for(block_s=8, chunk=196) == 1  # a channel program's narrow tile
    assert g.vec_for(block_s=32, chunk=18) == 1  # a chunk that starts off a multiple of 4


@pytest.mark.parametrize("name", ["gn_relu", "evonorm_s0", "in_relu", "layernorm_channel", "layernorm"])
@pytest.mark.parametrize("fusion", ["single", "always", "never"])
def test_positions_declared_in_runs_of_four_keep_values_and_gradients(name, fusion):
    case = Case(es.library.get(name), (2, 4, 3, 12), torch.float64, True, fusion, groups=2, seed=7)  # S = 36
    assert runtime.vector_width(torch.empty(case.shape)) == 4
    with tuning(block_s=32):  # looping tiles as wide as the runs need (the single-pass one is 64)
        assert check(case) == [], case.label()


@pytest.mark.parametrize("name", ["gn_relu", "evonorm_s2", "in_relu", "layernorm_channel", "layernorm"])
def test_single_pass_on_channels_last_inputs(name):
    case = Case(es.library.get(name), (2, 6, 3, 5), torch.float64, True, "single", groups=3, channels_last=True)
    assert check(case) == [], case.label()


def test_single_pass_on_rows_of_a_transformer_layer_and_in_bfloat16():
    for name in ("layernorm", "rmsnorm"):
        case = Case(es.library.get(name), (5, 96), torch.float32, True, "single", seed=2)
        assert check(case) == [], case.label()
    case = Case(es.library.get("gn_relu"), (2, 6, 4, 4), torch.bfloat16, True, "single", groups=3)
    from .helpers import run

    reference, ours = run(case, "torch"), run(case, "triton")
    for key, value in reference.items():
        torch.testing.assert_close(ours[key].float(), value.float(), rtol=1e-2, atol=1e-2, msg=key)
