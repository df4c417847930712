"""Hashing is safe under concurrent threads: the recursion limit sympy needs is raised once and never
restored underneath another thread, so equal layers hashed at once get one hash (not a structural one)."""

from __future__ import annotations

import sys
import threading

import pytest

import evonorm_search as es
from evonorm_search import symbolic

DEPTH = 100  # deep enough that sympy needs more than Python's default recursion limit of 1000


def deep_layer(flipped: bool) -> es.Graph:
    """One layer written two ways (`sigmoid(y) + k` or `k + sigmoid(y)`): equal, with one canonical form."""
    lines = ["y0 = x"]
    for i in range(DEPTH):
        term = f"{i + 1} + sigmoid(y{i})" if flipped else f"sigmoid(y{i}) + {i + 1}"
        lines.append(f"y{i + 1} = {term}")
    return es.parse("\n".join(lines))


@pytest.fixture
def default_recursion_limit():
    """Start from Python's default limit, as a process that lowered it (or never raised it) would."""
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)
    yield
    sys.setrecursionlimit(max(before, sys.getrecursionlimit()))


def test_equal_layers_hashed_from_eight_threads_at_once_get_one_hash(default_recursion_limit):
    import sympy

    sympy.core.cache.clear_cache()  # every thread does the full, deep work, so their calls overlap
    layers = [deep_layer(flipped=i % 2 == 1) for i in range(8)]
    start = threading.Barrier(len(layers))
    hashes: list[str] = [""] * len(layers)
    forms: list[str] = [""] * len(layers)

    def work(i: int) -> None:
        start.wait()
        forms[i] = symbolic.canonical_form(layers[i])
        hashes[i] = es.canonical_hash(layers[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(layers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not any(f.startswith("structural[") for f in forms), "sympy fell back to the structural form"
    assert len(set(hashes)) == 1


def test_the_limit_is_raised_once_and_never_lowered(default_recursion_limit):
    symbolic.ensure_recursion_limit(5000)
    assert sys.getrecursionlimit() == 5000
    symbolic.ensure_recursion_limit(2000)  # never lowers it
    assert sys.getrecursionlimit() == 5000
    es.canonical_hash(deep_layer(False))  # hashing raises it to what sympy needs, and leaves it there
    assert sys.getrecursionlimit() >= 20_000
