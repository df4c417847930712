"""Pass 4, code generation: Triton source for every kernel of a plan, and the Python that launches them.

The output is deterministic text (the golden tests compare it): `@triton.jit` pass kernels, combine
kernels, and one launcher function per mode (`forward_train`, `forward_eval`, `backward_train`,
`backward_eval`). It runs together with `kernel_library.py` (Triton helpers) and `runtime.py`
(Geometry, launches, the autograd Function).

Inside a pass kernel every node is a [BLOCK_C, BLOCK_S] tile or a broadcastable part of one
([BLOCK_C, 1] per channel, [1, BLOCK_S] per position, [1, 1] per sample or constant). Nodes that do not
vary along the loop are computed once before it; everything else is recomputed per tile from the
input, so no intermediate tensor ever goes to memory. Arithmetic runs in COMPUTE (float32, or float64
for float64 inputs); loads convert, stores cast back to the tensor's dtype.

A single-pass kernel (`Kernel.single`) has no loops: its one tile is the whole domain of the program,
so every node is computed once, in topological order, and every later phase reuses the values (the
input tile is loaded once, kept in registers through the reductions, and the outputs are written from
it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..ir import AXES, OPS
from ..ir.vocabulary import CombineStrategy, Dim, Kind, Plane
from .domains import COMBINE_PROGRAMS, DOMAINS
from .lower import Combine, Kernel, Plan
from .op_table import TRITON
from .schedule import Reduction, ReductionKind, Schedule, Source, SourceKind, closure

INDENT = "    "
PASS_SIZES = ("N", "C", "S", "G", "CG", "CHUNK", "NSC")
PASS_CONSTANTS = ("EPS", "COMPUTE", "CHANNELS_LAST", "VEC", "BLOCK_C", "BLOCK_S")
COMBINE_CONSTANTS = ("MOMENTUM", "COMPUTE", "BLOCK_C", "BLOCK_R")
# The counts of the domain tables as Triton expressions over a kernel's sizes and blocks.
COUNTS = {
    "1": "1",
    "N": "N",
    "G": "G",
    "C/BLOCK_C": "(C + BLOCK_C - 1) // BLOCK_C",
    "S/BLOCK_S": "(S + BLOCK_S - 1) // BLOCK_S",
    "S/CHUNK": "NSC",
}


def product(counts: tuple[str, ...]) -> str:
    """A product of counts as one Triton expression (compound factors in parentheses)."""
    texts = [COUNTS[c] for c in counts]
    return texts[0] if len(texts) == 1 else " * ".join(f"({t})" if " " in t else t for t in texts)


# Programs of a combine kernel per strategy: the table `runtime.Geometry.combine` sizes its grid by.
COMBINE_BLOCKS = {CombineStrategy(name): product(counts) for name, counts in COMBINE_PROGRAMS.items()}
# The exact statistic of an operand constant along the reduced dims (`SourceKind.TRIVIAL`), per plane.
TRIVIAL_PLANES = {Plane.MEAN: "{0}", Plane.VAR: "tl.full([1, 1], 0.0, COMPUTE)", Plane.SQMEAN: "{0} * {0}"}


def literal(value: str) -> str:
    """A word of the vocabulary as a Python literal in generated source ('mean', not Plane.MEAN)."""
    return repr(str(value))


def mask_argument(mask: str | None) -> str:
    return f", mask={mask}" if mask else ""


def total(value: str, axis: int | str) -> str:
    """Sum along `axis`, keeping dims: tl.sum's own reduction (see `add_combine` in the kernel library)."""
    return f"tl.reduce({value}, {axis}, add_combine, keep_dims=True)"


