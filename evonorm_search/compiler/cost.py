"""`plan_cost`: what a layer's compiled kernels will cost, from the plan alone (no GPU, no Triton).

The search uses it as a cost objective, so it is pure, deterministic and cheap (passes 1-3 of the
compiler: autodiff, scheduling, lowering; no code is generated). Costs are per element of the input:
a pass over memory reads every full-size tensor it needs (the input, and in a backward the incoming
gradient) and writes its full-size outputs; statistics (O(N x C) values) are left out.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from ..ir import Graph
from .autodiff import backward_program, forward_program
from .lower import Combine, Plan, plan
from .program import COMPILER_INPUTS
from .schedule import Schedule, closure, schedule

ITEMSIZE = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8}
FULL_SIZE_INPUTS = ("x", *(op for op, dims in COMPILER_INPUTS.items() if dims == frozenset("ncs")))


class PlanCost(dict):
    """The cost report (a dict); `float(cost)` is the headline: bytes moved per element by one
    training step (forward + backward), lower is better."""

    def __float__(self) -> float:
        return float(self["step_bytes_per_element"])


def _pass_traffic(s: Schedule) -> tuple[int, int]:
    """(full-size reads, full-size writes) summed over the passes of a schedule."""
    reads = writes = 0
    for p in s.passes:
        roots = [s.reductions[r].operand for r in p.reductions] + [i for _, i in p.stores]
        needed = closure(s.program, roots, s.sources)
        reads += sum(1 for i in needed if s.program.nodes[i].op in FULL_SIZE_INPUTS)
        writes += len(p.stores)
    return reads, writes


def _launches(pl: Plan, fused: bool) -> int:
    total = 0
    for stage in pl.stages:
        steps = stage.fused if fused and stage.fused else stage.split
        total += len(steps)
    return total


def _describe(s: Schedule, pl: Plan, itemsize: int) -> dict[str, Any]:
    reads, writes = _pass_traffic(s)
    axes = Counter(r.axis for r in s.reductions if r.kind != "sum")
    return {
        "passes": len(s.passes),
        "reads_per_element": reads,
        "writes_per_element": writes,
        "bytes_per_element": (reads + writes) * itemsize,
        "reductions": dict(sorted(axes.items())),
        "kernel_launches_split": _launches(pl, fused=False),
        "kernel_launches_fused": _launches(pl, fused=True),
        "fused_stages": [
            f"passes {st.passes[0]}-{st.passes[-1]} over {st.fused_domain}" for st in pl.stages if st.fused
        ],
        "combines": sum(1 for step in pl.kernels if isinstance(step, Combine)),
    }


def plan_cost(graph: Graph, *, dtype: str = "float32", training: bool = True, affine: bool = True) -> PlanCost:
    """Passes over memory and bytes moved per element of `graph`'s compiled forward and backward.

    Keys: `forward` and `backward` (passes, reads/writes/bytes per element, reductions per axis,
    kernel launches for the split and the fused plan), `step_bytes_per_element` (forward + backward)
    and `inference_bytes_per_element` (eval-mode forward). `float(result)` is the step's bytes.
    """
    if not isinstance(graph, Graph):
        raise TypeError(f"plan_cost expects a Graph, got {type(graph).__name__}")
    if dtype not in ITEMSIZE:
        raise ValueError(f"dtype must be one of {', '.join(ITEMSIZE)}, got {dtype!r}")
    itemsize = ITEMSIZE[dtype]
    fwd = forward_program(graph, affine=affine)
    fwd_s = schedule(fwd, graph, training=training, update_running=training)
    bwd = backward_program(graph, training=training, affine=affine)
    bwd_s = schedule(bwd, graph, training=training, saved=tuple(r.key for r in fwd_s.reductions))
    eval_s = schedule(fwd, graph, training=False)
    forward = _describe(fwd_s, plan(fwd_s, "fwd"), itemsize)
    backward = _describe(bwd_s, plan(bwd_s, "bwd"), itemsize)
    inference = _describe(eval_s, plan(eval_s, "inf"), itemsize)
    return PlanCost(
        dtype=dtype,
        training=training,
        forward=forward,
        backward=backward,
        inference=inference,
        step_bytes_per_element=forward["bytes_per_element"] + backward["bytes_per_element"],
        inference_bytes_per_element=inference["bytes_per_element"],
    )
