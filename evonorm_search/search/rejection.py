"""Rejection protocols, cheapest first, each a small object with a `stage` and `check(graph, facts)`.

The cheap ones run in the controller before a candidate is queued: static (outside the space,
constant, independent of x), duplicate (canonical hash, then functional fingerprint), numeric
(non-finite output or gradient on random input, or an output that ignores x) and stability (the
worst-case input-gradient norm found by a few steps of adversarial ascent). The last two, the probes,
are functions of the layer alone and may run on the worker instead (`rejection.probes: workers`,
`probe_chain`). The quality protocol needs training and runs on the worker (`evaluator.evaluate_task`).
`CheapRejections` runs the chain, stopping at the first rejection, and times every stage it ran.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
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
    """Canonical hashes and fingerprints of the search's candidates so far, each mapped to the first one.
    Exact and in memory: two entries per candidate, so it grows with the search (the controller's own
    index is `BoundedDuplicateIndex`)."""

    # Canonical hashes of the layers `knows` or `hash_of` was asked about, by their text: a mutation's child
    # is tested by `knows` and then checked by `DuplicateCheck` (and with a check pool each birth is
    # proposed twice, ahead and then for real); sympy is the cost, so every later test is a lookup.
    # Bounded: the oldest are forgotten.
    HASHES_REMEMBERED = 4096

    def __init__(self) -> None:
        self.by_hash: dict[str, int] = {}
        self.by_fingerprint: dict[str, int] = {}
        self.hits = 0
        self._hashes: OrderedDict[str, str] = OrderedDict()

    def add(self, candidate_id: int, canonical_hash: str | None, fingerprint: str | None) -> None:
        if canonical_hash is not None:
            self.by_hash.setdefault(canonical_hash, candidate_id)
        if fingerprint is not None:
            self.by_fingerprint.setdefault(fingerprint, candidate_id)

    def first_with_hash(self, canonical_hash: str) -> int | None:
        """The first candidate of that canonical hash, if any."""
        return self.by_hash.get(canonical_hash)

    def first_with_fingerprint(self, fingerprint: str) -> int | None:
        return self.by_fingerprint.get(fingerprint)

    def knows(self, graph: Graph) -> bool:
        """Whether a layer of the same canonical form is in the index (the cheap test; no fingerprint)."""
        return self.first_with_hash(self.hash_of(graph)) is not None

    def hash_of(self, graph: Graph) -> str:
        """`canonical_hash(graph)`, remembered by the graph's text."""
        text = graph.to_text()
        found = self._hashes.get(text)
        if found is not None:
            self._hashes.move_to_end(text)
            return found
        found = self._hashes[text] = canonical_hash(graph)
        if len(self._hashes) > self.HASHES_REMEMBERED:
            self._hashes.popitem(last=False)
        return found


