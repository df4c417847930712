"""Fused Triton kernels against eager PyTorch, torch.compile and native layers, on a CUDA GPU.

For bn_relu, gn_relu, layernorm, rmsnorm, evonorm_b0 and evonorm_s0 at ResNet-50 activation shapes
(N=64; C x H x W = 256x56x56, 512x28x28, 1024x14x14, 2048x7x7), float32 and bfloat16, it measures the
median time of the forward and of forward+backward of
  (a) the eager reference (`NormAct(backend="torch")`),
  (b) `torch.compile` of the reference,
  (c) ours (`NormAct(backend="triton")`),
  (d) PyTorch's native layers where they exist (BatchNorm2d+ReLU, GroupNorm+ReLU, and GroupNorm(1, C)
      for `layernorm`, which normalises over C, H, W with a per-channel affine) and timm's EvoNorm
      layers when timm is importable;
the achieved bandwidth of ours (bytes the plan moves, from `plan_cost`, over time) as a fraction of
the device's peak; the cold compile time of (b) and (c) per layer (all kernels of forward and
backward, Triton's disk cache empty); one training step of a ResNet-style network with each layer
against BatchNorm2d+ReLU; and token rows: rmsnorm, layernorm_channel and dyt on transformer hidden
states, (tokens, hidden) = (16384, 4096) in bfloat16 as (batch 8, 2048 tokens, 4096), which the layer
reads as the (N, C, L) view a transformer's norm slot hands it, against eager PyTorch, torch.compile,
PyTorch's own RMSNorm/LayerNorm (DyT written in torch) and Liger-Kernel where it is installed.

Targets (H100): ours >= 2x eager and >= 1.0x torch.compile in forward+backward for every layer and
shape; forward of evonorm_s0, gn_relu and layernorm at >= 80% of peak HBM bandwidth; cold compile of
a new candidate <= 1 s; a training step with evonorm_s0 at >= 0.9x the throughput of BatchNorm2d+ReLU.
Writes benchmarks/results/kernels-<device>.md.

    python benchmarks/kernels.py [--layers a,b] [--dtypes float32,bfloat16] [--peak-gbs 3350] [--output DIR]
    python benchmarks/kernels.py --smoke     # the whole pipeline on the CPU interpreter, tiny shapes

Without CUDA the script refuses (exit status 2) unless --smoke is given.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

LAYERS = ("bn_relu", "gn_relu", "layernorm", "rmsnorm", "evonorm_b0", "evonorm_s0")
SHAPES = ((64, 256, 56, 56), (64, 512, 28, 28), (64, 1024, 14, 14), (64, 2048, 7, 7))
SMOKE_SHAPES = ((2, 8, 3, 3),)
TOKEN_LAYERS = ("rmsnorm", "layernorm_channel", "dyt")
TOKEN_SHAPE = (8, 2048, 4096)  # (batch, tokens, hidden): 16384 token rows of 4096
SMOKE_TOKEN_SHAPE = (2, 5, 8)
BANDWIDTH_TARGETS = ("evonorm_s0", "gn_relu", "layernorm")
# Peak HBM bandwidth in GB/s by device name (first match wins); --peak-gbs overrides.
PEAK_GBS = (("H200", 4800.0), ("H100 NVL", 3900.0), ("H100 PCIe", 2000.0), ("H100", 3350.0), ("A100", 2039.0))


@dataclass
class Settings:
    smoke: bool
    device: str
    layers: tuple[str, ...]
    dtypes: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    repeats: int
    peak_gbs: float | None
    output: Path


def parse_args(argv: list[str] | None) -> Settings:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="CPU interpreter, tiny shapes (checks the script)")
    p.add_argument("--layers", default=",".join(LAYERS))
    p.add_argument("--dtypes", default="float32,bfloat16")
    p.add_argument("--peak-gbs", type=float, default=None, help="device peak memory bandwidth in GB/s")
    p.add_argument("--output", type=Path, default=Path(__file__).resolve().parent / "results")
    a = p.parse_args(argv)
    layers = tuple(x for x in a.layers.split(",") if x)
    unknown = sorted(set(layers) - set(LAYERS))
    if unknown:
        p.error(f"unknown layer(s) {unknown}; choose from {', '.join(LAYERS)}")
    dtypes = tuple(x for x in a.dtypes.split(",") if x)
    if set(dtypes) - {"float32", "bfloat16"}:
        p.error("dtypes must be float32 and/or bfloat16")
    return Settings(
        a.smoke,
        "cpu" if a.smoke else "cuda",
        layers,
        dtypes,
        SMOKE_SHAPES if a.smoke else SHAPES,
        1 if a.smoke else 20,
        a.peak_gbs,
        a.output,
    )


def require_device(settings: Settings) -> None:
    import torch

    if settings.smoke:
        os.environ["TRITON_INTERPRET"] = "1"
        return
    if not torch.cuda.is_available():
        print(
            "benchmarks/kernels.py measures GPU kernels and needs a CUDA device; none is visible here. "
            "Run it on a GPU machine, or pass --smoke to check the script on the CPU interpreter.",
            file=sys.stderr,
        )
        raise SystemExit(2)


# --------------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------------


def median_ms(fn: Callable[[], object], settings: Settings, grad_to_none: list | None = None) -> float:
    """Median wall time of `fn` in milliseconds (CUDA events through triton.testing.do_bench on a GPU)."""
    if settings.device == "cuda":
        import triton.testing

        return float(triton.testing.do_bench(fn, warmup=10, rep=100, grad_to_none=grad_to_none))
    fn()
    times = []
    for _ in range(settings.repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def cold_seconds(fn: Callable[[], object], settings: Settings) -> float:
    import torch

    start = time.perf_counter()
    fn()
    if settings.device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


# --------------------------------------------------------------------------------------------------
# Implementations of a layer
# --------------------------------------------------------------------------------------------------


def native_layer(name: str, channels: int):
    """PyTorch's or timm's own module for a library layer, or None where none exists."""
    from torch import nn

    from evonorm_search import effective_groups

    if name == "bn_relu":
        return nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU())
    if name == "gn_relu":
        return nn.Sequential(nn.GroupNorm(effective_groups(channels, 32), channels), nn.ReLU())
    if name == "layernorm":
        return nn.GroupNorm(1, channels)  # normalises over C, H, W with a per-channel affine, as ours
    return None


def timm_layer(name: str, channels: int):
    try:
        from timm.layers import EvoNorm2dB0, EvoNorm2dS0
    except (ImportError, RuntimeError):  # absent, or built against another torch (torchvision's ops fail)
        return None
    if name == "evonorm_b0":
        return EvoNorm2dB0(channels)
    if name == "evonorm_s0":
        return EvoNorm2dS0(channels, group_size=channels // 32 if channels >= 32 else 1)
    return None


def implementations(name: str, channels: int, settings: Settings) -> dict[str, object]:
    import torch

    import evonorm_search as es

    impls: dict[str, object] = {
        "eager": es.NormAct(name, channels, backend="torch"),
        "compile": torch.compile(
            es.NormAct(name, channels, backend="torch"), backend="eager" if settings.smoke else "inductor"
        ),
        "ours": es.NormAct(name, channels, backend="triton"),
    }
    native = native_layer(name, channels)
    if native is not None:
        impls["native"] = native
    timm = timm_layer(name, channels)
    if timm is not None:
        impls["timm"] = timm
    return {k: v.to(settings.device) for k, v in impls.items()}  # type: ignore[attr-defined]


def step_functions(module, x, gy):
    """(forward, forward+backward) closures for one module and input."""

    def forward():
        return module(x)

    def forward_backward():
        module(x).backward(gy)

    return forward, forward_backward


# --------------------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------------------


def layer_rows(settings: Settings) -> tuple[list[list[object]], list[list[object]]]:
    """Timing rows and bandwidth rows for every layer, shape and dtype."""
    import torch

    import evonorm_search as es
    from evonorm_search.compiler import plan_cost

    timing, bandwidth = [], []
    peak = peak_gbs(settings)
    for name in settings.layers:
        cost = plan_cost(es.library.get(name))
        for dtype_name in settings.dtypes:
            dtype = getattr(torch, dtype_name)
            for shape in settings.shapes:
                x = torch.randn(shape, device=settings.device, dtype=dtype, requires_grad=True)
                gy = torch.randn(shape, device=settings.device, dtype=dtype)
                results = {}
                for impl, module in implementations(name, shape[1], settings).items():
                    module.to(dtype)
                    fwd, fwd_bwd = step_functions(module, x, gy)
                    params = [x, *module.parameters()]
                    with torch.no_grad():
                        f = median_ms(fwd, settings)
                    results[impl] = (f, median_ms(fwd_bwd, settings, grad_to_none=params))
                timing.append(_timing_row(name, shape, dtype_name, results))
                bandwidth.append(_bandwidth_row(name, shape, dtype_name, results["ours"], cost, x, peak))
    return timing, bandwidth


def _fmt(ms: float | None) -> str:
    return "—" if ms is None else f"{ms:.3f}"


def _ratio(base: float | None, ours: float) -> str:
    return "—" if base is None else f"{base / ours:.2f}x"


def _timing_row(name, shape, dtype, results) -> list[object]:
    ours_f, ours_fb = results["ours"]
    get = lambda k, i: results[k][i] if k in results else None  # noqa: E731
    row: list[object] = [name, "x".join(map(str, shape)), dtype]
    for i, ours in ((0, ours_f), (1, ours_fb)):
        row += [
            _fmt(get("eager", i)),
            _fmt(get("compile", i)),
            _fmt(ours),
            _fmt(get("native", i)),
            _fmt(get("timm", i)),
        ]
        row += [_ratio(get("eager", i), ours), _ratio(get("compile", i), ours)]
    return row


def _bandwidth_row(name, shape, dtype, ours, cost, x, peak) -> list[object]:
    elements = x.numel()
    itemsize = x.element_size()
    moved_fwd = cost["forward"]["reads_per_element"] + cost["forward"]["writes_per_element"]
    moved_step = moved_fwd + cost["backward"]["reads_per_element"] + cost["backward"]["writes_per_element"]
    gbs_fwd = moved_fwd * elements * itemsize / (ours[0] * 1e-3) / 1e9
    gbs_step = moved_step * elements * itemsize / (ours[1] * 1e-3) / 1e9
    minimal_fwd = 2 * elements * itemsize / (ours[0] * 1e-3) / 1e9  # read x once, write y once
    frac = (lambda v: f"{v / peak:.0%}") if peak else (lambda v: "—")
    return [
        name,
        "x".join(map(str, shape)),
        dtype,
        moved_fwd,
        f"{gbs_fwd:.0f}",
        frac(gbs_fwd),
        frac(minimal_fwd),
        moved_step,
        f"{gbs_step:.0f}",
        frac(gbs_step),
    ]


def compile_rows(settings: Settings) -> list[list[object]]:
    """Cold compile seconds of torch.compile and of ours, forward and backward, per layer (float32)."""
    import torch

    import evonorm_search as es
    from evonorm_search.compiler import clear_cache

    shape = settings.shapes[-1]
    rows = []
    for name in settings.layers:
        x = torch.randn(shape, device=settings.device, requires_grad=True)
        gy = torch.randn(shape, device=settings.device)
        torch._dynamo.reset()
        compiled = torch.compile(
            es.NormAct(name, shape[1], backend="torch").to(settings.device),
            backend="eager" if settings.smoke else "inductor",
        )
        inductor = cold_seconds(lambda m=compiled, x=x, gy=gy: m(x).backward(gy), settings)
        clear_cache()
        ours_module = es.NormAct(name, shape[1], backend="triton").to(settings.device)
        ours = cold_seconds(lambda m=ours_module, x=x, gy=gy: m(x).backward(gy), settings)
        rows.append([name, f"{inductor:.2f}", f"{ours:.2f}", f"{inductor / ours:.1f}x"])
    return rows


def resnet(norm: Callable[[int], object], width: int, stages: int = 4, blocks: int = 2):
    """A ResNet-18-style network (4 stages of 2 basic blocks) whose norm-activation slots are `norm(channels)`."""
    from torch import nn

    class Block(nn.Module):
        def __init__(self, c_in: int, c_out: int, stride: int):
            super().__init__()
            self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
            self.norm1 = norm(c_out)
            self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
            self.norm2 = norm(c_out)
            self.skip = (
                nn.Identity() if stride == 1 and c_in == c_out else nn.Conv2d(c_in, c_out, 1, stride, bias=False)
            )

        def forward(self, x):
            return self.norm2(self.conv2(self.norm1(self.conv1(x)))) + self.skip(x)

    widths = [width * 2**i for i in range(stages)]
    layers: list[nn.Module] = [nn.Conv2d(3, width, 7, 2, 3, bias=False), norm(width), nn.MaxPool2d(3, 2, 1)]
    c_in = width
    for i, c in enumerate(widths):
        layers += [Block(c_in, c, 1 if i == 0 else 2)] + [Block(c, c, 1) for _ in range(blocks - 1)]
        c_in = c
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, 1000)]
    return nn.Sequential(*layers)


def training_rows(settings: Settings) -> list[list[object]]:
    """Images per second of one SGD step with each layer against BatchNorm2d+ReLU (float32)."""
    import torch
    from torch import nn

    import evonorm_search as es

    batch, size, width = (2, 8, 4) if settings.smoke else (64, 224, 64)
    stages, blocks = (2, 1) if settings.smoke else (4, 2)
    x = torch.randn(batch, 3, size, size, device=settings.device)
    labels = torch.randint(0, 1000, (batch,), device=settings.device)

    def throughput(norm) -> float:
        model = resnet(norm, width, stages, blocks).to(settings.device)
        opt = torch.optim.SGD(model.parameters(), lr=0.01)

        def step():
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x), labels).backward()
            opt.step()

        return batch / (median_ms(step, settings) * 1e-3)

    base = throughput(lambda c: nn.Sequential(nn.BatchNorm2d(c), nn.ReLU()))
    rows = [["BatchNorm2d+ReLU (native)", f"{base:.0f}", "1.00x"]]
    for name in settings.layers:
        for backend in ("torch", "triton"):
            ips = throughput(lambda c, n=name, b=backend: es.NormAct(n, c, groups=min(32, c), backend=b))
            rows.append([f"{name} ({'eager' if backend == 'torch' else 'ours'})", f"{ips:.0f}", f"{ips / base:.2f}x"])
    return rows


class TokenView:
    """A library layer in a transformer's norm slot: (N, L, C) in, the (N, C, L) view to the layer, (N, L, C) out."""

    def __init__(self, layer):
        self.layer = layer

    def __call__(self, h):
        return self.layer(h.transpose(1, 2)).transpose(1, 2)

    def parameters(self):
        return self.layer.parameters()


