"""Cold compile time of a layer's kernels for a GPU target, measured on any machine (no GPU needed).

Every kernel that training and inference launch (forward and backward) goes through Triton's whole
pipeline for the target (TTIR, TTGIR, LLVM IR, PTX, ptxas) with `compile_ahead`, in a private, empty
Triton cache, so every figure is cold. For the library layers (float32 and bfloat16) and for random
candidates of the default search space (what a search meets: every new candidate pays this before its
first training step). Writes benchmarks/results/compile-<machine>.md.

The GPU target of the issue is "cold compile of a new candidate (all its kernels) <= 1 s on an H100";
this measures the same work on the CPU that runs it, so on a slow shared CPU it is an upper bound for
the GPU host.

    python benchmarks/compile.py [--target cuda:90] [--candidates 20] [--layers a,b] [--output DIR]

Random candidates are measured twice, one kernel at a time and with one worker thread per core.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # Triton 3.9+ warns when it is unset; 1 is its default
os.environ["TRITON_CACHE_DIR"] = tempfile.mkdtemp(prefix="evonorm-cold-triton-")  # before triton is imported
os.environ.pop("TRITON_INTERPRET", None)

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
import triton
from _common import markdown_table, write_result

from evonorm_search import library
from evonorm_search.compiler.ahead import compile_ahead
from evonorm_search.search.space import SearchSpace, random_graph

SHAPE = (64, 256, 56, 56)  # ResNet-50's first stage: the blocking, not the size, shapes the kernels


def parse_arguments() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", default="cuda:90", help="CUDA target, cuda:<compute capability> (default: Hopper)")
    p.add_argument("--layers", default=",".join(library.names()), help="library layers, comma-separated")
    p.add_argument("--candidates", type=int, default=20, help="random candidates of the default search space")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", type=Path, default=None, help="results folder (default: benchmarks/results)")
    return p.parse_args()


def load_average() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def layer_rows(names: list[str], target: str) -> tuple[list[list[object]], list[float]]:
    rows, loads = [], []
    for name in names:
        for dtype in (torch.float32, torch.bfloat16):
            os.environ["TRITON_CACHE_DIR"] = tempfile.mkdtemp(prefix="evonorm-cold-triton-")
            report = compile_ahead(name, target=target, dtype=dtype, shape=SHAPE)
            loads.append(load_average())
            slowest = max(report.kernels, key=lambda k: k.seconds)
            rows.append(
                [
                    name,
                    report.dtype,
                    len(report.kernels),
                    f"{report.generate_seconds:.3f}",
                    f"{report.compile_seconds:.2f}",
                    f"{report.total_seconds:.2f}",
                    f"{slowest.kernel} {slowest.seconds:.2f}",
                ]
            )
            print(" | ".join(str(c) for c in rows[-1]), flush=True)
    return rows, loads


def candidate_totals(count: int, seed: int, target: str, workers: int) -> tuple[list[float], list[int], list[float]]:
    """Cold compile of `count` random candidates; each in a fresh cache directory, so the same draw can be
    measured again with another number of workers."""
    rng = random.Random(seed)
    space = SearchSpace()
    totals, kernels, loads = [], [], []
    for i in range(count):
        graph = random_graph(space, rng)
        os.environ["TRITON_CACHE_DIR"] = tempfile.mkdtemp(prefix="evonorm-cold-triton-")
        report = compile_ahead(graph, target=target, dtype=torch.float32, shape=SHAPE, workers=workers)
        totals.append(report.total_seconds)
        kernels.append(len(report.kernels))
        loads.append(load_average())
        print(
            f"candidate {i}, {workers} worker(s): {len(report.kernels)} kernels, {report.total_seconds:.2f} s",
            flush=True,
        )
    return totals, kernels, loads


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    args = parse_arguments()
    if args.output is not None:
        import _common

        _common.RESULTS = args.output
    names = [n for n in args.layers.split(",") if n]
    started = time.perf_counter()
    compile_ahead("relu", target=args.target, dtype=torch.float16)  # Triton's one-time start-up, not a layer's
    rows, loads = layer_rows(names, args.target)
    parallel = max(2, os.cpu_count() or 2)
    candidate_rows, summary = [], {}
    for workers in (1, parallel):
        totals, kernel_counts, candidate_loads = candidate_totals(args.candidates, args.seed, args.target, workers)
        loads += candidate_loads
        summary[workers] = statistics.median(totals)
        candidate_rows.append(
            [
                workers,
                len(totals),
                statistics.median(kernel_counts),
                f"{statistics.median(totals):.2f}",
                f"{quantile(totals, 0.9):.2f}",
                f"{max(totals):.2f}",
            ]
        )
    minutes = (time.perf_counter() - started) / 60

    best = min(summary.values())
    verdict = "meets" if best <= 1.0 else f"misses by {best - 1.0:.2f} s on this CPU"
    body = "\n\n".join(
        [
            f"Target `{args.target}`; Triton {triton.__version__}, torch {torch.__version__}; an empty Triton "
            f"cache for every compile (every figure is cold); input shape {SHAPE}. 1-minute load average "
            f"during the run: median {statistics.median(loads):.2f}, max {max(loads):.2f}; "
            f"the run took {minutes:.1f} minutes.",
            "Each row compiles every kernel of the layer that training and inference launch, forward and "
            "backward (generate: the layer's Triton source from its graph; compile: Triton's pipeline and "
            "ptxas for all kernels). Library layers compile one kernel after another, as the first launches "
            "of a training step do; random candidates also with `workers` kernels at once "
            "(`compile_ahead(..., workers=N)`, threads).",
            "## Library layers (one kernel at a time)\n\n"
            + markdown_table(
                ["layer", "dtype", "kernels", "generate s", "compile s", "total s", "slowest kernel (s)"], rows
            ),
            f"## {args.candidates} random candidates of the default search space (float32)\n\n"
            + markdown_table(
                ["workers", "candidates", "kernels (median)", "median s", "90th percentile s", "max s"],
                candidate_rows,
            )
            + f"\n\nCold compile of a new candidate, all its kernels: median **{summary[1]:.2f} s** one kernel "
            f"at a time, **{summary[parallel]:.2f} s** with {parallel} at once. Target <= 1 s (on an H100 host): "
            f"{verdict}.",
        ]
    )
    path = write_result("compile", "Cold compile of candidate layers for a GPU target", body)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
