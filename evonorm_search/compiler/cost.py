"""`plan_cost`: what a layer's compiled kernels will cost, from the plan alone (no GPU, no Triton).

The search uses it as a cost objective, so it is pure, deterministic and cheap (passes 1-3 of the
compiler: autodiff, scheduling, lowering; no code is generated). Costs are per element of the input:
a kernel reads every full-size tensor it needs (the input, and in a backward the incoming gradient)
once per pass it runs, or once in all for a single-pass kernel, and writes its full-size outputs;
statistics and partials (O(N x C) values) are left out.

Without a shape the report is the split plan's (every pass a read; the conservative figure the search
has always used) plus the bytes the plan moves when every fused stage runs single-pass. With a shape
(and a target's SM count) it follows `runtime.Geometry`, as the launchers do: each fused stage runs
single-pass, fused or split, and the report says which, with the blocks, warps and CTAs of the
single-pass kernels (a tile past one CTA's budget spans a thread block cluster where the target has
them and the installed Triton compiles them: `runtime.clusters_compile`, the one compile this module
may trigger), and the bytes of the plan actually chosen.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from ..ir import Graph
from .autodiff import backward_program, forward_program
from .lower import Combine, Kernel, Plan, Stage, plan
from .program import FULL_SIZE_INPUTS
from .rewrite import rewrite
from .schedule import ReductionKind, Schedule, closure, schedule

ITEMSIZE = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8}
DIRECTIONS = ("forward", "backward", "inference")
# Streaming multiprocessors of the part a target names (the cost of a plan depends on it only through
# the choice between fused and split stages).
TARGET_SMS = {"cuda:80": 108, "cuda:86": 84, "cuda:89": 128, "cuda:90": 132, "cuda:100": 148, "cuda:120": 170}


class PlanCost(dict):
    """The cost report (a dict); `float(cost)` is the headline: bytes moved per element by one
    training step (forward + backward), lower is better."""

    def __float__(self) -> float:
        return float(self["step_bytes_per_element"])


def _inputs_read(s: Schedule, passes: Sequence[int]) -> int:
    roots: list[int] = []
    for p in passes:
        roots += [s.reductions[r].operand for r in s.passes[p].reductions] + [i for _, i in s.passes[p].stores]
    needed = closure(s.program, roots, s.sources)
    return sum(1 for i in needed if s.program.nodes[i].op in FULL_SIZE_INPUTS)


def _step_traffic(s: Schedule, step: Kernel | Combine) -> tuple[int, int]:
    """(full-size reads, full-size writes) of one step: a single-pass kernel reads each input once."""
    if isinstance(step, Combine):
        return 0, 0
    writes = sum(len(s.passes[p].stores) for p in step.phases)
    if step.single:
        return _inputs_read(s, step.phases), writes
    return sum(_inputs_read(s, (p,)) for p in step.phases), writes


def _traffic(s: Schedule, steps: Sequence[Kernel | Combine]) -> tuple[int, int]:
    reads = writes = 0
    for step in steps:
        r, w = _step_traffic(s, step)
        reads, writes = reads + r, writes + w
    return reads, writes


def _launches(pl: Plan, fused: bool) -> int:
    total = 0
    for stage in pl.stages:
        steps = stage.fused if fused and stage.fused else stage.split
        total += len(steps)
    return total


def _describe(s: Schedule, pl: Plan, itemsize: int) -> dict[str, Any]:
    split = [step for stage in pl.stages for step in stage.split]
    reads, writes = _traffic(s, split)
    single = [step for stage in pl.stages for step in (stage.single or stage.split)]
    single_reads, single_writes = _traffic(s, single)
    axes = Counter(r.axis for r in s.reductions if r.kind is not ReductionKind.SUM)
    return {
        "passes": len(s.passes),
        "reads_per_element": reads,
        "writes_per_element": writes,
        "bytes_per_element": (reads + writes) * itemsize,
        "single_pass_bytes_per_element": (single_reads + single_writes) * itemsize,
        "reductions": dict(sorted(axes.items())),
        "kernel_launches_split": _launches(pl, fused=False),
        "kernel_launches_fused": _launches(pl, fused=True),
        "fused_stages": [
            f"passes {st.passes[0]}-{st.passes[-1]} over {st.fused_domain}" for st in pl.stages if st.fused
        ],
        "combines": sum(1 for step in pl.kernels if isinstance(step, Combine)),
    }


def _chosen_stage(stage: Stage, geo: Any, backward: bool) -> tuple[dict[str, Any], tuple]:
    """How `geo` runs a stage (as the generated launcher decides), and the steps that run."""
    if not stage.fused:
        return {"passes": list(stage.passes), "domain": "", "run": "split"}, stage.split
    run = geo.plan_of(stage.fused_domain, backward)
    described: dict[str, Any] = {"passes": list(stage.passes), "domain": str(stage.fused_domain), "run": run}
    if run == "single":
        single = geo.single_pass(stage.fused_domain, backward)
        described.update(blocks=[single.block_c, single.block_s], warps=single.warps, ctas=single.ctas)
    return described, {"single": stage.single, "fused": stage.fused, "split": stage.split}[run]


def _choose(s: Schedule, pl: Plan, geo: Any, backward: bool, itemsize: int) -> dict[str, Any]:
    """The plan `geo` runs at its shape: stages, kernels, bytes, and the fraction of the minimum."""
    stages, steps = [], []
    for stage in pl.stages:
        described, chosen = _chosen_stage(stage, geo, backward)
        stages.append(described)
        steps += list(chosen)
    reads, writes = _traffic(s, steps)
    moved = (reads + writes) * itemsize
    # The least any plan moves: every full-size input read once, every output written once.
    minimum = (_inputs_read(s, range(len(s.passes))) + len(s.program.stores)) * itemsize
    return {
        "stages": stages,
        "kernels": len(steps),
        "reads_per_element": reads,
        "writes_per_element": writes,
        "bytes_per_element": moved,
        "minimum_bytes_per_element": minimum,
        "fraction_of_minimum": minimum / moved if moved else 1.0,
    }


def _geometry(shape: Sequence[int], dtype: str, groups: int, channels_last: bool, target: str, direction: str) -> Any:
    """A runtime Geometry of one direction for `shape` on `target`, on a tensor without storage (torch's
    meta device)."""
    import torch

    from ..layer import effective_groups
    from . import runtime

    if target not in TARGET_SMS:
        raise ValueError(f"target must be one of {', '.join(TARGET_SMS)}, got {target!r}")
    if len(shape) < 2 or any(not isinstance(d, int) or d < 1 for d in shape):
        raise ValueError(f"shape must be (N, C, *spatial) of positive integers, got {tuple(shape)}")
    if channels_last and len(shape) < 3:
        raise ValueError(f"channels_last needs spatial dimensions, got shape {tuple(shape)}")
    x = torch.empty(tuple(shape), dtype=getattr(torch, dtype), device="meta")
    if channels_last:
        x = x.movedim(1, -1).contiguous().movedim(-1, 1)
    g = effective_groups(shape[1], groups)
    backward = direction == "backward"
    arch = int(target.split(":")[1])
    return runtime.Geometry(
        x, g, 1e-5, 0.1, sms=TARGET_SMS[target], tuning=runtime.TUNING, backward=backward, arch=arch
    )


def plan_cost(
    graph: Graph,
    *,
    dtype: str = "float32",
    training: bool = True,
    affine: bool = True,
    shape: Sequence[int] | None = None,
    groups: int = 32,
    channels_last: bool = False,
    target: str = "cuda:90",
) -> PlanCost:
    """Passes over memory and bytes moved per element of `graph`'s compiled forward and backward.

    Keys: `forward` and `backward` (passes, reads/writes/bytes per element of the split plan, the bytes
    when every fused stage runs single-pass, reductions per axis, kernel launches for the split and the
    fused plan), `step_bytes_per_element` (forward + backward) and `inference_bytes_per_element`
    (eval-mode forward). `float(result)` is the step's bytes.

    With `shape` (and `groups`, `channels_last`, `target`), each direction also has `chosen`: the plan
    the launchers run at that shape (each stage's run: single, fused or split), its kernels and bytes
    and its fraction of the minimum traffic; the step and inference bytes are then the chosen plan's.
    """
    if not isinstance(graph, Graph):
        raise TypeError(f"plan_cost expects a Graph, got {type(graph).__name__}")
    if dtype not in ITEMSIZE:
        raise ValueError(f"dtype must be one of {', '.join(ITEMSIZE)}, got {dtype!r}")
    itemsize = ITEMSIZE[dtype]
    geometry = (
        {} if shape is None else {d: _geometry(shape, dtype, groups, channels_last, target, d) for d in DIRECTIONS}
    )
    fwd = rewrite(forward_program(graph, affine=affine))
    fwd_s = schedule(fwd, graph, training=training, update_running=training)
    bwd = rewrite(backward_program(graph, training=training, affine=affine))
    bwd_s = schedule(bwd, graph, training=training, saved=tuple(r.key for r in fwd_s.reductions))
    eval_s = schedule(fwd, graph, training=False)
    report: dict[str, Any] = {}
    for direction, s, prefix in (("forward", fwd_s, "fwd"), ("backward", bwd_s, "bwd"), ("inference", eval_s, "inf")):
        pl = plan(s, prefix)
        report[direction] = _describe(s, pl, itemsize)
        if geometry:
            report[direction]["chosen"] = _choose(s, pl, geometry[direction], direction == "backward", itemsize)
    key = "bytes_per_element"

    def headline(direction: str) -> int:
        return report[direction]["chosen"][key] if geometry else report[direction][key]

    return PlanCost(
        dtype=dtype,
        training=training,
        shape=None if shape is None else list(shape),
        **report,
        step_bytes_per_element=headline("forward") + headline("backward"),
        inference_bytes_per_element=headline("inference"),
    )
