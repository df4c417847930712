"""Ahead-of-time compilation: every kernel of a layer compiled for a GPU target, on a machine without one.

Triton compiles a kernel on its first launch, for the device it launches on. `compile_ahead` runs a
layer's forward and backward launchers on CPU tensors of the chosen shape, dtype and storage order,
with Triton's active driver replaced by one that only names a target; each launch then goes through
Triton's real pipeline (TTIR, TTGIR, LLVM IR, PTX, and ptxas to a cubin) and returns without running.

What it is for:
- checking, without a GPU (in CI), that generated kernels compile for a real target: the CPU
  interpreter (`TRITON_INTERPRET=1`) runs kernels through numpy and accepts programs that the
  compiler rejects (types, shapes of blocks, unsupported math);
- measuring the cold compile time of a candidate layer (`benchmarks/compile.py`);
- reading each kernel's registers and spills (`resources=True`): ptxas, the assembler Triton itself
  runs, reports them for the PTX Triton generated; a kernel that spills moves its spilled values
  through local memory, which undoes a single pass over memory (`benchmarks/roofline.py`, and the
  zero-spill test of the chosen tiles);
- on a GPU, compiling all of a layer's kernels at once before its first launch
  (`precompile_on_first_use`, called by `NormAct(backend="triton")`): Triton would otherwise compile
  them one after another as the first training step launches them, and a search pays that for every
  new candidate. The launches then find the kernels in Triton's on-disk cache.

For a target other than this machine's GPU it swaps a process-wide setting of Triton (the active
driver) while it runs, so that must not overlap real kernel launches in another thread; compiling for
this machine's GPU (`target=None`) changes nothing outside its own thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..bounded import Bounded, limit
from ..ir import Graph
from ..layer import DEFAULT_GROUPS, as_graph, check_arguments, effective_groups
from .cache import MODES, _execute, compiled_layer
from .program import CompilerError

log = logging.getLogger(__name__)

# Streaming multiprocessors of common parts of each compute capability: block sizes and the split of
# batch reductions depend on it (a wrong count changes which kernels are built, not whether they work).
SM_COUNTS = {80: 108, 86: 84, 89: 128, 90: 132, 100: 148, 120: 170}


@dataclass(frozen=True)
class AheadKernel:
    """One kernel specialisation compiled ahead of time."""

    mode: str  # the launcher that launches it first: forward_train, backward_train, ...
    kernel: str
    # Compiling one after another: this kernel's compile (Triton's whole pipeline, ptxas included).
    # In parallel: from its submission until it was ready, waiting for a free worker included.
    seconds: float
    num_warps: int
    shared_bytes: int
    binary_bytes: int
    registers: int | None = None  # per thread, as ptxas allocated them (with `resources=True`)
    spill_bytes: int | None = None  # spill stores + spill loads per thread (with `resources=True`)
    blocks: tuple[int, int] | None = None  # (BLOCK_C, BLOCK_S) of a pass kernel
    ctas: int = 1  # CTAs one program spans: 2 or 4 for a single-pass tile held by a thread block cluster


@dataclass(frozen=True)
class AheadReport:
    """All kernels of one layer for one target, dtype and layout."""

    target: str
    dtype: str
    layout: str
    kernels: tuple[AheadKernel, ...]
    generate_seconds: float  # the layer's Triton source, from the graph (or this process's cache), executed
    compile_seconds: float  # wall time from the first launch to the last kernel ready
    workers: int  # kernels compiled at once

    @property
    def total_seconds(self) -> float:
        """What a new candidate costs before its first step: source generation plus every compile."""
        return self.generate_seconds + self.compile_seconds


def parse_target(target: str) -> Any:
    """`cuda:90` (compute capability 9.0, Hopper) to Triton's GPUTarget; only CUDA targets are supported."""
    from triton.backends.compiler import GPUTarget

    kind, _, capability = target.partition(":")
    if kind != "cuda" or not capability.isdigit():
        raise CompilerError(f"target must look like 'cuda:90' (CUDA and a compute capability), got {target!r}")
    return GPUTarget("cuda", int(capability), 32)


