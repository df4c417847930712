"""The reference forward pass: a Graph becomes straight-line PyTorch source, compiled once per graph.

The same source serves `NormAct(backend="torch")` and the standalone modules of `export_module`, so an
exported layer reproduces the reference bit for bit. Autograd provides the backward pass. The source
comes from the reference's table of op forms (`reference_ops`), and everything it calls is defined in
this module or in that one and copied into exports by source, so it must stay TorchScript-compatible
and self-contained.
"""

from __future__ import annotations

import hashlib
import inspect
import linecache
from collections.abc import Callable
from typing import Optional

import torch

from .bounded import Bounded, limit
from .ir import Graph, Kind
from .reference_ops import REDUCTIONS, TORCH, TORCH_HELPERS, TORCH_STATISTICS

FORWARD_NAME = "layer_forward"


# --------------------------------------------------------------------------------------------------
# Runtime helpers called by generated code
# --------------------------------------------------------------------------------------------------


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """float64 stays float64; every other float type computes in float32 (statistics included)."""
    if x.dtype == torch.float64:
        return torch.float64
    return torch.float32


def channel_view(v: torch.Tensor, xc: torch.Tensor) -> torch.Tensor:
    """A per-channel vector (C,) as (1, C, 1, ...) in the compute dtype."""
    return v.to(xc.dtype).reshape([1, -1] + [1] * (xc.dim() - 2))


def scalar(value: float, xc: torch.Tensor) -> torch.Tensor:
    return torch.full((), value, dtype=xc.dtype, device=xc.device)


def full(a: torch.Tensor, xc: torch.Tensor) -> torch.Tensor:
    """Broadcast an operand to the input's shape before a reduction (v1 over `layer` means over C)."""
    if a.shape != xc.shape:
        return a.expand(xc.shape)
    return a


def output(a: torch.Tensor, xc: torch.Tensor) -> torch.Tensor:
    """The layer output always has the input's shape and owns its memory."""
    if a.shape != xc.shape:
        return a.expand(xc.shape).clone()
    return a


def bessel(xc: torch.Tensor) -> float:
    """n / (n - 1) for a batch statistic over n values (BatchNorm's unbiased running variance)."""
    n = xc.numel() // xc.shape[1]
    if n < 2:
        raise ValueError(
            "expected more than 1 value per channel when training a layer with batch statistics, got input of size "
            + str(list(xc.shape))
        )
    return n / (n - 1)


def update_running(buffer: torch.Tensor, stat: torch.Tensor, momentum: float, correction: float) -> None:
    """BatchNorm's convention: running = (1 - momentum) * running + momentum * batch_value."""
    value = stat.detach().reshape(-1).to(buffer.dtype) * correction
    buffer.mul_(1.0 - momentum).add_(value * momentum)


RUNTIME_HELPERS: tuple[Callable[..., object], ...] = (
    compute_dtype,
    channel_view,
    scalar,
    full,
    output,
    bessel,
    update_running,
)


# --------------------------------------------------------------------------------------------------
# Code generation
# --------------------------------------------------------------------------------------------------


def _signature(graph: Graph, name: str) -> str:
    args = ["x: torch.Tensor"]
    args += [f"{p}: torch.Tensor" for p in graph.parameters]
    args += ["weight: Optional[torch.Tensor]", "bias: Optional[torch.Tensor]"]
    args += [f"{b}: torch.Tensor" for b in graph.running_buffers().values()]
    args += ["training: bool", "groups: int", "eps: float", "momentum: float"]
    return f"def {name}({', '.join(args)}) -> torch.Tensor:"


