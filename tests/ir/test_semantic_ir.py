"""The IR says what ops are, never how a backend computes them: `evonorm_search.ir` imports neither
torch, sympy nor Triton. Their forms live in tables beside the backends (`reference_ops`,
`symbolic_ops`, `compiler/op_table.py`), so a backend change never edits the IR, and the parser,
validator and search space need none of them.

Two checks. Every import statement of the ir/ files, at any depth, read with `ast`. And the package
imported for real in a fresh interpreter: `evonorm_search/__init__.py` gathers the public API (the
reference module, the compiler, sympy forms) and so imports torch, which says nothing about the IR;
the subprocess therefore registers a bare parent package (the same directory, without running its
`__init__`) and then imports `evonorm_search.ir` and everything it pulls in.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

IR = Path(__file__).resolve().parents[2] / "evonorm_search" / "ir"
BACKEND_LIBRARIES = ("torch", "sympy", "triton")


def imported_top_level_names(source: str) -> set[str]:
    """The top-level package of every absolute import in `source`, wherever the statement stands."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name.partition(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.partition(".")[0])
    return names


def test_no_ir_module_has_an_import_statement_of_a_backend_library():
    found = {
        path.name: sorted(imported_top_level_names(path.read_text(encoding="utf-8")) & set(BACKEND_LIBRARIES))
        for path in sorted(IR.glob("*.py"))
    }
    assert "ops.py" in found and "parser.py" in found
    assert {name: libraries for name, libraries in found.items() if libraries} == {}


def test_the_import_reader_sees_function_local_and_dotted_imports():
    source = (
        "import os\ndef f():\n    import torch.nn as nn\n    from sympy.core import Symbol\n    from . import ops\n"
    )
    assert imported_top_level_names(source) == {"os", "torch", "sympy"}


_IMPORT_IR_ALONE = """
import sys, types
package = types.ModuleType("evonorm_search")
package.__path__ = [{package!r}]
sys.modules["evonorm_search"] = package
import evonorm_search.ir
assert evonorm_search.ir.parse("x * sigmoid(v1 * x) / std(x, group)").to_text()
print(sorted(name for name in {libraries!r} if name in sys.modules))
"""


def test_importing_the_ir_and_parsing_a_layer_loads_no_backend_library():
    code = _IMPORT_IR_ALONE.format(package=str(IR.parent), libraries=BACKEND_LIBRARIES)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
