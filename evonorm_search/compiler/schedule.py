"""Pass 2, scheduling: cut a Program into passes over memory, only where an aggregation's result is needed.

Every aggregation needs a reduction of its operand over its axis before anything can use its value,
so a node's *level* is the number of reductions on its longest path from the inputs. Pass k computes
every reduction whose operand is at level k and stores every output at level k; element-wise work is
recomputed in each pass that needs it rather than stored. Hence a layer reads its input
1 + (reduction depth) times, the least its aggregations allow.

Reductions are shared: `mean(a, ax)` next to `var(a, ax)` or `std(a, ax)` is one pass of (mean, M2)
moments; `rms(a, ax)` reduces `a * a`. A statistic is then a *plane* of a reduction: "mean", "var"
(biased) or "sqmean", and an aggregation's value is its op's finish applied to its plane.

Where a statistic comes from:
- `reduction`: computed by this schedule (and, in a training forward, folded into running estimates);
- `saved`: computed by the forward and handed to the backward (no recomputation of statistics);
- `running`: a `batch` aggregation in eval mode reads its running buffer;
- `trivial`: the operand is constant along the reduced dims (`std(v1, batch)`), so the statistic is
  exact and element-wise (mean = a, var = 0, sqmean = a * a); a training forward still reduces it
  for the running estimate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from ..ir import AXES, OPS, Graph
from ..ir.vocabulary import Plane
from .program import Program, is_aggregation


class ReductionKind(StrEnum):
    """What one reduction accumulates."""

    MEAN = "mean"  # a sum of the operand (its mean)
    MOMENTS = "moments"  # (count, mean, M2): the mean and the biased variance
    SQMEAN = "sqmean"  # a sum of the operand's squares
    SUM = "sum"  # a parameter gradient: a per-channel sum over (n, s), read by nothing later


class SourceKind(StrEnum):
    """Where an aggregation's statistic comes from (see the module docstring)."""

    REDUCTION = "reduction"
    SAVED = "saved"
    RUNNING = "running"
    TRIVIAL = "trivial"


# The reduction kind behind each statistic an aggregation tracks (`StatDef.plane` in the op table).
KIND_OF_PLANE = {Plane.MEAN: ReductionKind.MEAN, Plane.VAR: ReductionKind.MOMENTS, Plane.SQMEAN: ReductionKind.SQMEAN}
# (operand, axis, kind): what identifies one reduction, and what a forward saves for its backward.
ReductionKey = tuple[int, str, ReductionKind]

PLANES_OF_KIND = {
    ReductionKind.MEAN: (Plane.MEAN,),
    ReductionKind.MOMENTS: (Plane.MEAN, Plane.VAR),
    ReductionKind.SQMEAN: (Plane.SQMEAN,),
    ReductionKind.SUM: (Plane.SUM,),
}


def plane_of(op: str) -> Plane:
    return OPS[op].stat.plane  # type: ignore[union-attr]  # aggregations always have a stat


@dataclass(frozen=True)
class Reduction:
    """One reduction of `operand` over `axis`: kind mean | moments | sqmean | sum (parameter gradients)."""

    index: int
    operand: int
    axis: str
    kind: ReductionKind
    pass_index: int
    # Running estimates updated from this reduction in a training forward: (buffer, plane, unbiased).
    running: tuple[tuple[str, Plane, bool], ...] = ()
    output: str | None = None  # the parameter a `sum` reduction is the gradient of

    @property
    def planes(self) -> tuple[Plane, ...]:
        return PLANES_OF_KIND[self.kind]

    @property
    def key(self) -> ReductionKey:
        return (self.operand, self.axis, self.kind)


@dataclass(frozen=True)
class Source:
    """Where an aggregation node's statistic comes from (see the module docstring)."""

    kind: SourceKind
    index: int  # reduction index, saved index, or -1 for running
    plane: Plane
    axis: str
    buffer: str = ""


@dataclass(frozen=True)
class Pass:
    index: int
    reductions: tuple[int, ...]
    stores: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class Schedule:
    program: Program
    reductions: tuple[Reduction, ...]
    sources: dict[int, Source]
    passes: tuple[Pass, ...]
    levels: tuple[int, ...] = field(repr=False)


def closure(program: Program, roots: list[int], sources: dict[int, Source]) -> set[int]:
    """Nodes needed to compute `roots` in a pass: stop at aggregations (their statistic is an input)."""
    seen: set[int] = set()
    stack = list(roots)
    while stack:
        i = stack.pop()
        if i in seen:
            continue
        seen.add(i)
        if i in sources and sources[i].kind is not SourceKind.TRIVIAL:
            continue
        stack.extend(program.nodes[i].args)
    return seen


