"""Runtime of compiled layers: shapes and block sizes, launches, compile-time records, the autograd Function.

Generated launchers (`codegen.py`) call `Geometry` methods; `LayerFunction` wires a layer's forward and
backward launchers into autograd. Its text is copied verbatim into standalone exports
(`export_module(..., kernels=True)`), so besides torch and triton it imports only two modules of the
package that import only the standard library, and exports carry their text ahead of it
(`cache.standalone_source`): `bounded.py` (its caches) and `domains.py` (the kernel-domain tables).

Every rule that depends on a program domain reads the domain's row of `DOMAINS` (what one program
covers of C and S, its launch grid, its caps and cluster rule); no code here names a domain. Block sizes
are chosen from the shape (a tile of about `Tuning.tile` elements, the contiguous dimension first);
`Tuning.autotune` times a few alternatives once per kernel, dtype and size class on CUDA and keeps the
fastest.

A fused stage runs in one of three ways, chosen per call from the shape (`Geometry.plan_of`; the
single-pass kernel's tile, warps and CTAs are the returned `Geometry.single_pass` plan):
`single` when one tile per program holds the whole reduced extent within the register budget
(`Tuning.single_pass`, elements per CTA; every input element is read once), on one CTA or, past one
CTA's budget, on a thread block cluster of 2 or 4 that shares the tile (`Tuning.cluster`; sm_90 and
newer, where the installed Triton compiles it: `clusters_compile`), else `fused` when
the domain gives enough programs to fill the GPU (two loops over the same program's slice: the second
read mostly hits L2), else `split` (kernels per pass, partials and combines).
"""

import contextlib
import dataclasses
import math
import os
import threading
import time
import warnings
from collections import deque

import torch
import triton
import triton.language as tl

from ..bounded import Bounded, limit
from .domains import COMBINE_PROGRAMS, DOMAINS, STATISTIC_SIZES, DomainDef


@dataclasses.dataclass
class Tuning:
    """How kernels are blocked and fused. `None` sizes mean: chosen from the shape."""

    tile: int = 4096  # elements per [BLOCK_C, BLOCK_S] tile
    # Elements per tile of a backward's looping kernels (None: `tile`): they carry a parameter-gradient
    # accumulator per parameter beside the recomputed forward, and spilled at 4,096 on sm_90.
    backward_tile: int | None = 2048
    block_c: int | None = None
    block_s: int | None = None
    chunk: int | None = None  # positions per program of a split pass (a multiple of BLOCK_S)
    # "auto": a fused stage runs single-pass where its domain fits the budget, else fused where the shape
    # gives enough programs, else split; "single": single-pass where it fits, else fused; "always":
    # the fused (looping) kernel wherever a stage fuses; "never": split kernels only.
    fusion: str = "auto"
    autotune: bool = False
    # On CUDA, the first call of a layer at a new shape compiles all its kernels at once in this many
    # threads before launching any (compiler/ahead.py); None: one per core, up to 16; 0: as they launch.
    precompile: int | None = None
    min_programs: int | None = None  # fused kernels need this many programs (default 2 x SMs)
    max_group_channels: int = 128  # widest group a `group` program holds
    # Channels of a looping tile over (N, C, S) storage when S is small: more rows made the backward's
    # per-row accumulators spill on sm_90 (64 x 64 did, 32 x 64 does not).
    max_rows: int = 32
    combine_block: int = 32
    # Single-pass register budget: elements one program holds, (forward, backward), for 32-bit inputs
    # (float64 holds half); 0 turns single-pass kernels off. 16-bit inputs (bfloat16, float16) have
    # their own (None: the same): a forward tile of them loads into half the registers, while the
    # backward computes in float32 either way. Chosen by the budget table of benchmarks/roofline.py and
    # checked with zero spills on sm_90 in tests/compiler/test_ahead.py.
    single_pass: tuple[int, int] = (16384, 8192)
    single_pass_16bit: tuple[int, int] | None = (32768, 8192)
    # Most CTAs one single-pass program may span, as a thread block cluster (sm_90 and newer, where
    # this Triton compiles it: `clusters_compile`); the budget above is per CTA. 1 turns clusters off.
    # At 4, every GroupNorm and EvoNorm-S stage of a ResNet-50 runs single-pass without spills.
    cluster: int = 4
    # A group's tile in channels-last storage strides its channels by C: per CTA it holds at most these
    # (forward, backward), at 32 warps from 4,096 elements (None: as in (N, C, S) storage, which
    # spilled there on sm_90; the channels-last section of benchmarks/roofline.py).
    single_pass_channels_last_group: tuple[int, int] | None = (8192, 4096)


