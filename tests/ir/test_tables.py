"""Every row of the IR's tables (ops, leaves, axes) is implemented by every backend, and a new op is one
row in the IR and one in each backend table.

Backend tables, each beside its backend and keyed by the IR's names (`BACKEND_TABLES` below): the
reference's torch source, statistics and reductions (`reference_ops`), the symbolic forms (`symbolic_ops`),
and the compiler's Triton templates and derivative rules (`compiler/op_table.py`) and statistic sizes
(`compiler/domains.py`). The coverage test names the op or axis and the backend of every row missing
from a table. The other backends read the IR rows alone or through those: the axis lowering, the
exporter (helpers copied by source) and the functional fingerprint. The last test adds a throwaway op
row and a throwaway parameter row at test time and runs them through the parser, the reference, the
interpreted Triton kernels and an export.
"""

from __future__ import annotations

import re
import sys
import types
from dataclasses import replace

import pytest
import sympy
import torch

import evonorm_search as es
from evonorm_search import reference, reference_ops, symbolic_ops
from evonorm_search.compiler import codegen, op_table, runtime
from evonorm_search.compiler.cache import clear_cache
from evonorm_search.compiler.domains import STATISTIC_SIZES
from evonorm_search.compiler.op_table import DERIVATIVES, TRITON
from evonorm_search.export import export_module
from evonorm_search.fingerprint import DRAWN_ROLES, FINGERPRINT_SHAPE, fingerprint, fingerprint_inputs
from evonorm_search.ir import AXES, OPS, Graph, GraphBuilder, GraphError, ops
from evonorm_search.ir.vocabulary import CombineStrategy, Dim, Domain, Kind, LeafRole
from evonorm_search.reference_ops import REDUCTIONS, TORCH, TORCH_STATISTICS
from evonorm_search.symbolic import latex, to_sympy
from evonorm_search.symbolic_ops import SYMPY

NON_LEAVES = [name for name, row in OPS.items() if row.kind is not Kind.LEAF]
PUBLIC = [name for name in NON_LEAVES if not OPS[name].internal]
LEAVES = [name for name, row in OPS.items() if row.kind is Kind.LEAF]
DSL_LEAVES = [name for name in LEAVES if OPS[name].role is not LeafRole.COMPILER]

# Torch functions the reference's generated code may call by bare name: helpers copied into exports.
HELPER_NAMES = {f.__name__ for f in (*reference.RUNTIME_HELPERS, *reference_ops.TORCH_HELPERS)}
# Sizes for the axis checks: all distinct, so a wrong size expression cannot match by accident.
N, C, G, SPATIAL = 2, 6, 3, (5, 7)
S = SPATIAL[0] * SPATIAL[1]


def _layer(name: str) -> Graph:
    """A small layer using the op or leaf `name` (every row gets one)."""
    row = OPS[name]
    if row.kind is Kind.AGGREGATION:
        return es.parse(f"x - {name}(x, group)")
    if row.kind is Kind.LEAF:
        return es.parse("x * 2.5" if row.role is LeafRole.CONSTANT else f"x * {name}")
    b = GraphBuilder()
    args = [b.leaf(leaf) for leaf in ("x", "v1", "v0")[: row.arity]]
    return b.build(b.add_node(name, args))


def _torch_value(row: ops.OpDef, args: list[torch.Tensor]) -> torch.Tensor:
    names = [f"a{k}" for k in range(row.arity)]
    namespace = {**reference._namespace(), **dict(zip(names, args, strict=True))}
    return eval(TORCH[row.name].format(*names), namespace)


def _called_names(source: str) -> set[str]:
    """Bare function names a torch source template calls (not torch.* or methods)."""
    return set(re.findall(r"(?<![.\w])([A-Za-z_]\w*)\(", source))


# -- every backend table has a row for every IR row ---------------------------------------------------


def _is_compiler_input(row: ops.OpDef) -> bool:
    return row.role is LeafRole.COMPILER


