"""Run a layer on both backends and compare everything autograd and the running estimates produce.

Tolerances (stated once, used by every kernel test):
- float64: |ours - reference| <= 1e-8 * (1 + |reference|), element-wise.
- float32 (and lower): against the float64 reference `truth`, our error may be at most 16 times the
  float32 reference's own error plus 1e-5 * (1 + |truth|): the kernels must be as accurate as eager
  PyTorch, whatever the conditioning of the layer.
- Non-finite values: wherever the reference is NaN or infinite, so is the kernel; the kernel may be
  non-finite where the reference is finite only where the float64 truth is non-finite too (float32
  rounding made the reference finite by accident, as in the variance of a constant).
A gradient autograd leaves as None (no differentiable path) must be all zeros in the kernel's result.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

import evonorm_search as es
from evonorm_search.compiler import tuning

F64_TOLERANCE = 1e-8
LOW_PRECISION_FACTOR = 16.0
LOW_PRECISION_FLOOR = 1e-5


@dataclass(frozen=True)
class Case:
    """One comparison: a layer, an input shape, a dtype, a mode and a fusion policy."""

    layer: es.Graph
    shape: tuple[int, ...]
    dtype: torch.dtype
    training: bool
    fusion: str = "auto"
    groups: int = 2
    affine: bool = True
    seed: int = 0
    channels_last: bool = False

    def label(self) -> str:
        mode = "train" if self.training else "eval"
        return f"{self.layer.to_text()!r} {list(self.shape)} {self.dtype} {mode} fusion={self.fusion}"


def _initialise(module: es.NormAct, seed: int) -> None:
    """Parameters and running estimates away from their defaults, so no test passes by symmetry."""
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.rand(p.shape, generator=gen, dtype=torch.float64) + 0.5)
        for name, b in module.named_buffers():
            values = torch.rand(b.shape, generator=gen, dtype=torch.float64) + 0.5
            b.copy_(values - 1.0 if name.startswith("running_mean") else values)


def run(case: Case, backend: str, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor | None]:
    """Output, input gradient, parameter gradients and buffers after one forward and backward."""
    dtype = dtype or case.dtype
    gen = torch.Generator().manual_seed(case.seed)
    x = torch.randn(case.shape, generator=gen, dtype=torch.float64)
    gy = torch.randn(case.shape, generator=gen, dtype=torch.float64)
    module = es.NormAct(case.layer, case.shape[1], groups=case.groups, affine=case.affine, backend=backend)
    _initialise(module, case.seed)
    module = module.to(torch.float64 if dtype == torch.float64 else torch.float32)
    module.train(case.training)
    x = x.to(dtype)
    if case.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    with tuning(fusion=case.fusion):
        y = module(x)
        y.backward(gy.to(dtype))
    result: dict[str, torch.Tensor | None] = {"y": y.detach(), "dx": x.grad}
    result.update({f"d{name}": p.grad for name, p in module.named_parameters()})
    result.update({name: b.detach().clone() for name, b in module.named_buffers()})
    return result


def _as_float64(value: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(like, dtype=torch.float64) if value is None else value.to(torch.float64)


def mismatches(case: Case, reference: dict, ours: dict, truth: dict | None = None) -> list[str]:
    """Every tensor where `ours` breaks the stated tolerances against `reference` (and `truth`)."""
    problems = []
    for name, ref_value in reference.items():
        like = ours[name] if ours[name] is not None else ref_value
        if like is None:
            continue
        ref = _as_float64(ref_value, like)
        got = _as_float64(ours[name], like)
        true = _as_float64(truth[name], like) if truth is not None else ref
        problem = _compare(ref, got, true, low_precision=truth is not None)
        if problem:
            problems.append(f"{name}: {problem}")
    return problems


def _compare(ref: torch.Tensor, got: torch.Tensor, true: torch.Tensor, *, low_precision: bool) -> str | None:
    ref_ok, got_ok, true_ok = torch.isfinite(ref), torch.isfinite(got), torch.isfinite(true)
    if (~ref_ok & got_ok).any():
        return "finite where the reference is not"
    if (ref_ok & ~got_ok & true_ok).any():
        return "non-finite where the reference (and the float64 truth) is finite"
    both = ref_ok & got_ok & true_ok
    if not low_precision:
        err = (got - ref).abs()[both]
        allowed = F64_TOLERANCE * (1 + ref.abs()[both])
    else:
        err = (got - true).abs()[both]
        allowed = LOW_PRECISION_FACTOR * (ref - true).abs()[both] + LOW_PRECISION_FLOOR * (1 + true.abs()[both])
    if err.numel() and (err > allowed).any():
        worst = int((err / allowed).argmax())
        return f"error {err[worst].item():.3g} above the allowed {allowed[worst].item():.3g}"
    return None


def check(case: Case) -> list[str]:
    """Run `case` on the Triton kernels and the reference; the list of problems (empty when it matches)."""
    reference = run(case, "torch")
    ours = run(case, "triton")
    truth = run(case, "torch", torch.float64) if case.dtype != torch.float64 else None
    return mismatches(case, reference, ours, truth)


def random_shape(rng: random.Random, rank: int) -> tuple[int, ...]:
    """(N, C, *spatial) with tiny sizes that still give several channel blocks, chunks and loop steps."""
    shape = [rng.choice((1, 2, 3)), rng.choice((2, 4, 6))] + [
        rng.randint(1, 4 if rank < 5 else 3) for _ in range(rank - 2)
    ]
    if shape[0] * max(1, int(torch.Size(shape[2:]).numel())) < 2:
        shape[0] = 2  # batch statistics in training need two values per channel (as BatchNorm)
    return tuple(shape)