def compile_ahead(
    graph: Any,
    *,
    target: str | None = "cuda:90",
    shape: Sequence[int] = (8, 64, 8, 8),
    dtype: Any = None,
    channels_last: bool = False,
    groups: int | None = None,
    eps: float = 1e-5,
    momentum: float = 0.1,
    affine: bool = True,
    param_dtype: Any = None,
    sms: int | None = None,
    workers: int = 1,
    resources: bool = False,
) -> AheadReport:
    """Compile every kernel that training and inference with `graph` launch at `shape`, for `target`.

    `target=None` compiles for this machine's GPU (Triton's own driver). Kernels compile per dtype and
    layout class, not per exact shape; the shape matters only through the blocking it selects, and
    `eps` and `momentum` are compile-time constants of the kernels. `workers` > 1 compiles that many
    kernels at once in threads (Triton's compiler and ptxas run without holding the GIL). `resources`
    also reads each kernel's registers and spilled bytes from ptxas (one more ptxas run per kernel).
    Raises CompilerError when Triton rejects a kernel, naming the kernel.
    """
    import torch

    from . import runtime  # imports Triton: only when a compile runs

    graph = as_graph(graph)
    dtype = torch.float32 if dtype is None else dtype
    gpu = parse_target(target) if target is not None else None
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise CompilerError(f"workers must be a positive integer, got {workers!r}")
    if len(shape) < 2:
        raise CompilerError(f"shape must be (N, C, *spatial), got {tuple(shape)}")
    channels, groups = shape[1], DEFAULT_GROUPS if groups is None else groups
    check_arguments(channels, groups, eps, momentum)
    groups = effective_groups(channels, groups)
    call = _Call(graph, channels, groups, eps, momentum, affine, param_dtype or dtype)
    x = torch.empty(*shape, dtype=dtype)  # values are never read: kernels compile, nothing runs
    if channels_last:
        x = x.movedim(1, -1).contiguous().movedim(-1, 1)

    with _compiled_kernels_not_interpreted(), _target_driver(gpu) as named:
        start = time.perf_counter()
        layer = compiled_layer(graph, affine=affine)  # the source, generated once per process
        # Kernels of their own (fresh JIT functions), so nothing compiled here for another target stays
        # in the in-memory caches of the kernels that real launches use.
        launchers = _execute(layer.source, layer.key, interpret=False)["LAUNCHERS"]
        generate_seconds = time.perf_counter() - start
        recorder = _Recorder(sms or SM_COUNTS.get(named.arch, 132), named.arch)
        start = time.perf_counter()
        try:
            with _ahead(runtime, recorder), _parallel(workers):
                for mode in _distinct_modes(launchers):
                    recorder.mode = mode
                    _run_mode(launchers, mode, call, x, runtime)
        except CompilerError:
            raise
        except Exception as e:  # a parallel compile failed: name its kernel
            raise recorder.failure(e) from e
        kernels = recorder.results(resources)
        compile_seconds = time.perf_counter() - start
    return AheadReport(
        target=f"{named.backend}:{named.arch}",
        dtype=str(dtype).replace("torch.", ""),
        layout=runtime.layout_class(x),
        kernels=kernels,
        generate_seconds=generate_seconds,
        compile_seconds=compile_seconds,
        workers=workers,
    )


_PRECOMPILED: Bounded = Bounded(limit("EVONORM_KERNEL_RECORD_SIZE"))  # the shapes precompiled, latest kept
_PRECOMPILED_LOCK = threading.Lock()


def precompile_on_first_use(
    graph: Graph,
    x: Any,
    *,
    groups: int,
    eps: float,
    momentum: float,
    affine: bool = True,
    param_dtype: Any = None,
) -> None:
    """Before the first launch of `graph`'s kernels on CUDA at this shape and these call settings (once
    per process): compile all of them at once in `Tuning.precompile` threads. `groups` is the effective
    count (it divides the channels), `param_dtype` that of the parameters (default: the input's). A
    failure here costs only the speed-up (the launches then compile as usual), so it is logged, not raised."""
    from . import runtime  # imports Triton

    workers = runtime.active_tuning().precompile
    if workers is None:
        workers = min(16, os.cpu_count() or 1)
    if workers <= 1:
        return
    key = (
        graph,
        affine,
        groups,
        eps,
        momentum,
        x.dtype,
        x.device,
        param_dtype,
        runtime.layout_class(x),
        tuple(x.shape),
    )
    if key in _PRECOMPILED:
        return
    with _PRECOMPILED_LOCK:
        if key in _PRECOMPILED:
            return
        _PRECOMPILED.add(key)
    import torch

    try:
        with torch.cuda.device(x.device):
            compile_ahead(
                graph,
                target=None,
                shape=tuple(x.shape),
                dtype=x.dtype,
                channels_last=bool(runtime.channels_last(x)),
                groups=groups,
                eps=eps,
                momentum=momentum,
                affine=affine,
                param_dtype=param_dtype,
                sms=runtime._sm_count(x.device),
                workers=workers,
            )
    except Exception as e:
        log.warning(
            "compiling the kernels of %r before their first launch failed; they compile as they launch: %s",
            graph.to_text().splitlines()[-1],
            e,
        )