class KeyFilter:
    """A Bloom filter over hex SHA-256 digests (canonical hashes, fingerprints), sized once for `capacity`
    keys at `false_positive_rate`: `key in filter` is False for every key never added, and True for a
    key never added with about that probability. The keys are already uniform hashes, so the bit
    positions are slices of the key itself (double hashing over two 64-bit halves of it): a few dozen
    lines, where a library would add a dependency for what the digest already does."""

    def __init__(self, capacity: int, false_positive_rate: float = 0.01):
        if capacity < 1 or not 0.0 < false_positive_rate < 1.0:
            raise ValueError(
                f"a key filter needs capacity >= 1 and a rate in (0, 1), got {capacity}, {false_positive_rate}"
            )
        self.bits = max(64, math.ceil(-capacity * math.log(false_positive_rate) / math.log(2) ** 2))
        self.probes = max(1, round(self.bits / capacity * math.log(2)))
        self._array = bytearray((self.bits + 7) // 8)

    def _positions(self, key: str) -> Iterator[int]:
        first, second = int(key[:16], 16), int(key[16:32], 16) | 1
        return ((first + i * second) % self.bits for i in range(self.probes))

    def add(self, key: str) -> None:
        for position in self._positions(key):
            self._array[position >> 3] |= 1 << (position & 7)

    def __contains__(self, key: str) -> bool:
        return all(self._array[position >> 3] & (1 << (position & 7)) for position in self._positions(key))

    @property
    def nbytes(self) -> int:
        return len(self._array)


Lookup = Callable[[str, str], "int | None"]  # (column, key) -> the first candidate with it, in the store


class BoundedDuplicateIndex(DuplicateIndex):
    """The index a search's controller keeps, in memory fixed from its start whatever the candidates
    stored: per key (canonical hash, fingerprint) a `KeyFilter` sized for the search's budget, the first
    candidate of the `recent` newest keys, and for any other key the filter lets through, the store
    (`lookup(column, key)`: the first candidate of the search with it, by birth; the columns are indexed).

    It answers what `DuplicateIndex` answers: the first candidate with the key. A key not in the filter
    was never added. A key added is kept in `recent` unless the filter already held it (a key seen
    before, or a false positive); either way its first candidate is in the store, where a lookup finds it.
    The store is read only for old duplicates and about 1% of new keys (the filter's false positives)."""

    COLUMNS = ("canonical_hash", "fingerprint")

    def __init__(self, capacity: int, lookup: Lookup, *, recent: int = 16384, false_positive_rate: float = 0.01):
        super().__init__()
        self.lookup = lookup
        self.recent_limit = recent
        self.filters = {column: KeyFilter(capacity, false_positive_rate) for column in self.COLUMNS}
        self.recent: dict[str, OrderedDict[str, int]] = {column: OrderedDict() for column in self.COLUMNS}
        self.lookups = 0  # reads of the store

    def add(self, candidate_id: int, canonical_hash: str | None, fingerprint: str | None) -> None:
        for column, key in zip(self.COLUMNS, (canonical_hash, fingerprint), strict=True):
            if key is None or key in self.recent[column] or key in self.filters[column]:
                continue  # already there, or maybe: its first candidate is in the store either way
            self.filters[column].add(key)
            recent = self.recent[column]
            recent[key] = candidate_id
            if len(recent) > self.recent_limit:
                recent.popitem(last=False)

    def first_with_hash(self, canonical_hash: str) -> int | None:
        return self._first("canonical_hash", canonical_hash)

    def first_with_fingerprint(self, fingerprint: str) -> int | None:
        return self._first("fingerprint", fingerprint)

    def _first(self, column: str, key: str) -> int | None:
        found = self.recent[column].get(key)
        if found is not None or key not in self.filters[column]:
            return found
        self.lookups += 1
        return self.lookup(column, key)


class DuplicateCheck:
    """Same canonical form, or (with `use_fingerprint`) same outputs on the fixed fingerprint inputs."""

    stage = RejectionStage.DUPLICATE

    def __init__(self, index: DuplicateIndex, *, use_fingerprint: bool = True):
        self.index = index
        self.use_fingerprint = use_fingerprint

    def check(self, graph: Graph, facts: Facts) -> Rejection | None:
        facts.canonical_hash = self.index.hash_of(graph)
        if (rejection := self._by_hash(facts.canonical_hash)) is not None or not self.use_fingerprint:
            return rejection
        facts.fingerprint = fingerprint(graph)
        return self._by_fingerprint(facts.fingerprint)

    def decide(self, facts: Facts, known: Precomputed) -> tuple[Rejection | None, float]:
        """The same verdict from a hash and fingerprint computed elsewhere (`CheapRejections.precompute`),
        with the seconds the check would have taken: the hash's, and the fingerprint's when it was needed."""
        facts.canonical_hash = known.canonical_hash
        seconds = known.hash_seconds
        if (rejection := self._by_hash(known.canonical_hash)) is not None or not self.use_fingerprint:
            return rejection, seconds
        seconds += known.fingerprint_seconds
        if known.fingerprint_error is not None:
            return Rejection(self.stage, f"the check failed: {known.fingerprint_error}"), seconds
        facts.fingerprint = known.fingerprint
        return self._by_fingerprint(known.fingerprint), seconds

    def _by_hash(self, canonical: str | None) -> Rejection | None:
        original = self.index.first_with_hash(canonical) if canonical is not None else None
        return self._duplicate_of(original, "same canonical form as candidate {}")

    def _by_fingerprint(self, print_: str | None) -> Rejection | None:
        original = self.index.first_with_fingerprint(print_) if print_ is not None else None
        return self._duplicate_of(original, "same outputs as candidate {} (functional fingerprint)")

    def _duplicate_of(self, original: int | None, reason: str) -> Rejection | None:
        if original is None:
            return None
        self.index.hits += 1
        return Rejection(self.stage, reason.format(original), original)


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


@dataclass
class Precomputed:
    """What the checks that do not read the duplicate index found for one layer, computed ahead (in a
    check pool's process) for `CheapRejections.run` to use in the chain's order: each such stage's
    rejection (or None) with its seconds, until the first rejection, and the duplicate check's canonical
    hash and fingerprint with theirs. Those stages are functions of the layer alone, so the verdict is
    the one the chain would reach by itself; only the index lookups remain for the controller."""

    stages: dict[RejectionStage, tuple[Rejection | None, float]] = field(default_factory=dict)
    canonical_hash: str | None = None
    hash_seconds: float = 0.0
    fingerprint: str | None = None
    fingerprint_seconds: float = 0.0
    fingerprint_error: str | None = None
    gradient_norm: float | None = None


_CHECK_ERRORS = (RuntimeError, ValueError, ArithmeticError, TypeError)


def _checked(check: RejectionCheck, graph: Graph, facts: Facts) -> tuple[Rejection | None, float]:
    """One check's rejection (an exception inside it is a rejection at its stage) and its seconds."""
    start = time.perf_counter()
    try:
        rejection = check.check(graph, facts)
    except _CHECK_ERRORS as e:
        rejection = Rejection(check.stage, f"the check failed: {type(e).__name__}: {e}")
    return rejection, time.perf_counter() - start


class CheapRejections:
    """Runs checks in order; stops at the first rejection. An exception inside a check is a rejection
    at that stage (a layer that crashes the reference cannot be trained), never a crash of the search."""

    def __init__(self, checks: Sequence[RejectionCheck]):
        self.checks = list(checks)

    def run(self, graph: Graph, known: Precomputed | None = None) -> Verdict:
        """The verdict; with `known` (from `precompute` on the same layer and settings), the stages it
        holds are taken from it instead of run again."""
        with intra_op_threads(1):  # probes are tiny: more threads only add waiting
            return self._run(graph, known)

    def precompute(self, graph: Graph) -> Precomputed:
        """Every stage that does not read the duplicate index, in order until one rejects, and the
        duplicate check's hash and fingerprint (computed whether or not the index would need them)."""
        with intra_op_threads(1):
            return self._precompute(graph)

    def _run(self, graph: Graph, known: Precomputed | None) -> Verdict:
        verdict = Verdict(None, Facts())
        for check in self.checks:
            if known is not None and isinstance(check, DuplicateCheck):
                rejection, seconds = check.decide(verdict.facts, known)
            elif known is not None and check.stage in known.stages:
                rejection, seconds = known.stages[check.stage]
                if check.stage is RejectionStage.STABILITY:
                    verdict.facts.gradient_norm = known.gradient_norm
            else:
                rejection, seconds = _checked(check, graph, verdict.facts)
            verdict.seconds[check.stage] = seconds
            if rejection is not None:
                verdict.rejection = rejection
                break
        return verdict

    def _precompute(self, graph: Graph) -> Precomputed:
        known = Precomputed()
        for check in self.checks:
            if isinstance(check, DuplicateCheck):
                _hash_and_fingerprint(graph, known, with_fingerprint=check.use_fingerprint)
                continue
            facts = Facts()
            rejection, _ = known.stages[check.stage] = _checked(check, graph, facts)
            if check.stage is RejectionStage.STABILITY:
                known.gradient_norm = facts.gradient_norm
            if rejection is not None:
                break
        return known


def _hash_and_fingerprint(graph: Graph, known: Precomputed, *, with_fingerprint: bool) -> None:
    start = time.perf_counter()
    known.canonical_hash = canonical_hash(graph)
    known.hash_seconds = time.perf_counter() - start
    if not with_fingerprint:
        return
    start = time.perf_counter()
    try:
        known.fingerprint = fingerprint(graph)
    except _CHECK_ERRORS as e:
        known.fingerprint_error = f"{type(e).__name__}: {e}"
    known.fingerprint_seconds = time.perf_counter() - start


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
    probes = probe_chain(
        groups=groups, eps=eps, spatial_dims=spatial_dims, numeric=numeric, stability=stability, seed=seed
    )
    return CheapRejections([*checks, *probes.checks])


def probe_chain(
    *, groups: int, eps: float, spatial_dims: int, numeric: bool, stability: dict | None, seed: int
) -> CheapRejections:
    """The probes alone (numeric, then stability when `stability` is given), in the order and with the
    inputs the standard chain gives them: what a worker runs before training (`rejection.probes: workers`)."""
    checks: list[RejectionCheck] = []
    if numeric:
        checks.append(NumericCheck(groups=groups, eps=eps, spatial_dims=spatial_dims, seed=seed))
    if stability is not None:
        checks.append(StabilityCheck(groups=groups, eps=eps, spatial_dims=spatial_dims, seed=seed, **stability))
    return CheapRejections(checks)
