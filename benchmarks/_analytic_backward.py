"""A design the eager backend measured and did not take: the layer as one `torch.autograd.Function`.

Its forward is the layer's graph as straight-line PyTorch source run without autograd; its backward
is the compiler's analytic backward program (`compiler.autodiff`, with the gate rewrites) as PyTorch
source, reading only the forward values it needs. `cpu_step.py` times it against autograd through the
reference ("Levers"); it lives here, beside the script, so that the table can be re-measured. The
script checks its values and gradients against the reference before timing it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch
from torch.autograd.function import once_differentiable

from evonorm_search.compiler.autodiff import backward_program
from evonorm_search.compiler.program import Program
from evonorm_search.compiler.rewrite import rewrite
from evonorm_search.eager import affine
from evonorm_search.ir import AXES, OPS, Graph, Kind
from evonorm_search.ir.vocabulary import LeafRole
from evonorm_search.reference import RUNTIME_HELPERS, full
from evonorm_search.reference_ops import REDUCTIONS, TORCH, TORCH_HELPERS, TORCH_STATISTICS


def _variance(axis: str) -> Callable[[torch.Tensor, int], torch.Tensor]:
    """The biased variance in two passes, as the reference computes it (`var_mean` is slower on CPU)."""
    reduce = REDUCTIONS[axis]

    def variance(t: torch.Tensor, groups: int) -> torch.Tensor:
        return reduce(torch.square(t - reduce(t, groups)), groups)

    variance.__name__ = f"var_over_{axis}"
    return variance


VARIANCES = {axis: _variance(axis) for axis in AXES}


def channel_sum(t: torch.Tensor, xc: torch.Tensor) -> torch.Tensor:
    """The per-channel sum over (N, *spatial) of a value broadcast to the input's shape."""
    return full(t, xc).sum(dim=[0] + list(range(2, xc.dim())))  # noqa: RUF005 (TorchScript has no [*a])


# --------------------------------------------------------------------------------------------------
# Code generation: forward and backward programs as straight-line PyTorch source
# --------------------------------------------------------------------------------------------------

# The statistic of each aggregation as fused source, over operand {a} and axis name {axis}.
_STAT_SRC = {
    "mean": "mean_over_{axis}({a}, groups)",
    "var": "var_over_{axis}({a}, groups)",
    "std": "var_over_{axis}({a}, groups)",
    "rms": "mean_over_{axis}(torch.square({a}), groups)",
}
# Ops whose reference form is slow on small tensors: a select against a Python scalar costs several
# times a masked fill (the same values: closed where a <= 0, NaN in g kept, a NaN gate passing g on).
_FAST_SRC = {"gate": "{0}.masked_fill({1} <= 0, 0.0)"}
# Leaves only compiled programs have: the incoming gradient and the module's affine.
_COMPILER_LEAVES = {"grad": "grad", "weight": "channel_view(weight, xc)", "bias": "channel_view(bias, xc)"}
FORWARD_NAME = "eager_forward"
BACKWARD_NAME = "eager_backward"


def _leaf_src(node: Any) -> str:
    row = OPS[node.op]
    if row.role is LeafRole.COMPILER:
        return _COMPILER_LEAVES[node.op]
    return TORCH[node.op].format(name=node.op, value=node.value)


def _aggregation_src(graph: Graph | Program, i: int, buffers: dict[int, str]) -> list[str]:
    node = graph.nodes[i]
    stat = OPS[node.op].stat
    assert stat is not None and node.axis is not None
    s = f"s{i}"
    compute = f"{s} = {_STAT_SRC[node.op].format(a=f'full(t{node.args[0]}, xc)', axis=node.axis)}"
    finish = f"t{i} = {TORCH_STATISTICS[node.op].finish.format(s=s)}"
    if i not in buffers:
        return [compute, finish]
    correction = "bessel(xc)" if stat.unbiased_running else "1.0"
    return [
        "if training:",
        f"    {compute}",
        f"    update_running({buffers[i]}, {s}, momentum, {correction})",
        "else:",
        f"    {s} = channel_view({buffers[i]}, xc)",
        finish,
    ]


