"""Symbolic forms (canonical form, LaTeX, hash) for layers, bounded in size and cached.

A small graph can stand for an enormous formula (see `evonorm_search.symbolic.formula_size`); layers over
the service's limit (EVONORM_MAX_FORMULA_SIZE) get no symbolic form instead of tying up a worker thread.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import evonorm_search as es
from evonorm_search.ir import Graph, GraphError
from evonorm_search.symbolic import formula_size


@dataclass(frozen=True)
class Symbolic:
    canonical: str | None
    latex: str | None
    note: str | None = None  # why canonical/latex are missing


class FormulaCache:
    """Symbolic forms of layers up to `max_size` operations; the last `entries` kept, keyed by canonical hash
    (layers with equal hashes have equal canonical forms, hence equal LaTeX)."""

    def __init__(self, max_size: int, entries: int = 4096) -> None:
        self.max_size = max_size
        self.entries = entries
        self._cache: OrderedDict[str, Symbolic] = OrderedDict()
        self._lock = threading.Lock()

    def too_large(self, graph: Graph) -> str | None:
        """Why the layer gets no symbolic form, or None when it fits."""
        if formula_size(graph, cap=self.max_size + 1) <= self.max_size:
            return None
        return (
            f"the formula has more than {self.max_size} operations once shared subexpressions are written out, "
            "too many to print (EVONORM_MAX_FORMULA_SIZE)"
        )

    def of_graph(self, graph: Graph) -> Symbolic:
        """Canonical form and LaTeX of a layer, or a note saying why there are none."""
        if (note := self.too_large(graph)) is not None:
            return Symbolic(None, None, note)
        return Symbolic(es.canonical_form(graph), es.latex(graph, max_size=self.max_size))

    def of_stored(self, canonical_hash: str, graph: Mapping[str, Any]) -> Symbolic:
        """The symbolic form of a stored candidate, from the cache when its hash was seen before."""
        with self._lock:
            if (hit := self._cache.get(canonical_hash)) is not None:
                self._cache.move_to_end(canonical_hash)
                return hit
        try:
            symbolic = self.of_graph(Graph.from_dict(dict(graph)))
        except (GraphError, ValueError, TypeError, KeyError):
            symbolic = Symbolic(None, None, "the stored graph cannot be read by this version of evonorm-search")
        with self._lock:
            self._cache[canonical_hash] = symbolic
            while len(self._cache) > self.entries:
                self._cache.popitem(last=False)
        return symbolic
