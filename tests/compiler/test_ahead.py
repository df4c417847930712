"""The generated kernels through Triton's real compiler, for Hopper (sm_90), on this GPU-less machine.

The other kernel tests run on the CPU interpreter, which executes kernels through numpy and accepts
programs that the compiler rejects. Here every library layer and a draw of random graphs is compiled
ahead of time (`compile_ahead`: TTIR, TTGIR, LLVM IR, PTX and ptxas to a cubin), forward and backward,
training and inference, fused and split stages, float32, bfloat16 and float16, both storage orders.
"""

from __future__ import annotations

import logging
import os
import random
import threading

import pytest
import torch

pytest.importorskip("triton.backends.nvidia", reason="Triton's CUDA backend (Linux wheels) compiles here")

import triton
import triton.language as tl

from evonorm_search import library
from evonorm_search.compiler import CompilerError, tuning
from evonorm_search.compiler import ahead as ahead_module
from evonorm_search.compiler import runtime as kernel_runtime
from evonorm_search.compiler.ahead import (
    _one_parse_at_a_time,
    _parallel,
    _Recorder,
    _target_driver,
    compile_ahead,
    parse_target,
    precompile_on_first_use,
    ptxas_resources,
)
from evonorm_search.search.space import SearchSpace, random_graph

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # Triton 3.9's notice on FP fusion defaults


def _modes_of(report) -> set[str]:
    return {k.mode for k in report.kernels}


def _has_batch_statistics(name: str) -> bool:
    return bool(library.get(name).running_buffers())


@pytest.mark.parametrize("name", library.names())
def test_every_library_layer_compiles_for_hopper_in_float32(name: str):
    report = compile_ahead(name, target="cuda:90", dtype=torch.float32, shape=(8, 64, 8, 8))
    expected = {"forward_train", "backward_train"}
    if _has_batch_statistics(name):
        expected |= {"forward_eval", "backward_eval"}
    assert _modes_of(report) == expected
    assert all(k.binary_bytes > 0 and k.num_warps in (4, 8, 16) for k in report.kernels)
    assert report.layout == "contiguous/C:16/S:16"
    assert report.total_seconds >= report.compile_seconds > 0


@pytest.mark.parametrize("name", library.names())
def test_every_library_layer_compiles_for_bfloat16_channels_last_with_fused_stages(name: str):
    with tuning(fusion="always"):
        report = compile_ahead(name, dtype=torch.bfloat16, shape=(4, 48, 6, 5), channels_last=True, groups=8)
    assert report.dtype == "bfloat16" and report.layout == "channels_last/C:16/S:any"  # S = 30
    assert "backward_train" in _modes_of(report)
    assert all(k.binary_bytes > 0 for k in report.kernels)


