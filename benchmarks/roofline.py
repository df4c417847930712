"""The memory roofline of every library layer: the plan the compiler chooses at each shape, the bytes it
moves per element against the minimum, and the registers and spills of its kernels for a GPU target.

Normalization layers are memory-bound, so their speed is the bytes they move. For each library layer,
at ResNet-50 stage shapes (N=64; C 256/512/1024/2048; HW 56/28/14/7) and transformer rows
(16,384 x 4,096), in float32 and bfloat16, the table gives:
- the plan of each direction (forward in training, backward, inference): `single` (one read of every
  input), `fused` (two loops over each program's slice, the second read mostly from L2) or `split`
  (kernels per pass with partials and combines), from `plan_cost(..., shape=...)`, which follows the
  launchers' own choice;
- bytes per element moved and the fraction of the minimum (every input read once, every output
  written once);
- the most registers per thread and the spilled bytes over the kernels that run, from Triton's real
  compiler for the target (`compile_ahead(..., resources=True)`; no GPU needed), and the CTAs of each
  single-pass program (a tile past one CTA's budget spans a thread block cluster of 2 or 4 where the
  target has them and the installed Triton compiles them).

With a CUDA device (and without --no-time) it also times forward and forward + backward against eager
PyTorch and `torch.compile` of the reference module, and reports our forward's bandwidth in TB/s.

    python benchmarks/roofline.py [--layers a,b] [--dtypes float32,bfloat16] [--shapes 64x256x56x56,...]
                                  [--target cuda:90] [--no-time] [--output DIR]
                                  [--budgets 16384:8192,...] [--clusters 1,2,4] [--channels-last]

Writes benchmarks/results/roofline-<machine>.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # Triton 3.9+ warns when it is unset; 1 is its default
os.environ.pop("TRITON_INTERPRET", None)

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
import triton
from _common import markdown_table, write_result

from evonorm_search import NormAct, library
from evonorm_search.compiler import plan_cost, runtime
from evonorm_search.compiler.ahead import compile_ahead

SHAPES = ((64, 256, 56, 56), (64, 512, 28, 28), (64, 1024, 14, 14), (64, 2048, 7, 7), (16384, 4096))
DTYPES = ("float32", "bfloat16")
GROUPS = 32
DIRECTIONS = ("forward", "backward", "inference")
SWEEP_LAYERS = ("gn_relu", "evonorm_s0")  # group statistics: the ResNet shapes where single-pass stops
SWEEP_HEADERS = ["setting", "layer", "shape", "dtype", "plan fwd / bwd / inf", "bytes/elem", "spill bytes",
                 "single-pass kernels (blocks/warps regs spills)"]  # fmt: skip


def parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(d) for d in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a shape is N x C [x spatial...], like 64x256x56x56; got {text!r}") from None
    if len(shape) < 2 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"a shape is N x C [x spatial...] of positive sizes; got {text!r}")
    return shape


def parse_arguments() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layers", default=",".join(library.names()), help="library layers, comma-separated")
    p.add_argument("--dtypes", default=",".join(DTYPES), help="float32 and/or bfloat16")
    p.add_argument("--shapes", default=None, help="shapes like 64x256x56x56, comma-separated (default: the table's)")
    p.add_argument("--target", default="cuda:90", help="CUDA target for registers and spills (default: Hopper)")
    p.add_argument("--no-time", action="store_true", help="do not time on a CUDA device even if one is present")
    p.add_argument("--output", type=Path, default=None, help="results folder (default: benchmarks/results)")
    p.add_argument(
        "--budgets", default=None,
        help="single-pass budgets to compare, FORWARD:BACKWARD elements per program, comma-separated "
        f"(e.g. 16384:4096,32768:16384): a section of registers and spills for {', '.join(SWEEP_LAYERS)}",
    )  # fmt: skip
    p.add_argument(
        "--channels-last", action="store_true",
        help=f"add a section of {', '.join(SWEEP_LAYERS)} on channels-last inputs, with and without its cap",
    )  # fmt: skip
    p.add_argument(
        "--clusters", default=None,
        help="most CTAs per single-pass program to compare, comma-separated (e.g. 1,2,4): a section of plans, "
        f"registers and spills for {', '.join(SWEEP_LAYERS)} at the default budgets",
    )  # fmt: skip
    args = p.parse_args()
    args.layers = args.layers.split(",")
    unknown = sorted(set(args.layers) - set(library.names()))
    if unknown:
        p.error(f"unknown layer(s) {unknown}; the library has {', '.join(library.names())}")
    args.dtypes = args.dtypes.split(",")
    if not set(args.dtypes) <= set(DTYPES):
        p.error(f"--dtypes takes {' and/or '.join(DTYPES)}, got {args.dtypes}")
    try:
        args.shapes = SHAPES if args.shapes is None else tuple(parse_shape(s) for s in args.shapes.split(","))
    except argparse.ArgumentTypeError as e:
        p.error(str(e))
    try:
        args.budgets = None if args.budgets is None else [parse_budget(b) for b in args.budgets.split(",")]
        args.clusters = None if args.clusters is None else [parse_cluster(c) for c in args.clusters.split(",")]
    except argparse.ArgumentTypeError as e:
        p.error(str(e))
    if args.output is not None:
        import _common

        _common.RESULTS = args.output
    return args


def parse_budget(text: str) -> tuple[int, int]:
    try:
        forward, backward = (int(v) for v in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"a budget is FORWARD:BACKWARD elements, like 16384:4096; got {text!r}"
        ) from None
    if min(forward, backward) < 1 or forward & (forward - 1) or backward & (backward - 1):
        raise argparse.ArgumentTypeError(f"budgets are positive powers of two (tiles are); got {text!r}")
    return forward, backward


def parse_cluster(text: str) -> int:
    try:
        ctas = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a cluster is a number of CTAs, like 2; got {text!r}") from None
    if ctas not in (1, 2, 4, 8):
        raise argparse.ArgumentTypeError(f"clusters of 1, 2, 4 or 8 CTAs (portable sizes); got {text!r}")
    return ctas


def shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape)


def plan_columns(
    name: str, shape: tuple[int, ...], dtype: str, channels_last: bool = False
) -> tuple[list[object], dict]:
    cost = plan_cost(library.get(name), shape=shape, dtype=dtype, groups=GROUPS, channels_last=channels_last)
    chosen = {d: cost[d]["chosen"] for d in DIRECTIONS}
    runs = " / ".join("+".join(stage["run"] for stage in chosen[d]["stages"]) or "-" for d in DIRECTIONS)
    kernels = " / ".join(str(chosen[d]["kernels"]) for d in DIRECTIONS)
    moved = " / ".join(str(chosen[d]["bytes_per_element"]) for d in DIRECTIONS)
    minimum = " / ".join(str(chosen[d]["minimum_bytes_per_element"]) for d in DIRECTIONS)
    fraction = " / ".join(f"{chosen[d]['fraction_of_minimum']:.0%}" for d in DIRECTIONS)
    return [runs, kernels, moved, minimum, fraction], chosen


def resource_columns(name: str, shape: tuple[int, ...], dtype: str, target: str) -> list[object]:
    report = compile_ahead(name, target=target, shape=shape, dtype=getattr(torch, dtype), groups=GROUPS, resources=True)
    passes = [k for k in report.kernels if k.blocks is not None]  # combines are tiny; shown anyway below
    registers = max(k.registers for k in report.kernels)
    spills = sum(k.spill_bytes for k in report.kernels)
    singles = [k for k in passes if "_w" in k.kernel]
    detail = ", ".join(f"{single_kernel(k)} {k.registers}r" for k in singles)
    return [registers, spills, detail or "-"]


def single_kernel(kernel) -> str:
    """`bwd_train_w0 8x4096/32w x4 CTAs`: a single-pass kernel's tile, warps per CTA, and cluster."""
    cluster = f" x{kernel.ctas} CTAs" if kernel.ctas > 1 else ""
    return f"{kernel.kernel} {kernel.blocks[0]}x{kernel.blocks[1]}/{kernel.num_warps}w{cluster}"


