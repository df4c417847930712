"""CPU training-step time of the proxies with a DSL layer, against PyTorch's own norm layers and the reference.

A step is one SGD step (momentum 0.9) of a proxy network of a search config (default
examples/quick.yaml: three proxies on MNIST-1D, batch 64, one thread) on batches of its own data.
Every comparison is paired and interleaved: in each of `--rounds` rounds (at least 7) every variant of
a row trains `--steps` steps from the same initial weights, in an order that rotates from round to
round, and the row reports the median over rounds of the per-round time ratio with its range (so a
change in the machine's load during a round weighs on both sides of its ratio).

Sections of the results file (benchmarks/results/cpu-step-<machine>.md):
- Library layers against native modules: for each library layer with a native counterpart (BN-ReLU,
  GN-ReLU, IN-ReLU, LayerNorm, LayerNorm and RMSNorm over C, and the EvoNorm formulas written in
  eager PyTorch), the step time of `NormAct` with the eager backend (what `backend="auto"` runs on
  CPU) and with the reference (`backend="torch"`, what ran before) over the native module's.
- Random candidates: `--random` layers of the search space that pass the cheap rejections, eager over
  reference.
- Memory held for the backward pass: bytes of the distinct tensors autograd saves during one step.
- Levers: what the eager backend tried and measured (fused statistics, a fused affine, an
  `autograd.Function` over the compiler's analytic backward program, torch.compile).
- End to end (`--end-to-end N`): `evonorm-search run CONFIG` wall time with `backend: torch` and
  `backend: auto`, N pairs alternating which runs first.

    python benchmarks/cpu_step.py                      # writes benchmarks/results/cpu-step-<machine>.md
    python benchmarks/cpu_step.py --end-to-end 1       # also the whole quick search, before and after
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
import torch.nn.functional as F
import yaml
from _analytic_backward import analytic_forward
from _common import markdown_table, write_result
from torch import nn

import evonorm_search as es
from evonorm_search.layer import effective_groups
from evonorm_search.proxies.architectures import ARCHITECTURES
from evonorm_search.proxies.data import load_data
from evonorm_search.reference import channel_view
from evonorm_search.search import SearchConfig
from evonorm_search.search.controller import build_checks
from evonorm_search.search.rejection import DuplicateIndex
from evonorm_search.search.space import random_graph

MIN_ROUNDS = 7
ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------------------
# Native counterparts: PyTorch's own modules, and the EvoNorm formulas written directly in PyTorch
# --------------------------------------------------------------------------------------------------


class ChannelLast(nn.Module):
    """A module over the last dim applied to (N, C, *spatial): LayerNorm and RMSNorm over C."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.movedim(1, -1)).movedim(-1, 1)


class Affine(nn.Module):
    """The per-channel y * weight + bias that `NormAct` applies after its layer (affine=True)."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return y * channel_view(self.weight, y) + channel_view(self.bias, y)


class BiasOnly(nn.Module):
    """A per-feature shift over the last dim (nn.RMSNorm has a scale only)."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return y + self.bias


