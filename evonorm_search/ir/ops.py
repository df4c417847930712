"""The tables of the layer language: what every op, leaf and axis IS, and nothing of how a backend runs it.

Each row names a primitive and gives the facts the parser, validator, printer, search space and every
backend agree on: its arity and kind, how the DSL writes it (infix form and precedence, a leaf's
text), which statistic an aggregation finishes, and where a leaf's value comes from.

- `OPS`: one `OpDef` row per op. Leaves are rows too (x, the parameters v0/v1, eps, constants, and
  the compiler's own inputs grad/weight/bias): a leaf row says where its value comes from (`role`)
  and which dims it varies along (`dims`).
- `AXES`: one `AxisDef` row per aggregation axis: the dims a statistic varies along and reduces over,
  and how the compiler stores, counts, masks, completes and combines it.

How each backend computes an op is a table beside that backend, keyed by the op's name:
`reference_ops` (PyTorch source, the axes' reductions), `symbolic_ops` (sympy forms) and
`compiler/op_table.py` (Triton templates and derivative rules). Adding an op is one row here and one
row in each of those tables; `tests/ir/test_tables.py` checks every backend table against every row
here and names the op and the backend a row is missing from. This package imports neither torch nor
sympy (`tests/ir/test_semantic_ir.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .vocabulary import CombineStrategy, Dim, Domain, Kind, LeafRole, Plane, dims

# --------------------------------------------------------------------------------------------------
# Axes
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class AxisDef:
    """One aggregation axis: what its statistics cover, and everything the compiler needs to lower it.

    The reference reduction of each axis lives beside the reference (`reference_ops.REDUCTIONS`).

    Triton expressions are over a kernel's `n`, `c`, `s` (element indices), the sizes `N`, `C`, `S`,
    `G` (groups) and `CG` (channels per group), and `zero` (an int32 [1, 1] tile, to give a
    per-sample index a tile shape); `stat_size` is over the same sizes on the host.
    """

    name: str
    description: str
    uses_batch: bool  # the statistics mix the samples of a batch (a running estimate in eval mode)
    dims: frozenset[Dim]  # what a statistic varies along (it is broadcast back over the rest)
    reduced: frozenset[Dim]  # the dims it reduces over: an operand constant along them has an exact statistic
    stat_size: str  # host expression of the number of statistics (`runtime.Geometry.statistic` allocates it)
    stat_index: str  # Triton index of the statistic element (n, c, s) reads
    complete_in: frozenset[Domain]  # program domains whose programs hold whole reduction groups
    count: str | None  # Triton expression: elements behind one statistic completed in a program
    complete_index: str | None = None  # Triton index a completing program stores at (None: stat_index)
    complete_mask: str | None = None  # mask of that store (None: unmasked, one value per program)
    combine: CombineStrategy | None  # how partials merge when no program completes it; None: always complete
    across_channels: bool = False  # a statistic spans the channels of a program: per-row moments merge


AXES: dict[str, AxisDef] = {
    a.name: a
    for a in (
        AxisDef(
            name="batch",
            description="over N and the spatial dims, per channel (BatchNorm statistics)",
            uses_batch=True,
            dims=dims("c"),
            reduced=dims("ns"),
            stat_size="C",
            stat_index="c",
            complete_in=frozenset(),
            count=None,
            combine=CombineStrategy.CHANNELS_ALL_SAMPLES,
        ),
        AxisDef(
            name="layer",
            description="over C and the spatial dims, per sample",
            uses_batch=False,
            dims=dims("n"),
            reduced=dims("cs"),
            stat_size="N",
            stat_index="n + zero",
            complete_in=frozenset({Domain.SAMPLE}),
            count="(C * S)",
            combine=CombineStrategy.SCALAR_SAMPLE,
            across_channels=True,
        ),
        AxisDef(
            name="group",
            description="over C/groups channels and the spatial dims, per sample and group",
            uses_batch=False,
            dims=dims("nc"),
            reduced=dims("cs"),
            stat_size="N * G",
            stat_index="n * G + c // CG",
            complete_in=frozenset({Domain.GROUP}),
            count="(CG * S)",
            complete_index="n * G + tl.program_id(1) + zero",
            combine=CombineStrategy.SCALAR_GROUP,
            across_channels=True,
        ),
        AxisDef(
            name="instance",
            description="over the spatial dims, per sample and channel",
            uses_batch=False,
            dims=dims("nc"),
            reduced=dims("s"),
            stat_size="N * C",
            stat_index="n * C + c",
            complete_in=frozenset({Domain.INSTANCE, Domain.GROUP, Domain.SAMPLE}),
            count="S",
            complete_mask="c_in",
            combine=CombineStrategy.CHANNELS_ONE_SAMPLE,
        ),
        AxisDef(
            name="channel",
            description="over C, per sample and position",
            uses_batch=False,
            dims=dims("ns"),
            reduced=dims("c"),
            stat_size="N * S",
            stat_index="n * S + s",
            complete_in=frozenset({Domain.CHANNEL}),
            count="C",
            complete_mask="s_in",
            combine=None,
        ),
    )
}


# How the DSL writes a number: the printer writes constants with it, and the symbolic forms read the same
# text as an exact rational (so `x * 0.5` and `x / 2` get one canonical hash).
def format_number(value: float) -> str:
    """Shortest text that reads back as the same float (integers without a trailing .0)."""
    if value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(value)


# --------------------------------------------------------------------------------------------------
# Statistics behind the aggregations
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StatDef:
    """The statistic an aggregation finishes, and what a `batch` aggregation tracks between batches.

    How the statistic is computed and finished is each backend's (`reference_ops.TORCH_STATISTICS`,
    the compiler's reductions): these are the facts they share.
    """

    plane: Plane  # the statistic it finishes; buffer name prefix: running_<plane>_<k>
    init: float  # initial value of the running buffer
    unbiased_running: bool  # BatchNorm stores the unbiased variance; we follow it


MEAN_STAT = StatDef(Plane.MEAN, 0.0, False)
VAR_STAT = StatDef(Plane.VAR, 1.0, True)  # std's too: it is finished from the variance
SQMEAN_STAT = StatDef(Plane.SQMEAN, 1.0, False)


# --------------------------------------------------------------------------------------------------
# The op table
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class OpDef:
    """One primitive of the layer language: what it is, not how any backend computes it."""

    name: str
    arity: int
    kind: Kind
    summary: str
    stat: StatDef | None = None  # aggregations only
    infix: str | None = None  # printed as an operator rather than a call
    precedence: int = 100  # printer precedence of the infix/prefix form
    internal: bool = False  # not part of the DSL: only the compiler creates it
    # Leaves only:
    role: LeafRole | None = None  # where the value comes from
    dims: frozenset[Dim] = frozenset()  # what the value varies along (x: n, c, s; a parameter: c)
    text: str = "{name}"  # how the DSL writes it: over `{name}` and `{number}` (a constant as written)
    param_init: float = 0.0  # parameters: the initial value of every channel

    @property
    def parameter(self) -> bool:
        """A trainable per-channel vector (v0, v1): the module registers it, exports initialise it."""
        return self.role is LeafRole.PARAMETER


def parameter_row(name: str, init: float, summary: str | None = None) -> OpDef:
    """The row of a trainable per-channel vector. Every backend reads all parameters alike (its tables
    give each parameter row the same form), so a parameter is this one line."""
    return OpDef(
        name=name,
        arity=0,
        kind=Kind.LEAF,
        summary=summary or f"trainable per-channel vector, initialised to {format_number(init)}",
        role=LeafRole.PARAMETER,
        dims=dims("c"),
        param_init=init,
    )


def _leaf_rows() -> list[OpDef]:
    leaf = Kind.LEAF
    return [
        OpDef(name="x", arity=0, kind=leaf, summary="the layer input, shape (N, C, *spatial)", role=LeafRole.INPUT, dims=dims("ncs")),
        parameter_row("v0", 0.0),
        parameter_row("v1", 1.0),
        OpDef(name="eps", arity=0, kind=leaf, summary="the layer's epsilon", role=LeafRole.SETTING),
        OpDef(name="const", arity=0, kind=leaf, summary="a numeric literal", role=LeafRole.CONSTANT, text="{number}"),
        # Compiler inputs: only compiled forward/backward programs have them -------------------------
        OpDef(
            name="grad", arity=0, kind=leaf, summary="dL/dy, the gradient flowing into the layer's output",
            role=LeafRole.COMPILER, dims=dims("ncs"), internal=True,
        ),
        OpDef(
            name="weight", arity=0, kind=leaf, summary="the module's per-channel affine scale",
            role=LeafRole.COMPILER, dims=dims("c"), internal=True,
        ),
        OpDef(
            name="bias", arity=0, kind=leaf, summary="the module's per-channel affine shift",
            role=LeafRole.COMPILER, dims=dims("c"), internal=True,
        ),
    ]  # fmt: skip


def _op_rows() -> list[OpDef]:
    ew, agg = Kind.ELEMENTWISE, Kind.AGGREGATION
    return [
        # Element-wise ---------------------------------------------------------------------------------
        OpDef(name="add", arity=2, kind=ew, summary="a + b", infix="+", precedence=10),
        OpDef(name="sub", arity=2, kind=ew, summary="a - b", infix="-", precedence=10),
        OpDef(name="mul", arity=2, kind=ew, summary="a * b", infix="*", precedence=20),
        OpDef(name="div", arity=2, kind=ew, summary="a / b", infix="/", precedence=20),
        OpDef(name="max", arity=2, kind=ew, summary="element-wise maximum"),
        OpDef(name="min", arity=2, kind=ew, summary="element-wise minimum"),
        OpDef(name="neg", arity=1, kind=ew, summary="-a", infix="-", precedence=30),
        OpDef(name="sigmoid", arity=1, kind=ew, summary="1 / (1 + exp(-a))"),
        OpDef(name="tanh", arity=1, kind=ew, summary="hyperbolic tangent"),
        OpDef(name="erf", arity=1, kind=ew, summary="error function, 2/sqrt(pi) * integral of exp(-t^2) from 0 to a"),
        OpDef(name="exp", arity=1, kind=ew, summary="e^a"),
        OpDef(name="log", arity=1, kind=ew, summary="sign(a) * ln|a|"),
        OpDef(name="abs", arity=1, kind=ew, summary="|a|"),
        OpDef(name="square", arity=1, kind=ew, summary="a * a"),
        OpDef(name="sqrt", arity=1, kind=ew, summary="sign(a) * sqrt|a|"),
        OpDef(name="relu", arity=1, kind=ew, summary="max(a, 0)"),
        # Internal element-wise ops: only the autodiff pass and the compiler's rewrites create these ------
        OpDef(name="sign", arity=1, kind=ew, summary="sign(a)", internal=True),
        OpDef(name="heaviside", arity=1, kind=ew, summary="1 if a > 0 else 0", internal=True),
        OpDef(name="gt_half", arity=2, kind=ew, summary="1 if a > b, 1/2 if a == b, else 0", internal=True),
        # g * heaviside(a) and g * gt_half(a, b) as selects (`compiler/rewrite.py`), so NaN or inf in g
        # never leaks through a closed gate as 0 * inf.
        OpDef(name="gate", arity=2, kind=ew, summary="g * heaviside(a), as a select", internal=True),
        OpDef(name="gate_half", arity=3, kind=ew, summary="g * gt_half(a, b), as a select", internal=True),
        # Aggregations ---------------------------------------------------------------------------------
        OpDef(name="mean", arity=1, kind=agg, summary="mean over the axis", stat=MEAN_STAT),
        OpDef(name="var", arity=1, kind=agg, summary="biased variance over the axis", stat=VAR_STAT),
        OpDef(name="std", arity=1, kind=agg, summary="sqrt(var(a) + eps)", stat=VAR_STAT),
        OpDef(name="rms", arity=1, kind=agg, summary="sqrt(mean(a * a) + eps)", stat=SQMEAN_STAT),
    ]  # fmt: skip


OPS: dict[str, OpDef] = {row.name: row for row in (*_leaf_rows(), *_op_rows())}


def views(table: dict[str, OpDef]) -> dict[str, Any]:
    """The views of an op table other modules ask for often (recomputed by tests that add rows)."""
    leaves = tuple(name for name, op in table.items() if op.kind is Kind.LEAF)
    functions = tuple(name for name, op in table.items() if op.kind is not Kind.LEAF and not op.internal)
    return {
        "LEAVES": leaves,
        "PARAMETERS": tuple(name for name in leaves if table[name].parameter),
        # Names the DSL predefines: every leaf but constants (written as numbers) and compiler inputs.
        "NAMED_LEAVES": tuple(
            name for name in leaves if table[name].role not in (LeafRole.CONSTANT, LeafRole.COMPILER)
        ),
        "FUNCTIONS": functions,
        "ELEMENTWISE": tuple(name for name in functions if table[name].kind is Kind.ELEMENTWISE),
        "AGGREGATIONS": tuple(name for name in functions if table[name].kind is Kind.AGGREGATION),
        "INFIX": {op.infix: name for name, op in table.items() if op.infix and op.arity == 2},
    }


_VIEWS = views(OPS)
LEAVES: tuple[str, ...] = _VIEWS["LEAVES"]
PARAMETERS: tuple[str, ...] = _VIEWS["PARAMETERS"]
NAMED_LEAVES: tuple[str, ...] = _VIEWS["NAMED_LEAVES"]
FUNCTIONS: tuple[str, ...] = _VIEWS["FUNCTIONS"]
ELEMENTWISE: tuple[str, ...] = _VIEWS["ELEMENTWISE"]
AGGREGATIONS: tuple[str, ...] = _VIEWS["AGGREGATIONS"]
INFIX: dict[str, str] = _VIEWS["INFIX"]


def op(name: str) -> OpDef:
    """The row of `name`; KeyError names the unknown op."""
    try:
        return OPS[name]
    except KeyError:
        raise KeyError(f"unknown op {name!r}") from None
