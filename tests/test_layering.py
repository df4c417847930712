"""Imports go one way, low to high, through the layers of `LAYERS`; and no module cycle anywhere.

Every module of evonorm_search/, service/ and workers/ is read with `ast`, and every import statement
counts wherever it stands: at module level, inside functions, relative or absolute, and `from x import y`
where `y` is a submodule (the import then names `x.y`). An import names the most specific project module
it loads; the parent packages initialised on the way are not counted, or every module would depend on
its package's `__init__` and the order could not hold.

Two rules, two readings of the same imports:

- **Layering** counts imports under `if TYPE_CHECKING:` too: a type named in an annotation is still
  code of the lower layer that changes when the higher one does.
- **No cycles** counts only the imports that run (a cycle closed under `TYPE_CHECKING` never executes).
  A strict order already rules out cycles between layers; this check still matters inside one unit
  (a package such as `compiler` or `service`), whose modules import each other freely.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("evonorm_search", "service", "workers")

# The intended import order, low to high: the one table the rule is written in (docs/architecture.md,
# "Layering", explains it). A name covers that module and, for a package, every module under it, unless
# a longer name covers it; a package's own file is written `<package>.__init__`, so it covers nothing
# else. A module may import anything of its own unit (the name that covers it) and of any unit in a
# lower row. The units of one row are peers: neither imports the other.
LAYERS: tuple[tuple[str, ...], ...] = (
    # Standard library and third-party code only. `bounded` is the general LRU cache (the compiler and
    # the reference both use it); `statistics` the claims' statistics (reports and benchmarks use it).
    ("evonorm_search.enums", "evonorm_search.bounded", "evonorm_search.statistics", "evonorm_search._version"),
    ("evonorm_search.store",),  # its rows hold graphs as JSON: it never needs the IR
    ("evonorm_search.ir",),  # what every op, leaf and axis is: no backend, neither torch nor sympy
    # The backend tables beside their backends, keyed by the IR's op names (the compiler's is inside it).
    ("evonorm_search.reference_ops", "evonorm_search.symbolic_ops"),
    ("evonorm_search.library", "evonorm_search.symbolic"),
    ("evonorm_search.layer",),  # resolves library names to graphs, so it sits above the library
    # Peers: the reference is the oracle the compiled kernels are tested against, so neither may lean on
    # the other (they share only `bounded`).
    ("evonorm_search.compiler", "evonorm_search.reference"),
    ("evonorm_search.eager",),  # runs a layer as one native PyTorch op where it is one, else the reference
    ("evonorm_search.module", "evonorm_search.export"),
    ("evonorm_search.fingerprint", "evonorm_search.swap"),  # both run NormAct
    ("evonorm_search.__init__",),  # the package's public names, gathered from the rows above
    ("evonorm_search.proxies",),
    ("evonorm_search.search",),
    ("workers",),
    # Above workers, not beside them: the service picks the Ray launcher of `workers.cluster` when
    # EVONORM_LAUNCHER asks for it (imported when that launcher is made, so Ray stays optional).
    ("service",),
    ("evonorm_search.cli",),  # the composition root: it runs searches on workers and serves the service
    ("evonorm_search.__main__",),  # `python -m evonorm_search` runs the CLI
)


@dataclass(frozen=True)
class Module:
    path: Path  # relative to the root it was read from, for messages
    is_package: bool
    source: str


@dataclass(frozen=True)
class Import:
    importer: str  # dotted module names, as `import` spells them
    imported: str
    line: int
    type_only: bool  # under `if TYPE_CHECKING:`: annotations only, never run


def read_modules(root: Path, packages: Iterable[str]) -> dict[str, Module]:
    """Dotted name -> its file; a package's `__init__` is named after the package."""
    modules = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            relative = path.relative_to(root)
            parts = list(relative.with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts.pop()
            modules[".".join(parts)] = Module(relative, is_package, path.read_text(encoding="utf-8"))
    return modules


def _closest_module(name: str, modules: Mapping[str, object]) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _imported_names(node: ast.Import | ast.ImportFrom, package: str) -> list[str]:
    """The dotted names an import statement may load (a name per imported symbol)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
        module = ".".join(base + ([node.module] if node.module else []))
    else:
        module = node.module or ""
    return [f"{module}.{alias.name}" for alias in node.names]


def _guards_type_checking(node: ast.If) -> bool:
    return "TYPE_CHECKING" in ast.unparse(node.test)


def _import_statements(tree: ast.AST, type_only: bool = False) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement at any depth, and whether it stands under `if TYPE_CHECKING:` (its `else`
    branch runs)."""
    for child in ast.iter_child_nodes(tree):
        if isinstance(child, ast.If) and _guards_type_checking(child):
            yield from _imports_in(child.body, type_only=True)
            yield from _imports_in(child.orelse, type_only)
        elif isinstance(child, ast.Import | ast.ImportFrom):
            yield child, type_only
        else:
            yield from _import_statements(child, type_only)


def _imports_in(statements: list[ast.stmt], type_only: bool) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    return _import_statements(ast.Module(statements, []), type_only)


def project_imports(modules: Mapping[str, Module]) -> list[Import]:
    """Every import of one project module by another, one per imported module and statement."""
    found = []
    for name, module in modules.items():
        package = name if module.is_package else name.rpartition(".")[0]
        for node, type_only in _import_statements(ast.parse(module.source)):
            targets = {_closest_module(imported, modules) for imported in _imported_names(node, package)}
            for target in sorted(t for t in targets if t is not None and t != name):
                found.append(Import(name, target, node.lineno, type_only))
    return found


# ------------------------------------------------------------------------------------------------------
# Layering
# ------------------------------------------------------------------------------------------------------


def layer_name(name: str, modules: Mapping[str, Module]) -> str:
    """The name LAYERS uses for a module: a package's own file is `<package>.__init__`."""
    return f"{name}.__init__" if modules[name].is_package else name


def unit_of(name: str, layers: Sequence[Sequence[str]]) -> tuple[str, int] | None:
    """The longest LAYERS name covering `name` (a LAYERS-style name), and its row; None if none does."""
    covering = [
        (unit, row) for row, units in enumerate(layers) for unit in units if name == unit or name.startswith(unit + ".")
    ]
    return max(covering, key=lambda unit_row: len(unit_row[0]), default=None)


def unplaced_modules(modules: Mapping[str, Module], layers: Sequence[Sequence[str]]) -> list[str]:
    return [str(m.path) for name, m in modules.items() if unit_of(layer_name(name, modules), layers) is None]


def stale_layer_names(modules: Mapping[str, Module], layers: Sequence[Sequence[str]]) -> list[str]:
    """LAYERS names that cover no module (renamed or removed since)."""
    placed = {unit_of(layer_name(name, modules), layers) for name in modules}
    return [unit for row, units in enumerate(layers) for unit in units if (unit, row) not in placed]


def layering_violations(
    imports: Iterable[Import], modules: Mapping[str, Module], layers: Sequence[Sequence[str]]
) -> list[str]:
    """`file:line: ...` for each import of a unit that is not in a lower row (a peer's or a higher one's)."""
    violations = []
    for imp in imports:
        importer = unit_of(layer_name(imp.importer, modules), layers)
        imported = unit_of(layer_name(imp.imported, modules), layers)
        if importer is None or imported is None or importer[0] == imported[0] or imported[1] < importer[1]:
            continue  # unplaced modules are reported by their own test
        relation = "a peer of" if imported[1] == importer[1] else "below"
        violations.append(
            f"{modules[imp.importer].path}:{imp.line}: {imp.importer} imports {imp.imported}"
            f"{' (for type checking)' if imp.type_only else ''}, but {importer[0]} (layer {importer[1]}) is "
            f"{relation} {imported[0]} (layer {imported[1]})"
        )
    return violations


def test_every_module_has_a_place_in_the_layers():
    modules = read_modules(ROOT, PACKAGES)
    assert {"evonorm_search.module", "service.app", "workers.cluster"} <= modules.keys()
    assert unplaced_modules(modules, LAYERS) == [], "add these modules to LAYERS in tests/test_layering.py"
    assert stale_layer_names(modules, LAYERS) == [], "these LAYERS names cover no module any more"


def test_no_module_imports_a_peer_or_a_higher_layer():
    modules = read_modules(ROOT, PACKAGES)
    violations = layering_violations(project_imports(modules), modules, LAYERS)
    assert violations == [], "imports against the order of LAYERS (tests/test_layering.py):\n" + "\n".join(violations)


def _with_lines_added(module: Module, lines: str) -> Module:
    return replace(module, source=module.source + "\n" + lines)


def test_a_planted_import_against_the_order_is_reported_with_its_file_line_and_layers():
    # The real modules and table, with imports planted in copies of three sources: a function-local
    # relative import of a submodule, a module-level absolute import, a type-only import of a peer.
    modules = read_modules(ROOT, PACKAGES)
    graph = modules["evonorm_search.ir.graph"]
    planted_line = graph.source.count("\n") + 3
    modules["evonorm_search.ir.graph"] = _with_lines_added(
        graph, "def planted():\n    from ..search import controller\n"
    )
    modules["evonorm_search.store.models"] = _with_lines_added(
        modules["evonorm_search.store.models"], "import service.app\n"
    )
    modules["evonorm_search.reference"] = _with_lines_added(
        modules["evonorm_search.reference"],
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .compiler import runtime\n",
    )
    violations = layering_violations(project_imports(modules), modules, LAYERS)
    assert len(violations) == 3, violations
    ir_row, search_row = unit_of("evonorm_search.ir", LAYERS), unit_of("evonorm_search.search", LAYERS)
    assert ir_row is not None and search_row is not None
    assert (
        f"evonorm_search/ir/graph.py:{planted_line}: evonorm_search.ir.graph imports evonorm_search.search.controller,"
        f" but evonorm_search.ir (layer {ir_row[1]}) is below evonorm_search.search (layer {search_row[1]})"
    ) in violations
    assert any(v.startswith("evonorm_search/store/models.py:") and "imports service.app, but" in v for v in violations)
    assert any(
        "evonorm_search.reference imports evonorm_search.compiler.runtime (for type checking)" in v and "a peer of" in v
        for v in violations
    )


def test_imports_of_the_own_unit_and_of_lower_layers_pass(tmp_path: Path):
    package = tmp_path / "pkg"
    (package / "low").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "low" / "__init__.py").write_text("from . import helpers\n")  # own unit
    (package / "low" / "helpers.py").write_text("")
    (package / "high.py").write_text("def run():\n    from .low import helpers\n")  # a lower layer, function-local
    (package / "peer.py").write_text("import pkg.low\n")
    layers = (("pkg.low",), ("pkg.high", "pkg.peer"), ("pkg.__init__",))
    modules = read_modules(tmp_path, ["pkg"])
    assert unplaced_modules(modules, layers) == [] and stale_layer_names(modules, layers) == []
    assert layering_violations(project_imports(modules), modules, layers) == []
    (package / "high.py").write_text("import pkg.peer\n")  # now a peer import, the one thing wrong
    modules = read_modules(tmp_path, ["pkg"])
    assert layering_violations(project_imports(modules), modules, layers) == [
        "pkg/high.py:1: pkg.high imports pkg.peer, but pkg.high (layer 1) is a peer of pkg.peer (layer 1)"
    ]


