"""Every per-process cache of the compiler is bounded: compiled layers (their `linecache` sources dropped
with them), the graphs that lead to them, the compile log, the record of launched, tuned and
precompiled specialisations; the caps come from EVONORM_* variables."""

from __future__ import annotations

import linecache
from collections import deque

import pytest
import torch

import evonorm_search as es
from evonorm_search.compiler import ahead, cache, runtime
from evonorm_search.compiler.bounded import LIMITS, Bounded, limit


def test_bounded_keeps_the_most_recently_used_and_reports_what_it_drops():
    dropped = []
    lru = Bounded(2, lambda k, v: dropped.append((k, v)))
    lru["a"], lru["b"] = 1, 2
    assert lru.get("a") == 1  # used: "b" is now the oldest
    lru["c"] = 3
    assert dropped == [("b", 2)] and list(lru) == ["a", "c"] and len(lru) == 2
    lru.add("d")
    assert "d" in lru and "a" not in lru
    lru.clear()
    assert len(lru) == 0 and [k for k, _ in dropped] == ["b", "a", "c", "d"]
    with pytest.raises(ValueError, match="maxsize must be >= 1"):
        Bounded(0)


def test_the_caps_come_from_the_environment_with_clear_errors(monkeypatch):
    monkeypatch.delenv("EVONORM_LAYER_CACHE_SIZE", raising=False)
    assert limit("EVONORM_LAYER_CACHE_SIZE") == LIMITS["EVONORM_LAYER_CACHE_SIZE"]
    monkeypatch.setenv("EVONORM_LAYER_CACHE_SIZE", "12")
    assert limit("EVONORM_LAYER_CACHE_SIZE") == 12
    for bad in ("0", "-3", "many"):
        monkeypatch.setenv("EVONORM_LAYER_CACHE_SIZE", bad)
        with pytest.raises(ValueError, match="EVONORM_LAYER_CACHE_SIZE must be a whole number >= 1"):
            limit("EVONORM_LAYER_CACHE_SIZE")


def test_every_process_wide_record_is_bounded():
    assert isinstance(runtime.COMPILE_LOG, deque) and runtime.COMPILE_LOG.maxlen == limit("EVONORM_COMPILE_LOG_SIZE")
    for record in (runtime._SEEN, runtime._TUNED, ahead._PRECOMPILED, cache._BY_KEY, cache._BY_GRAPH):
        assert isinstance(record, Bounded)


@pytest.fixture
def two_layer_cache(monkeypatch):
    monkeypatch.setattr(cache, "_BY_KEY", Bounded(2, cache._forget))
    monkeypatch.setattr(cache, "_BY_GRAPH", Bounded(4))


def test_compiled_layers_past_the_cap_leave_with_their_linecache_source(two_layer_cache):
    texts = ["x * sigmoid(v1 * x)", "relu(x) / std(x, group)", "x / rms(x, instance)"]
    layers = [cache.compiled_layer(es.parse(text)) for text in texts]
    assert all(layer.filename in linecache.cache for layer in layers[1:])
    assert layers[0].filename not in linecache.cache  # the oldest left, source and all
    assert [layer for _, layer in cache._BY_KEY.items()] == layers[1:]
    assert all(found is not layers[0] for _, found in cache._BY_GRAPH.items())
    again = cache.compiled_layer(es.parse(texts[0]))  # generated again when asked for again
    assert again is not layers[0] and again.filename in linecache.cache
    assert len(cache._BY_KEY) == 2


def test_a_layer_with_and_without_its_affine_keeps_two_sources(two_layer_cache):
    """Each cache entry has its own linecache text: the interpreter rewrites kernels from that text."""
    graph = es.library.get("gn_silu")
    plain = es.NormAct(graph, 6, groups=3, affine=False, backend="triton").double()
    plain_layer = cache.compiled_layer(graph, affine=False)
    affine_layer = cache.compiled_layer(graph, affine=True)  # compiled after, first run before
    assert plain_layer.filename != affine_layer.filename
    assert "".join(linecache.cache[plain_layer.filename][2]) == plain_layer.source
    x = torch.randn(2, 6, 5, 3, dtype=torch.float64)
    reference = es.NormAct(graph, 6, groups=3, affine=False, backend="torch").double()
    torch.testing.assert_close(plain(x), reference(x), rtol=1e-10, atol=1e-10)