def _native_token_layer(name: str, hidden: int):
    """PyTorch's own module on (N, L, C), or DyT written directly in torch."""
    import torch
    from torch import nn

    if name == "rmsnorm":
        return nn.RMSNorm(hidden, eps=1e-5)
    if name == "layernorm_channel":
        return nn.LayerNorm(hidden, eps=1e-5)

    class DyT(nn.Module):
        def __init__(self):
            super().__init__()
            self.alpha = nn.Parameter(torch.full((1,), 0.5))
            self.weight = nn.Parameter(torch.ones(hidden))
            self.bias = nn.Parameter(torch.zeros(hidden))

        def forward(self, h):
            return torch.tanh(self.alpha * h) * self.weight + self.bias

    return DyT()


def _liger_token_layer(name: str, hidden: int):
    try:
        from liger_kernel.transformers import LigerLayerNorm, LigerRMSNorm
    except (ImportError, RuntimeError):  # absent, or built against another torch or Triton
        return None
    if name == "rmsnorm":
        return LigerRMSNorm(hidden, eps=1e-5)
    if name == "layernorm_channel":
        return LigerLayerNorm(hidden, eps=1e-5)
    return None


def token_implementations(name: str, hidden: int, settings: Settings, dtype) -> dict[str, object]:
    import torch

    import evonorm_search as es

    def normact(backend: str):
        return es.NormAct(name, hidden, backend=backend).to(settings.device, dtype)

    eager = normact("torch")
    impls: dict[str, object] = {
        "eager": TokenView(eager),
        "compile": TokenView(torch.compile(normact("torch"), backend="eager" if settings.smoke else "inductor")),
        "ours": TokenView(normact("triton")),
        "native": _native_token_layer(name, hidden).to(settings.device, dtype),
    }
    liger = None if settings.smoke else _liger_token_layer(name, hidden)
    if liger is not None:
        impls["liger"] = liger.to(settings.device, dtype)
    return impls