# Benchmark shapes (benchmarks/roofline.py) where each domain runs single-pass: groups of 64 x 49 and
# 32 x 196 (both ways: 196 positions declared in runs of 4, the backward at 32 warps), one plane of
# 3,136, rows of 2,048 channels, a transformer row of 4,096. Every kernel the launchers run there is
# checked, looping and combine kernels included.
SINGLE_PASS_SHAPES = [
    ("gn_relu", (64, 2048, 7, 7)),
    ("gn_relu", (64, 1024, 14, 14)),
    ("evonorm_s0", (64, 1024, 14, 14)),
    ("in_relu", (64, 256, 56, 56)),
    ("rmsnorm", (64, 2048, 7, 7)),
    ("layernorm", (16384, 4096)),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
@pytest.mark.parametrize(("name", "shape"), SINGLE_PASS_SHAPES)
def test_the_chosen_tiles_compile_for_hopper_without_spills(name, shape, dtype):
    report = compile_ahead(name, dtype=dtype, shape=shape, groups=32, resources=True)
    singles = [k for k in report.kernels if "_w" in k.kernel]
    assert singles, [k.kernel for k in report.kernels]  # the single-pass plan was chosen there
    assert {k.kernel: k.spill_bytes for k in report.kernels if k.spill_bytes} == {}
    assert all(0 < k.registers <= 255 for k in report.kernels)
    assert all(k.blocks is not None for k in singles)


@pytest.mark.parametrize("name", ["gn_relu", "evonorm_s0"])
def test_the_16bit_forward_budget_holds_a_resnet_group_without_spills(name):
    # 8 channels x 3,136 positions: 32,768 elements a program, within the budget of 16-bit inputs only.
    report = compile_ahead(name, dtype=torch.bfloat16, shape=(64, 256, 56, 56), groups=32, resources=True)
    (single,) = [k for k in report.kernels if k.kernel == "fwd_train_w0"]
    assert single.mode == "forward_train" and single.blocks == (8, 4096) and single.num_warps == 32
    assert single.ctas == 1  # one CTA: no cluster needed
    assert {k.kernel: k.spill_bytes for k in report.kernels if k.spill_bytes} == {}


@pytest.mark.skipif(not kernel_runtime.clusters_compile(90), reason="this Triton cannot split a tile across a cluster")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
@pytest.mark.parametrize(
    ("name", "shape"), [("gn_relu", (64, 256, 56, 56)), ("evonorm_s0", (64, 512, 28, 28)), ("rmsnorm", (64, 32768))]
)
def test_tiles_past_one_ctas_budget_compile_for_a_cluster_without_spills(name, shape, dtype, monkeypatch):
    ptx: dict[str, str] = {}

    def resources(text: str, kernel: str):
        ptx[kernel] = text
        return ptxas_resources(text, kernel)

    monkeypatch.setattr(ahead_module, "ptxas_resources", resources)
    report = compile_ahead(name, dtype=dtype, shape=shape, groups=32, resources=True)
    singles = {k.kernel: k for k in report.kernels if "_w" in k.kernel}
    assert set(singles) == {"fwd_train_w0", "bwd_train_w0"}  # every stage single-pass, both ways
    assert {k.kernel: k.spill_bytes for k in report.kernels if k.spill_bytes} == {}
    clustered = [k for k in singles.values() if k.ctas > 1]
    assert clustered, singles  # 8 x 4,096, 16 x 1,024 or a row of 32,768 exceeds one CTA's budget somewhere
    for kernel in clustered:
        # The statistic crosses CTAs: a cluster barrier and loads from another CTA's shared memory.
        assert f".reqnctapercluster {kernel.ctas}" in ptx[kernel.kernel]
        assert "barrier.cluster" in ptx[kernel.kernel] and "ld.shared::cluster" in ptx[kernel.kernel]


@pytest.mark.skipif(not kernel_runtime.clusters_compile(90), reason="this Triton cannot split a tile across a cluster")
@pytest.mark.parametrize(
    ("name", "shape", "dtype"),
    [("gn_relu", (64, 256, 56, 56), torch.bfloat16), ("evonorm_s0", (64, 1024, 14, 14), torch.float32)],
)
def test_channels_last_groups_compile_without_spills(name, shape, dtype):
    # As in (N, C, S) storage these spilled 648 and 56 bytes (the channels-last section of roofline.py).
    report = compile_ahead(name, dtype=dtype, shape=shape, groups=32, channels_last=True, resources=True)
    assert "fwd_train_w0" in {k.kernel for k in report.kernels}
    assert {k.kernel: k.spill_bytes for k in report.kernels if k.spill_bytes} == {}


def test_registers_and_spills_are_read_only_when_asked():
    report = compile_ahead("relu", shape=(2, 8, 4, 4))
    assert all(k.registers is None and k.spill_bytes is None for k in report.kernels)


def test_ptx_that_names_no_target_or_does_not_assemble_is_a_clear_error():
    with pytest.raises(CompilerError, match=r"names no \.target"):
        ptxas_resources(".version 8.0\n.address_size 64\n", "nameless")
    with pytest.raises(CompilerError, match="ptxas rejected kernel broken"):
        ptxas_resources(".version 8.0\n.target sm_90a\n.address_size 64\nthis is not ptx\n", "broken")


def _random_cases(count: int = 16) -> list[tuple[int, object, tuple[int, ...], torch.dtype, str]]:
    rng = random.Random(20261123)
    space = SearchSpace()
    cases = []
    for i in range(count):
        rank = 2 + i % 4  # (N, C) up to (N, C, D, H, W)
        shape = (rng.choice((2, 4)), rng.choice((8, 24, 64)), *(rng.choice((3, 8, 16)) for _ in range(rank - 2)))
        dtype = (torch.float32, torch.bfloat16, torch.float16)[i % 3]
        cases.append((i, random_graph(space, rng), shape, dtype, ("always", "never")[i % 2]))
    return cases


@pytest.mark.parametrize(("index", "graph", "shape", "dtype", "fusion"), _random_cases(), ids=lambda v: None)
def test_random_graphs_of_the_search_space_compile_for_hopper(index, graph, shape, dtype, fusion):
    with tuning(fusion=fusion):
        report = compile_ahead(graph, dtype=dtype, shape=shape, groups=2)
    assert {"forward_train", "backward_train"} <= _modes_of(report), graph.to_text()


def test_the_interpreter_and_the_driver_are_as_they_were_afterwards():
    # Kernel tests run under TRITON_INTERPRET=1 (conftest); compiling ahead turns it off only meanwhile.
    assert os.environ["TRITON_INTERPRET"] == "1"
    compile_ahead("rmsnorm")
    assert os.environ["TRITON_INTERPRET"] == "1"
    assert kernel_runtime.ahead_of_time() is None
    from evonorm_search import NormAct

    x = torch.randn(2, 8, 3, 3, requires_grad=True)
    ours = NormAct("rmsnorm", 8, groups=2, backend="triton")(x)  # the interpreter still runs kernels
    reference = NormAct("rmsnorm", 8, groups=2, backend="torch")(x)
    torch.testing.assert_close(ours, reference)


@pytest.mark.parametrize("target", ["cuda", "cuda:", "hip:gfx942", "cuda:sm90", "90"])
def test_a_target_that_is_not_cuda_and_a_capability_is_refused(target: str):
    with pytest.raises(CompilerError, match="cuda:90"):
        parse_target(target)


def test_a_shape_without_channels_is_refused():
    with pytest.raises(CompilerError, match=r"\(N, C, \*spatial\)"):
        compile_ahead("rmsnorm", shape=(8,))


def _badly_typed_kernel(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")  # a compiled kernel, not an interpreted one

    @triton.jit
    def badly_typed(x_ptr, BLOCK: tl.constexpr):
        offsets = tl.arange(0, BLOCK)
        tl.store(x_ptr + offsets, tl.load(x_ptr + offsets) + tl.arange(0, BLOCK * 2))  # shapes differ

    return badly_typed


def test_a_kernel_that_triton_rejects_is_named_in_the_error(monkeypatch: pytest.MonkeyPatch):
    kernel = _badly_typed_kernel(monkeypatch)
    recorder = _Recorder(sms=132, arch=90)
    recorder.mode = "forward_train"
    with (
        _target_driver(parse_target("cuda:90")),
        pytest.raises(CompilerError, match=r"could not compile kernel badly_typed \(forward_train\)"),
    ):
        recorder.compile(kernel, (1,), (torch.zeros(16),), {"BLOCK": 16})
    assert recorder.results() == ()


def test_a_kernel_rejected_in_a_parallel_compile_is_named_too(monkeypatch: pytest.MonkeyPatch):
    kernel = _badly_typed_kernel(monkeypatch)
    recorder = _Recorder(sms=132, arch=90)
    recorder.mode = "backward_eval"
    with _target_driver(parse_target("cuda:90")), pytest.raises(Exception) as raised, _parallel(2):
        recorder.compile(kernel, (1,), (torch.zeros(16),), {"BLOCK": 32})
    error = recorder.failure(raised.value)
    assert "could not compile kernel badly_typed (backward_eval)" in str(error)
    # The thread compiles normally afterwards (Triton 3.6 left its parallel mode on after a failure).
    assert compile_ahead("relu", workers=2).kernels


def test_a_parallel_compile_builds_the_same_kernels_as_a_sequential_one(tmp_path, monkeypatch: pytest.MonkeyPatch):
    # Each in an empty Triton cache of its own, so both really compile.
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path / "one"))
    one = compile_ahead("evonorm_b0", shape=(4, 32, 6, 6), groups=8)
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path / "two"))
    two = compile_ahead("evonorm_b0", shape=(4, 32, 6, 6), groups=8, workers=2)
    assert len(list((tmp_path / "two").rglob("*.cubin"))) == len(two.kernels)
    assert two.workers == 2 and one.workers == 1
    assert [(k.mode, k.kernel, k.num_warps, k.binary_bytes) for k in one.kernels] == [
        (k.mode, k.kernel, k.num_warps, k.binary_bytes) for k in two.kernels
    ]
    assert all(k.seconds > 0 for k in two.kernels)