def _jit_header(name: str, pointers: list[str], constants: tuple[str, ...]) -> list[str]:
    args = [f"{p}_ptr" for p in pointers] + list(PASS_SIZES) + [f"{c}: tl.constexpr" for c in constants]
    # C and S keep Triton's divisibility specialisation (aligned, vectorised loads along the contiguous
    # dimension): that is the layout class. Batch, group and chunk sizes never cause a recompile.
    no_special = ", ".join(f'"{s}"' for s in PASS_SIZES if s not in ("C", "S"))
    return [
        f"@triton.jit(do_not_specialize=[{no_special}])",
        f"def {name}(",
        *(f"{INDENT}{a}," for a in args),
        "):",
    ]


@dataclass
class _Writer:
    """Collects body lines and the pointer arguments they use, in first-use order."""

    lines: list[str] = field(default_factory=list)
    pointers: list[str] = field(default_factory=list)

    def ptr(self, name: str) -> str:
        if name not in self.pointers:
            self.pointers.append(name)
        return f"{name}_ptr"

    def emit(self, depth: int, line: str) -> None:
        self.lines.append(INDENT * depth + line)


def stat_pointer(src: Source) -> str:
    if src.kind is SourceKind.RUNNING:
        return src.buffer
    prefix = "st" if src.kind is SourceKind.REDUCTION else "sv"
    return f"{prefix}{src.index}_{src.plane}"