def token_rows(settings: Settings) -> list[list[object]]:
    """Forward and forward+backward times on token rows, bfloat16 (float32 in smoke mode: the interpreter)."""
    import torch

    shape = SMOKE_TOKEN_SHAPE if settings.smoke else TOKEN_SHAPE
    dtype_name = "float32" if settings.smoke else "bfloat16"
    dtype = getattr(torch, dtype_name)
    rows = []
    for name in TOKEN_LAYERS:
        h = torch.randn(shape, device=settings.device, dtype=dtype, requires_grad=True)
        gy = torch.randn(shape, device=settings.device, dtype=dtype)
        results = {}
        for impl, module in token_implementations(name, shape[-1], settings, dtype).items():
            fwd, fwd_bwd = step_functions(module, h, gy)
            with torch.no_grad():
                f = median_ms(fwd, settings)
            results[impl] = (f, median_ms(fwd_bwd, settings, grad_to_none=[h, *module.parameters()]))
        rows.append(_token_row(name, shape, dtype_name, results))
    return rows


def _token_row(name, shape, dtype_name, results) -> list[object]:
    get = lambda k, i: results[k][i] if k in results else None  # noqa: E731
    row: list[object] = [name, f"{shape[0] * shape[1]}x{shape[2]}", dtype_name]
    for i in (0, 1):
        ours = results["ours"][i]
        row += [_fmt(get(k, i)) for k in ("eager", "compile", "ours", "native", "liger")]
        row += [_ratio(get("eager", i), ours), _ratio(get("compile", i), ours), _ratio(get("native", i), ours)]
    return row


