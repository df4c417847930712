"""Soak: thousands of candidates through one worker process, its resident memory sampled as they pass.

Runs the worker body (`evaluate_task`, what a Ray task runs) in this one process for `--candidates`
random layers of the default search space, on a tiny proxy (synthetic data, two small architectures,
a few training steps), as a Ray worker that is never recycled would (`workers.max_calls: 0`). Resident
memory (VmRSS) is read every `--sample-every` candidates, with the size of every per-process cache.

Target: growth from candidate `--baseline-at` (200) to the last (2,000) below 50 MB.
Writes benchmarks/results/soak-<machine>.md.

    python benchmarks/soak.py [--candidates 2000] [--baseline-at 200] [--sample-every 100] [--backend torch]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import markdown_table, write_result

TARGET_GROWTH_MB = 50.0


def rss_mb() -> float:
    """This process's resident memory in MB (VmRSS, Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status: the soak benchmark needs Linux")


def cache_sizes() -> dict[str, int]:
    import linecache

    from evonorm_search.compiler import ahead, cache, runtime

    return {
        "layers": len(cache._BY_KEY),
        "linecache": sum(1 for name in linecache.cache if name.startswith("<evonorm-kernels-")),
        "compile log": len(runtime.COMPILE_LOG),
        "precompiled": len(ahead._PRECOMPILED),
    }


def caps() -> str:
    """The per-process caches' caps this run uses, and whether each is its default."""
    from evonorm_search.bounded import LIMITS, limit

    caps = {name: limit(name) for name in LIMITS}
    return ", ".join(f"{name}={cap:,}{' (default)' if cap == LIMITS[name] else ''}" for name, cap in caps.items())


def tiny_config(backend: str):
    from evonorm_search.search import SearchConfig

    return SearchConfig.from_mapping(
        {
            "name": "soak",
            "backend": backend,
            "space": {"max_ops": 8},
            "architectures": [
                {"kind": "resnet", "width": 4, "blocks": [1]},
                {"kind": "mobilenetv2", "width": 4, "blocks": [1], "expansion": 2},
            ],
            "data": {"name": "synthetic", "samples": 64, "synthetic_shape": [1, 6, 6], "synthetic_classes": 2},
            "training": {"steps": 3, "batch_size": 16, "device": "cpu", "threads": 1, "eval_batch_size": 64},
            "rejection": {"quality": {"enabled": False}},
            "workers": {"max_calls": 0},
        }
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidates", type=int, default=2000)
    parser.add_argument("--baseline-at", type=int, default=200)
    parser.add_argument("--sample-every", type=int, default=100)
    parser.add_argument("--backend", choices=("torch", "triton", "auto"), default="torch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--note", default="", help="a sentence for the results file (e.g. what else ran)")
    args = parser.parse_args(argv)
    if not 0 < args.baseline_at < args.candidates or args.sample_every < 1:
        parser.error("need 0 < --baseline-at < --candidates and --sample-every >= 1")

    from evonorm_search.search import EvaluationTask, evaluate_task, random_graph

    config = tiny_config(args.backend)
    space, spec = config.build_space(), config.evaluation_spec()
    rng = random.Random(args.seed)
    samples: list[list[object]] = []
    statuses: dict[str, int] = {}
    started = time.perf_counter()
    baseline = None
    for index in range(1, args.candidates + 1):
        task = EvaluationTask(1, index, random_graph(space, rng).to_dict(), spec)
        outcome = evaluate_task(task)
        statuses[outcome.status] = statuses.get(outcome.status, 0) + 1
        if index == args.baseline_at:
            baseline = rss_mb()
        if index % args.sample_every == 0 or index in (1, args.baseline_at, args.candidates):
            sizes = cache_sizes()
            samples.append([index, f"{rss_mb():.1f}", *sizes.values(), f"{time.perf_counter() - started:.0f}"])
            print(f"candidate {index}: RSS {rss_mb():.1f} MB, caches {sizes}", flush=True)
    final = rss_mb()
    assert baseline is not None
    growth = final - baseline
    verdict = "met" if growth < TARGET_GROWTH_MB else "missed"
    interpreted = (
        "; Triton kernels run by its interpreter (TRITON_INTERPRET=1)" if os.environ.get("TRITON_INTERPRET") else ""
    )
    table = markdown_table(
        ["candidate", "RSS MB", *cache_sizes().keys(), "seconds so far"], sorted(samples, key=lambda r: r[0])
    )
    body = (
        f"{args.candidates:,} random layers of the default space (max 8 ops) through `evaluate_task` in one process "
        f"(pid {os.getpid()}), as one Ray worker that is never recycled; backend `{args.backend}`, CPU, tiny proxy "
        f"(synthetic 1x6x6, 2 classes, ResNet and MobileNetV2 of width 4, 3 steps). Outcomes: {statuses}. "
        f"No cache was warm at start; caps: {caps()}{interpreted}.\n\n"
        f"Resident memory at candidate {args.baseline_at}: {baseline:.1f} MB; at candidate {args.candidates}: "
        f"{final:.1f} MB; growth **{growth:+.1f} MB** (target below {TARGET_GROWTH_MB:g} MB: {verdict}).\n\n"
        + ("" if args.candidates >= 2000 else "A reduced run: the target is set for 2,000 candidates from 200. ")
        + (f"{args.note}\n\n" if args.note else ("\n\n" if args.candidates < 2000 else ""))
        + table
    )
    # The torch backend's file keeps its name; other backends (their caches fill) get their own.
    path = write_result(
        "soak" if args.backend == "torch" else f"soak-{args.backend}",
        "Soak: resident memory of one worker process over many candidates",
        body,
    )
    print(f"growth {growth:+.1f} MB from candidate {args.baseline_at} to {args.candidates} ({verdict}); wrote {path}")


if __name__ == "__main__":
    main()
