"""The GPU check: everything that needs a CUDA device, in one run of at most 8 minutes on an H100/H200.

Steps, each under its own time limit (they add up to 8 minutes):
  1. the GPU-marked tests (`pytest -m gpu`): kernels against the reference on the device;
  2. the kernel benchmark (benchmarks/kernels.py): ours against eager, torch.compile and timm's EvoNorm;
  3. a quick search (examples/quick.yaml with `training.device: cuda`, a reduced budget) on a local Ray,
     each evaluation reserving a quarter of the GPU.
Writes benchmarks/results/gpu_check-<device>.md (a table: step, status, seconds, the command, the end of
its output); the kernel benchmark writes its own tables beside it.

    python benchmarks/gpu_check.py              # on a machine with a CUDA device
    python benchmarks/gpu_check.py --dry-run    # anywhere: checks the plan and its inputs, runs nothing

Without a CUDA device and without --dry-run it refuses (exit status 2).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import yaml
from _common import RESULTS, markdown_table, write_result

ROOT = Path(__file__).resolve().parents[1]
TOTAL_SECONDS = 8 * 60
SEARCH_BUDGET = 24  # candidates of the quick search (quick.yaml's own budget takes longer than 8 minutes)


@dataclass(frozen=True)
class Step:
    name: str
    command: list[str]
    seconds: int  # its time limit

    def shown(self) -> str:
        return " ".join(str(part) for part in self.command)


def search_config(folder: Path) -> Path:
    """examples/quick.yaml on `cuda`, with a budget that fits the check; validated like any search."""
    from evonorm_search.search import SearchConfig

    data = yaml.safe_load((ROOT / "examples" / "quick.yaml").read_text())
    data["name"] = "gpu-check"
    data["budget"] = SEARCH_BUDGET
    data["population"] = min(data.get("population", 8), SEARCH_BUDGET // 2)
    data["tournament"] = min(data.get("tournament", 4), data["population"])
    data.setdefault("training", {})["device"] = "cuda"
    data["training"].pop("threads", None)
    SearchConfig.from_mapping(data, origin="the GPU check's search")  # a bad config fails the dry run too
    path = folder / "gpu-check.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def plan(folder: Path) -> list[Step]:
    python = sys.executable
    return [
        Step("GPU-marked tests", [python, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", "tests"], 150),
        Step("kernel benchmark", [python, str(ROOT / "benchmarks" / "kernels.py"), "--output", str(RESULTS)], 210),
        Step(
            "quick search on cuda",
            [
                python,
                "-m",
                "evonorm_search",
                "run",
                str(search_config(folder)),
                "--db",
                str(folder / "gpu-check.db"),
                "--gpus",
                "0.25",
                "--no-live",
            ],
            120,
        ),
    ]


def run_step(step: Step) -> tuple[str, float, str]:
    started = time.monotonic()
    try:
        done = subprocess.run(step.command, cwd=ROOT, capture_output=True, text=True, timeout=step.seconds)
    except subprocess.TimeoutExpired as e:
        tail = (e.stdout or b"")[-400:] if isinstance(e.stdout, bytes) else (e.stdout or "")[-400:]
        return f"timed out after {step.seconds}s", time.monotonic() - started, str(tail)
    status = "passed" if done.returncode == 0 else f"failed (exit {done.returncode})"
    return status, time.monotonic() - started, (done.stdout + done.stderr)[-400:]


def device_name() -> str | None:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|") or "(none)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="check the plan and its inputs; run nothing")
    args = parser.parse_args(argv)
    device = device_name()
    if device is None and not args.dry_run:
        print("no CUDA device here: the GPU check needs one (or --dry-run to check the plan)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as folder:
        steps = plan(Path(folder))
        assert sum(s.seconds for s in steps) <= TOTAL_SECONDS, "the steps' limits exceed the check's 8 minutes"
        rows = []
        for step in steps:
            if args.dry_run:
                status, seconds, tail = "not run (dry run)", 0.0, ""
            else:
                print(f"{step.name} (limit {step.seconds}s) ...", flush=True)
                status, seconds, tail = run_step(step)
            print(f"{step.name}: {status} in {seconds:.0f}s", flush=True)
            rows.append([step.name, status, f"{seconds:.0f}", step.seconds, f"`{step.shown()}`", cell(tail)])
    os.environ.setdefault("EVONORM_MACHINE", "dry-run" if args.dry_run else cell(device or "cpu").replace(" ", "-"))
    where = f"device {device}" if device else "no CUDA device (dry run: nothing was run)"
    body = (
        f"One run of the GPU check on {where}; each step under its own time limit, {TOTAL_SECONDS // 60} minutes "
        "in all. The kernel benchmark's tables are in kernels-<device>.md.\n\n"
        + markdown_table(["step", "status", "seconds", "limit s", "command", "end of output"], rows)
    )
    path = write_result("gpu_check", "GPU check", body)
    print(f"wrote {path}")
    return 0 if all(row[1] in ("passed", "not run (dry run)") for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