TUNING = Tuning()
INTERPRET_TUNING = Tuning(
    tile=128,
    backward_tile=None,
    block_c=8,
    block_s=16,
    chunk=16,
    combine_block=16,
    single_pass=(256, 256),
    single_pass_16bit=None,
    cluster=1,  # so the tests' mid-sized shapes keep exercising fused and split plans; tests turn it on
)
# One dict per first launch of a kernel specialisation (the latest EVONORM_COMPILE_LOG_SIZE kept), the
# specialisations launched and the tuning chosen for each: all bounded, as a worker lives for many layers.
COMPILE_LOG: deque = deque(maxlen=limit("EVONORM_COMPILE_LOG_SIZE"))
_SEEN: Bounded = Bounded(limit("EVONORM_KERNEL_RECORD_SIZE"))
_TUNED: Bounded = Bounded(limit("EVONORM_KERNEL_RECORD_SIZE"))
_SM_COUNT: dict = {}
_CAPABILITY: dict = {}
# Single-pass choices whose kernel spilled registers on this GPU: (layer, domain, backward, dtype,
# layout, blocks, CTAs). Later calls run the stage fused or split instead.
_SPILLED: set = set()
# Compute capabilities (90 for sm_90) -> why this Triton cannot compile a tile split across a cluster
# for it (None: it can).
_CLUSTERS: dict[int, str | None] = {}
_CLUSTERS_LOCK = threading.Lock()
# compiler/ahead.py sets `recorder` in the thread where it compiles a layer's kernels ahead of time:
# launches there compile and return, and blocking assumes the target's SM count. Per thread, because
# other threads of the process may be launching kernels for real meanwhile.
_AHEAD = threading.local()


def ahead_of_time():
    return getattr(_AHEAD, "recorder", None)


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def active_tuning() -> Tuning:
    return INTERPRET_TUNING if interpreting() and TUNING is _DEFAULT_TUNING else TUNING


_DEFAULT_TUNING = TUNING


@contextlib.contextmanager
def tuning(**changes):
    """Temporarily change the tuning (for tests and benchmarks): `with tuning(fusion="never"): ...`.
    A `single_pass` budget given without `single_pass_16bit` holds for 16-bit inputs as well."""
    global TUNING
    unknown = set(changes) - {f.name for f in dataclasses.fields(Tuning)}
    if unknown:
        raise ValueError(f"unknown tuning field(s) {sorted(unknown)}")
    if "fusion" in changes and changes["fusion"] not in FUSION_POLICIES:
        raise ValueError(f"fusion must be one of {', '.join(map(repr, FUSION_POLICIES))}, got {changes['fusion']!r}")
    if "single_pass" in changes:
        changes.setdefault("single_pass_16bit", None)  # a budget given alone holds for every input width
    saved = TUNING
    TUNING = dataclasses.replace(active_tuning(), **changes)
    try:
        yield TUNING
    finally:
        TUNING = saved


FUSION_POLICIES = ("auto", "single", "always", "never")