def _node_src(graph: Graph | Program, i: int, buffers: dict[int, str]) -> list[str]:
    node = graph.nodes[i]
    row = OPS[node.op]
    if row.kind is Kind.AGGREGATION:
        return _aggregation_src(graph, i, buffers)
    if row.kind is Kind.LEAF:
        return [f"t{i} = {_leaf_src(node)}"]
    source = _FAST_SRC.get(node.op, TORCH[node.op])
    return [f"t{i} = {source.format(*(f't{a}' for a in node.args))}"]


def _needed(program: Program) -> list[int]:
    """The nodes the program's outputs depend on, in order (rewrites leave dead nodes behind)."""
    live = {i for _, i in (*program.stores, *program.sums)}
    for i in reversed(range(len(program.nodes))):
        if i in live:
            live.update(program.nodes[i].args)
    return sorted(live)


def saved_nodes(graph: Graph, backward: Program) -> list[int]:
    """The forward nodes the backward reads: the only values the forward keeps for it."""
    layer = len(graph.nodes)
    reads = {a for j in _needed(backward) if j >= layer for a in backward.nodes[j].args if a < layer}
    reads |= {i for _, i in (*backward.stores, *backward.sums) if i < layer}
    return sorted(reads)


def forward_source(graph: Graph, saved: list[int]) -> str:
    """The forward (no autograd) returning the output and the saved nodes' values."""
    buffers = graph.running_buffers()
    args = ["x", *graph.parameters, "weight", "bias", *buffers.values(), "training", "groups", "eps", "momentum"]
    body = ["xc = x.to(compute_dtype(x))"]
    for i in range(len(graph.nodes)):
        body += _node_src(graph, i, buffers)
    body += [
        f"y = affine(output(t{graph.output}, xc), weight, bias)",
        f"return y.to(x.dtype), [{', '.join(f't{i}' for i in saved)}]",
    ]
    return "\n".join([f"def {FORWARD_NAME}({', '.join(args)}):", *(f"    {line}" for line in body)]) + "\n"


def backward_source(graph: Graph, backward: Program, saved: list[int]) -> str:
    """The backward: from dL/dy and the saved values to dL/dx and each parameter's gradient."""
    layer = len(graph.nodes)
    args = ["grad", "xc", "saved", "weight", "groups", "eps"]
    body = [f"{', '.join(f't{i}' for i in saved)}{',' if len(saved) == 1 else ''} = saved"] if saved else []
    for j in _needed(backward):
        if j >= layer:
            body += _node_src(backward, j, {})
    (dx,) = (i for name, i in backward.stores if name == "dx")
    sums = [f"channel_sum(t{i}, xc)" for _, i in backward.sums]
    body.append(f"return output(t{dx}, xc), [{', '.join(sums)}]")
    return "\n".join([f"def {BACKWARD_NAME}({', '.join(args)}):", *(f"    {line}" for line in body)]) + "\n"


def _namespace() -> dict[str, object]:
    ns: dict[str, object] = {"torch": torch}
    helpers = (*TORCH_HELPERS, *RUNTIME_HELPERS, *REDUCTIONS.values(), *VARIANCES.values())
    for f in (*helpers, channel_sum, affine):
        ns[f.__name__] = f
    return ns


def _compile(source: str, name: str) -> Callable[..., Any]:
    ns = _namespace()
    digest = hashlib.sha256(source.encode()).hexdigest()[:12]
    exec(compile(source, f"<evonorm-eager-{digest}>", "exec"), ns)
    return ns[name]  # type: ignore[return-value]  # exec defined it


@dataclass(frozen=True)
class Programs:
    """A layer's compiled functions per mode (training -> function): in eval mode batch statistics are
    running estimates, constants to the backward, so each mode has its backward and the forward that
    saves what that backward reads."""

    forward: dict[bool, Callable[..., Any]]
    backward: dict[bool, Callable[..., Any]]