class EvoNormS0(nn.Module):
    """EvoNorm-S0 as its paper writes it: x * sigmoid(v1 x) / group std, then the affine."""

    def __init__(self, channels: int, groups: int, eps: float):
        super().__init__()
        self.groups, self.eps = groups, eps
        self.v1 = nn.Parameter(torch.ones(channels))
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[:2]
        grouped = x.reshape(n, self.groups, -1)
        std = (grouped.var(dim=-1, unbiased=False, keepdim=True) + self.eps).sqrt()
        std = std.expand(n, self.groups, c // self.groups).reshape(n, c, *[1] * (x.dim() - 2))
        y = x * torch.sigmoid(channel_view(self.v1, x) * x) / std
        return y * channel_view(self.weight, x) + channel_view(self.bias, x)


class EvoNormB0(nn.Module):
    """EvoNorm-B0 as its paper writes it: x / max(batch std, v1 x + instance std), a running batch variance."""

    def __init__(self, channels: int, eps: float, momentum: float = 0.1):
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.v1 = nn.Parameter(torch.ones(channels))
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = [0, *range(2, x.dim())]
        if self.training:
            var = x.var(dim=dims, unbiased=False, keepdim=True)
            n = x.numel() // x.shape[1]
            with torch.no_grad():
                self.running_var.mul_(1 - self.momentum).add_(var.reshape(-1) * (self.momentum * n / (n - 1)))
        else:
            var = channel_view(self.running_var, x)
        instance = x.var(dim=list(range(2, x.dim())), unbiased=False, keepdim=True)
        y = x / torch.maximum((var + self.eps).sqrt(), channel_view(self.v1, x) * x + (instance + self.eps).sqrt())
        return y * channel_view(self.weight, x) + channel_view(self.bias, x)


def _batch_norm(dims: int, c: int, eps: float) -> nn.Module:
    return (nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d)(c, eps=eps)


def _instance_norm(dims: int, c: int, eps: float) -> nn.Module:
    return (nn.InstanceNorm1d if dims == 1 else nn.InstanceNorm2d)(c, eps=eps, affine=True)


# layer -> (what the table calls the native module, its factory over (spatial dims, channels, groups, eps)).
# Each computes the DSL layer's function with `NormAct`'s affine: the activation, then y * weight + bias.
NATIVE: dict[str, tuple[str, Callable[[int, int, int, float], nn.Module]]] = {
    "bn_relu": (
        "BatchNorm, ReLU, affine",
        lambda d, c, g, e: nn.Sequential(_batch_norm(d, c, e), nn.ReLU(), Affine(c)),
    ),
    "gn_relu": (
        "GroupNorm, ReLU, affine",
        lambda d, c, g, e: nn.Sequential(nn.GroupNorm(g, c, eps=e), nn.ReLU(), Affine(c)),
    ),
    "in_relu": (
        "InstanceNorm (affine), ReLU, affine",
        lambda d, c, g, e: nn.Sequential(_instance_norm(d, c, e), nn.ReLU(), Affine(c)),
    ),
    "layernorm": ("GroupNorm with one group", lambda d, c, g, e: nn.GroupNorm(1, c, eps=e)),
    "layernorm_channel": ("LayerNorm over C", lambda d, c, g, e: ChannelLast(nn.LayerNorm(c, eps=e))),
    "rmsnorm": (
        "RMSNorm over C, bias (no native row: the eager backend runs the reference)",
        lambda d, c, g, e: nn.Sequential(ChannelLast(nn.RMSNorm(c, eps=e)), ChannelLast(BiasOnly(c))),
    ),
    "evonorm_s0": ("the formula in eager PyTorch", lambda d, c, g, e: EvoNormS0(c, g, e)),
    "evonorm_b0": ("the formula in eager PyTorch", lambda d, c, g, e: EvoNormB0(c, e)),
}


# --------------------------------------------------------------------------------------------------
# Proxies and paired timing
# --------------------------------------------------------------------------------------------------

Factory = Callable[[int], nn.Module]


class Analytic(nn.Module):
    """A `NormAct` run through `_analytic_backward` (the lever the eager backend did not take)."""

    def __init__(self, layer: es.NormAct):
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return analytic_forward(self.layer, x)


def dsl_factory(layer: es.Graph, config: SearchConfig, backend: str) -> Factory:
    return lambda c: es.NormAct(layer, c, groups=config.groups, eps=config.eps, backend=backend)


def native_factory(name: str, config: SearchConfig, dims: int) -> Factory:
    make = NATIVE[name][1]
    return lambda c: make(dims, c, effective_groups(c, config.groups), config.eps)


class Bench:
    """The proxies of a config on its own data: builds each proxy around a factory and times its steps."""

    def __init__(self, config: SearchConfig, steps: int):
        self.config = config
        self.steps = steps
        self.data = load_data(config.data)
        self.dims = self.data.spatial_dims
        self.classes = int(self.data.train_y.max()) + 1
        generator = torch.Generator().manual_seed(0)
        size = min(config.training.batch_size, len(self.data.train_y))
        self.batches = [
            torch.randperm(len(self.data.train_y), generator=generator)[:size] for _ in range(max(steps, 4))
        ]

    def model(self, arch_index: int, factory: Factory) -> nn.Module:
        arch = self.config.architectures[arch_index]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return ARCHITECTURES[arch.kind].build(arch, self.dims, self.data.in_channels, self.classes, factory)

    def step_seconds(self, model: nn.Module) -> float:
        """Seconds per step over `steps` steps (after one untimed step: first-call costs are not a step's)."""
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        model.train()

        def step(idx: torch.Tensor) -> None:
            loss = F.cross_entropy(model(self.data.train_x[idx]), self.data.train_y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        step(self.batches[0])
        start = time.perf_counter()
        for i in range(self.steps):
            step(self.batches[i % len(self.batches)])
        return (time.perf_counter() - start) / self.steps

    def paired(self, arch_index: int, factories: dict[str, Factory], rounds: int) -> dict[str, list[float]]:
        """Per variant, its step seconds in each round; the order of variants rotates every round."""
        names = list(factories)
        times: dict[str, list[float]] = {n: [] for n in names}
        for r in range(rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                times[name].append(self.step_seconds(self.model(arch_index, factories[name])))
        return times


def ratio_stats(numerator: list[float], denominator: list[float]) -> tuple[float, float, float]:
    ratios = [a / b for a, b in zip(numerator, denominator, strict=True)]
    return statistics.median(ratios), min(ratios), max(ratios)


def fmt_ratio(stats: tuple[float, float, float]) -> str:
    median, low, high = stats
    return f"{median:.2f}x [{low:.2f}, {high:.2f}]"


# --------------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------------


def library_section(bench: Bench, layers: list[str], rounds: int) -> tuple[str, dict]:
    config, archs = bench.config, bench.config.architectures
    rows, raw = [], {}
    for name in layers:
        graph = es.library.get(name)
        row_eager, row_ref = [name, NATIVE[name][0]], []
        for a, arch in enumerate(archs):
            times = bench.paired(
                a,
                {
                    "native": native_factory(name, config, bench.dims),
                    "eager": dsl_factory(graph, config, "eager"),
                    "reference": dsl_factory(graph, config, "torch"),
                },
                rounds,
            )
            raw[(name, arch.label)] = times
            row_eager.append(fmt_ratio(ratio_stats(times["eager"], times["native"])))
            row_ref.append(fmt_ratio(ratio_stats(times["reference"], times["native"])))
            print(f"  {name} on {arch.label}: eager {row_eager[-1]}, reference {row_ref[-1]}", flush=True)
        rows.append([*row_eager, *row_ref])
    headers = ["layer", "native counterpart"]
    headers += [f"eager / native, {a.label}" for a in archs] + [f"reference / native, {a.label}" for a in archs]
    body = (
        "Step time of the DSL layer over the native one (median over rounds of the per-round ratio, "
        '[min, max]); eager: what `backend="auto"` runs on CPU; reference: `backend="torch"`, what ran '
        "before. Each native counterpart computes the same function as the DSL layer, whose module applies a "
        "per-channel affine after the activation (`affine=True`, as in the proxies).\n\n"
        + markdown_table(headers, rows)
    )
    return body, raw


def random_layers(config: SearchConfig, count: int, seed: int) -> list[es.Graph]:
    """`count` random layers of the search space that pass the cheap rejections (no two alike)."""
    space = config.build_space()
    index = DuplicateIndex()
    checks = build_checks(config, index)
    rng = random.Random(seed)
    found: list[es.Graph] = []
    for i in range(100_000):
        if len(found) == count:
            return found
        graph = random_graph(space, rng)
        verdict = checks.run(graph)
        if verdict.rejection is None:  # duplicates of a layer found before are rejected by the index
            index.add(i, verdict.facts.canonical_hash, verdict.facts.fingerprint)
            found.append(graph)
    raise RuntimeError(f"only {len(found)} of {count} random candidates passed the cheap rejections")


def random_section(bench: Bench, graphs: list[es.Graph], rounds: int) -> str:
    config, archs = bench.config, bench.config.architectures
    per_arch: dict[str, list[float]] = {a.label: [] for a in archs}
    native = 0
    for graph in graphs:
        native += es.eager.native_binding(graph) is not None
        for a, arch in enumerate(archs):
            times = bench.paired(
                a,
                {"eager": dsl_factory(graph, config, "eager"), "reference": dsl_factory(graph, config, "torch")},
                rounds,
            )
            per_arch[arch.label].append(ratio_stats(times["reference"], times["eager"])[0])
    rows = [
        [label, len(values), f"{statistics.median(values):.2f}x", f"{min(values):.2f}x", f"{max(values):.2f}x"]
        for label, values in per_arch.items()
    ]
    return (
        f"{len(graphs)} random layers of the search space that pass the cheap rejections ({native} of them a "
        "native row's canonical form); per layer the median over rounds of reference / eager step time "
        "(above 1: eager faster), then the median and range over layers.\n\n"
        + markdown_table(["proxy", "layers", "median speed-up", "min", "max"], rows)
    )


def saved_bytes(bench: Bench, arch_index: int, factory: Factory) -> int:
    """Bytes of the distinct tensors autograd keeps for the backward pass of one training step."""
    model = bench.model(arch_index, factory)
    model.train()
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    idx = bench.batches[0]
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = F.cross_entropy(model(bench.data.train_x[idx]), bench.data.train_y[idx])
    loss.backward()
    return sum(storages.values())


def memory_section(bench: Bench, layers: list[str]) -> str:
    config, archs = bench.config, bench.config.architectures
    rows = []
    for name in layers:
        graph = es.library.get(name)
        for a, arch in enumerate(archs):
            sizes = [
                saved_bytes(bench, a, factory)
                for factory in (
                    native_factory(name, config, bench.dims),
                    dsl_factory(graph, config, "eager"),
                    dsl_factory(graph, config, "torch"),
                )
            ]
            rows.append([name, arch.label, *(f"{s / 2**20:.2f}" for s in sizes), f"{sizes[1] / sizes[0]:.2f}x"])
    return (
        "MiB of distinct tensors autograd saves for the backward pass of one step (what limits the batch "
        "size on a small machine), counted by `torch.autograd.graph.saved_tensors_hooks`.\n\n"
        + markdown_table(["layer", "proxy", "native", "eager", "reference", "eager / native"], rows)
    )


def _micro(fn: Callable[[], object], repeats: int, rounds: int) -> list[float]:
    """Microseconds per call of `fn`, one figure per round."""
    for _ in range(10):
        fn()
    out = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        out.append((time.perf_counter() - start) / repeats * 1e6)
    return out


def _interleaved(fns: dict[str, Callable[[], object]], repeats: int, rounds: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            times[name] += _micro(fn, repeats, 1)
    return times


def statistic_lever(shape: tuple[int, ...], groups: int, repeats: int, rounds: int) -> str:
    x = torch.randn(shape)
    reductions = {
        "batch": [0, *range(2, x.dim())],
        "layer": list(range(1, x.dim())),
        "instance": list(range(2, x.dim())),
        "channel": [1],
    }
    rows = []
    for axis, dims in reductions.items():
        t = _interleaved(
            {
                "two-pass": lambda d=dims: torch.square(x - x.mean(d, keepdim=True)).mean(d, keepdim=True),
                "var_mean": lambda d=dims: torch.var_mean(x, dim=d, correction=0, keepdim=True),
            },
            repeats,
            rounds,
        )
        rows.append([axis, f"{statistics.median(t['two-pass']):.1f}", f"{statistics.median(t['var_mean']):.1f}"])
    grouped = x.reshape(shape[0], groups, -1)
    t = _interleaved(
        {
            "two-pass": lambda: torch.square(grouped - grouped.mean(-1, keepdim=True)).mean(-1, keepdim=True),
            "var_mean": lambda: torch.var_mean(grouped, dim=-1, correction=0, keepdim=True),
        },
        repeats,
        rounds,
    )
    rows.append(["group", f"{statistics.median(t['two-pass']):.1f}", f"{statistics.median(t['var_mean']):.1f}"])
    return markdown_table(["axis", "two-pass mean of squared deviations (us)", "torch.var_mean (us)"], rows)


def affine_lever(shape: tuple[int, ...], repeats: int, rounds: int) -> str:
    x = torch.randn(shape, requires_grad=True)
    g = torch.randn(shape)
    w = torch.randn(shape[1], requires_grad=True)
    b = torch.randn(shape[1], requires_grad=True)
    view = [1, -1, *[1] * (len(shape) - 2)]

    def mul_add() -> None:
        (x * w.reshape(view) + b.reshape(view)).backward(g)

    def addcmul() -> None:
        torch.addcmul(b.reshape(view), x, w.reshape(view)).backward(g)

    t = _interleaved({"mul_add": mul_add, "addcmul": addcmul}, repeats, rounds)
    return markdown_table(
        ["affine y * w + b, forward and backward", "us"],
        [
            ["product and sum", f"{statistics.median(t['mul_add']):.1f}"],
            ["one addcmul", f"{statistics.median(t['addcmul']):.1f}"],
        ],
    )


def _layer_fb(layer: nn.Module, x0: torch.Tensor, g: torch.Tensor) -> Callable[[], None]:
    x = x0.clone().requires_grad_()
    return lambda: layer(x).backward(g)


def analytic_lever(
    graphs: dict[str, es.Graph], shape: tuple[int, ...], config: SearchConfig, repeats: int, rounds: int
) -> str:
    """Layer forward and backward: autograd through the reference, against the analytic-backward Function,
    after checking that the two agree."""
    torch.manual_seed(0)
    x0, g = torch.randn(shape), torch.randn(shape)
    rows, speedups = [], []
    for label, graph in graphs.items():
        layer = es.NormAct(graph, shape[1], groups=config.groups, eps=config.eps, backend="torch")
        analytic = Analytic(layer)
        xr, xa = x0.clone().requires_grad_(), x0.clone().requires_grad_()
        layer(xr).backward(g)
        analytic(xa).backward(g)
        if not torch.allclose(xr.grad, xa.grad, rtol=1e-4, atol=1e-4, equal_nan=True):
            raise AssertionError(f"the analytic backward disagrees with the reference on {label}")
        t = _interleaved({"autograd": _layer_fb(layer, x0, g), "analytic": _layer_fb(analytic, x0, g)}, repeats, rounds)
        auto, ana = statistics.median(t["autograd"]), statistics.median(t["analytic"])
        speedups.append(auto / ana)
        if not label.startswith("random"):
            rows.append([label, f"{auto:.0f}", f"{ana:.0f}", f"{auto / ana:.2f}x"])
    randoms = speedups[len(rows) :]
    if randoms:
        rows.append(
            [
                f"{len(randoms)} random layers (median [min, max])",
                "",
                "",
                f"{statistics.median(randoms):.2f}x [{min(randoms):.2f}, {max(randoms):.2f}]",
            ]
        )
    return markdown_table(
        ["layer", "autograd through the reference (us)", "analytic-backward Function (us)", "speed-up"], rows
    )


def compile_lever(shape: tuple[int, ...], config: SearchConfig, repeats: int, rounds: int) -> str:
    """Inductor's compile time for a layer it has never seen, in a fresh kernel cache: the first compile of
    the process (which also starts inductor), then a second layer's (what each new candidate would pay,
    per input shape), and the compiled layer's step against the reference."""
    x0, g = torch.randn(shape), torch.randn(shape)
    rows = []
    previous = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    with tempfile.TemporaryDirectory() as cache:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache  # no kernel of an earlier run can be served
        for order, name in enumerate(("evonorm_s0", "evonorm_b0")):
            layer = es.NormAct(name, shape[1], groups=config.groups, eps=config.eps, backend="torch")
            compiled = torch.compile(layer)
            start = time.perf_counter()
            _layer_fb(compiled, x0, g)()
            seconds = time.perf_counter() - start
            t = _interleaved(
                {"reference": _layer_fb(layer, x0, g), "compiled": _layer_fb(compiled, x0, g)}, repeats, rounds
            )
            when = "first compile of the process" if order == 0 else "a second layer, inductor warm"
            rows.append(
                [
                    name,
                    when,
                    f"{seconds:.1f}",
                    f"{statistics.median(t['compiled']):.0f}",
                    f"{statistics.median(t['reference']):.0f}",
                ]
            )
    if previous is None:
        os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)
    else:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = previous
    return "A new temporary kernel cache: nothing is served from an earlier compile.\n\n" + markdown_table(
        ["layer", "compile", "compile forward and backward (s)", "compiled step (us)", "reference step (us)"], rows
    )


def rmsnorm_lever(shape: tuple[int, ...], config: SearchConfig, repeats: int, rounds: int) -> str:
    """RMSNorm over C: the reference's ops against `F.rms_norm` on the channels-last view (what a native
    row would run), forward and backward of one layer with the module's affine."""
    x0, g = torch.randn(shape), torch.randn(shape)
    reference = es.NormAct("rmsnorm", shape[1], eps=config.eps, backend="torch")
    native = nn.Sequential(ChannelLast(nn.RMSNorm(shape[1], eps=config.eps)), ChannelLast(BiasOnly(shape[1])))
    t = _interleaved({"reference": _layer_fb(reference, x0, g), "native": _layer_fb(native, x0, g)}, repeats, rounds)
    return markdown_table(
        ["rmsnorm, forward and backward", "us"],
        [
            ["the reference (x / sqrt(mean(x^2) + eps), affine)", f"{statistics.median(t['reference']):.0f}"],
            ["F.rms_norm over the moved view, then the bias", f"{statistics.median(t['native']):.0f}"],
        ],
    )


def end_to_end_section(config_path: Path, pairs: int) -> str:
    """`evonorm-search run` wall seconds with the reference and with the eager backend, pairs alternating."""
    text = yaml.safe_load(config_path.read_text())
    times: dict[str, list[float]] = {"torch": [], "auto": []}
    with tempfile.TemporaryDirectory() as tmp:
        for p in range(pairs):
            for backend in ["torch", "auto"] if p % 2 == 0 else ["auto", "torch"]:
                path = Path(tmp) / f"{backend}-{p}.yaml"
                # The search itself: its fidelity ladder's target runs would add the same work to both sides.
                path.write_text(yaml.safe_dump({**text, "backend": backend, "fidelities": None}))
                db = f"sqlite:///{Path(tmp) / f'{backend}-{p}.db'}"
                start = time.perf_counter()
                subprocess.run(
                    [sys.executable, "-m", "evonorm_search", "run", str(path), "--db", db],
                    check=True,
                    cwd=ROOT,
                    stdout=subprocess.DEVNULL,
                )
                times[backend].append(time.perf_counter() - start)
    rows = [
        [
            str(p + 1),
            f"{times['torch'][p]:.0f}",
            f"{times['auto'][p]:.0f}",
            f"{times['torch'][p] / times['auto'][p]:.2f}x",
        ]
        for p in range(pairs)
    ]
    return (
        f"`evonorm-search run {config_path.relative_to(ROOT) if config_path.is_relative_to(ROOT) else config_path}` "
        "(local Ray, SQLite, without its fidelity ladder), wall seconds; before: `backend: torch`, after: "
        "`backend: auto` (eager on CPU).\n\n" + markdown_table(["pair", "before (s)", "after (s)", "speed-up"], rows)
    )


# --------------------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> Path:
    torch.set_num_threads(1)
    config = SearchConfig.from_yaml(Path(args.config))
    bench = Bench(config, args.steps)
    layers = [name for name in args.layers.split(",") if name]
    if unknown := [n for n in layers if n not in NATIVE]:
        raise SystemExit(f"no native counterpart for {', '.join(unknown)}; choose from {', '.join(NATIVE)}")
    sections = [
        f"Config `{args.config}`, {args.rounds} rounds of {args.steps} steps per variant, one thread; "
        "no cache serves any figure (every one is measured in this run).",
    ]
    print("library layers", flush=True)
    library_body, _ = library_section(bench, layers, args.rounds)
    sections.append("## Library layers against native modules\n\n" + library_body)
    print("random candidates", flush=True)
    graphs = random_layers(config, args.random, args.seed)
    sections.append("## Random candidates\n\n" + random_section(bench, graphs, args.rounds))
    print("memory", flush=True)
    sections.append("## Memory held for the backward pass\n\n" + memory_section(bench, layers))
    print("levers", flush=True)
    shape = tuple(args.lever_shape)
    levers = [
        "## Levers\n\nMeasured on one layer input of the proxies' shape "
        f"{list(shape)} (float32, one thread), median over {args.rounds} interleaved rounds. Each PyTorch op "
        "costs a few microseconds of dispatch at this size whatever it computes, so what pays is fewer ops.",
        "### Statistics: two passes or `torch.var_mean`\n\n"
        + statistic_lever(shape, min(config.groups, shape[1]), args.repeats, args.rounds),
        "### The affine: a product and a sum, or one `addcmul` (with autograd)\n\n"
        + affine_lever(shape, args.repeats, args.rounds),
        "### An `autograd.Function` over the compiler's analytic backward program\n\n"
        + analytic_lever(
            {"evonorm_s0": es.library.get("evonorm_s0"), "evonorm_b0": es.library.get("evonorm_b0")}
            | {f"random_{i}": g for i, g in enumerate(graphs)},
            shape,
            config,
            args.repeats,
            args.rounds,
        ),
    ]
    levers.append(
        "### RMSNorm over C: the reference, or `F.rms_norm` (why `NATIVE` has no RMSNorm row)\n\n"
        + rmsnorm_lever(shape, config, args.repeats, args.rounds)
    )
    if args.compile:
        levers.append(
            "### torch.compile (inductor), per layer and input shape\n\n"
            + compile_lever(shape, config, args.repeats, args.rounds)
        )
    sections += levers
    if args.end_to_end:
        print("end to end", flush=True)
        sections.append("## End to end\n\n" + end_to_end_section(Path(args.config).resolve(), args.end_to_end))
    return write_result(
        "cpu-step", "CPU step time: the eager backend against native norm layers", "\n\n".join(sections)
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "examples" / "quick.yaml"))
    parser.add_argument("--rounds", type=int, default=MIN_ROUNDS)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per variant and round")
    parser.add_argument("--random", type=int, default=20, help="random candidates")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layers", default=",".join(NATIVE), help="library layers with a native counterpart")
    parser.add_argument("--repeats", type=int, default=200, help="calls per round in the lever micro-benchmarks")
    parser.add_argument("--lever-shape", type=int, nargs="+", default=[64, 16, 20])
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="skip the torch.compile lever")
    parser.add_argument("--end-to-end", type=int, default=0, metavar="PAIRS", help="pairs of whole searches")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: a check that the script runs")
    args = parser.parse_args(argv)
    if args.rounds < MIN_ROUNDS and not args.smoke:
        parser.error(f"--rounds must be at least {MIN_ROUNDS}: a comparison is the median of that many paired rounds")
    print(f"wrote {run(args)}")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