def peak_gbs(settings: Settings) -> float | None:
    if settings.peak_gbs:
        return settings.peak_gbs
    if settings.device != "cuda":
        return None
    import torch

    name = torch.cuda.get_device_name()
    return next((gbs for key, gbs in PEAK_GBS if key in name), None)


def device_description(settings: Settings) -> tuple[str, str]:
    """(slug for the file name, description for the report)."""
    import torch
    import triton

    versions = f"PyTorch {torch.__version__}, Triton {triton.__version__}"
    if settings.device == "cpu":
        return "smoke", f"CPU interpreter (TRITON_INTERPRET=1), smoke shapes only: not a measurement; {versions}"
    name = torch.cuda.get_device_name()
    slug = "".join(ch for ch in name.lower().replace("nvidia", "") if ch.isalnum() or ch == "-").strip("-") or "gpu"
    peak = peak_gbs(settings)
    return (
        slug,
        f"{name}, peak {peak:.0f} GB/s" if peak else f"{name}, peak bandwidth unknown (pass --peak-gbs); {versions}",
    )


def report(settings: Settings) -> Path:
    from _common import markdown_table

    slug, description = device_description(settings)
    timing, bandwidth = layer_rows(settings)
    impl = ["eager", "compile", "ours", "native", "timm", "vs eager", "vs compile"]
    timing_headers = ["layer", "shape", "dtype", *(f"fwd {h}" for h in impl), *(f"fwd+bwd {h}" for h in impl)]
    token_impl = ["eager", "compile", "ours", "native", "liger", "vs eager", "vs compile", "vs native"]
    token_headers = ["layer", "tokens x hidden", "dtype", *(f"fwd {h}" for h in token_impl)]
    token_headers += [f"fwd+bwd {h}" for h in token_impl]
    bandwidth_headers = [
        "layer",
        "shape",
        "dtype",
        "fwd passes (B/elt x itemsize)",
        "fwd GB/s",
        "fwd % peak",
        "fwd % peak (minimal bytes)",
        "step passes",
        "step GB/s",
        "step % peak",
    ]
    body = [
        f"Device: {description}.",
        "",
        "## Time per call (ms, median) and speed-ups of ours",
        "",
        markdown_table(timing_headers, timing),
        "",
        "## Bandwidth of ours",
        "",
        "Bytes moved are the plan's full-size reads and writes (`plan_cost`); the minimal-bytes column counts "
        "one read of x and one write of y, the floor for any implementation. Targets: forward of "
        f"{', '.join(BANDWIDTH_TARGETS)} at >= 80% of peak.",
        "",
        markdown_table(bandwidth_headers, bandwidth),
        "",
        "## Cold compile (s): forward and backward of a new layer, empty caches",
        "",
        markdown_table(["layer", "torch.compile", "ours", "ours faster by"], compile_rows(settings)),
        "",
        "## Training step of a ResNet-18-style network (images/s, float32)",
        "",
        markdown_table(["norm-activation layer", "images/s", "vs BatchNorm2d+ReLU"], training_rows(settings)),
        "",
        "## Token rows: transformer norms on (tokens, hidden)",
        "",
        "Hidden states (batch, tokens, hidden) stay in that storage; eager, torch.compile and ours get the "
        "(N, C, L) view a transformer's norm slot hands the layer (ours reads it in place), native and Liger "
        "the (N, L, C) tensor itself. Native: nn.RMSNorm, nn.LayerNorm, DyT written in torch (one scalar "
        "alpha). Liger-Kernel: LigerRMSNorm, LigerLayerNorm where it is installed (— where not).",
        "",
        markdown_table(token_headers, token_rows(settings)),
    ]
    settings.output.mkdir(parents=True, exist_ok=True)
    path = settings.output / f"kernels-{slug}.md"
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    path.write_text(f"# Fused kernels\n\nWritten {stamp}.\n\n" + "\n".join(body) + "\n", encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(argv)
    require_device(settings)
    # A private Triton cache, so the cold-compile figures are cold.
    os.environ.setdefault("TRITON_CACHE_DIR", tempfile.mkdtemp(prefix="evonorm-triton-cache-"))
    path = report(settings)
    print(path.read_text())
    print(f"written {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