def timed(fn, device: torch.device) -> float:
    return triton.testing.do_bench(fn, warmup=10, rep=50) / 1e3  # seconds


def time_columns(name: str, shape: tuple[int, ...], dtype: str, chosen: dict) -> list[object]:
    """Forward and forward + backward (ms) of ours, eager and torch.compile; our forward's TB/s."""
    device = torch.device("cuda")
    dt = getattr(torch, dtype)
    x = torch.randn(shape, device=device, dtype=dt, requires_grad=True)
    gy = torch.randn(shape, device=device, dtype=dt)
    ours = NormAct(name, shape[1], groups=GROUPS, backend="triton").to(device)
    eager = NormAct(name, shape[1], groups=GROUPS, backend="torch").to(device)
    compiled = torch.compile(eager)
    results = []
    for module in (ours, eager, compiled):
        forward = timed(lambda m=module: m(x), device)
        step = timed(lambda m=module: m(x).backward(gy), device)
        results.append((forward, step))
    moved = chosen["forward"]["bytes_per_element"] * x.numel()
    bandwidth = moved / results[0][0] / 1e12
    cells = [f"{f * 1e3:.3f} / {s * 1e3:.3f}" for f, s in results]
    speedup_eager = results[1][1] / results[0][1]
    speedup_compile = results[2][1] / results[0][1]
    return [*cells, f"{bandwidth:.2f}", f"{speedup_eager:.2f}x", f"{speedup_compile:.2f}x"]


