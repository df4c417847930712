"""The compiler's passes, its cache and cost model, and every error path of the Triton backend."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import evonorm_search as es
from evonorm_search.compiler import CompilerError, compile_log, generation_log, plan_cost, runtime, tuning
from evonorm_search.compiler.autodiff import backward_program, forward_program
from evonorm_search.compiler.cache import compiled_layer
from evonorm_search.compiler.lower import plan
from evonorm_search.compiler.schedule import schedule

from .helpers import Case, check

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def _forward(text: str, training: bool = True):
    graph = es.parse(text) if text not in es.library.names() else es.library.get(text)
    return schedule(forward_program(graph, affine=True), graph, training=training, update_running=training)


# -- scheduling and lowering ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("layer", "passes", "kinds"),
    [
        ("relu", 1, []),
        ("evonorm_s0", 2, [("group", "moments")]),
        ("bn_relu", 2, [("batch", "moments")]),  # mean and std of x share one pass of moments
        ("rmsnorm", 2, [("channel", "sqmean")]),
        ("evonorm_b0", 2, [("batch", "moments"), ("instance", "moments")]),  # both in the same pass
        ("std(x - mean(x, batch), instance)", 3, [("batch", "mean"), ("instance", "moments")]),
    ],
)
def test_passes_are_cut_only_at_aggregations(layer, passes, kinds):
    s = _forward(layer)
    assert len(s.passes) == passes
    assert [(r.axis, r.kind) for r in s.reductions] == kinds


def test_statistics_of_operands_constant_along_the_axis_are_exact_and_need_no_pass():
    s = _forward("x / std(v1, batch) + mean(v0, instance)", training=False)
    assert len(s.passes) == 1 and s.reductions == ()
    trained = _forward("x / std(v1, batch)", training=True)
    # Training still reduces v1 once, for the running estimate, but nothing waits for it.
    assert len(trained.passes) == 1 and [r.running for r in trained.reductions] == [(("running_var_0", "var", True),)]


def test_eval_mode_reads_running_estimates_instead_of_reducing():
    s = _forward("bn_relu", training=False)
    assert len(s.passes) == 1
    assert {src.kind for src in s.sources.values()} == {"running"}


def test_the_backward_reuses_the_forward_statistics():
    graph = es.library.get("evonorm_s0")
    fwd = _forward("evonorm_s0")
    bwd = schedule(
        backward_program(graph, training=True, affine=True),
        graph,
        training=True,
        saved=tuple(r.key for r in fwd.reductions),
    )
    assert {src.kind for i, src in bwd.sources.items() if bwd.program.nodes[i].args == (0,)} == {"saved"}
    assert len(bwd.passes) == 2  # reduce mean(g...) and the parameter sums, then write dx


@pytest.mark.parametrize(
    ("layer", "fused"),
    [
        ("evonorm_s0", "group"),
        ("gn_relu", "group"),
        ("in_relu", "instance"),
        ("rmsnorm", "channel"),
        ("layernorm", "sample"),
    ],
)
def test_stages_fuse_when_one_program_holds_the_reductions(layer, fused):
    stages = plan(_forward(layer), "t").stages
    assert [st.fused_domain for st in stages if st.fused] == ([fused] if fused else [])


def test_batch_statistics_are_combined_across_programs_in_parallel():
    source = es.kernel_source("bn_relu")
    assert "combine_channels(pt0_ptr, pid - lo, N, C, S, CHUNK, NSC, True, True" in source
    assert "update_running_estimate(running_mean_0_ptr" in source
    assert "update_running_estimate(running_var_1_ptr" in source
    assert "tl.atomic" not in source  # partial buffers, never serialised atomics


# -- the cost model -----------------------------------------------------------------------------------


def test_plan_cost_counts_passes_and_bytes_per_element():
    relu = plan_cost(es.library.get("relu"))
    assert relu["forward"]["passes"] == 1 and relu["forward"]["bytes_per_element"] == 8  # read x, write y
    s0 = plan_cost(es.library.get("evonorm_s0"))
    assert (s0["forward"]["reads_per_element"], s0["forward"]["writes_per_element"]) == (2, 1)
    assert (s0["backward"]["reads_per_element"], s0["backward"]["writes_per_element"]) == (4, 1)  # x and dy, twice
    assert float(s0) == s0["step_bytes_per_element"] == 32
    assert s0["forward"]["kernel_launches_fused"] == 1 < s0["forward"]["kernel_launches_split"]
    assert plan_cost(es.library.get("evonorm_s0"), dtype="bfloat16")["step_bytes_per_element"] == 16
    assert plan_cost(es.library.get("bn_relu"))["inference_bytes_per_element"] == 8


def test_plan_cost_rejects_bad_arguments():
    with pytest.raises(TypeError, match="plan_cost expects a Graph"):
        plan_cost("x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dtype must be one of"):
        plan_cost(es.library.get("relu"), dtype="int8")


def test_plan_cost_needs_neither_triton_nor_a_gpu():
    code = (
        "import sys, evonorm_search as es\n"
        "from evonorm_search.compiler import plan_cost\n"
        "print(float(plan_cost(es.library.get('evonorm_b0'))))\n"
        "assert 'triton' not in sys.modules\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert float(out.stdout) == 32.0


# -- the cache -----------------------------------------------------------------------------------------


def test_one_compile_serves_every_shape_of_a_layout_class():
    graph = es.parse("x * sigmoid(v0 + x) / rms(x, group)")
    layer = es.NormAct(graph, 6, groups=3, backend="triton")
    key = compiled_layer(graph).key.canonical_hash
    layer(torch.randn(2, 6, 3, 5))
    first = [e for e in compile_log() if e["layer"] == key]
    # Another shape, same dtype and layout class; single-pass kernels hold the whole extent of the
    # statistic, so they also keep its power-of-two bucket (S = 14 and 15: 16).
    layer(torch.randn(4, 6, 7, 2))
    assert [e for e in compile_log() if e["layer"] == key] == first
    with tuning(fusion="always"):  # looping kernels: any S
        layer(torch.randn(2, 6, 3, 5))
        looping = [e for e in compile_log() if e["layer"] == key]
        layer(torch.randn(4, 6, 9, 3))
        assert [e for e in compile_log() if e["layer"] == key] == looping
    assert {e["dtype"] for e in first} == {"float32"} and all(e["seconds"] >= 0 for e in first)
    layer.double()(torch.randn(2, 6, 3, 5, dtype=torch.float64))
    assert {e["dtype"] for e in compile_log() if e["layer"] == key} == {"float32", "float64"}
    assert any(e["layer"] == key for e in generation_log())
    assert compiled_layer(es.parse("x * sigmoid(v0 + x) / rms(x, group)")) is compiled_layer(graph)


def test_graphs_with_equal_canonical_forms_but_different_structure_get_their_own_kernels():
    a, b = es.parse("x * v1 / v1"), es.parse("x")
    assert es.canonical_hash(a) == es.canonical_hash(b)
    assert compiled_layer(a).key != compiled_layer(b).key
    assert "v1_ptr" in compiled_layer(a).source and "v1_ptr" not in compiled_layer(b).source


# -- behaviour of the backend ---------------------------------------------------------------------------


def test_a_cpu_tensor_without_the_interpreter_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET")
    layer = es.NormAct("evonorm_s0", 4, groups=2, backend="triton")
    with pytest.raises(CompilerError, match="backend='triton' runs on CUDA tensors, got a tensor on cpu"):
        layer(torch.randn(2, 4, 3, 3))
    assert es.NormAct("evonorm_s0", 4, groups=2, backend="auto")(torch.randn(2, 4, 3, 3)).shape == (2, 4, 3, 3)


def test_batch_statistics_need_two_values_per_channel_in_training():
    layer = es.NormAct("bn_relu", 4, backend="triton")
    with pytest.raises(ValueError, match="expected more than 1 value per channel"):
        layer(torch.randn(1, 4))
    layer.eval()
    assert layer(torch.randn(1, 4)).shape == (1, 4)


def test_eval_mode_leaves_running_estimates_alone_and_inference_needs_no_autograd():
    layer = es.NormAct("evonorm_b0", 4, groups=2, backend="triton").eval()
    before = layer.running_var_0.clone()
    x = torch.randn(2, 4, 3, 3)
    y = layer(x)
    with torch.no_grad():
        y_inference = layer(x)
    assert torch.equal(layer.running_var_0, before)
    assert torch.equal(y.detach(), y_inference) and y_inference.grad_fn is None


def test_double_backward_is_refused():
    layer = es.NormAct("evonorm_s0", 4, groups=2, backend="triton")
    x = torch.randn(2, 4, 3, 3, requires_grad=True)
    (dx,) = torch.autograd.grad(layer(x).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match=r"does not require grad"):
        dx.sum().backward()


def test_non_contiguous_inputs_are_made_contiguous():
    case = Case(es.library.get("gn_relu"), (2, 6, 4, 3), torch.float64, True, groups=3)
    assert check(case) == []
    layer = es.NormAct("gn_relu", 6, groups=3, backend="triton").double()
    reference = es.NormAct("gn_relu", 6, groups=3, backend="torch").double()
    x = torch.randn(2, 6, 3, 4, dtype=torch.float64).transpose(2, 3)
    torch.testing.assert_close(layer(x), reference(x))


def test_tanh_is_accurate_near_zero_in_float32():
    layer = es.NormAct("tanh(x)", 4, affine=False, backend="triton")
    x = torch.logspace(-6, 1, 96).reshape(2, 4, 12) * torch.tensor([1.0, -1.0]).repeat(48).reshape(2, 4, 12)
    expected = torch.tanh(x.double())
    assert ((layer(x).double() - expected).abs() / expected.abs()).max() < 1e-6


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_erf_matches_the_reference_in_value_and_gradient(dtype, training):
    # erf of an affine map, after a channel statistic and under a batch statistic: the kernels' erf
    # and its derivative 2/sqrt(pi) exp(-a^2) on every path the compiler generates.
    for text in ("erf(v1 * x + v0)", "erf(x - mean(x, channel)) / std(erf(v1 * x), batch)"):
        case = Case(es.parse(text), (3, 6, 5), dtype, training, groups=2)
        assert check(case) == [], case.label()


def test_erf_is_accurate_across_its_range_in_float32():
    # Near 0 (relative accuracy matters) out to saturation, where the derivative underflows to zero.
    layer = es.NormAct("erf(x)", 4, affine=False, backend="triton")
    x = torch.logspace(-6, 0.8, 96).reshape(2, 4, 12) * torch.tensor([1.0, -1.0]).repeat(48).reshape(2, 4, 12)
    x.requires_grad_(True)
    expected = torch.erf(x.detach().double())
    y = layer(x)
    assert ((y.detach().double() - expected).abs() / expected.abs()).max() < 1e-6
    y.sum().backward()
    slope = 2.0 / torch.pi**0.5 * torch.exp(-(x.detach().double() ** 2))
    torch.testing.assert_close(x.grad.double(), slope, rtol=1e-5, atol=1e-30)


def test_kernel_source_and_tuning_reject_bad_arguments():
    with pytest.raises(TypeError, match="expected a Graph, DSL text or a library name"):
        es.kernel_source(42)
    with pytest.raises(es.DSLError):
        es.kernel_source("y = x +")
    with pytest.raises(ValueError, match="unknown tuning field"), tuning(blocks=3):
        pass
    with pytest.raises(ValueError, match="fusion must be"), tuning(fusion="sometimes"):
        pass


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", es.library.names())
def test_library_layers_on_cuda(name, monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET")
    for dtype in (torch.float32, torch.bfloat16):
        reference = es.NormAct(name, 64, backend="torch").cuda()
        ours = es.NormAct(name, 64, backend="triton").cuda()
        x = torch.randn(8, 64, 14, 14, device="cuda", dtype=dtype, requires_grad=True)
        x2 = x.detach().clone().requires_grad_()
        y, y2 = reference(x), ours(x2)
        y.float().sum().backward()
        y2.float().sum().backward()
        tol = 1e-4 if dtype == torch.float32 else 2e-2
        torch.testing.assert_close(y2, y, rtol=tol, atol=tol)
        torch.testing.assert_close(x2.grad, x.grad, rtol=tol, atol=tol)


def _clusters_on_this_gpu() -> bool:
    if not torch.cuda.is_available():
        return False
    major, minor = torch.cuda.get_device_capability()
    return runtime.clusters_compile(10 * major + minor)


@pytest.mark.gpu
@pytest.mark.skipif(not _clusters_on_this_gpu(), reason="needs a GPU with thread block clusters that Triton splits")
@pytest.mark.parametrize("name", ["gn_relu", "evonorm_s0"])
def test_groups_past_one_ctas_budget_run_on_a_cluster_and_match_the_reference(name, monkeypatch):
    # ResNet-50's first stage: a group of 8 x 3,136 spans 2 CTAs forward and 4 backward in float32.
    monkeypatch.delenv("TRITON_INTERPRET")
    x = torch.randn(4, 256, 56, 56, device="cuda", requires_grad=True)
    geo = runtime.Geometry(x, 32, 1e-5, 0.1, backward=True)
    assert geo.single_pass("group", True).ctas == 4
    reference = es.NormAct(name, 256, backend="torch").cuda()
    ours = es.NormAct(name, 256, backend="triton").cuda()
    x2 = x.detach().clone().requires_grad_()
    runtime._SEEN.clear()  # the compile log records first launches only
    before = len(compile_log())
    y, y2 = reference(x), ours(x2)
    y.sum().backward()
    y2.sum().backward()
    torch.testing.assert_close(y2, y, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(x2.grad, x.grad, rtol=1e-4, atol=1e-4)
    kernels = {r["kernel"] for r in compile_log()[before:]}
    assert {"fwd_train_w0", "bwd_train_w0"} <= kernels, sorted(kernels)  # single-pass both ways
