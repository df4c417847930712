"""The runtime's plans over a broad grid of cases, pinned: every domain's blocks, chunking, grid, partials
and single-pass, fused or split choice, every launch's grid and constants, every statistic's size and
every combine's grid, for shapes from one element to ResNet and transformer stages, three dtypes, both
storage orders, a few group counts, both directions and several tunings and targets.

The digests in `data/plans.json` were recorded from the runtime before its domain rules became a table
(`compiler/domains.py`); a change of any plan shows here, naming the tuning and shape whose plans moved.
Only an intended change of the plans may be recorded again, with
    EVONORM_UPDATE_PLANS=1 pytest tests/compiler/test_plans.py
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import torch
import triton

from evonorm_search.compiler import runtime
from evonorm_search.layer import effective_groups

DATA = Path(__file__).with_name("data") / "plans.json"
UPDATE = os.environ.get("EVONORM_UPDATE_PLANS") == "1"

DOMAINS = ("tiles", "instance", "group", "sample", "channel")
AXES = ("batch", "layer", "group", "instance", "channel", "sum")
STRATEGIES = ("channels_all_samples", "channels_one_sample", "scalar_sample", "scalar_group")
SHAPES = (
    (1, 1, 1, 1),
    (2, 8, 4, 4),
    (3, 40, 7),
    (32, 3, 5),
    (5, 96, 17, 13),
    (2, 6, 3, 5, 7),
    (64, 128, 14, 14),
    (64, 256, 56, 56),
    (64, 1024, 14, 14),
    (64, 2048, 7, 7),
    (8, 64, 128, 160),
    (256, 512, 28, 28),
    (16384, 4096),
    (4, 32768, 2, 2),
    (1, 4096, 1, 1),
    (7, 300, 9, 11),
)
DTYPES = (torch.float32, torch.bfloat16, torch.float64)
GROUPS = (1, 32, 10**9)  # one group, GroupNorm's 32 (fewer where C is not divisible), one per channel
# name -> (tuning, SM count, compute capability); None: the interpreter's plan (no SM count, no GPU).
TUNINGS = {
    "gpu-sm90": (runtime.Tuning(), 132, 90),
    "gpu-sm80": (runtime.Tuning(), 108, 80),
    "gpu-sm90-one-cta": (runtime.Tuning(cluster=1), 132, 90),
    "gpu-single": (runtime.Tuning(fusion="single"), 132, 90),
    "gpu-always": (runtime.Tuning(fusion="always"), 132, 90),
    "gpu-never": (runtime.Tuning(fusion="never"), 132, 90),
    "gpu-narrow-groups": (runtime.Tuning(max_group_channels=16, tile=1024, min_programs=8), 16, 90),
    "interpreter": (runtime.INTERPRET_TUNING, None, None),
    "interpreter-clusters": (dataclasses.replace(runtime.INTERPRET_TUNING, cluster=4), None, None),
}


def _kernel():
    """A stand-in kernel: the launches are recorded, not run."""


def _geometries(shape, tuning, sms, arch):
    for dtype in DTYPES:
        for last in (False, True) if len(shape) > 2 else (False,):
            x = torch.empty(shape, dtype=dtype, device="meta")
            if last:
                x = x.movedim(1, -1).contiguous().movedim(-1, 1)
            for groups in GROUPS:
                g = effective_groups(shape[1], groups)
                for backward in (False, True):
                    geo = runtime.Geometry(x, g, 1e-5, 0.1, sms=sms, tuning=tuning, backward=backward, arch=arch)
                    yield f"{dtype}/{'last' if last else 'nchw'}/G{g}/{'bwd' if backward else 'fwd'}", geo


def _plain(value):
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    return str(value)


def _launches(geo, monkeypatch) -> list:
    starts: list = []
    monkeypatch.setattr(geo, "_start", lambda kernel, grid, args, kwargs, key: starts.append((grid, args, kwargs)))
    return starts


def _record(geo: runtime.Geometry, monkeypatch) -> dict:
    """Everything the runtime plans for one call, by domain, axis and combine strategy."""
    starts = _launches(geo, monkeypatch)
    record: dict = {
        "budget": [geo.budget(False), geo.budget(True)],
        "cluster_limit": geo.cluster_limit(),
        "statistics": {a: geo.statistic(a).numel() for a in AXES},
    }
    for domain in DOMAINS:
        row: dict = {}
        for single in (False, True):
            blocks = geo.blocks(domain, single)
            row[f"blocks/{single}"] = blocks
            row[f"chunking/{single}"] = geo.chunking(domain, single)
            row[f"grid/{single}"] = geo.grid(domain, blocks[0], blocks[1])
            row[f"sizes/{single}"] = geo.sizes(domain, single)
            row[f"partials/{single}"] = geo.partials(domain, 2, single).numel()
        for backward in (False, True):
            plan = geo.single_pass(domain, backward)
            row[f"single_plan/{backward}"] = [plan.block_c, plan.block_s, plan.warps, plan.ctas]
            row[f"single/{backward}"] = geo.single(domain, backward)
            row[f"plan_of/{backward}"] = geo.plan_of(domain, backward)
        row["fuse"] = geo.fuse(domain)
        starts.clear()
        geo.launch(_kernel, domain)
        if geo.single(domain, geo.backward):
            geo.launch(_kernel, domain, single=True)
        for single in (False, True):
            geo.combine(_kernel, domain, STRATEGIES, single=single)
            for strategy in STRATEGIES:
                geo.combine(_kernel, domain, (strategy,), single=single)
        row["launches"] = list(starts)
        row["autotune"] = _alternatives(geo, domain, monkeypatch)
        record[domain] = row
    return _plain(record)


def _alternatives(geo: runtime.Geometry, domain: str, monkeypatch) -> list:
    """The block sizes autotuning would time for a domain's pass kernel (timed by nothing here)."""
    tried: list = []
    monkeypatch.setattr(triton.testing, "do_bench", lambda fn, **kw: fn() or float(len(tried)))
    geo._run = lambda kernel, domain, tensors, *blocks, **kw: tried.append(blocks)
    try:
        best = geo._benchmark(_kernel, domain, (), geo.blocks(domain))
    finally:
        del geo._run
    return [sorted(tried), best]