def sweep_rows(
    args: argparse.Namespace, label: str, changes: dict, clean: dict, channels_last: bool = False
) -> list[list[object]]:
    """Rows of a sweep under one tuning: the plans and spills of the group-statistic layers at the ResNet
    shapes. `clean[label, dtype]` records whether nothing spilled."""
    rows = []
    with runtime.tuning(**changes):
        for name in SWEEP_LAYERS:
            for shape in [s for s in args.shapes if len(s) == 4]:
                for dtype in args.dtypes:
                    plan, _ = plan_columns(name, shape, dtype, channels_last)
                    report = compile_ahead(name, target=args.target, shape=shape, dtype=getattr(torch, dtype),
                                           groups=GROUPS, resources=True, channels_last=channels_last)  # fmt: skip
                    spills = sum(k.spill_bytes for k in report.kernels)
                    clean[label, dtype] = clean.get((label, dtype), True) and spills == 0
                    singles = [k for k in report.kernels if k.blocks is not None and "_w" in k.kernel]
                    detail = ", ".join(f"{single_kernel(k)} {k.registers}r {k.spill_bytes}B" for k in singles)
                    rows.append([label, name, shape_text(shape), dtype, plan[0], plan[2], spills, detail or "-"])
                    print(f"{label}: {name} {shape_text(shape)} {dtype}: {plan[0]}, spills {spills}", flush=True)
    return rows


def verdict(clean: dict) -> str:
    return "; ".join(f"{label} {dtype} {'no spills' if ok else 'spills'}" for (label, dtype), ok in clean.items())


def budget_section(args: argparse.Namespace) -> str:
    """The single-pass budget, chosen by measurement: for each candidate (elements one CTA holds, forward
    and backward), the plans and spills of the group-statistic layers at the ResNet shapes, on one CTA
    per program. A budget is usable only where nothing spills; the largest usable one is what
    `Tuning.single_pass` keeps."""
    rows, clean = [], {}
    for budget in args.budgets:  # for every input width, without clusters
        rows += sweep_rows(args, f"{budget[0]}:{budget[1]}", {"single_pass": budget, "cluster": 1}, clean)
    tuned = runtime.Tuning()
    wide, narrow = tuned.single_pass, tuned.single_pass_16bit or tuned.single_pass
    return (
        "\n## Single-pass budgets compared\n\n"
        f"Elements one single-pass program may hold (forward:backward), applied here to every input width "
        f"and on one CTA per program; `Tuning.single_pass` keeps {wide[0]}:{wide[1]} for 32-bit inputs and "
        f"`Tuning.single_pass_16bit` {narrow[0]}:{narrow[1]} for 16-bit ones, per CTA. Forward tiles above "
        "16,384 elements and backward tiles above 4,096 run 32 warps (a thread then has at most 64 "
        "registers). Spill bytes per layer and shape from ptxas for the target, over all its kernels.\n\n"
        + markdown_table(SWEEP_HEADERS, rows)
        + f"\n\nVerdict per budget and dtype: {verdict(clean)}.\n"
    )


def channels_last_section(args: argparse.Namespace) -> str:
    """The channels-last cap, chosen by measurement: the group-statistic layers on channels-last inputs
    at the ResNet shapes, under the budgets of (N, C, S) storage and under the cap of
    `Tuning.single_pass_channels_last_group` (at 32 warps from 4,096 elements a CTA)."""
    cap = runtime.Tuning().single_pass_channels_last_group
    rows, clean = [], {}
    for label, changes in [("as (N, C, S)", {"single_pass_channels_last_group": None}), ("capped", {})]:
        rows += sweep_rows(args, label, changes, clean, channels_last=True)
    return (
        "\n## Channels-last groups compared\n\n"
        "A group's tile in channels-last storage strides its channels by C. Under the budgets and warps of "
        f"(N, C, S) storage, and capped at {cap[0]}:{cap[1]} elements a CTA at 32 warps from 4,096 "
        "(`Tuning.single_pass_channels_last_group`); past the cap a tile spans a cluster or loops. Plans and ptxas "
        f"spills for the target; clusters for {args.target}: {clusters_state(args.target)}.\n\n"
        + markdown_table(SWEEP_HEADERS, rows)
        + f"\n\nVerdict per setting and dtype: {verdict(clean)}.\n"
    )