@pytest.mark.parametrize("workers", [0, -1, 1.5, "2"])
def test_a_worker_count_that_is_not_a_positive_integer_is_refused(workers):
    with pytest.raises(CompilerError, match="workers must be a positive integer"):
        compile_ahead("relu", workers=workers)


def test_compiling_ahead_in_one_thread_leaves_launches_in_other_threads_alone():
    # The recorder that turns launches into compiles is per thread: a search thread compiling a new
    # candidate must not turn another thread's training launches into no-ops.
    seen: dict[str, object] = {}
    entered, release = threading.Event(), threading.Event()

    def compiling_thread():
        kernel_runtime._AHEAD.recorder = _Recorder(sms=132, arch=90)
        seen["there"] = kernel_runtime.ahead_of_time()
        entered.set()
        release.wait(10)
        kernel_runtime._AHEAD.recorder = None

    thread = threading.Thread(target=compiling_thread)
    thread.start()
    try:
        assert entered.wait(10)
        assert isinstance(seen["there"], _Recorder)
        assert kernel_runtime.ahead_of_time() is None
        from evonorm_search import NormAct

        x = torch.randn(2, 8, 3, 3)
        ours = NormAct("gn_relu", 8, groups=2, backend="triton")(x)  # launches (interpreted) for real here
        torch.testing.assert_close(ours, NormAct("gn_relu", 8, groups=2, backend="torch")(x))
    finally:
        release.set()
        thread.join()


