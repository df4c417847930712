"""The compiler: any layer graph to fused Triton kernels, forward and backward, as named passes.

1. `autodiff`  - forward and backward Programs from the derivative rules of `op_table`;
1b. `rewrite`  - rules that turn a Program into an equal one the kernels compute better (gated products);
2. `schedule`  - levels, shared reductions, passes cut only at aggregations;
3. `lower`     - per-axis reduction strategies and program domains; split and fused stages;
4. `codegen`   - Triton kernels and Python launchers as text;
5. `cache`     - execute once, cache by canonical hash + structure; compile times recorded.

`compile_ahead(graph, target="cuda:90")` (`ahead.py`) sends every kernel of a layer through Triton's
real compiler for a GPU target on a machine without one: the check that CI runs, and cold compile times.

`plan_cost(graph)` runs passes 1-3 only (no GPU, no Triton) and measures the plan: passes over
memory and bytes moved per element. `normact_forward` is what `NormAct(backend="triton")` calls.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..layer import as_graph
from . import cache
from .ahead import compile_ahead, precompile_on_first_use
from .cost import PlanCost, plan_cost
from .program import CompilerError

if TYPE_CHECKING:
    import torch

# `runtime` imports Triton (and torch): the functions below that need it import it when called, so
# `import evonorm_search` (and plan_cost, kernel_source) works without loading Triton.


def kernel_source(graph: Any, *, affine: bool = True) -> str:
    """The generated Triton source (kernels and launchers) of a layer: a Graph, DSL text or library name."""
    return cache.kernel_source(as_graph(graph), affine=affine)


def normact_forward(module: Any, x: torch.Tensor) -> torch.Tensor:
    """`NormAct.forward` on the Triton backend: fused kernels through a torch.autograd.Function. `module`
    is read for its graph, tensors and call settings (any object with NormAct's attributes)."""
    from .runtime import interpreting

    if not x.is_cuda and not interpreting():
        raise CompilerError(
            f"backend='triton' runs on CUDA tensors, got a tensor on {x.device.type}; "
            "use backend='auto' to fall back to the reference, or set TRITON_INTERPRET=1 for the CPU interpreter"
        )
    layer = cache.compiled_layer(module.graph, affine=module.affine)
    if x.is_cuda and not interpreting():
        params = [*module.parameter_list(), *([module.weight] if module.weight is not None else [])]
        precompile_on_first_use(
            module.graph,
            x,
            groups=module.groups,
            eps=module.eps,
            momentum=module.momentum,
            affine=module.affine,
            param_dtype=params[0].dtype if params else None,
        )
    return layer.apply(
        x,
        module.parameter_list(),
        module.weight,
        module.bias,
        module.buffer_list(),
        training=module.training,
        groups=module.groups,
        eps=module.eps,
        momentum=module.momentum,
    )


def compile_log() -> list[dict[str, Any]]:
    """One record per kernel specialisation launched in this process (first launch = compile time)."""
    return cache.compile_log()


def generation_log() -> list[dict[str, Any]]:
    """One record per layer whose kernels were generated in this process, with the seconds it took."""
    return cache.generation_log()


def tuning(**changes: Any) -> Any:
    """Context manager changing block sizes, fusion or autotuning: `with tuning(fusion="never"): ...`."""
    from .runtime import tuning as _tuning  # imports Triton

    return _tuning(**changes)


def clear_cache() -> None:
    cache.clear_cache()


__all__ = [
    "CompilerError",
    "PlanCost",
    "clear_cache",
    "compile_ahead",
    "compile_log",
    "generation_log",
    "kernel_source",
    "normact_forward",
    "plan_cost",
    "tuning",
]
