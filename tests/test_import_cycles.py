"""No import cycles between the project's modules (evonorm_search/, service/, workers/).

The graph is read statically with `ast`, and it counts every import that runs: module-level ones and
those inside functions, but not those under `if TYPE_CHECKING:` (they never run). A function-local
import is still a dependency, only a later one; counting it is what keeps "module depends on compiler,
never the reverse" true, instead of letting a cycle hide inside a function. An edge goes to the most
specific project module named (`from .x import y` names the submodule `x.y` when there is one, else `x`);
the parent packages an import initialises on the way are not edges, or every package would be a cycle
with its own `__init__`. Cycles are the strongly connected components of more than one module.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("evonorm_search", "service", "workers")


def project_modules(root: Path, packages: Iterable[str]) -> dict[str, tuple[Path, bool]]:
    """Dotted name -> (file, is a package `__init__`)."""
    modules = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts.pop()
            modules[".".join(parts)] = (path, is_package)
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


def _runtime_imports(tree: ast.AST) -> Iterable[ast.Import | ast.ImportFrom]:
    """Every import statement that can run, at any depth, skipping `if TYPE_CHECKING:` bodies."""
    for child in ast.iter_child_nodes(tree):
        if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
            yield from (n for branch in child.orelse for n in _runtime_imports(ast.Module([branch], [])))
            continue
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child
        else:
            yield from _runtime_imports(child)


def import_graph(modules: Mapping[str, tuple[Path, bool]]) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = defaultdict(set)
    for name, (path, is_package) in modules.items():
        package = name if is_package else name.rpartition(".")[0]
        for node in _runtime_imports(ast.parse(path.read_text(encoding="utf-8"))):
            for imported in _imported_names(node, package):
                target = _closest_module(imported, modules)
                if target is not None and target != name:
                    edges[name].add(target)
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
    modules = project_modules(ROOT, PACKAGES)
    assert "evonorm_search.module" in modules and "service.app" in modules and "workers.cluster" in modules
    edges = import_graph(modules)
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
    modules = project_modules(tmp_path, ["pkg"])
    edges = import_graph(modules)
    assert edges["pkg.a"] == {"pkg.sub.b"} and edges["pkg.sub.b"] == {"pkg.a"}
    assert edges["pkg.sub"] == {"pkg.sub.b"}
    assert "pkg.d" not in edges
    assert strongly_connected(sorted(modules), edges) == [["pkg.a", "pkg.sub.b"]]
