"""The layer language: op table, graph IR, parser and printer. Imports nothing else of the project, and
neither torch nor sympy: how each backend computes an op is a table beside that backend."""

from .graph import DEFAULT_MAX_NODES, Graph, GraphBuilder, GraphError, Node, Ref
from .ops import AGGREGATIONS, AXES, ELEMENTWISE, FUNCTIONS, OPS, AxisDef, Kind, OpDef
from .parser import DSLError, parse

__all__ = [
    "AGGREGATIONS",
    "AXES",
    "DEFAULT_MAX_NODES",
    "ELEMENTWISE",
    "FUNCTIONS",
    "OPS",
    "AxisDef",
    "DSLError",
    "Graph",
    "GraphBuilder",
    "GraphError",
    "Kind",
    "Node",
    "OpDef",
    "Ref",
    "parse",
]