class PassKernelWriter:
    """Triton source of one pass kernel (possibly several fused passes)."""

    def __init__(self, schedule: Schedule, kernel: Kernel):
        self.s = schedule
        self.k = kernel
        self.program = schedule.program
        self.dims = self.program.dims()
        self.coverage = DOMAINS[kernel.domain]  # what one program covers: its channels and positions
        self.loop_dim = Dim.C if self.coverage.positions == "BLOCK_S" else Dim.S
        self.w = _Writer()
        self.in_register: dict[int, str] = {}  # reduction index -> variable prefix of its statistics
        self.single = kernel.single
        self.body = 1 if kernel.single else 2  # indentation of per-tile code: inside the loop, or not
        self.defined: set[int] = set()  # single-pass: nodes computed by an earlier phase, reused

    # -- expressions --------------------------------------------------------------------------------

    def _mask_of_dims(self, dims: frozenset[Dim]) -> str | None:
        if Dim.C in dims:
            return "c_in"
        if Dim.S in dims:
            return "s_in"
        return None

    def _statistic(self, src: Source, operand_node: int) -> str:
        """The plane value an aggregation reads: exact, a register of this kernel, or a load."""
        if src.kind is SourceKind.TRIVIAL:
            return TRIVIAL_PLANES[src.plane].format(self._var(operand_node))
        if src.kind is SourceKind.REDUCTION and src.index in self.in_register:
            return f"q{src.index}_{src.plane}"
        axis = AXES[src.axis]
        mask = self._mask_of_dims(axis.dims)
        masked = f", mask={mask}, other=0.0" if mask else ""
        return f"tl.load({self.w.ptr(stat_pointer(src))} + ({axis.stat_index}){masked}).to(COMPUTE)"

    def _expression(self, i: int) -> str:
        node = self.program.nodes[i]
        row = OPS[node.op]
        template = TRITON[node.op]
        src = self.s.sources.get(i)
        if src is not None:
            return template.format(self._statistic(src, node.args[0]))
        if row.kind is Kind.LEAF:
            ptr = self.w.ptr(node.op) if "{ptr}" in template else ""
            return template.format(name=node.op, value=node.value, ptr=ptr)
        return template.format(*(self._var(a) for a in node.args))

    def _var(self, i: int) -> str:
        return f"a_{i}" if self.single else f"a{self.phase}_{i}"

    # -- structure ----------------------------------------------------------------------------------

    def source(self) -> str:
        self._preamble()
        for p in self.k.phases:
            self._phase(p)
        head = _jit_header(self.k.name, self.w.pointers, PASS_CONSTANTS)
        doc = f'{INDENT}"""{self._summary()}"""'
        return "\n".join([*head, doc, *self.w.lines]) + "\n"

    def _summary(self) -> str:
        passes = ", ".join(str(p) for p in self.k.phases)
        what = "pass" if len(self.k.phases) == 1 else "fused passes"
        if self.single:
            what = f"single pass over memory: {what}"
        return f"{what} {passes} over the {self.k.domain} domain"

    def _preamble(self) -> None:
        e = self.w.emit
        e(1, "n = tl.program_id(0)")
        e(1, "zero = tl.full([1, 1], 0, tl.int32)")
        e(1, "eps = tl.full([1, 1], EPS, COMPUTE)")
        e(1, "row = n.to(tl.int64) * C * S")
        # Program ids follow the domain's launch grid (`DomainDef.grid`): axis 1 counts the blocks of S of a
        # program covering one (it loops over C), else the groups or blocks of C, and axis 2 the chunks of S.
        channels, positions = self.coverage.channels, self.coverage.positions
        if positions == "BLOCK_S":
            e(1, "k = tl.program_id(1)")
            e(1, "s = k * BLOCK_S + tl.arange(0, BLOCK_S)[None, :]")
            e(1, "s_in = s < S")
            if self.single:
                e(1, "c = tl.arange(0, BLOCK_C)[:, None]")
                e(1, "c_in = c < C")
                self._tile_offsets(1)
            return
        if channels == "CG":
            e(1, "lane = tl.arange(0, BLOCK_C)[:, None]")
            e(1, "c = tl.program_id(1) * CG + lane")
            e(1, "c_in = lane < CG")
        elif channels == "C":
            e(1, "c = tl.arange(0, BLOCK_C)[:, None]")
            e(1, "c_in = c < C")
        else:
            e(1, "c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)[:, None]")
            e(1, "c_in = c < C")
        e(1, "k = tl.program_id(2)")
        if self.single:
            e(1, "s = tl.arange(0, BLOCK_S)[None, :]")
            e(1, "s_in = s < S")
            self._tile_offsets(1)
            return
        e(1, "s_lo = k * CHUNK")
        e(1, "s_hi = tl.minimum(s_lo + CHUNK, S)")

    def _tile_offsets(self, depth: int) -> None:
        self.w.emit(depth, "inside = c_in & s_in")
        self._offsets(depth)

    def _offsets(self, depth: int) -> None:
        """Element offsets of the tile. In (N, C, S) storage, runs of VEC positions start at multiples of
        VEC (the launcher's `vector_width`: 4 where 4 divides S and 16 does not; where 16 does, Triton's
        own specialisation of S already says so). Saying so lets Triton give each thread VEC neighbours
        in one row rather than one position in each of several rows: at S = 196 that took a group's
        single-pass backward from 484 spilled bytes on sm_90 to none (benchmarks/results/roofline-cpu2.md)."""
        e = self.w.emit
        e(depth, "if CHANNELS_LAST:")
        e(depth + 1, "offs = row + s * C + c")
        e(depth, "else:")
        e(depth + 1, "offs = row + c * S + s")
        e(depth + 1, "if VEC > 1:")
        e(depth + 2, "offs = tl.max_contiguous(tl.multiple_of(offs, [1, VEC]), [1, VEC])")

    def _phase(self, p: int) -> None:
        self.phase = p
        e = self.w.emit
        step = self.s.passes[p]
        reductions = [self.s.reductions[r] for r in step.reductions]
        roots = [r.operand for r in reductions] + [i for _, i in step.stores]
        needed = sorted(closure(self.program, roots, self.s.sources))
        e(1, f"# pass {p}")
        if self.single:
            self._single_phase(step, reductions, needed)
            return
        invariant = [i for i in needed if self.loop_dim not in self.dims[i]]
        variant = [i for i in needed if self.loop_dim in self.dims[i]]
        for i in invariant:
            e(1, f"{self._var(i)} = {self._expression(i)}")
        for r in reductions:
            self._init_accumulator(r)
        if self.loop_dim is Dim.S:
            e(1, "for s0 in range(s_lo, s_hi, BLOCK_S):")
            e(2, "s = s0 + tl.arange(0, BLOCK_S)[None, :]")
            e(2, "s_in = s < s_hi")
        else:
            e(1, "for c0 in range(0, C, BLOCK_C):")
            e(2, "c = c0 + tl.arange(0, BLOCK_C)[:, None]")
            e(2, "c_in = c < C")
        e(2, "inside = c_in & s_in")
        self._offsets(2)
        for i in variant:
            e(2, f"{self._var(i)} = {self._expression(i)}")
        self._stores(step)
        for r in reductions:
            self._accumulate(r)
        if any(self._accumulates(r) and r.index not in self.k.complete for r in reductions):
            e(1, f"pidx = {self._partial_index()}")
        for r in reductions:
            self._finish(r)

    def _single_phase(self, step, reductions: list[Reduction], needed: list[int]) -> None:
        """A phase on the one tile: nodes not computed by an earlier phase, stores, reductions of the tile."""
        for i in needed:
            if i not in self.defined:
                self.w.emit(1, f"{self._var(i)} = {self._expression(i)}")
                self.defined.add(i)
        self._stores(step)
        for r in reductions:
            self._accumulate(r)
        if any(self._accumulates(r) and r.index not in self.k.complete for r in reductions):
            self.w.emit(1, f"pidx = {self._partial_index()}")
        for r in reductions:
            self._finish(r)

    def _stores(self, step) -> None:
        for name, i in step.stores:
            value = f"tl.broadcast_to({self._var(i)}, [BLOCK_C, BLOCK_S])"
            self.w.emit(
                self.body,
                f"tl.store({self.w.ptr(name)} + offs, {value}.to({name}_ptr.dtype.element_ty), mask=inside)",
            )

    # -- reductions -----------------------------------------------------------------------------------

    def _value(self, r: Reduction) -> str:
        v = self._var(r.operand)
        return f"{v} * {v}" if r.kind is ReductionKind.SQMEAN else v

    def _accumulates(self, r: Reduction) -> bool:
        """Whether `r` sums over the loop inside this program (else each tile writes its partials)."""
        return self.loop_dim is Dim.S or r.index in self.k.complete

    def _shape(self) -> str:
        return "[BLOCK_C, 1]" if self.loop_dim is Dim.S else "[1, BLOCK_S]"

    def _init_accumulator(self, r: Reduction) -> None:
        if not self._accumulates(r) or self.single:
            return
        names = ("n", "mean", "m2") if r.kind is ReductionKind.MOMENTS else ("sum",)
        for name in names:
            self.w.emit(1, f"r{r.index}_{name} = tl.full({self._shape()}, 0.0, COMPUTE)")

    def _accumulate(self, r: Reduction) -> None:
        e = self.w.emit
        axis = 1 if self.loop_dim is Dim.S or r.index not in self.k.complete else 0
        p = f"r{r.index}"
        if not self._accumulates(r):  # a channel program: partials of this tile's channels
            self._tile_partials(r)
            return
        if self.single:
            self._single_reduction(r, axis)
            return
        if r.kind is ReductionKind.MOMENTS:
            self._tile_moments(r, axis)
            # Chan's merge of this tile into the running moments (inlined: the interpreter pays per call).
            e(2, f"{p}_w = {p}_tn / tl.maximum({p}_n + {p}_tn, 1.0)")
            e(2, f"{p}_d = {p}_tm - {p}_mean")
            e(2, f"{p}_mean = {p}_mean + {p}_d * {p}_w")
            e(2, f"{p}_m2 = {p}_m2 + {p}_t2 + {p}_d * {p}_d * {p}_n * {p}_w")
            e(2, f"{p}_n = {p}_n + {p}_tn")
        else:
            e(2, f"{p}_sum += {total(f'tl.where(inside, {self._value(r)}, 0.0)', axis)}")

    def _single_reduction(self, r: Reduction, axis: int) -> None:
        """A reduction of the one tile. A complete group statistic sums over both axes at once; moments
        are two-step (the mean, then the squares of the values minus it, from registers): exact
        centring, with no merging of per-row moments."""
        e = self.w.emit
        p = f"r{r.index}"
        whole = r.index in self.k.complete and AXES[r.axis].across_channels

        def over(value: str) -> str:
            return total(total(value, 1), 0) if whole else total(value, axis)

        value = f"tl.where(inside, {self._value(r)}, 0.0)"
        if r.kind is not ReductionKind.MOMENTS:
            e(1, f"{p}_sum = {over(value)}")
            return
        e(1, f"{p}_n = {over('inside.to(COMPUTE)')}")
        e(1, f"{p}_mean = {over(value)} / tl.maximum({p}_n, 1.0)")
        e(1, f"{p}_c = tl.where(inside, {self._value(r)} - {p}_mean, 0.0)")
        e(1, f"{p}_m2 = {over(f'{p}_c * {p}_c')}")

    def _tile_moments(self, r: Reduction, axis: int) -> None:
        """(count, mean, M2) of this tile's valid elements along `axis`, as r<i>_tn, r<i>_tm, r<i>_t2."""
        e = self.w.emit
        p = f"r{r.index}"
        e(self.body, f"{p}_tn = {total('inside.to(COMPUTE)', axis)}")
        e(self.body, f"{p}_tm = {total(f'tl.where(inside, {self._value(r)}, 0.0)', axis)} / tl.maximum({p}_tn, 1.0)")
        e(self.body, f"{p}_tc = tl.where(inside, {self._value(r)} - {p}_tm, 0.0)")
        e(self.body, f"{p}_t2 = {total(f'{p}_tc * {p}_tc', axis)}")

    def _partial_index(self) -> str:
        return "(n * NSC + k) * C + c"

    def _tile_partials(self, r: Reduction) -> None:
        e = self.w.emit
        p = f"r{r.index}"
        pt = self.w.ptr(f"pt{r.index}")
        e(self.body, f"pidx = {self._partial_index()}")
        if r.kind is ReductionKind.MOMENTS:
            self._tile_moments(r, 1)
            e(self.body, f"tl.store({pt} + pidx, {p}_tm, mask=c_in)")
            e(self.body, f"tl.store({pt} + N * NSC * C + pidx, {p}_t2, mask=c_in)")
        else:
            e(
                self.body,
                f"tl.store({pt} + pidx, {total(f'tl.where(inside, {self._value(r)}, 0.0)', 1)}, mask=c_in)",
            )

    def _finish(self, r: Reduction) -> None:
        if not self._accumulates(r):
            return
        if r.index in self.k.complete:
            self._complete(r)
        else:
            self._store_partials(r)

    def _store_partials(self, r: Reduction) -> None:
        e = self.w.emit
        p = f"r{r.index}"
        pt = self.w.ptr(f"pt{r.index}")
        if r.kind is ReductionKind.MOMENTS:
            e(1, f"tl.store({pt} + pidx, {p}_mean, mask=c_in)")
            e(1, f"tl.store({pt} + N * NSC * C + pidx, {p}_m2, mask=c_in)")
        else:
            e(1, f"tl.store({pt} + pidx, {p}_sum, mask=c_in)")

    def _complete(self, r: Reduction) -> None:
        """Finish a reduction held whole by this program: statistics in registers, and in memory."""
        e = self.w.emit
        p, q = f"r{r.index}", f"q{r.index}"
        axis = AXES[r.axis]
        summed = axis.across_channels and not self.single  # a single-pass tile summed the whole group already
        if r.kind is ReductionKind.MOMENTS:
            if summed:
                e(1, f"{p}_n, {p}_mean, {p}_m2 = merge_moments_across({p}_n, {p}_mean, {p}_m2, c_in, 0)")
            e(1, f"{q}_mean = {p}_mean")
            e(1, f"{q}_var = {p}_m2 / tl.maximum({p}_n, 1.0)")
        else:
            whole = total(f"tl.where(c_in, {p}_sum, 0.0)", 0) if summed else f"{p}_sum"
            e(1, f"{q}_{r.planes[0]} = {whole} / {axis.count}")
        self.in_register[r.index] = q
        index = axis.complete_index or axis.stat_index
        mask = mask_argument(axis.complete_mask)
        for plane in r.planes:
            e(1, f"tl.store({self.w.ptr(f'st{r.index}_{plane}')} + ({index}), {q}_{plane}{mask})")