def _distinct_modes(launchers: dict[str, Any]) -> list[str]:
    """Launcher names, without aliases (layers with no batch statistics train and infer alike)."""
    seen: set[int] = set()
    names = []
    for name in MODES:
        if name in launchers and id(launchers[name]) not in seen:
            seen.add(id(launchers[name]))
            names.append(name)
    return names


@dataclass(frozen=True)
class _Call:
    """What a layer's launchers are called with, besides the input: the graph and the call settings."""

    graph: Graph
    channels: int
    groups: int  # effective: divides `channels`
    eps: float
    momentum: float
    affine: bool
    param_dtype: Any  # of v0/v1, weight, bias and the running buffers

    def tensors(self) -> tuple[list[Any], tuple[Any, ...], list[Any]]:
        """Parameters, affine (weight, bias) and running buffers, as `NormAct` would hold them; their
        values are never read (kernels compile, nothing runs)."""
        import torch

        def vector() -> Any:
            return torch.empty(self.channels, dtype=self.param_dtype)

        params = [vector() for _ in self.graph.parameters]
        affine = (vector(), vector()) if self.affine else ()
        buffers = [vector() for _ in self.graph.running_buffers()]
        return params, affine, buffers


def _run_mode(launchers: dict[str, Any], mode: str, call: _Call, x: Any, runtime: Any) -> None:
    """Call one launcher as `runtime.LayerFunction` does; a backward gets the statistics of its forward."""
    import torch

    params, affine, buffers = call.tensors()
    geo = runtime.Geometry(x, call.groups, call.eps, call.momentum, "ahead")
    forward = launchers[mode.replace("backward", "forward")]
    _, stats = forward(geo, x, *params, *affine, *buffers)  # kernels compiled once: later calls are free
    if mode.startswith("backward"):
        geo = runtime.Geometry(x, call.groups, call.eps, call.momentum, "ahead", backward=True)
        launchers[mode](geo, x, torch.empty_like(x), *params, *affine[:1], *buffers, *stats)


@dataclass
class _Submitted:
    mode: str
    kernel: str
    compiled: Any  # a CompiledKernel, or in parallel a FutureKernel that becomes one
    submitted: float
    future: Any = None  # in parallel: the compile's concurrent Future
    ready: float | None = None
    blocks: tuple[int, int] | None = None


class _Recorder:
    """Compiles instead of launching (`runtime.ahead_of_time()` in its thread); keeps each specialisation once."""

    def __init__(self, sms: int, arch: int) -> None:
        self.sms = sms
        self.arch = arch  # the target's compute capability: planning asks it whether clusters exist
        self.mode = ""
        self._submitted: dict[tuple, _Submitted] = {}

    def compile(self, kernel: Any, grid: tuple, args: tuple, kwargs: dict) -> None:
        from .runtime import kernel_name

        name = kernel_name(kernel)
        key = (name, tuple(sorted((k, str(v)) for k, v in kwargs.items())))
        if key in self._submitted:
            return  # launched again (a backward runs its forward first): Triton has it already
        entry = _Submitted(self.mode, name, None, time.perf_counter())
        if "BLOCK_S" in kwargs:
            entry.blocks = (kwargs["BLOCK_C"], kwargs["BLOCK_S"])
        try:
            entry.compiled = kernel.warmup(*args, grid=grid, **kwargs)
        except Exception as e:
            raise _rejected(entry, e) from e
        entry.future = _future_of(entry.compiled)
        if entry.future is None:
            entry.ready = time.perf_counter()
        else:
            entry.future.add_done_callback(lambda _, entry=entry: setattr(entry, "ready", time.perf_counter()))
        self._submitted[key] = entry

    def results(self, resources: bool = False) -> tuple[AheadKernel, ...]:
        kernels = []
        for entry in self._submitted.values():
            compiled = entry.compiled.result() if entry.future is not None else entry.compiled
            metadata = compiled.metadata
            registers, spills = ptxas_resources(compiled.asm["ptx"], entry.kernel) if resources else (None, None)
            kernels.append(
                AheadKernel(
                    mode=entry.mode,
                    kernel=entry.kernel,
                    seconds=(entry.ready or time.perf_counter()) - entry.submitted,
                    num_warps=metadata.num_warps,
                    shared_bytes=metadata.shared,
                    binary_bytes=len(compiled.asm.get("cubin", b"")),
                    registers=registers,
                    spill_bytes=spills,
                    blocks=entry.blocks,
                    ctas=getattr(metadata, "num_ctas", 1),
                )
            )
        return tuple(kernels)

    def failure(self, error: Exception) -> CompilerError:
        """The CompilerError for a parallel compile that raised `error`: which kernel it was."""
        failed = [e for e in self._submitted.values() if e.future is not None and e.future.exception() is not None]
        failed.sort(key=lambda e: e.future.exception() is not error)  # the one raised here first
        if failed:
            return _rejected(failed[0], failed[0].future.exception())
        return CompilerError(f"compiling ahead of time failed: {type(error).__name__}: {error}")