# (backend, its table, which IR rows it must have a row for). A row of `ops.OPS` or `ops.AXES` that a
# table needs and lacks, or a table row naming nothing in the IR, fails `test_every_backend_table_...`.
BACKEND_TABLES = (
    # The reference and the symbolic forms never see the compiler's inputs (grad, weight, bias).
    ("reference (reference_ops.TORCH)", TORCH, lambda row: row.kind is not Kind.AGGREGATION and not _is_compiler_input(row)),
    ("reference (reference_ops.TORCH_STATISTICS)", TORCH_STATISTICS, lambda row: row.kind is Kind.AGGREGATION),
    ("symbolic (symbolic_ops.SYMPY)", SYMPY, lambda row: not _is_compiler_input(row)),
    ("compiler (compiler.op_table.TRITON)", TRITON, lambda row: True),
    ("compiler (compiler.op_table.DERIVATIVES)", DERIVATIVES, lambda row: row.kind is not Kind.LEAF),
)  # fmt: skip
AXIS_TABLES = (
    ("reference (reference_ops.REDUCTIONS)", REDUCTIONS),
    # The runtime's statistic sizes per axis ("sum" beside them sizes parameter gradients, not an axis).
    ("compiler (compiler.domains.STATISTIC_SIZES)", {a: f for a, f in STATISTIC_SIZES.items() if a != "sum"}),
)


def coverage_gaps(op_rows: dict[str, ops.OpDef], axis_rows: dict[str, ops.AxisDef]) -> list[str]:
    """One line per IR row missing from a backend table, and per backend row the IR does not have."""
    gaps = []
    for backend, table, needs in BACKEND_TABLES:
        wanted = {name for name, row in op_rows.items() if needs(row)}
        gaps += [f"op {name!r} has no row in the {backend} table" for name in sorted(wanted - table.keys())]
        gaps += [
            f"the {backend} table has a row {name!r} that no IR op needs" for name in sorted(table.keys() - wanted)
        ]
    for backend, table in AXIS_TABLES:
        gaps += [f"axis {name!r} has no row in the {backend} table" for name in sorted(axis_rows.keys() - table.keys())]
        gaps += [
            f"the {backend} table has a row {name!r} for no IR axis" for name in sorted(table.keys() - axis_rows.keys())
        ]
    return gaps


def test_every_backend_table_has_a_row_for_every_ir_row_and_no_other():
    assert coverage_gaps(OPS, AXES) == []


def test_an_ir_row_missing_from_the_backends_is_reported_with_the_op_and_each_backend():
    planted = ops.OpDef(name="planted", arity=1, kind=Kind.ELEMENTWISE, summary="a row with no backend rows")
    planted_axis = replace(AXES["instance"], name="planted_axis", description="an axis with no backend rows")
    gaps = coverage_gaps({**OPS, "planted": planted}, {**AXES, "planted_axis": planted_axis})
    assert gaps == [
        "op 'planted' has no row in the reference (reference_ops.TORCH) table",
        "op 'planted' has no row in the symbolic (symbolic_ops.SYMPY) table",
        "op 'planted' has no row in the compiler (compiler.op_table.TRITON) table",
        "op 'planted' has no row in the compiler (compiler.op_table.DERIVATIVES) table",
        "axis 'planted_axis' has no row in the reference (reference_ops.REDUCTIONS) table",
        "axis 'planted_axis' has no row in the compiler (compiler.domains.STATISTIC_SIZES) table",
    ]
    without_relu = {name: row for name, row in OPS.items() if name != "relu"}
    assert "the compiler (compiler.op_table.TRITON) table has a row 'relu' that no IR op needs" in coverage_gaps(
        without_relu, AXES
    )


# -- ops -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NON_LEAVES)
def test_every_op_row_has_a_torch_form_that_runs_and_exports(name):
    row = OPS[name]
    if row.kind is Kind.AGGREGATION:
        assert row.stat is not None, f"{name}: an aggregation needs its statistic (StatDef)"
        called = _called_names(TORCH_STATISTICS[name].statistic + TORCH_STATISTICS[name].finish) - {"r"}
    else:
        gen = torch.Generator().manual_seed(0)
        args = [torch.randn(2, 3, generator=gen, dtype=torch.float64) for _ in range(row.arity)]
        value = _torch_value(row, args)
        assert value.shape == (2, 3)
        called = _called_names(TORCH[name])
    assert called <= HELPER_NAMES, f"{name} calls {called - HELPER_NAMES}, which exports do not carry"