class CombineWriter:
    """Triton source of the combine kernel of some reductions' partials (one program range each)."""

    def __init__(self, schedule: Schedule, combine: Combine):
        self.s = schedule
        self.c = combine
        self.w = _Writer()

    def source(self) -> str:
        e = self.w.emit
        e(1, "pid = tl.program_id(0)")
        e(1, "hi = pid * 0")
        for rid in self.c.reductions:
            self._reduction(self.s.reductions[rid])
        names = ", ".join(str(r) for r in self.c.reductions)
        doc = f'{INDENT}"""combine the partials of reduction(s) {names}"""'
        head = _jit_header(self.c.name, self.w.pointers, COMBINE_CONSTANTS)
        return "\n".join([*head, doc, *self.w.lines]) + "\n"

    def _reduction(self, r: Reduction) -> None:
        e = self.w.emit
        strategy = AXES[r.axis].combine
        assert strategy is not None, f"axis {r.axis} always completes; nothing to combine"
        moments = r.kind is ReductionKind.MOMENTS
        pt = self.w.ptr(f"pt{r.index}")
        e(1, f"# reduction {r.index}: {r.kind} over {r.axis}")
        e(1, "lo = hi")
        e(1, f"hi = lo + {COMBINE_BLOCKS[strategy]}")
        e(1, "if (pid >= lo) & (pid < hi):")
        if strategy in (CombineStrategy.CHANNELS_ALL_SAMPLES, CombineStrategy.CHANNELS_ONE_SAMPLE):
            all_samples = strategy is CombineStrategy.CHANNELS_ALL_SAMPLES
            e(2, f"idx, ok, total, var, count = combine_channels({pt}, pid - lo, N, C, S, CHUNK, NSC, "
                 f"{all_samples}, {moments}, COMPUTE, BLOCK_C, BLOCK_R)")  # fmt: skip
            mask = ", mask=ok"
        else:
            e(2, f"idx, total, var, count = combine_scalar({pt}, pid - lo, N, C, S, G, CG, CHUNK, NSC, "
                 f"{strategy is CombineStrategy.SCALAR_GROUP}, {moments}, COMPUTE, BLOCK_C, BLOCK_R)")  # fmt: skip
            e(2, "ok = idx >= 0")
            mask = ""
        values = {Plane.MEAN: "total", Plane.VAR: "var", Plane.SUM: "total", Plane.SQMEAN: "total / count"}
        if r.kind is ReductionKind.MEAN:
            values[Plane.MEAN] = "total / count"
        for plane in r.planes:
            e(2, f"tl.store({self.w.ptr(f'st{r.index}_{plane}')} + idx, {values[plane]}{mask})")
        for buffer, plane, unbiased in r.running:
            e(
                2,
                f"update_running_estimate({self.w.ptr(buffer)}, idx, ok, {values[plane]}, count, {unbiased}, MOMENTUM)",
            )