def _digest(records: dict) -> str:
    text = json.dumps(records, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _shape_name(shape) -> str:
    return "x".join(map(str, shape))


def _plans(monkeypatch) -> dict[str, dict]:
    # Thread block clusters compile on sm_90 whatever this Triton does, so the plans do not depend on it.
    monkeypatch.setitem(runtime._CLUSTERS, 90, None)
    monkeypatch.setattr(runtime, "_SPILLED", set())
    plans: dict[str, dict] = {}
    for name, (tuning, sms, arch) in TUNINGS.items():
        for shape in SHAPES:
            records = {case: _record(geo, monkeypatch) for case, geo in _geometries(shape, tuning, sms, arch)}
            plans[f"{name}/{_shape_name(shape)}"] = {"cases": len(records), "digest": _digest(records)}
    return plans


def test_the_runtime_plans_every_recorded_case_as_before(monkeypatch):
    plans = _plans(monkeypatch)
    if UPDATE:
        DATA.parent.mkdir(exist_ok=True)
        DATA.write_text(json.dumps(plans, indent=0, sort_keys=True) + "\n")
    recorded = json.loads(DATA.read_text())
    assert sum(p["cases"] for p in plans.values()) >= 1400
    moved = sorted(key for key in recorded if plans.get(key) != recorded[key])
    assert set(plans) == set(recorded), "the case grid changed; see the module docstring to record it again"
    assert not moved, f"the runtime plans these (tuning/shape) cases differently: {moved}"
