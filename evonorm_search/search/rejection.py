"""Rejection protocols, cheapest first, each a small object with a `stage` and `check(graph, facts)`.

The cheap ones run in the controller before a candidate is queued: static (outside the space,
constant, independent of x), duplicate (canonical hash, then functional fingerprint), numeric
(non-finite output or gradient on random input, or an output that ignores x) and stability (the
worst-case input-gradient norm found by a few steps of adversarial ascent). The quality protocol
needs training and runs on the worker (`evaluator.evaluate_task`). `CheapRejections` runs the chain,
stopping at the first rejection, and times every stage it ran.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import sympy
import torch

from ..enums import RejectionStage
from ..fingerprint import fingerprint
from ..ir import Graph
from ..ir.ops import PARAMETERS
from ..module import NormAct
from ..proxies.training import intra_op_threads
from ..symbolic import canonical_hash, to_sympy
from .space import SearchSpace

STAGES = tuple(RejectionStage)  # cheapest first
CHEAP_STAGES = (RejectionStage.STATIC, RejectionStage.NUMERIC, RejectionStage.STABILITY)  # what the 50 ms target covers

# Small probe inputs: big enough for every axis to reduce over several elements, small enough for
# the checks to stay in the millisecond range.
PROBE_BATCH = 8
PROBE_CHANNELS = 8
PROBE_SPATIAL = {0: (), 1: (16,), 2: (4, 4)}
_X_SYMBOL = sympy.Symbol("x")


@dataclass(frozen=True)
class Rejection:
    stage: RejectionStage
    reason: str
    duplicate_of: int | None = None


@dataclass
class Facts:
    """What the checks learn about a candidate on the way; stored with it."""

    canonical_hash: str | None = None
    fingerprint: str | None = None
    gradient_norm: float | None = None


class RejectionCheck(Protocol):
    stage: RejectionStage

    def check(self, graph: Graph, facts: Facts) -> Rejection | None: ...


# --------------------------------------------------------------------------------------------------
# Static
# --------------------------------------------------------------------------------------------------


_VARIABLES = frozenset({"x", *PARAMETERS})


def wasted_structure(graph: Graph) -> str | None:
    """Structure that spends the node budget on nothing: a statistic of an expression without x (a
    constant, zero, or a parameter over an axis it does not vary on) or arithmetic on constants alone
    (`sigmoid(1)`, `1 / 1`). Either is better written as a leaf, so the search skips such layers."""
    has_x: list[bool] = []
    has_variable: list[bool] = []
    for i, node in enumerate(graph.nodes):
        has_x.append(node.op == "x" or any(has_x[a] for a in node.args))
        has_variable.append(node.op in _VARIABLES or any(has_variable[a] for a in node.args))
        if node.args and not has_variable[i]:
            return f"constant arithmetic {_text_of(graph, i)!r}: a node budget spent on a constant"
        if node.axis is not None and not has_x[node.args[0]]:
            return f"statistic of an expression without x {_text_of(graph, i)!r}: a constant or a parameter"
    return None


def _text_of(graph: Graph, index: int) -> str:
    return Graph(graph.nodes, index).to_text().replace("\n", "; ")


class StaticCheck:
    """Outside the space, independent of x, wasted structure, or symbolically constant (`x - x`)."""

    stage = RejectionStage.STATIC

    def __init__(self, space: SearchSpace):
        self.space = space

    def check(self, graph: Graph, facts: Facts) -> Rejection | None:
        if problems := self.space.violations(graph):
            return Rejection(self.stage, "outside the search space: " + "; ".join(problems))
        if self.space.op_count(graph) < self.space.min_ops:
            return Rejection(self.stage, f"fewer than min_ops={self.space.min_ops} ops")
        if not graph.depends_on_x:
            return Rejection(self.stage, "the output does not depend on x")
        if (problem := wasted_structure(graph)) is not None:
            return Rejection(self.stage, problem)
        try:
            expr = to_sympy(graph)
        except (ValueError, TypeError, ArithmeticError, RecursionError):
            return None  # sympy cannot say; the numeric check tests constancy on real inputs
        if _X_SYMBOL not in expr.free_symbols:
            return Rejection(self.stage, f"the output simplifies to {expr}, which does not depend on x")
        return None


# --------------------------------------------------------------------------------------------------
# Duplicates
# --------------------------------------------------------------------------------------------------


class DuplicateIndex:
    """Canonical hashes and fingerprints of the search's candidates so far, each mapped to the first one."""

    def __init__(self) -> None:
        self.by_hash: dict[str, int] = {}
        self.by_fingerprint: dict[str, int] = {}
        self.hits = 0

    def add(self, candidate_id: int, canonical_hash: str | None, fingerprint: str | None) -> None:
        if canonical_hash is not None:
            self.by_hash.setdefault(canonical_hash, candidate_id)
        if fingerprint is not None:
            self.by_fingerprint.setdefault(fingerprint, candidate_id)

    def knows(self, graph: Graph) -> bool:
        """Whether a layer of the same canonical form is in the index (the cheap test; no fingerprint)."""
        return canonical_hash(graph) in self.by_hash