# --------------------------------------------------------------------------------------------------
# Launchers
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mode:
    """One launcher: its name, its schedule and plan, and the tensors it takes and returns."""

    name: str
    plan: Plan
    inputs: tuple[str, ...]
    saved: tuple[str, ...]  # statistics returned by a forward (for the backward) or taken by a backward
    backward: bool


def statistic_names(schedule: Schedule) -> tuple[str, ...]:
    """The statistics a forward hands to its backward: every non-sum reduction's planes, in order."""
    return tuple(
        f"st{r.index}_{plane}" for r in schedule.reductions if r.kind is not ReductionKind.SUM for plane in r.planes
    )


class LauncherWriter:
    """Python source of one mode's launcher: allocations, then each stage, fused where the shape allows."""

    def __init__(self, mode: Mode, pointers: dict[str, list[str]]):
        self.mode = mode
        self.s = mode.plan.schedule
        self.pointers = pointers  # kernel name -> pointer argument names, from the kernel writers
        self.lines: list[str] = []

    def emit(self, depth: int, line: str) -> None:
        self.lines.append(INDENT * depth + line)

    def source(self) -> str:
        m = self.mode
        args = ", ".join(["geo", *m.inputs, *(m.saved if m.backward else ())])
        self.emit(0, f"def {m.name}({args}):")
        self._allocations()
        for stage in m.plan.stages:
            if stage.fused:
                assert stage.fused_domain is not None, "lower() gives every fused stage its domain"
                self.emit(1, f"if geo.single({literal(stage.fused_domain)}, {m.backward}):")
                self._steps(stage.single, 2, single=True)
                self.emit(1, f"elif geo.fuse({literal(stage.fused_domain)}):")
                self._steps(stage.fused, 2)
                self.emit(1, "else:")
                self._steps(stage.split, 2)
            else:
                self._steps(stage.split, 1)
        self._return()
        return "\n".join(self.lines) + "\n"

    def _allocations(self) -> None:
        if any(buffer for r in self.s.reductions for buffer in r.running if buffer[2]):
            self.emit(1, "geo.check_batch_statistics()")
        for name, _ in self.s.program.stores:
            self.emit(1, f"{name} = geo.empty_input()")
        for r in self.s.reductions:
            axis = "sum" if r.kind is ReductionKind.SUM else r.axis
            for plane in r.planes:
                self.emit(1, f"st{r.index}_{plane} = geo.statistic({literal(axis)})")

    def _steps(self, steps: tuple, depth: int, *, single: bool = False) -> None:
        # Single-pass kernels block their domain differently (one tile per program): the partials and
        # combines of their parameter gradients follow that blocking.
        how = ", single=True" if single else ""
        for step in steps:
            if isinstance(step, Combine):
                strategies = tuple(str(AXES[self.s.reductions[r].axis].combine) for r in step.reductions)
                pointers = ", ".join(self.pointers[step.name])
                domain = literal(step.domain)
                self.emit(depth, f"geo.combine({step.name}, {domain}, {strategies!r}, {pointers}{how})")
            else:
                for r in step.emitted:
                    moments = self.s.reductions[r].kind is ReductionKind.MOMENTS
                    planes = len(self.s.reductions[r].planes) if moments else 1
                    self.emit(depth, f"pt{r} = geo.partials({literal(step.domain)}, {planes}{how})")
                pointers = ", ".join(self.pointers[step.name])
                self.emit(depth, f"geo.launch({step.name}, {literal(step.domain)}, {pointers}{how})")

    def _return(self) -> None:
        stores = ", ".join(name for name, _ in self.s.program.stores)
        if self.mode.backward:
            sums = ", ".join(f"{r.output!r}: st{r.index}_sum" for r in self.s.reductions if r.kind is ReductionKind.SUM)
            self.emit(1, f"return {stores}, {{{sums}}}")
        else:
            saved = "".join(f"{n}, " for n in statistic_names(self.s))
            self.emit(1, f"return {stores}, ({saved})")


def kernel_sources(plan: Plan) -> tuple[list[str], dict[str, list[str]]]:
    """The Triton source of every kernel of `plan`, and each kernel's pointer arguments."""
    sources: list[str] = []
    pointers: dict[str, list[str]] = {}
    for step in plan.kernels:
        if isinstance(step, Combine):
            writer: PassKernelWriter | CombineWriter = CombineWriter(plan.schedule, step)
        else:
            writer = PassKernelWriter(plan.schedule, step)
        sources.append(writer.source())
        pointers[step.name] = writer.w.pointers
    return sources, pointers


def mode_source(mode: Mode) -> str:
    kernels, pointers = kernel_sources(mode.plan)
    launcher = LauncherWriter(mode, pointers).source()
    return "\n\n".join([*kernels, launcher])