@pytest.mark.parametrize("name", NON_LEAVES)
def test_every_op_row_has_a_sympy_form(name):
    row, form = OPS[name], SYMPY[name]
    symbols = sympy.symbols(f"a0:{row.arity}")
    expr = form(symbols[0], "group") if row.kind is Kind.AGGREGATION else form(*symbols)
    assert isinstance(expr, sympy.Basic)
    assert set(symbols) <= expr.free_symbols | {s for s in symbols if expr.has(s)}


@pytest.mark.parametrize("name", NON_LEAVES)
def test_every_op_row_has_a_triton_template_over_its_arguments(name):
    row, template = OPS[name], TRITON[name]
    arity = 1 if row.kind is Kind.AGGREGATION else row.arity  # an aggregation's template finishes its plane
    for k in range(arity):
        assert f"{{{k}}}" in template, f"{name}: the Triton template never reads argument {k}"
    template.format(*(f"a{k}" for k in range(arity)))


@pytest.mark.parametrize("name", NON_LEAVES)
def test_every_op_row_has_a_derivative_rule(name):
    row, rule = OPS[name], DERIVATIVES[name]
    if rule is None:
        # Only step functions pass no gradient: their derivative is zero wherever it exists.
        assert name in ("sign", "heaviside", "gt_half"), f"{name}: no derivative rule"
        return
    b = GraphBuilder()
    args = [b.ref(b.leaf(leaf)) for leaf in ("x", "v1", "v0")[: row.arity]]
    out = b.call(name, *args, axis="group" if row.kind is Kind.AGGREGATION else None)
    grads = rule(b, args, out, b.ref(b.leaf("x")), "group" if row.kind is Kind.AGGREGATION else None)
    assert len(grads) == row.arity, f"{name}: one gradient (or None) per argument"


@pytest.mark.parametrize("name", PUBLIC + DSL_LEAVES)
def test_every_public_row_compiles_exports_prints_and_fingerprints(name):
    graph = _layer(name)
    source = es.kernel_source(graph)
    assert "@triton.jit" in source and "def forward_train(" in source
    compile(export_module(graph, "Exported"), "exported.py", "exec")
    assert re.fullmatch(r"[0-9a-f]{64}", fingerprint(graph))
    assert es.parse(graph.to_text()) == graph
    assert latex(graph)
    x = torch.randn(2, 6, 3, dtype=torch.float64)
    layer = es.NormAct(graph, 6, groups=3, backend="torch").double()
    assert layer(x).shape == x.shape


# -- leaves --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", LEAVES)
def test_every_leaf_row_says_where_its_value_comes_from_and_how_each_backend_reads_it(name):
    row = OPS[name]
    assert row.arity == 0 and row.role is not None
    assert row.dims <= frozenset(Dim)
    # A leaf varying along some dim is a tensor the kernel loads through its pointer argument.
    assert ("{ptr}" in TRITON[name]) == bool(row.dims), f"{name}: a tensor leaf loads through {{ptr}}"
    value = 2.5 if row.role is LeafRole.CONSTANT else None
    TRITON[name].format(name=name, value=value, ptr=f"{name}_ptr")
    if row.role is LeafRole.COMPILER:
        assert row.internal and name not in ops.NAMED_LEAVES
        return
    TORCH[name].format(name=name, value=value)
    assert isinstance(SYMPY[name](value), sympy.Basic)
    assert (name in ops.NAMED_LEAVES) == (row.role is not LeafRole.CONSTANT)


@pytest.mark.parametrize("name", [n for n in LEAVES if OPS[n].role in DRAWN_ROLES])
def test_the_fingerprint_draws_every_input_and_parameter_row(name):
    inputs = fingerprint_inputs()
    expected = FINGERPRINT_SHAPE if OPS[name].dims == frozenset(Dim) else FINGERPRINT_SHAPE[1:2]
    assert inputs[name].shape == expected


def test_compiler_leaves_build_programs_but_no_layer_graph():
    b = GraphBuilder()
    node = b.add_node("mul", (b.leaf("x"), b.leaf("grad")))
    assert b.nodes[node].op == "mul"
    with pytest.raises(GraphError, match="grad is an input of compiled programs"):
        b.build(node)
    with pytest.raises(es.DSLError, match="undefined name 'weight'"):
        es.parse("x * weight")