@lru_cache(maxsize=1024)
def compile_programs(graph: Graph, affine_: bool) -> Programs:
    """The forward and backward functions of `graph` (cached per graph: a search builds many modules)."""
    forwards: dict[bool, Callable[..., Any]] = {}
    backwards: dict[bool, Callable[..., Any]] = {}
    for training in (True, False):
        program = rewrite(backward_program(graph, training=training, affine=affine_))
        saved = saved_nodes(graph, program)
        forwards[training] = _compile(forward_source(graph, saved), FORWARD_NAME)
        backwards[training] = _compile(backward_source(graph, program, saved), BACKWARD_NAME)
    return Programs(forwards, backwards)


class _LayerFunction(torch.autograd.Function):
    """One layer call: forward without autograd, backward from the analytic backward program."""

    @staticmethod
    def forward(  # type: ignore[override]  # autograd.Function's forward takes (ctx, *args)
        ctx: Any, programs: Programs, settings: tuple, buffers: tuple, x: torch.Tensor, *tensors: Any
    ) -> torch.Tensor:
        training, groups, eps, momentum, n_params = settings
        params, weight, bias = tensors[:n_params], tensors[n_params], tensors[n_params + 1]
        y, saved = programs.forward[training](x, *params, weight, bias, *buffers, training, groups, eps, momentum)
        if y is x:  # the identity without an affine: autograd needs an output of its own
            y = y.clone()
        ctx.programs, ctx.settings, ctx.saved_values = programs, settings, saved
        ctx.weight, ctx.x_dtype, ctx.x_shape = weight, x.dtype, x.shape
        ctx.param_dtypes = [p.dtype for p in params]
        ctx.affine_dtypes = (None if weight is None else weight.dtype, None if bias is None else bias.dtype)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        training, groups, eps, _, n_params = ctx.settings
        dtype = torch.float64 if ctx.x_dtype == torch.float64 else torch.float32
        # What the backward reads of the input: its dtype, device and shape (the values it needs were saved).
        xc = torch.empty((), dtype=dtype, device=grad.device).expand(ctx.x_shape)
        g = grad.to(dtype)
        dx, sums = ctx.programs.backward[training](g, xc, ctx.saved_values, ctx.weight, groups, eps)
        param_grads = [s.to(d) for s, d in zip(sums[:n_params], ctx.param_dtypes, strict=True)]
        affine_grads: list[torch.Tensor | None] = [None, None]
        w_dtype, b_dtype = ctx.affine_dtypes
        if w_dtype is not None:
            affine_grads = [sums[n_params].to(w_dtype), sums[n_params + 1].to(b_dtype)]
        return (None, None, None, dx.to(ctx.x_dtype), *param_grads, *affine_grads)


def run_programs(
    programs: Programs,
    x: torch.Tensor,
    params: list[torch.Tensor],
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    buffers: list[torch.Tensor],
    training: bool,
    groups: int,
    eps: float,
    momentum: float,
) -> torch.Tensor:
    """The layer through its compiled programs; without autograd when nothing needs a gradient."""
    tensors = [x, *params, weight, bias]
    if not torch.is_grad_enabled() or not any(t is not None and t.requires_grad for t in tensors):
        y, _ = programs.forward[training](x, *params, weight, bias, *buffers, training, groups, eps, momentum)
        return y
    settings = (training, groups, eps, momentum, len(params))
    return _LayerFunction.apply(programs, settings, tuple(buffers), x, *params, weight, bias)


def analytic_forward(layer: Any, x: torch.Tensor) -> torch.Tensor:
    """A `NormAct`'s forward through its compiled programs (its parameters, buffers and settings)."""
    programs = compile_programs(layer.graph, layer.affine)
    return run_programs(
        programs,
        x,
        layer.parameter_list(),
        layer.weight,
        layer.bias,
        layer.buffer_list(),
        layer.training,
        layer.groups,
        layer.eps,
        layer.momentum,
    )