_PTXAS_REGISTERS = re.compile(r"Used (\d+) registers")
_PTXAS_SPILLS = re.compile(r"(\d+) bytes spill stores, (\d+) bytes spill loads")
_PTX_TARGET = re.compile(r"^\s*\.target\s+(sm_(\d+)\w*)", re.MULTILINE)


def ptxas_path(capability: int) -> str:
    """The ptxas Triton compiles for `capability` with (bundled, or as TRITON_PTXAS_PATH names it)."""
    from triton.backends.nvidia import compiler

    try:
        return compiler.get_ptxas(capability).path  # Triton 3.7+: a newer ptxas for sm_90 and up
    except TypeError:  # Triton 3.6: one ptxas for every target
        return compiler.get_ptxas().path


_RESOURCES: dict[str, tuple[int, int]] = {}  # sha256 of a PTX -> what ptxas said of it


def ptxas_resources(ptx: str, kernel: str) -> tuple[int, int]:
    """(registers per thread, spilled bytes per thread: stores + loads) of a kernel's PTX, from `ptxas -v`
    for the architecture the PTX names: the assembler and target Triton's own compile used."""
    digest = hashlib.sha256(ptx.encode()).hexdigest()
    if digest not in _RESOURCES:
        _RESOURCES[digest] = _run_ptxas(ptx, kernel)
    return _RESOURCES[digest]


def _run_ptxas(ptx: str, kernel: str) -> tuple[int, int]:
    target = _PTX_TARGET.search(ptx)
    if target is None:
        raise CompilerError(f"kernel {kernel}: its PTX names no .target architecture")
    with tempfile.TemporaryDirectory(prefix="evonorm-ptxas-") as tmp:
        source = Path(tmp) / f"{kernel}.ptx"
        source.write_text(ptx)
        command = [ptxas_path(int(target.group(2))), "-v", f"--gpu-name={target.group(1)}", str(source)]
        # Triton's own assembler on PTX Triton generated, in a private folder; no shell.
        done = subprocess.run(  # noqa: S603
            [*command, "-o", str(source.with_suffix(".o"))],
            capture_output=True,
            text=True,
            check=False,
        )
    if done.returncode != 0:
        raise CompilerError(f"ptxas rejected kernel {kernel}: {done.stderr.strip()[-2000:]}")
    registers = _PTXAS_REGISTERS.search(done.stderr)
    spills = _PTXAS_SPILLS.search(done.stderr)
    if registers is None or spills is None:
        raise CompilerError(f"ptxas -v said nothing of registers or spills for kernel {kernel}: {done.stderr!r}")
    return int(registers.group(1)), int(spills.group(1)) + int(spills.group(2))


def _rejected(entry: _Submitted, error: Exception) -> CompilerError:
    return CompilerError(
        f"Triton could not compile kernel {entry.kernel} ({entry.mode}): {type(error).__name__}: {error}"
    )