# -- axes ----------------------------------------------------------------------------------------------


def _statistic_classes(axis: str) -> torch.Tensor:
    """For every element (n, c, s), a label of the reference statistic it reads (equal labels: same one)."""
    t = torch.randn(N, C, *SPATIAL, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    stat = REDUCTIONS[axis](t, G).expand(t.shape).reshape(N, C, S)
    return torch.unique(stat, return_inverse=True)[1]


def _triton_index(expression: str) -> torch.Tensor:
    """A Triton index expression evaluated on the host for every element (n, c, s)."""
    n = torch.arange(N).view(N, 1, 1)
    c = torch.arange(C).view(1, C, 1)
    s = torch.arange(S).view(1, 1, S)
    sizes = {"N": N, "C": C, "S": S, "G": G, "CG": C // G, "zero": 0}
    value = eval(expression, {"n": n, "c": c, "s": s, **sizes})
    return value.expand(N, C, S) if isinstance(value, torch.Tensor) else torch.full((N, C, S), value)


@pytest.mark.parametrize("axis", list(AXES))
def test_every_axis_row_indexes_sizes_and_counts_the_reference_statistics(axis):
    row = AXES[axis]
    classes = _statistic_classes(axis)
    index = _triton_index(row.stat_index)
    size = eval(row.stat_size, {"N": N, "C": C, "S": S, "G": G})
    # The Triton index and the reference reduction group the elements the same way, in range.
    assert int(index.min()) == 0 and int(index.max()) == size - 1
    pairs = torch.unique(torch.stack([index.flatten(), classes.flatten()]), dim=1)
    assert pairs.shape[1] == size == int(classes.max()) + 1
    if row.count is not None:
        assert eval(row.count, {"N": N, "C": C, "S": S, "G": G, "CG": C // G}) * size == N * C * S
    # The runtime allocates as many statistics (from `compiler.domains.STATISTIC_SIZES`, which exports carry).
    geo = runtime.Geometry(torch.empty(N, C, *SPATIAL), G, 1e-5, 0.1)
    assert geo.statistic(axis).numel() == size


@pytest.mark.parametrize("axis", list(AXES))
def test_every_axis_row_says_what_its_statistic_varies_along(axis):
    row = AXES[axis]
    index = _triton_index(row.stat_index)
    for k, dim in enumerate((Dim.N, Dim.C, Dim.S)):
        varies = bool((index != index.select(k, 0).unsqueeze(k)).any())
        assert varies == (dim in row.dims), f"{axis}: the statistic {'varies' if varies else 'is constant'} along {dim}"
    assert row.dims | row.reduced == frozenset(Dim) and row.reduced


@pytest.mark.parametrize("axis", list(AXES))
def test_every_axis_row_can_be_lowered(axis):
    row = AXES[axis]
    assert row.complete_in <= frozenset(Domain)
    if row.complete_in:
        assert row.count is not None, f"{axis}: a program completing it needs the element count"
    if row.combine is None:
        assert len(row.complete_in) == 1, f"{axis}: never split, so one domain must complete it"
    else:
        assert row.combine in codegen.COMBINE_BLOCKS
    source = es.kernel_source(es.parse(f"x - mean(x, {axis}) / std(x, {axis})"))
    assert f"geo.statistic('{axis}')" in source
    assert latex(es.parse(f"mean(x, {axis})"))


@pytest.mark.parametrize("strategy", list(CombineStrategy))
def test_the_combine_kernels_and_the_runtime_agree_on_every_strategy(strategy, monkeypatch):
    """A combine kernel's programs (codegen) and its launch grid (runtime) count the same blocks."""
    geo = runtime.Geometry(torch.empty(N, 40, *SPATIAL), G, 1e-5, 0.1)
    grids: list[tuple[int, ...]] = []
    monkeypatch.setattr(geo, "_start", lambda kernel, grid, *rest: grids.append(grid))
    geo.combine(test_the_combine_kernels_and_the_runtime_agree_on_every_strategy, "tiles", (strategy,))
    block = geo.tuning.combine_block
    sizes = {"N": N, "C": 40, "G": G, "BLOCK_C": block}
    assert grids == [(eval(codegen.COMBINE_BLOCKS[strategy], sizes),)]


# -- a new op is one IR row and one row per backend table; a new parameter is one IR row ---------------

CUBE = ops.OpDef(name="cube", arity=1, kind=Kind.ELEMENTWISE, summary="a * a * a")
CUBE_BACKEND_ROWS = (
    (TORCH, "({0} * {0} * {0})"),
    (SYMPY, lambda a: a**3),
    (TRITON, "({0} * {0} * {0})"),
    (DERIVATIVES, lambda b, args, out, g, axis: (g * b.const(3.0) * args[0] * args[0],)),
)
V2 = ops.parameter_row("v2", 0.5)
# The backends read every parameter alike: a parameter in `ir/ops.py` gets these rows when the tables
# are built; one added at run time, as here, is given them by hand.
V2_BACKEND_ROWS = (
    (TORCH, reference_ops.CHANNEL_VIEW),
    (SYMPY, symbolic_ops.parameter_symbol("v2")),
    (TRITON, op_table.CHANNEL_LOAD),
)


@pytest.fixture
def extended_tables(monkeypatch):
    """The IR and backend tables with the throwaway rows, and the IR's views recomputed; undone after."""
    for row, backend_rows in ((CUBE, CUBE_BACKEND_ROWS), (V2, V2_BACKEND_ROWS)):
        monkeypatch.setitem(OPS, row.name, row)
        for table, backend_row in backend_rows:
            monkeypatch.setitem(table, row.name, backend_row)
    for view, value in ops.views(OPS).items():
        monkeypatch.setattr(ops, view, value)
    clear_cache()
    yield
    clear_cache()


def _load(source: str, name: str) -> types.ModuleType:
    module = types.ModuleType(name)
    sys.modules[name] = module
    try:
        exec(compile(source, f"{name}.py", "exec"), module.__dict__)
    finally:
        del sys.modules[name]
    return module


def test_a_new_op_row_and_parameter_row_run_through_every_backend(extended_tables, monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert coverage_gaps(OPS, AXES) == []
    graph = es.parse("v2 * cube(x - mean(x, instance)) / std(x, instance) + v0")
    assert graph.parameters == ("v0", "v2")
    assert "cube" in graph.to_text() and to_sympy(graph).has(sympy.Symbol("v_2"))
    assert "v2" in fingerprint_inputs() and fingerprint(graph)

    # The reference computes the layer the rows describe.
    x = torch.randn(2, 4, 3, 5, dtype=torch.float64)
    torch_layer = es.NormAct(graph, 4, groups=2, backend="torch").double()
    assert torch.equal(torch_layer.v2, torch.full((4,), 0.5, dtype=torch.float64))
    with torch.no_grad():
        torch_layer.v2.uniform_(0.5, 1.5)
        torch_layer.v0.uniform_(-0.5, 0.5)
    centred = x - x.mean(dim=(2, 3), keepdim=True)
    std = torch.sqrt(x.var(dim=(2, 3), unbiased=False, keepdim=True) + torch_layer.eps)
    expected = torch_layer.v2.view(1, -1, 1, 1) * centred**3 / std + torch_layer.v0.view(1, -1, 1, 1)
    torch.testing.assert_close(torch_layer(x), expected)

    # The interpreted Triton kernels match it, forward and backward (v2's gradient included).
    triton_layer = es.NormAct(graph, 4, groups=2, backend="triton").double()
    triton_layer.load_state_dict(torch_layer.state_dict())
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = triton_layer(xa), torch_layer(xb)
    assert "LayerFunction" in type(ya.grad_fn).__name__
    ya.square().sum().backward()
    yb.square().sum().backward()
    torch.testing.assert_close(ya, yb, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(triton_layer.v2.grad, torch_layer.v2.grad, rtol=1e-9, atol=1e-9)

    # An export carries both rows: parameter initialised from the row, output equal to the reference.
    exported = _load(export_module(graph, "Exported"), "exported_throwaway_rows")
    layer = exported.Exported(4, groups=2).double()
    assert torch.equal(layer.v2, torch.full((4,), 0.5, dtype=torch.float64))
    layer.load_state_dict(torch_layer.state_dict())
    torch.testing.assert_close(layer(x), torch_layer(x), rtol=0, atol=0)