def tile_warps(block_c: int, block_s: int, single_backward: bool = False, strided_rows: bool = False) -> int:
    """Warps of a program with a [block_c, block_s] tile: 16 elements per thread up to 8 warps (a thread
    may then use up to 255 registers) and 32 at 8,192 elements; 16 warps beyond that, and for tiles of
    up to 4,096 elements with many rows and columns, whose per-row values (statistics, accumulators,
    parameters, masks) each thread would otherwise hold for many rows; 32 warps (a CUDA block's most)
    above 16,384 elements, and for a single-pass backward above 4,096 (it holds x, dy and the
    recomputed forward per element: 16 elements a thread spilled, 8 do not), and from 4,096 elements for
    a group over channels-last storage (`strided_rows`: its channels strided by C). Each rule is where
    ptxas spilled on sm_90 otherwise (at 16 warps a thread has at most 128 registers, at 32 64)."""
    elements = block_c * block_s
    if elements > 16384 or (single_backward and elements > 4096) or (strided_rows and elements >= 4096):
        return 32
    if elements > 8192 or (elements <= 4096 and block_c >= 16 and block_s >= 32):
        return 16
    return max(4, min(8, elements // 512))


def _cluster_probe(x_ptr, y_ptr, BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr):
    """A statistic reduced as the single-pass kernels reduce a group's (rows, then the column of row
    sums), over a tile that a cluster of CTAs shares: the pattern a Triton must split across CTAs."""
    c = tl.arange(0, BLOCK_C)[:, None]
    s = tl.arange(0, BLOCK_S)[None, :]
    x = tl.load(x_ptr + c * BLOCK_S + s)
    total = tl.sum(tl.sum(x, 1, keep_dims=True), 0, keep_dims=True)
    tl.store(y_ptr + c * BLOCK_S + s, x - total)


def clusters_compile(arch: int) -> bool:
    """Whether this Triton compiles one program's tile spread over a thread block cluster of 2 CTAs for
    compute capability `arch` (90: sm_90), reductions crossing CTAs through distributed shared memory.
    Clusters need sm_90; Triton 3.9 splits the tile, 3.6 to 3.8 reject the layout at compile time.
    Found once per process by compiling a small kernel (no GPU needed), not from version numbers."""
    return cluster_refusal(arch) is None


def cluster_refusal(arch: int) -> str | None:
    """Why one program cannot span a cluster on compute capability `arch` (None: it can)."""
    if arch < 90:
        return f"sm_{arch} has no thread block clusters"
    with _CLUSTERS_LOCK:
        if arch not in _CLUSTERS:
            _CLUSTERS[arch] = _cluster_compile_error(arch)
        return _CLUSTERS[arch]


def _cluster_compile_error(arch: int) -> str | None:
    try:
        from triton.backends.compiler import GPUTarget
        from triton.compiler import ASTSource
        from triton.runtime.jit import JITFunction

        # A JITFunction of its own: `@triton.jit` builds an interpreter function under TRITON_INTERPRET.
        source = ASTSource(
            fn=JITFunction(_cluster_probe),
            signature={"x_ptr": "*fp32", "y_ptr": "*fp32", "BLOCK_C": "constexpr", "BLOCK_S": "constexpr"},
            constexprs={"BLOCK_C": 8, "BLOCK_S": 256},
        )
        with _stderr_discarded():  # a rejecting Triton prints its MLIR pipeline and reproducer there
            triton.compile(source, target=GPUTarget("cuda", arch, 32), options={"num_warps": 4, "num_ctas": 2})
    except Exception as e:  # any failure (the layout rejected, no CUDA backend or assembler) means: no clusters
        reason = (str(e).strip().splitlines() or [""])[0][:200]
        return f"Triton {triton.__version__} did not compile a tile split across 2 CTAs: {type(e).__name__}: {reason}"
    return None


@contextlib.contextmanager
def _stderr_discarded():
    """File descriptor 2 to /dev/null for a moment: Triton's C++ passes write their diagnostics there."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def next_pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def channels_last(x: torch.Tensor) -> bool | None:
    """False for (N, C, *spatial) storage, True for channels-last storage, None for anything else."""
    if x.is_contiguous():
        return False
    if x.dim() >= 3 and x.movedim(1, -1).is_contiguous():
        return True
    return None


def _divisibility(n: int) -> str:
    return "1" if n == 1 else ("16" if n % 16 == 0 else "any")


def vector_width(x: torch.Tensor) -> int:
    """Positions of (N, C, S) storage that start at a multiple of this and run contiguously: 4 where 4
    divides S but 16 does not (Triton specialises S on 16 itself), else 1 (nothing to add). Kernels
    declare it on their offsets (`VEC`), so a thread holds neighbours along S and loads them as vectors."""
    if channels_last(x):
        return 1
    s = x.numel() // max(1, x.shape[0] * x.shape[1])
    return 4 if s % 4 == 0 and s % 16 else 1


def layout_class(x: torch.Tensor) -> str:
    """What kernels specialise on besides dtype: storage order and the divisibility of C and S (and,
    in (N, C, S) storage, whether 4 divides S: `vector_width`)."""
    n, c = x.shape[0], x.shape[1]
    s = x.numel() // max(1, n * c)
    order = "channels_last" if channels_last(x) else "contiguous"
    positions = "4" if vector_width(x) == 4 else _divisibility(s)
    return f"{order}/C:{_divisibility(c)}/S:{positions}"


def _sm_count(device: torch.device) -> int:
    if device.type != "cuda":
        ahead = ahead_of_time()
        return ahead.sms if ahead is not None else 1
    if device not in _SM_COUNT:
        _SM_COUNT[device] = torch.cuda.get_device_properties(device).multi_processor_count
    return _SM_COUNT[device]


def _capability(device: torch.device) -> int:
    if device not in _CAPABILITY:
        major, minor = torch.cuda.get_device_capability(device)
        _CAPABILITY[device] = 10 * major + minor
    return _CAPABILITY[device]


@dataclasses.dataclass(frozen=True)
class SinglePassPlan:
    """A fused stage's single-pass kernel at one call's shape (`Geometry.single_pass`): its tile, warps
    per CTA and CTAs (0: the tile fits no cluster), whether the stage runs single-pass, and the key its
    kernel's spills are recorded under (the stage then runs fused or split)."""

    block_c: int
    block_s: int
    warps: int
    ctas: int
    runs: bool
    key: tuple


class Geometry:
    """One call's shapes, dtypes and block sizes, and the launches of its kernels. What each program
    domain covers, and so its grid, tiles and rules, is a row of `DOMAINS` (`domains.py`)."""

    def __init__(
        self,
        x: torch.Tensor,
        groups: int,
        eps: float,
        momentum: float,
        layer: str = "",
        sms: int | None = None,
        tuning: Tuning | None = None,
        backward: bool = False,
        arch: int | None = None,
    ):
        self.x = x
        self.N, self.C = x.shape[0], x.shape[1]
        self.S = x.numel() // max(1, self.N * self.C)
        self.G = groups
        self.CG = self.C // groups
        self.eps = float(eps)
        self.momentum = float(momentum)
        self.layer = layer
        self.last = bool(channels_last(x))
        self.compute = torch.float64 if x.dtype == torch.float64 else torch.float32
        self.tl_compute = tl.float64 if x.dtype == torch.float64 else tl.float32
        self.tuning = tuning or active_tuning()
        self.layout = layout_class(x)
        self.vec = vector_width(x)
        # The target's SM count when planning for a GPU that is not this one (the cost model).
        self.sms = sms
        self.arch = arch  # and its compute capability (90: sm_90), which decides thread block clusters
        self.backward = backward  # a backward's launches: smaller looping tiles
        t = self.tuning
        self.tile = t.backward_tile if backward and t.backward_tile else t.tile

    def _sms(self) -> int:
        return self.sms if self.sms is not None else _sm_count(self.x.device)

    def _arch(self) -> int | None:
        """The compute capability kernels are planned for: the ahead-of-time target's, the one given (the
        cost model's target), this GPU's; None when no GPU is targeted."""
        ahead = ahead_of_time()
        if ahead is not None:
            return ahead.arch
        if self.arch is not None:
            return self.arch
        if self.x.is_cuda:
            return _capability(self.x.device)
        return None

    def cluster_limit(self) -> int:
        """Most CTAs a single-pass program may span here: `Tuning.cluster` where the target has thread
        block clusters and this Triton splits a tile across them, else 1. The interpreter runs each
        program whole, whatever CTAs it would span, so it follows the tuning (and tests the plan)."""
        if self.tuning.cluster <= 1:
            return 1
        arch = self._arch()
        if arch is None:
            return self.tuning.cluster if interpreting() else 1
        return self.tuning.cluster if clusters_compile(arch) else 1

    # -- sizes and counts -----------------------------------------------------------------------------

    def size(self, name: str) -> int:
        """One of the call's sizes by its name in the domain tables: N, C, S, G or CG."""
        return {"N": self.N, "C": self.C, "S": self.S, "G": self.G, "CG": self.CG}[name]

    def count(self, name: str, domain: str, block_c: int, block_s: int) -> int:
        """A count of the domain tables (`domains.py`) for a launch over `domain` with these blocks."""
        if name == "C/BLOCK_C":
            return triton.cdiv(self.C, block_c)
        if name == "S/BLOCK_S":
            return triton.cdiv(self.S, block_s)
        if name == "S/CHUNK":
            return self.chunking(domain)[1]
        return 1 if name == "1" else self.size(name)

    def _channels(self, row: DomainDef) -> int:
        """The channels a program of a domain holds whole (C or CG); not asked of a `BLOCK_C` domain."""
        return self.size(row.channels)

    def _across_channels(self, row: DomainDef, block_c: int) -> int:
        """Programs per sample along C: one per block of `block_c` channels, per group, or one."""
        return triton.cdiv(self.C, block_c) if row.channels == "BLOCK_C" else self.C // self._channels(row)

    # -- allocation -----------------------------------------------------------------------------------

    def empty_input(self) -> torch.Tensor:
        return torch.empty_like(self.x)

    def statistic(self, axis: str) -> torch.Tensor:
        """The statistics of `axis` ("sum": parameter gradients), as many as `STATISTIC_SIZES` says."""
        size = math.prod(self.size(name) for name in STATISTIC_SIZES[axis])
        return torch.empty(size, dtype=self.compute, device=self.x.device)

    def partials(self, domain: str, planes: int, single: bool = False) -> torch.Tensor:
        rows = self.chunking(domain, single)[1]
        return torch.empty(planes * self.N * rows * self.C, dtype=self.compute, device=self.x.device)

    def check_batch_statistics(self) -> None:
        if self.N * self.S < 2:
            raise ValueError(
                "expected more than 1 value per channel when training a layer with batch statistics, "
                f"got input of size {list(self.x.shape)}"
            )

    # -- blocking -------------------------------------------------------------------------------------

    def blocks(self, domain: str, single: bool = False) -> tuple[int, int, int]:
        """(BLOCK_C, BLOCK_S, num_warps) for a domain; the contiguous dimension gets the long side.

        Sizes come from coarse buckets of S (and of C/groups for `group` programs), never from the
        exact shape, so one compiled kernel serves every layer position of a model in the same bucket.
        """
        if single:
            plan = self.single_pass(domain, self.backward)
            return plan.block_c, plan.block_s, plan.warps
        row, t = DOMAINS[domain], self.tuning
        s_bucket = 64 if self.S <= 64 else (256 if self.S <= 256 else 512)
        if row.positions == "BLOCK_S":
            # Loops over C. Wide rows along S where S is large; narrow ones where it is small, for enough programs.
            block_s = t.block_s or (4 if self.last else (32 if self.S > 256 else 8))
            block_c = t.block_c or max(1, self.tile // block_s)
        elif row.channels != "BLOCK_C":  # its channels whole in each tile, looping over S
            block_c = next_pow2(self._channels(row))
            block_s = t.block_s or max(1, min(s_bucket, self.tile // block_c))
        elif self.last:
            block_c = t.block_c or 64
            block_s = t.block_s or max(1, self.tile // block_c)
        else:
            block_s = t.block_s or s_bucket
            block_c = t.block_c or max(1, min(t.max_rows, self.tile // block_s))
        return block_c, block_s, tile_warps(block_c, block_s)

    def single_pass(self, domain: str, backward: bool) -> SinglePassPlan:
        """How a fused stage over `domain` would run single-pass at this shape, and whether it does.

        The tile covers the reduced extent whole (all of S where a program covers S, its channels
        where it holds them whole), the other side fills `Tuning.tile`. CTAs: 1 where the tile fits one
        CTA's budget, 2 or 4 (a thread block cluster) where it fits that many, 0 where it does not fit.
        The warps are per CTA, for its share. It runs single-pass where the fusion policy allows it, the
        domain's channels are within its cap, the tile fits, and its kernel has not spilled here."""
        row = DOMAINS[domain]
        block_c, block_s = self._single_tile(row)
        cap = self._channels_last_cap(row)
        ctas = self._ctas(row, block_c * block_s, backward, cap)
        share = max(1, block_s // max(1, ctas))  # the positions of each CTA's part
        warps = tile_warps(block_c, share, single_backward=backward, strided_rows=cap is not None)
        key = (self.layer, domain, backward, self.x.dtype, self.layout, block_c, block_s, ctas)
        runs = (
            self.tuning.fusion not in ("never", "always")
            and not self._over_cap(row)
            and ctas > 0
            and key not in _SPILLED
        )
        return SinglePassPlan(block_c, block_s, warps, ctas, runs, key)

    def _single_tile(self, row: DomainDef) -> tuple[int, int]:
        if row.positions == "BLOCK_S":  # all of its channels, and as many positions as fill the tile
            block_c = next_pow2(self._channels(row))
            block_s = max(1, min(next_pow2(self.S), self.tile // block_c))
        elif row.channels != "BLOCK_C":
            block_c, block_s = next_pow2(self._channels(row)), next_pow2(self.S)
        else:
            block_s = next_pow2(self.S)
            # Channels-last stores channels contiguously: take as many as the budget allows.
            width = self.budget(self.backward) if self.last else self.tile
            block_c = max(1, min(next_pow2(self.C), width // block_s))
        return block_c, block_s

    def _over_cap(self, row: DomainDef) -> bool:
        """Whether a `capped` domain holds more channels than `Tuning.max_group_channels`."""
        return row.capped and self.tuning.max_group_channels < self._channels(row)

    def _channels_last_cap(self, row: DomainDef) -> tuple[int, int] | None:
        """`Tuning.single_pass_channels_last_group` for a program over channels-last storage whose channels
        stride by C (`DomainDef.channels_last_cap`)."""
        return self.tuning.single_pass_channels_last_group if self.last and row.channels_last_cap else None

    def _ctas(self, row: DomainDef, elements: int, backward: bool, cap: tuple[int, int] | None) -> int:
        budget = self.budget(backward)
        if cap is not None:
            budget = min(budget, cap[1 if backward else 0])
        if budget <= 0:
            return 0
        ctas = next_pow2(triton.cdiv(elements, budget))
        if ctas == 1:
            return 1
        if row.clusters == "rows" and self.S > 1:
            return 0
        return ctas if ctas <= self.cluster_limit() else 0

    def budget(self, backward: bool) -> int:
        """Elements a single-pass program may hold: the tuning's budget for the input's width, halved for
        float64 compute."""
        budgets = self.tuning.single_pass
        if self.x.element_size() == 2 and self.tuning.single_pass_16bit is not None:
            budgets = self.tuning.single_pass_16bit
        elements = budgets[1 if backward else 0]
        return elements // 2 if self.compute == torch.float64 else elements

    def single(self, domain: str, backward: bool) -> bool:
        """Whether a fused stage over `domain` runs as a single-pass kernel for this shape."""
        return self.single_pass(domain, backward).runs

    def plan_of(self, domain: str, backward: bool) -> str:
        """How a fused stage over `domain` runs at this shape: "single", "fused" or "split"."""
        if self.single(domain, backward):
            return "single"
        return "fused" if self.fuse(domain) else "split"

    def chunking(self, domain: str, single: bool = False) -> tuple[int, int]:
        """(CHUNK, NSC): positions per partial row and rows per (sample, channel) for a domain's partials."""
        row = DOMAINS[domain]
        if row.positions == "S":
            return self.S, 1
        block_c, block_s, _ = self.blocks(domain, single)
        if row.positions == "BLOCK_S":
            return block_s, triton.cdiv(self.S, block_s)
        chunk = self.tuning.chunk
        if chunk is None:
            target = 4 * self._sms()
            programs = self.N * self._across_channels(row, block_c)
            rows = max(1, min(triton.cdiv(target, programs), triton.cdiv(self.S, block_s)))
            chunk = triton.cdiv(triton.cdiv(self.S, rows), block_s) * block_s
        chunk = max(chunk, block_s)
        return chunk, triton.cdiv(self.S, chunk)

    def grid(self, domain: str, block_c: int, block_s: int) -> tuple[int, int, int]:
        """The launch grid over `domain`: the samples, then the domain's `grid` counts."""
        first, second = DOMAINS[domain].grid
        return (self.N, self.count(first, domain, block_c, block_s), self.count(second, domain, block_c, block_s))

    def fuse(self, domain: str) -> bool:
        """Whether a stage runs as one fused kernel over `domain` for this shape."""
        row = DOMAINS[domain]
        if row.always_fused:
            return True
        if self._over_cap(row):
            return False
        if row.row_fits_tile and next_pow2(self._channels(row)) > self.tile:
            return False  # a row of the program's tile would not fit
        if self.tuning.fusion != "auto":
            return self.tuning.fusion != "never"
        if self.sms is None and self.x.device.type != "cuda" and ahead_of_time() is None:
            return True
        block_c = self.blocks(domain)[0] if row.channels == "BLOCK_C" else self.C
        programs = self.N * self._across_channels(row, block_c)
        minimum = self.tuning.min_programs or 2 * self._sms()
        return programs >= minimum

    # -- launches -------------------------------------------------------------------------------------

    def sizes(self, domain: str, single: bool = False) -> tuple[int, ...]:
        chunk, rows = self.chunking(domain, single)
        return (self.N, self.C, self.S, self.G, self.CG, chunk, rows)

    def launch(self, kernel, domain: str, *tensors: torch.Tensor, single: bool = False) -> None:
        if single:  # the blocks are the domain's extent: nothing to tune
            plan = self.single_pass(domain, self.backward)
            compiled = self._run(kernel, domain, tensors, plan.block_c, plan.block_s, plan.warps, True, plan.ctas)
            self._check_spills(kernel, compiled, plan)
            return
        block_c, block_s, warps = self._tuned(kernel, domain, tensors)
        self._run(kernel, domain, tensors, block_c, block_s, warps)

    def _run(self, kernel, domain: str, tensors, block_c: int, block_s: int, warps: int, single=False, ctas: int = 1):
        """Launch a pass kernel over `domain` with these blocks; returns what `_start` returns."""
        sizes = self.sizes(domain, single)
        constants = {
            "EPS": self.eps,
            "COMPUTE": self.tl_compute,
            "CHANNELS_LAST": self.last,
            "VEC": self.vec_for(block_s, chunk=sizes[5]),  # sizes: (N, C, S, G, CG, CHUNK, NSC)
            "BLOCK_C": block_c,
            "BLOCK_S": block_s,
        }
        grid = self.grid(domain, block_c, block_s)
        key = (kernel_name(kernel), self.x.dtype, self.layout, block_c, block_s, self.eps, ctas)
        launch = {"num_warps": warps, "num_ctas": ctas} if ctas > 1 else {"num_warps": warps}
        return self._start(kernel, grid, (*tensors, *sizes), {**constants, **launch}, key)

    def _check_spills(self, kernel, compiled, plan: SinglePassPlan) -> None:
        """A single-pass kernel that spills registers reads and writes local memory on every element:
        say so once, and run this stage fused or split from the next call on (under `plan.key`)."""
        spills = getattr(compiled, "n_spills", 0) or 0
        if spills > 0 and plan.key not in _SPILLED:
            _SPILLED.add(plan.key)
            warnings.warn(
                f"single-pass kernel {kernel_name(kernel)} of layer {self.layer!r} spills {spills} registers at "
                f"blocks {(plan.block_c, plan.block_s)} on {plan.ctas} CTA(s) ({self.x.dtype}, {self.layout}); "
                "this stage runs fused or split from now on",
                RuntimeWarning,
                stacklevel=2,
            )

    def vec_for(self, block_s: int, chunk: int) -> int:
        """The `VEC` of a pass kernel: runs of `vector_width` positions stay aligned only where every tile
        starts on a multiple of it (tiles start at multiples of BLOCK_S within chunks of CHUNK). Tiles
        narrower than 32 positions (a `channel` program's 4 or 8 positions across many channels) keep 1:
        there the runs put a whole row of the tile on one thread and spread warps across channels, and
        LayerNorm's bfloat16 forward over 1,024 x 4 spilled."""
        if block_s < 32:
            return 1
        return self.vec if block_s % self.vec == 0 and chunk % self.vec == 0 else 1

    def combine(
        self, kernel, domain: str, strategies: tuple[str, ...], *tensors: torch.Tensor, single: bool = False
    ) -> None:
        """Launch a combine kernel: one program range per strategy (`COMBINE_PROGRAMS`), one after another."""
        block = self.tuning.combine_block
        programs = (math.prod(self.count(n, domain, block, 1) for n in COMBINE_PROGRAMS[s]) for s in strategies)
        grid = (sum(programs),)
        constants = {"MOMENTUM": self.momentum, "COMPUTE": self.tl_compute, "BLOCK_C": block, "BLOCK_R": block}
        key = (kernel_name(kernel), self.x.dtype, self.layout, block, self.momentum)
        self._start(kernel, grid, (*tensors, *self.sizes(domain, single)), {**constants, "num_warps": 4}, key)

    def _start(self, kernel, grid, args: tuple, kwargs: dict, key: tuple):
        """Launch a kernel, timing its first launch; or, while compiling ahead of time, only compile it.
        Returns what the launch returns (Triton's compiled kernel, on a GPU)."""
        if (ahead := ahead_of_time()) is not None:
            ahead.compile(kernel, grid, args, kwargs)
            return None
        with self._recorded(key):
            return kernel[grid](*args, **kwargs)

    @contextlib.contextmanager
    def _recorded(self, key):
        """Time the first launch of each kernel specialisation: Triton compiles it synchronously then."""
        full_key = (self.layer, *key)
        if full_key in _SEEN:
            yield
            return
        start = time.perf_counter()
        yield
        if self.x.is_cuda:
            torch.cuda.synchronize(self.x.device)
        _SEEN.add(full_key)
        COMPILE_LOG.append(
            {
                "layer": self.layer,
                "kernel": key[0],
                "dtype": str(self.x.dtype).replace("torch.", ""),
                "layout": self.layout,
                "seconds": time.perf_counter() - start,
            }
        )

    def _tuned(self, kernel, domain: str, tensors) -> tuple[int, int, int]:
        """Block sizes for a pass kernel: the shape's choice, or the fastest of a few when autotuning."""
        default = self.blocks(domain)
        if not (self.tuning.autotune and self.x.is_cuda and not interpreting()):
            return default
        size_class = (self.N.bit_length(), self.C.bit_length(), self.S.bit_length(), self.CG.bit_length())
        key = (kernel_name(kernel), domain, self.x.dtype, self.layout, size_class)
        tuned = _TUNED.get(key)
        if tuned is None:
            tuned = self._benchmark(kernel, domain, tensors, default)
            _TUNED[key] = tuned
        return tuned

    def _benchmark(self, kernel, domain, tensors, default):
        # Only the blocks that do not change the partials' layout vary (pass kernels are idempotent).
        row = DOMAINS[domain]
        block_c, block_s, warps = default
        options = {default, (block_c, block_s, 8 if warps == 4 else 4)}
        if row.channels == "BLOCK_C" and not self.last:
            options |= {(max(1, block_c // 2), min(block_s * 2, next_pow2(self.S)), warps)}
        if row.positions == "BLOCK_S":
            options |= {(max(1, block_c // 2), block_s, warps)}
        if row.positions == "CHUNK":  # a split pass's partials are per chunk: every block divides it
            chunk = self.chunking(domain)[0]
            options = {o for o in options if chunk % o[1] == 0}
        timings = {}
        for option in sorted(options):
            fn = lambda o=option: self._run(kernel, domain, tensors, *o)  # noqa: E731
            timings[option] = triton.testing.do_bench(fn, warmup=5, rep=20)
        return min(timings, key=lambda option: timings[option])


def kernel_name(kernel) -> str:
    fn = getattr(kernel, "fn", kernel)
    return getattr(fn, "__name__", str(kernel))


# --------------------------------------------------------------------------------------------------
# Autograd
# --------------------------------------------------------------------------------------------------


class LayerFunction(torch.autograd.Function):
    """One compiled layer in autograd: fused forward, fused backward from the saved statistics."""

    @staticmethod
    def forward(ctx, launchers, call, x, weight, bias, *rest):
        params, buffers = rest[: call["params"]], rest[call["params"] :]
        geo = Geometry(x, call["groups"], call["eps"], call["momentum"], call["layer"])
        forward = launchers["forward_train" if call["training"] else "forward_eval"]
        affine = (weight, bias) if weight is not None else ()
        y, stats = forward(geo, x, *params, *affine, *buffers)
        ctx.launchers, ctx.call = launchers, call
        ctx.counts = (len(params), len(stats))
        ctx.save_for_backward(x, weight, *params, *stats, *buffers)
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gy):
        call = ctx.call
        n_params, n_stats = ctx.counts
        x, weight, *rest = ctx.saved_tensors
        params, stats, buffers = rest[:n_params], rest[n_params : n_params + n_stats], rest[n_params + n_stats :]
        gy = match_layout(gy, x)
        geo = Geometry(x, call["groups"], call["eps"], call["momentum"], call["layer"], backward=True)
        backward = ctx.launchers["backward_train" if call["training"] else "backward_eval"]
        affine = (weight,) if weight is not None else ()
        dx, sums = backward(geo, x, gy, *params, *affine, *buffers, *stats)
        names = call["param_names"]
        d_params = [sums[name].to(p.dtype) for name, p in zip(names, params, strict=True)]
        d_weight = sums["weight"].to(weight.dtype) if weight is not None else None
        d_bias = sums["bias"].to(weight.dtype) if weight is not None else None
        return (None, None, dx, d_weight, d_bias, *d_params, *(None for _ in buffers))


def match_layout(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """`t` stored like `like`: (N, C, *spatial) or channels-last, as the kernels index both the same way."""
    if channels_last(like):
        return t if channels_last(t) else t.movedim(1, -1).contiguous().movedim(-1, 1)
    return t.contiguous()


def layer_apply(launchers, layer, x, params, param_names, weight, bias, buffers, training, groups, eps, momentum):
    """Run a compiled layer on `x` (through autograd when anything needs a gradient)."""
    if channels_last(x) is None:
        x = x.contiguous()
    call = {
        "params": len(params),
        "param_names": tuple(param_names),
        "training": bool(training),
        "groups": int(groups),
        "eps": float(eps),
        "momentum": float(momentum),
        "layer": layer,
    }
    tensors = [x, weight, bias, *params]
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        return LayerFunction.apply(launchers, call, x, weight, bias, *params, *buffers)
    geo = Geometry(x, groups, eps, momentum, layer)
    forward = launchers["forward_train" if training else "forward_eval"]
    affine = (weight, bias) if weight is not None else ()
    return forward(geo, x, *params, *affine, *buffers)[0]