def test_a_new_module_outside_the_table_is_reported_and_the_package_file_covers_only_itself(tmp_path: Path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "placed.py").write_text("")
    (package / "new.py").write_text("")
    modules = read_modules(tmp_path, ["pkg"])
    assert unplaced_modules(modules, (("pkg.placed",), ("pkg.__init__",))) == [str(Path("pkg/new.py"))]
    assert stale_layer_names(modules, (("pkg.placed", "pkg.gone"), ("pkg.__init__", "pkg.new"))) == ["pkg.gone"]


# ------------------------------------------------------------------------------------------------------
# No cycles
# ------------------------------------------------------------------------------------------------------


def import_graph(imports: Iterable[Import]) -> dict[str, set[str]]:
    """Module -> the modules it imports when it runs (type-only imports left out)."""
    edges: dict[str, set[str]] = defaultdict(set)
    for imp in imports:
        if not imp.type_only:
            edges[imp.importer].add(imp.imported)
    return edges


def strongly_connected(nodes: Iterable[str], edges: Mapping[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative; components of one node are left out (a module importing itself is
    not a cycle between modules)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for start in nodes:
        if start in index:
            continue
        work = [(start, iter(sorted(edges.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(edges.get(successor, ())))))
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(sorted(component))
    return components


def test_no_import_cycles_between_project_modules():
    modules = read_modules(ROOT, PACKAGES)
    edges = import_graph(project_imports(modules))
    cycles = strongly_connected(sorted(modules), edges)
    described = [
        " <-> ".join(c) + ": " + "; ".join(f"{a} -> {b}" for a in c for b in sorted(edges[a]) if b in c) for c in cycles
    ]
    assert cycles == [], "import cycles:\n" + "\n".join(described)


def test_the_cycle_finder_sees_module_level_function_local_and_relative_imports(tmp_path: Path):
    # A cycle closed by a function-local relative import is found; one closed only under TYPE_CHECKING is not.
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from .b import f\n")
    (package / "a.py").write_text("from .sub import b\n")
    (package / "sub" / "b.py").write_text("def f():\n    from .. import a\n    return a\n")
    (package / "c.py").write_text("from typing import TYPE_CHECKING\nimport pkg.d\n")
    (package / "d.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import c\n")
    modules = read_modules(tmp_path, ["pkg"])
    edges = import_graph(project_imports(modules))
    assert edges["pkg.a"] == {"pkg.sub.b"} and edges["pkg.sub.b"] == {"pkg.a"}
    assert edges["pkg.sub"] == {"pkg.sub.b"}
    assert "pkg.d" not in edges
    assert strongly_connected(sorted(modules), edges) == [["pkg.a", "pkg.sub.b"]]
