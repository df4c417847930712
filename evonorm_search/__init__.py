"""evonorm-search: discover normalization-activation layers by evolutionary search.

The public surface: the layer language (`parse`, `Graph`, `DSLError`), the module that runs any
layer (`NormAct`), the layer library, symbolic forms and hashes, export to standalone modules, and
the generated Triton source of a layer (`kernel_source`), and `swap_norm_act`, which puts a layer into an
existing model in place of its norms and the activations after them.
"""

from . import library
from ._version import __version__
from .compiler import kernel_source
from .export import export_module
from .fingerprint import fingerprint
from .ir import AXES, OPS, DSLError, Graph, GraphError, parse
from .module import NormAct, effective_groups
from .swap import Replacement, SwapError, swap_norm_act
from .symbolic import canonical_form, canonical_hash, latex, to_sympy

__all__ = [
    "AXES",
    "OPS",
    "DSLError",
    "Graph",
    "GraphError",
    "NormAct",
    "Replacement",
    "SwapError",
    "__version__",
    "canonical_form",
    "canonical_hash",
    "effective_groups",
    "export_module",
    "fingerprint",
    "kernel_source",
    "latex",
    "library",
    "parse",
    "swap_norm_act",
    "to_sympy",
]