def clusters_state(target: str) -> str:
    refusal = runtime.cluster_refusal(int(target.split(":")[1]))
    return "this Triton compiles them" if refusal is None else f"none ({refusal})"


def cluster_section(args: argparse.Namespace) -> str:
    """Thread block clusters, chosen by measurement: for each limit on the CTAs of one single-pass program,
    at the default per-CTA budgets, the plans and spills of the group-statistic layers at the ResNet
    shapes. `Tuning.cluster` keeps the smallest limit under which every stage runs single-pass unspilled."""
    rows, clean = [], {}
    for ctas in args.clusters:
        rows += sweep_rows(args, f"{ctas} CTA{'s' if ctas > 1 else ''}", {"cluster": ctas}, clean)
    return (
        "\n## Thread block clusters compared\n\n"
        f"The most CTAs one single-pass program may span (`Tuning.cluster`, default {runtime.Tuning().cluster}), "
        "at the default budgets per CTA: a tile past one CTA's budget spans the fewest CTAs (2 or 4) that "
        "hold it within the budget, as one thread block cluster; Triton splits the tile across them and "
        "reduces through distributed shared memory. Where the target has no clusters, or the installed "
        "Triton cannot split a tile across them, such a stage runs fused or split. Clusters for "
        f"{args.target} with Triton {triton.__version__}: {clusters_state(args.target)}.\n\n"
        + markdown_table(SWEEP_HEADERS, rows)
        + f"\n\nVerdict per cluster limit and dtype: {verdict(clean)}.\n"
    )


def main() -> None:
    args = parse_arguments()
    timing = torch.cuda.is_available() and not args.no_time
    headers = ["layer", "shape", "dtype", "plan fwd / bwd / inf", "kernels", "bytes/elem", "minimum", "of minimum"]
    headers += [f"max regs ({args.target})", "spill bytes", "single-pass kernels (blocks/warps regs)"]
    time_headers = ["layer", "shape", "dtype", "ours fwd / step ms", "eager", "torch.compile", "fwd TB/s"]
    time_headers += ["step vs eager", "step vs compile"]
    rows, time_rows = [], []
    spilled = []
    start = time.perf_counter()
    for name in args.layers:
        for shape in args.shapes:
            for dtype in args.dtypes:
                plan, chosen = plan_columns(name, shape, dtype)
                resources = resource_columns(name, shape, dtype, args.target)
                if resources[1]:
                    spilled.append(f"{name} {shape_text(shape)} {dtype}")
                rows.append([name, shape_text(shape), dtype, *plan, *resources])
                if timing:
                    time_rows.append([name, shape_text(shape), dtype, *time_columns(name, shape, dtype, chosen)])
                print(f"{name} {shape_text(shape)} {dtype}: {plan[0]}, {plan[2]} B/elem", flush=True)
    elapsed = time.perf_counter() - start
    body = (
        f"Groups {GROUPS} (EvoNorm-S, GroupNorm). Columns of three are forward (training) / backward / "
        "inference. Plans: `single` reads every input once (the statistic's extent fits one program's "
        "registers; `xN CTAs`: those of a thread block cluster), `fused` runs two loops over each program's slice (the second read mostly from L2), "
        "`split` runs kernels per pass with partials and combines (batch and large layer statistics). "
        "Bytes per element are what the chosen kernels move to and from memory (statistics and partials, "
        "O(N x C), left out); the minimum reads every input once and writes every output once. Registers "
        "and spills come from ptxas for the target, on the kernels the launchers run at that shape "
        f"(Triton {triton.__version__}; its on-disk cache may serve the compiles; ptxas re-reads each kernel's "
        f"PTX). Thread block clusters for {args.target}: {clusters_state(args.target)}. "
        f"{len(rows)} rows in {elapsed:.0f} s.\n\n"
        + markdown_table(headers, rows)
        + "\n\n"
        + (f"Spills: {', '.join(spilled)}.\n" if spilled else "No kernel spills at these shapes.\n")
    )
    if timing:
        device = torch.cuda.get_device_name()
        body += f"\n## Time on {device}\n\n" + markdown_table(time_headers, time_rows) + "\n"
    else:
        body += "\nNo CUDA device here (or --no-time): no times; the bytes above are the plan's.\n"
    if args.budgets:
        body += budget_section(args)
    if args.clusters:
        body += cluster_section(args)
    if args.channels_last:
        body += channels_last_section(args)
    path = write_result("roofline", "Memory roofline of the library layers", body)
    print(path)


if __name__ == "__main__":
    main()