def _reduction_keys(program: Program, aggregations: list[int]) -> dict[int, ReductionKey]:
    """Aggregation node -> (operand, axis, kind); mean shares the moments of a var/std on the same operand."""
    planes = {i: plane_of(program.nodes[i].op) for i in aggregations}
    with_var = {(program.nodes[i].args[0], program.nodes[i].axis) for i in aggregations if planes[i] is Plane.VAR}
    keys: dict[int, ReductionKey] = {}
    for i in aggregations:
        node = program.nodes[i]
        operand, axis = node.args[0], node.axis
        kind = KIND_OF_PLANE[planes[i]]
        if kind is ReductionKind.MEAN and (operand, axis) in with_var:
            kind = ReductionKind.MOMENTS
        keys[i] = (operand, axis, kind)  # type: ignore[assignment]  # an aggregation's axis is never None
    return keys


def _saved_source(key: ReductionKey, plane: Plane, saved: tuple[ReductionKey, ...]) -> Source | None:
    operand, axis, _ = key
    for j, (s_operand, s_axis, s_kind) in enumerate(saved):
        if (s_operand, s_axis) == (operand, axis) and plane in PLANES_OF_KIND[s_kind]:
            return Source(SourceKind.SAVED, j, plane, axis)
    return None


def schedule(
    program: Program,
    graph: Graph,
    *,
    training: bool,
    saved: tuple[ReductionKey, ...] = (),
    update_running: bool = False,
) -> Schedule:
    """Levels, reductions and passes of `program` (`saved`: reduction keys a forward already computed)."""
    buffers = graph.running_buffers()
    dims = program.dims()
    aggregations = [i for i, n in enumerate(program.nodes) if is_aggregation(n)]
    keys = _reduction_keys(program, aggregations)
    sources: dict[int, Source] = {}
    computed: dict[ReductionKey, int] = {}  # key -> reduction index
    pending: list[tuple[ReductionKey, list[tuple[str, Plane, bool]]]] = []
    for i in aggregations:
        node = program.nodes[i]
        plane = plane_of(node.op)
        if AXES[node.axis].uses_batch and not training:  # type: ignore[index]  # an aggregation's axis is never None
            sources[i] = Source(SourceKind.RUNNING, -1, plane, node.axis, buffers[i])  # type: ignore[arg-type]  # an aggregation's axis is never None
            continue
        trivial = not dims[node.args[0]] & AXES[node.axis].reduced  # type: ignore[index]  # an aggregation's axis is never None
        found = None if trivial else _saved_source(keys[i], plane, saved)
        if found is not None:
            sources[i] = found
            continue
        if trivial and not (update_running and i in buffers):
            sources[i] = Source(SourceKind.TRIVIAL, -1, plane, node.axis)  # type: ignore[arg-type]  # an aggregation's axis is never None
            continue
        if keys[i] not in computed:
            computed[keys[i]] = len(pending)
            pending.append((keys[i], []))
        if update_running and i in buffers:
            unbiased = node.opdef.stat.unbiased_running  # type: ignore[union-attr]  # aggregations always have a stat
            pending[computed[keys[i]]][1].append((buffers[i], plane, unbiased))
        kind = SourceKind.TRIVIAL if trivial else SourceKind.REDUCTION
        sources[i] = Source(kind, computed[keys[i]], plane, node.axis)  # type: ignore[arg-type]  # an aggregation's axis is never None

    levels = _levels(program, sources, {r: key[0] for key, r in computed.items()})
    reductions = [
        Reduction(r, key[0], key[1], key[2], levels[key[0]], tuple(running)) for r, (key, running) in enumerate(pending)
    ]
    for name, operand in program.sums:
        # A parameter gradient sums over (n, s) per channel: it reduces like a `batch` statistic.
        reductions.append(Reduction(len(reductions), operand, "batch", ReductionKind.SUM, levels[operand], output=name))
    last = max([levels[i] for _, i in program.stores] + [r.pass_index for r in reductions])
    passes = tuple(
        Pass(
            k,
            tuple(r.index for r in reductions if r.pass_index == k),
            tuple((name, i) for name, i in program.stores if levels[i] == k),
        )
        for k in range(last + 1)
    )
    return Schedule(program, tuple(reductions), sources, passes, tuple(levels))


def _levels(program: Program, sources: dict[int, Source], operand_of: dict[int, int]) -> list[int]:
    levels: list[int] = []
    for i, node in enumerate(program.nodes):
        src = sources.get(i)
        if src is not None and src.kind is SourceKind.REDUCTION:
            levels.append(levels[operand_of[src.index]] + 1)
        elif src is not None and src.kind is not SourceKind.TRIVIAL:
            levels.append(0)
        else:
            levels.append(max((levels[a] for a in node.args), default=0))
    return levels
