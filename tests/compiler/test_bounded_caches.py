"""Every per-process cache of the compiler is bounded: compiled layers (their `linecache` sources dropped
with them), the graphs that lead to them, the compile log, the record of launched, tuned and
precompiled specialisations; the caps come from EVONORM_* variables."""

from __future__ import annotations

import gc
import json
import linecache
import os
import subprocess
import sys
import weakref
from pathlib import Path

import pytest
import torch

import evonorm_search as es
from evonorm_search import reference
from evonorm_search.bounded import LIMITS, Bounded, limit
from evonorm_search.compiler import cache, runtime

REPOSITORY = Path(__file__).resolve().parents[2]


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


# More layers than the caps allow, each run through the kernels (interpreted) and the reference.
BOUNDED_PROCESS = """
import json, torch
import evonorm_search as es
from evonorm_search import reference
from evonorm_search.compiler import ahead, cache, runtime
texts = ["x * sigmoid(v1 * x)", "relu(x) / std(x, group)", "x / rms(x, instance)", "x * tanh(v1 * x)"]
x = torch.randn(2, 4, 3, 3, dtype=torch.float64, requires_grad=True)
for text in texts:
    for backend in ("triton", "torch"):
        module = es.NormAct(text, 4, groups=2, backend=backend).double()
        module(x).sum().backward()
print(json.dumps({
    "layers": len(texts),
    "held": {
        "EVONORM_COMPILE_LOG_SIZE": len(runtime.COMPILE_LOG),
        "EVONORM_KERNEL_RECORD_SIZE": len(runtime._SEEN),
        "EVONORM_LAYER_CACHE_SIZE": len(cache._BY_KEY),
        "EVONORM_REFERENCE_CACHE_SIZE": len(reference._FORWARDS),
    },
    "graphs": len(cache._BY_GRAPH),
    "cuda_only_caps": [runtime._TUNED.maxsize, ahead._PRECOMPILED.maxsize],
}))
"""


def test_a_process_running_more_layers_than_its_caps_holds_no_more_than_them():
    """Every per-process record stays within its EVONORM_* cap however many layers run; the records
    only CUDA fills (autotuning choices, precompiled shapes) take the kernel-record cap too."""
    caps = dict.fromkeys(LIMITS, "2")
    environment = {**os.environ, **caps, "TRITON_INTERPRET": "1", "PYTHONPATH": str(REPOSITORY)}
    done = subprocess.run(
        [sys.executable, "-c", BOUNDED_PROCESS], env=environment, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.splitlines()[-1])
    assert found["layers"] > 2  # more than any cap holds
    assert found["held"] == dict.fromkeys(LIMITS, 2)  # full, and no fuller
    assert found["graphs"] <= 2 * 2  # the graphs that lead to cached layers, two per layer at most
    assert found["cuda_only_caps"] == [2, 2]


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


def test_a_layer_past_the_cap_leaves_tritons_own_records_too(two_layer_cache):
    """Triton keeps every kernel it has seen in module-level dicts that nothing empties (its JIT registry,
    and under TRITON_INTERPRET=1 the interpreter's rewritten functions): an evicted layer leaves both, so
    nothing holds its kernels any more."""
    from triton.runtime import jit

    x = torch.randn(2, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    texts = ["x * sigmoid(v1 * x)", "relu(x) / std(x, group)", "x / rms(x, instance)"]
    first = None
    for text in texts:
        module = es.NormAct(text, 4, groups=2, backend="triton").double()
        module(x).sum().backward()  # launched: the interpreter has rewritten its kernels
        if first is None:
            first = cache.compiled_layer(es.parse(text))
            name = first.namespace["__name__"]
            own = first.namespace  # the layer's Triton kernels are defined there (the library's elsewhere)
            kernels = [v for v in own.values() if getattr(getattr(v, "fn", None), "__globals__", None) is own]
            assert any(k.startswith(f"{name}:") for k in jit._triton_jit_function_registry)
            forward = weakref.ref(first.launchers["forward_train"])
    assert first is not None and kernels
    assert not any(k.startswith(f"{name}:") for k in jit._triton_jit_function_registry)
    if runtime.interpreting():
        from triton.runtime.interpreter import InterpretedFunction

        assert not any(getattr(k, "fn", None) in InterpretedFunction.rewritten_fn for k in kernels)
    del first, kernels, module, own
    gc.collect()
    assert forward() is None  # nothing else kept the evicted layer's code alive


def test_reference_forwards_past_the_cap_leave_with_their_linecache_source(monkeypatch):
    monkeypatch.setattr(reference, "_FORWARDS", Bounded(2, reference._forget_source))
    texts = ["x * sigmoid(v1 * x)", "relu(x) / std(x, group)", "x / rms(x, instance)"]
    forwards = [reference.compile_forward(es.parse(text)) for text in texts]
    names = [f.__code__.co_filename for f in forwards]
    assert names[0] not in linecache.cache and all(n in linecache.cache for n in names[1:])
    assert reference.compile_forward(es.parse(texts[2])) is forwards[2]  # cached while it stays
    again = reference.compile_forward(es.parse(texts[0]))
    assert again is not forwards[0] and names[0] in linecache.cache