class DuplicateCheck:
    """Same canonical form, or (with `use_fingerprint`) same outputs on the fixed fingerprint inputs."""

    stage = RejectionStage.DUPLICATE

    def __init__(self, index: DuplicateIndex, *, use_fingerprint: bool = True):
        self.index = index
        self.use_fingerprint = use_fingerprint

    def check(self, graph: Graph, facts: Facts) -> Rejection | None:
        facts.canonical_hash = canonical_hash(graph)
        original = self.index.by_hash.get(facts.canonical_hash)
        if original is not None:
            self.index.hits += 1
            return Rejection(self.stage, f"same canonical form as candidate {original}", original)
        if not self.use_fingerprint:
            return None
        facts.fingerprint = fingerprint(graph)
        original = self.index.by_fingerprint.get(facts.fingerprint)
        if original is not None:
            self.index.hits += 1
            return Rejection(self.stage, f"same outputs as candidate {original} (functional fingerprint)", original)
        return None


# --------------------------------------------------------------------------------------------------
# Numeric
# --------------------------------------------------------------------------------------------------


def probe_layer(graph: Graph, groups: int, eps: float, dtype: torch.dtype) -> NormAct:
    return NormAct(graph, PROBE_CHANNELS, groups=groups, eps=eps, affine=False, backend="torch").to(dtype)


def probe_shape(spatial_dims: int) -> tuple[int, ...]:
    return (PROBE_BATCH, PROBE_CHANNELS, *PROBE_SPATIAL[spatial_dims])


def _all_finite(*tensors: torch.Tensor | None) -> bool:
    return all(t is None or bool(torch.isfinite(t).all()) for t in tensors)


class NumericCheck:
    """On random float32 input at initialisation: the output and every gradient are finite in training,
    the output is finite in eval mode, and the output changes when x does."""

    stage = RejectionStage.NUMERIC

    def __init__(self, *, groups: int, eps: float, spatial_dims: int = 2, seed: int = 0):
        self.groups, self.eps, self.spatial_dims = groups, eps, spatial_dims
        gen = torch.Generator().manual_seed(seed)
        shape = probe_shape(spatial_dims)
        self.x = torch.randn(shape, generator=gen)
        self.x_other = torch.randn(shape, generator=gen)
        self.cotangent = torch.randn(shape, generator=gen)

    def check(self, graph: Graph, facts: Facts) -> Rejection | None:
        layer = probe_layer(graph, self.groups, self.eps, torch.float32).train()
        x = self.x.clone().requires_grad_(True)
        y = layer(x)
        if not _all_finite(y):
            return Rejection(self.stage, "non-finite output on random input")
        (y * self.cotangent).sum().backward()
        if not _all_finite(x.grad, *(p.grad for p in layer.parameters())):
            return Rejection(self.stage, "non-finite gradient on random input")
        with torch.no_grad():
            y_other = layer(self.x_other)
            if torch.allclose(y, y_other, rtol=1e-6, atol=1e-7):
                return Rejection(self.stage, "the output does not change with x")
            if not _all_finite(layer.eval()(self.x)):
                return Rejection(self.stage, "non-finite output in eval mode (running statistics)")
        return None


# --------------------------------------------------------------------------------------------------
# Stability
# --------------------------------------------------------------------------------------------------