def _aggregation_lines(graph: Graph, i: int, buffers: dict[int, str]) -> list[str]:
    node = graph.nodes[i]
    stat = node.opdef.stat
    assert stat is not None
    torch_stat = TORCH_STATISTICS[node.op]
    reduce = REDUCTIONS[node.axis].__name__  # type: ignore[index]  # an aggregation node always has an axis (Graph validates it)
    a, s = f"a{i}", f"s{i}"
    compute = [f"{a} = full(t{node.args[0]}, xc)", f"{s} = {torch_stat.statistic.format(a=a, r=reduce)}"]
    finish = f"t{i} = {torch_stat.finish.format(s=s)}"
    if i not in buffers:
        return [*compute, finish]
    buf = buffers[i]
    correction = "bessel(xc)" if stat.unbiased_running else "1.0"
    return [
        "if training:",
        *(f"    {line}" for line in compute),
        f"    update_running({buf}, {s}, momentum, {correction})",
        "else:",
        f"    {s} = channel_view({buf}, xc)",
        finish,
    ]


def _node_lines(graph: Graph, i: int, buffers: dict[int, str]) -> list[str]:
    node = graph.nodes[i]
    op = node.opdef
    if op.kind is Kind.AGGREGATION:
        return _aggregation_lines(graph, i, buffers)
    template = TORCH[node.op]
    if op.kind is Kind.LEAF:
        return [f"t{i} = {template.format(name=node.op, value=node.value)}"]
    return [f"t{i} = {template.format(*(f't{a}' for a in node.args))}"]


def forward_source(graph: Graph, name: str = FORWARD_NAME) -> str:
    """Straight-line source of the layer's forward function (with the final affine)."""
    buffers = graph.running_buffers()
    body = ["xc = x.to(compute_dtype(x))"]
    for i in range(len(graph.nodes)):
        body += _node_lines(graph, i, buffers)
    body += [
        f"y = output(t{graph.output}, xc)",
        "if weight is not None:",
        "    y = y * channel_view(weight, xc)",
        "if bias is not None:",
        "    y = y + channel_view(bias, xc)",
        "return y.to(x.dtype)",
    ]
    return "\n".join([_signature(graph, name), *(f"    {line}" for line in body)]) + "\n"


def helper_sources(graph: Graph) -> str:
    """Source of every helper the generated forward of `graph` may call (for standalone exports)."""
    used_axes = sorted(graph.axes)
    functions = [*TORCH_HELPERS, *RUNTIME_HELPERS, *(REDUCTIONS[a] for a in used_axes)]
    return "\n\n\n".join(inspect.getsource(f).strip("\n") for f in functions)


def _namespace() -> dict[str, object]:
    ns: dict[str, object] = {"torch": torch, "Optional": Optional}
    for f in (*TORCH_HELPERS, *RUNTIME_HELPERS, *REDUCTIONS.values()):
        ns[f.__name__] = f
    return ns


def _forget_source(filename: str, _forward: Callable[..., torch.Tensor]) -> None:
    linecache.cache.pop(filename, None)


# Bounded (EVONORM_REFERENCE_CACHE_SIZE), keyed by source name: a search builds a module for almost every
# candidate, and each forward's source sits in `linecache` for as long as the forward is cached.
_FORWARDS: Bounded[str, Callable[..., torch.Tensor]] = Bounded(limit("EVONORM_REFERENCE_CACHE_SIZE"), _forget_source)


def compile_forward(graph: Graph) -> Callable[..., torch.Tensor]:
    """The forward function of `graph`, compiled once and cached by its source (the latest kept).

    The source is registered with linecache so tracebacks, `inspect` and torch.compile can read it; it
    leaves linecache when its forward leaves the cache.
    """
    source = forward_source(graph)
    filename = f"<evonorm-layer-{hashlib.sha256(source.encode()).hexdigest()[:12]}>"
    cached = _FORWARDS.get(filename)
    if cached is not None:
        return cached
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    ns = _namespace()
    exec(compile(source, filename, "exec"), ns)  # noqa: S102 - source generated from a validated Graph
    forward: Callable[..., torch.Tensor] = ns[FORWARD_NAME]  # type: ignore[assignment]  # exec defined it
    _FORWARDS[filename] = forward
    return forward