def _precompile_tiny_layer(x: torch.Tensor) -> None:
    precompile_on_first_use(library.get("evonorm_s0"), x, groups=2, eps=1e-5, momentum=0.1)


def test_precompiling_on_first_use_is_off_with_one_worker(caplog: pytest.LogCaptureFixture):
    with tuning(precompile=1), caplog.at_level(logging.WARNING, logger="evonorm_search.compiler.ahead"):
        _precompile_tiny_layer(torch.randn(2, 8, 3, 3))
    assert caplog.records == []


def test_a_failed_precompile_is_logged_once_and_never_raised(caplog: pytest.LogCaptureFixture):
    # Without a GPU, compiling for "this machine's GPU" fails: the layer's launches would then compile
    # as usual, so the failure is a warning, and the same layer and shape is not tried again.
    x = torch.randn(2, 8, 3, 5)
    with tuning(precompile=2), caplog.at_level(logging.WARNING, logger="evonorm_search.compiler.ahead"):
        _precompile_tiny_layer(x)
        _precompile_tiny_layer(x)
    warnings = [r for r in caplog.records if "before their first launch failed" in r.getMessage()]
    assert len(warnings) == 1
    assert "they compile as they launch" in warnings[0].getMessage()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_the_first_launches_find_their_kernels_precompiled(
    tmp_path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    from evonorm_search import NormAct
    from evonorm_search.compiler import clear_cache, compile_log

    monkeypatch.delenv("TRITON_INTERPRET")
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path))  # cold: nothing compiled before this test
    clear_cache()
    layer = NormAct("evonorm_b0", 64, backend="triton").cuda()
    reference = NormAct("evonorm_b0", 64, backend="torch").cuda()
    x = torch.randn(16, 64, 28, 28, device="cuda", requires_grad=True)
    before = len(compile_log())
    with tuning(precompile=4), caplog.at_level(logging.WARNING, logger="evonorm_search.compiler.ahead"):
        y = layer(x)
        y.sum().backward()
        layer.eval()  # the precompile built the inference kernels too: launch them as well
        layer(x).sum().backward()
    assert not caplog.records, [r.getMessage() for r in caplog.records]
    launched = compile_log()[before:]
    assert launched, "the training step launched no kernel"
    # Had the precompile built other specialisations than the launches use, the launches would have
    # compiled theirs too: one cubin per launched kernel means every launch found its kernel compiled.
    assert len(list(tmp_path.rglob("*.cubin"))) == len(launched)
    torch.testing.assert_close(y, reference(x.detach()), rtol=1e-4, atol=1e-4)


def test_while_compiling_in_parallel_kernel_sources_are_parsed_one_at_a_time():
    # CPython's ast module counts recursion per interpreter: two threads in ast.parse at once can fail
    # ("AST constructor recursion depth mismatch"), so parallel compiles take turns parsing.
    from triton.runtime import jit

    owner = getattr(jit, "JITCallable", jit.JITFunction)
    original = owner.parse
    with _parallel(2):
        guarded = owner.parse
        assert guarded is not original
        with _one_parse_at_a_time():  # a parallel compile in another thread shares the guard
            assert owner.parse is guarded
        assert owner.parse is guarded
    assert owner.parse is original