def _future_of(compiled: Any) -> Any:
    """The concurrent Future behind a FutureKernel (parallel compiles); None for a compiled kernel."""
    try:
        from triton.runtime._async_compile import FutureKernel
    except ImportError:  # a Triton without parallel compiles: every kernel is compiled already
        return None
    return compiled.future if isinstance(compiled, FutureKernel) else None


@contextlib.contextmanager
def _parallel(workers: int) -> Iterator[None]:
    """Launches submit their compiles to `workers` threads; leaving waits for all of them."""
    if workers == 1:
        yield
        return
    from concurrent.futures import ThreadPoolExecutor

    try:
        from triton.runtime._async_compile import AsyncCompileMode, active_mode
    except ImportError:
        raise CompilerError("this Triton cannot compile in parallel (no AsyncCompileMode); use workers=1") from None
    with _one_parse_at_a_time(), ThreadPoolExecutor(workers, thread_name_prefix="evonorm-compile") as pool:
        try:
            with AsyncCompileMode(pool):
                yield
        finally:
            # Triton 3.6 leaves the mode active when a compile failed, and every later compile of the
            # thread would go to this closed pool.
            active_mode.set(None)


_PARSE_LOCK = threading.Lock()
_PARSE_GUARD: dict[str, Any] = {"users": 0, "original": None}
_PARSE_GUARD_LOCK = threading.Lock()


@contextlib.contextmanager
def _one_parse_at_a_time() -> Iterator[None]:
    """Kernel sources are parsed by one thread at a time while compiles run in parallel.

    CPython (3.11 and 3.12 at least) keeps the `ast` module's recursion counter per interpreter, not per
    thread, so two threads in `ast.parse` at once can fail with "SystemError: AST constructor recursion
    depth mismatch". Triton parses a kernel's source (and each function it calls) in the thread that
    compiles it, through `JITCallable.parse`; while any parallel compile runs, that method takes a lock.
    """
    from triton.runtime import jit

    owner = getattr(jit, "JITCallable", jit.JITFunction)
    with _PARSE_GUARD_LOCK:
        if _PARSE_GUARD["users"] == 0:
            original = _PARSE_GUARD["original"] = owner.parse

            def parse(self):
                with _PARSE_LOCK:
                    return original(self)

            owner.parse = parse
        _PARSE_GUARD["users"] += 1
    try:
        yield
    finally:
        with _PARSE_GUARD_LOCK:
            _PARSE_GUARD["users"] -= 1
            if _PARSE_GUARD["users"] == 0:
                owner.parse = _PARSE_GUARD["original"]


class _TargetOnly:
    """A Triton driver that names a target and nothing else: enough for compiling, never for launching."""

    def __init__(self, target: Any) -> None:
        self.target = target

    def get_current_target(self) -> Any:
        return self.target

    def get_current_device(self) -> int:
        return 0

    def get_current_stream(self, device: int | None = None) -> int:
        return 0

    def __getattr__(self, name: str) -> Any:
        raise CompilerError(f"compiling ahead of time for {self.target}: Triton asked the driver for {name!r}")


@contextlib.contextmanager
def _target_driver(target: Any) -> Iterator[Any]:
    """Yields the target compiled for: `target` through a stand-in driver, or (None) the real driver's."""
    from triton.runtime.driver import driver

    if target is None:
        yield driver.active.get_current_target()
        return
    # `_active` is None until something asks for the real driver (which fails without a GPU), so it is
    # saved and restored as it was rather than reset.
    saved = driver._active
    driver.set_active(_TargetOnly(target))
    try:
        yield target
    finally:
        driver._active = saved


@contextlib.contextmanager
def _ahead(runtime: Any, recorder: _Recorder) -> Iterator[None]:
    if runtime.ahead_of_time() is not None:
        raise CompilerError("compile_ahead is already running in this thread")
    runtime._AHEAD.recorder = recorder
    try:
        yield
    finally:
        runtime._AHEAD.recorder = None


@contextlib.contextmanager
def _compiled_kernels_not_interpreted() -> Iterator[None]:
    """`@triton.jit` builds interpreter functions while TRITON_INTERPRET is set; these must be real ones."""
    # Removed rather than set to 0, so the environment matches a plain GPU run's: some variables are
    # part of Triton's cache keys, and kernels compiled here should be found by later launches.
    saved = os.environ.pop("TRITON_INTERPRET", None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ["TRITON_INTERPRET"] = saved