class StabilityCheck:
    """Estimate max_x ||d<layer(x), u>/dx|| by normalised gradient ascent on x (float64, fixed u).

    Each step moves x by `step_size * ||x||` along the ascent direction, so the search explores inputs
    of every scale. A norm above `threshold`, or a non-finite one, rejects the layer. Layers whose
    input gradient does not depend on x (linear ones) need a single step.
    """

    stage = RejectionStage.STABILITY

    def __init__(
        self,
        *,
        threshold: float = 1e8,
        steps: int = 10,
        step_size: float = 0.5,
        groups: int,
        eps: float,
        spatial_dims: int = 2,
        seed: int = 0,
    ):
        self.threshold, self.steps, self.step_size = threshold, steps, step_size
        self.groups, self.eps = groups, eps
        gen = torch.Generator().manual_seed(seed + 1)
        shape = probe_shape(spatial_dims)
        self.x0 = torch.randn(shape, generator=gen, dtype=torch.float64)
        self.cotangent = torch.randn(shape, generator=gen, dtype=torch.float64)

    def check(self, graph: Graph, facts: Facts) -> Rejection | None:
        layer = probe_layer(graph, self.groups, self.eps, torch.float64).train()
        x = self.x0.clone()
        worst = 0.0
        for step in range(self.steps):
            x.requires_grad_(True)
            (grad,) = torch.autograd.grad((layer(x) * self.cotangent).sum(), x, create_graph=True)
            norm = grad.norm()
            value = float(norm.detach())
            if not math.isfinite(value):
                facts.gradient_norm = None
                return Rejection(self.stage, f"non-finite input gradient after {step} ascent step(s)")
            worst = max(worst, value)
            facts.gradient_norm = worst
            if worst > self.threshold:
                return Rejection(self.stage, f"input-gradient norm {worst:.3g} exceeds {self.threshold:.3g}")
            if step + 1 == self.steps or not norm.requires_grad:
                break
            (ascent,) = torch.autograd.grad(norm, x, allow_unused=True)
            if ascent is None or not _all_finite(ascent) or float(ascent.norm()) == 0.0:
                break
            x = (x + self.step_size * x.norm() * ascent / ascent.norm()).detach()
        return None


# --------------------------------------------------------------------------------------------------
# The chain
# --------------------------------------------------------------------------------------------------


@dataclass
class Verdict:
    """The outcome of the cheap checks: the rejection (or None), what was learned and each stage's seconds."""

    rejection: Rejection | None
    facts: Facts
    seconds: dict[RejectionStage, float] = field(default_factory=dict)

    @property
    def cheap_seconds(self) -> float:
        return sum(s for stage, s in self.seconds.items() if stage in CHEAP_STAGES)


class CheapRejections:
    """Runs checks in order; stops at the first rejection. An exception inside a check is a rejection
    at that stage (a layer that crashes the reference cannot be trained), never a crash of the search."""

    def __init__(self, checks: Sequence[RejectionCheck]):
        self.checks = list(checks)

    def run(self, graph: Graph) -> Verdict:
        with intra_op_threads(1):  # probes are tiny: more threads only add waiting
            return self._run(graph)

    def _run(self, graph: Graph) -> Verdict:
        verdict = Verdict(None, Facts())
        for check in self.checks:
            start = time.perf_counter()
            try:
                rejection = check.check(graph, verdict.facts)
            except (RuntimeError, ValueError, ArithmeticError, TypeError) as e:
                rejection = Rejection(check.stage, f"the check failed: {type(e).__name__}: {e}")
            verdict.seconds[check.stage] = time.perf_counter() - start
            if rejection is not None:
                verdict.rejection = rejection
                break
        return verdict


def cheap_rejections(
    space: SearchSpace,
    *,
    groups: int,
    eps: float,
    spatial_dims: int,
    index: DuplicateIndex | None,
    use_fingerprint: bool = True,
    numeric: bool = True,
    stability: dict | None = None,
    seed: int = 0,
) -> CheapRejections:
    """The standard chain: static, duplicate (when `index`), numeric, stability (when `stability` is given:
    threshold, steps, step_size)."""
    checks: list[RejectionCheck] = [StaticCheck(space)]
    if index is not None:
        checks.append(DuplicateCheck(index, use_fingerprint=use_fingerprint))
    if numeric:
        checks.append(NumericCheck(groups=groups, eps=eps, spatial_dims=spatial_dims, seed=seed))
    if stability is not None:
        checks.append(StabilityCheck(groups=groups, eps=eps, spatial_dims=spatial_dims, seed=seed, **stability))
    return CheapRejections(checks)
