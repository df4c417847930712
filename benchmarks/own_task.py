"""Users' own models and data: the step time of a swapped torchvision (and timm) ResNet-18, and the time
to load and go through one epoch of each kind of user data.

Step time: a step is one SGD step (momentum 0.9, cross-entropy) of `resnet18` with random weights and
10 classes on a fixed set of random batches (`--batch` inputs of 3x`--size`x`--size`, one thread). The
native model (BatchNorm and ReLU) is compared with the same model after
`swap_norm_act(model, "bn_relu")` (the DSL layer on the default backend: eager on CPU) and after
`swap_norm_act(model, "evonorm_s0")` (a layer PyTorch has no op for). Every comparison is paired and
interleaved: in each of `--rounds` rounds (at least 7) every variant is built from the same initial
weights and trains `--steps` timed steps after one untimed step, in an order that rotates from round to
round; a row reports the median over rounds of the per-round ratio DSL / native with its [min, max], and
the median milliseconds per step of each side. A row whose range spans 1.00 says the spread exceeds the
effect. The timm rows are measured where timm imports; a package that does not import gets a line saying
why instead of its rows.

Data loading: small data sets written to a temporary folder (nothing is downloaded): `imagefolder`
(scikit-learn's 8x8 digits as PNG class folders, written by `data make-folder`'s code), `arrays` (an .npz),
`python` (a factory module written beside them), `torchvision` (`FakeData`, where torchvision imports) and
the generated `mnist1d`. For each, the seconds of a first `load_data` (the search split; every cache of
the data readers and of `load_data` cleared, and the factory's module unimported, before each round), and
the seconds of one epoch of the training split drawn as the proxies' trainer draws its batches (a seeded
permutation, then batches of `--train-batch` rows gathered by index), each the median over `--rounds`
rounds, with the examples and the examples per second.

    python benchmarks/own_task.py            # writes benchmarks/results/own-task-<machine>.md
    python benchmarks/own_task.py --smoke    # tiny sizes: a check that the script runs
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

sys.path.insert(0, str(Path(__file__).resolve().parent))
# The repository root, for tests.optional_packages: its import of torchvision works beside a CPU-only torch.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _common import markdown_table, write_result
from torch import nn

import evonorm_search as es
from evonorm_search.proxies import data as proxy_data
from evonorm_search.proxies import readers
from evonorm_search.proxies.config import DataConfig
from evonorm_search.proxies.data import ProxyData, load_data
from evonorm_search.proxies.folders import make_image_folder
from evonorm_search.proxies.streaming import StreamedData, shut_down
from tests import optional_packages

MIN_ROUNDS = 7
DSL_LAYERS = ("bn_relu", "evonorm_s0")
CLASSES = 10
STREAM_WORKERS = 2  # one per core of the machines this project measures on
FACTORY_MODULE = "own_task_factory"
FACTORY_SOURCE = '''"""A user's data factory: seeded random images of ten classes, with a test split."""
import numpy as np


def load(samples, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((samples, 3, 32, 32)).astype(np.float32)
    y = np.arange(samples) % 10
    return x[: samples * 4 // 5], y[: samples * 4 // 5], x[samples * 4 // 5 :], y[samples * 4 // 5 :]
'''


# --------------------------------------------------------------------------------------------------
# Optional packages
# --------------------------------------------------------------------------------------------------


def import_package(name: str) -> ModuleType | str:
    """torchvision or timm (through the tests' import, which declares torchvision's two missing ops), or
    why it does not import."""
    try:
        return optional_packages.package(name)
    except pytest.skip.Exception as skipped:  # a skip is how the tests' import says it failed
        return f"not importable: {skipped.msg}"


# --------------------------------------------------------------------------------------------------
# Step time: native against swapped, paired and interleaved
# --------------------------------------------------------------------------------------------------

ModelBuilder = Callable[[], nn.Module]
Batches = list[tuple[torch.Tensor, torch.Tensor]]


def resnet18_builder(package: str, module: ModuleType) -> ModelBuilder:
    if package == "torchvision":
        return lambda: module.models.resnet18(num_classes=CLASSES)
    return lambda: module.create_model("resnet18", pretrained=False, num_classes=CLASSES)


def seeded(build: ModelBuilder) -> nn.Module:
    """The model with the same initial weights every time, leaving the global random state alone."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build()


def swapped_builder(build: ModelBuilder, layer: str) -> ModelBuilder:
    def build_swapped() -> nn.Module:
        model = seeded(build)
        es.swap_norm_act(model, layer)  # the default backend: eager on CPU
        return model

    return build_swapped


def variants(build: ModelBuilder) -> dict[str, ModelBuilder]:
    return {"native": lambda: seeded(build)} | {layer: swapped_builder(build, layer) for layer in DSL_LAYERS}


def random_batches(batch: int, size: int, count: int) -> Batches:
    generator = torch.Generator().manual_seed(0)
    return [
        (
            torch.randn(batch, 3, size, size, generator=generator),
            torch.randint(0, CLASSES, (batch,), generator=generator),
        )
        for _ in range(count)
    ]


def step_seconds(model: nn.Module, batches: Batches, steps: int) -> float:
    """Seconds per step over `steps` steps, after one untimed step (first-call costs are not a step's)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step(*batches[0])
    start = time.perf_counter()
    for i in range(steps):
        step(*batches[i % len(batches)])
    return (time.perf_counter() - start) / steps


def paired_step_times(
    builders: dict[str, ModelBuilder], batches: Batches, steps: int, rounds: int
) -> dict[str, list[float]]:
    """Per variant, its seconds per step in each round; the order of the variants rotates every round."""
    names = list(builders)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            times[name].append(step_seconds(builders[name](), batches, steps))
    return times


def ratio_stats(numerator: list[float], denominator: list[float]) -> tuple[float, float, float]:
    ratios = [a / b for a, b in zip(numerator, denominator, strict=True)]
    return statistics.median(ratios), min(ratios), max(ratios)


def verdict(low: float, high: float) -> str:
    if low <= 1.0 <= high:
        return "spread exceeds the effect (range spans 1.00)"
    return "DSL slower in every round" if low > 1.0 else "DSL faster in every round"


def step_rows(package: str, times: dict[str, list[float]]) -> list[list[str]]:
    native_ms = statistics.median(times["native"]) * 1e3
    rows = []
    for layer in DSL_LAYERS:
        median, low, high = ratio_stats(times[layer], times["native"])
        layer_ms = statistics.median(times[layer]) * 1e3
        ratio = f"{median:.2f}x [{low:.2f}, {high:.2f}]"
        rows.append([f"{package} resnet18", layer, ratio, f"{layer_ms:.1f}", f"{native_ms:.1f}", verdict(low, high)])
    return rows


def step_section(packages: dict[str, ModuleType | str], args: argparse.Namespace) -> str:
    batches = random_batches(args.batch, args.size, max(args.steps, 4))
    rows, refusals = [], []
    for package, module in packages.items():
        if isinstance(module, str):
            refusals.append(f"- {package} resnet18: {module}")
            continue
        print(f"step time: {package} resnet18", flush=True)
        times = paired_step_times(variants(resnet18_builder(package, module)), batches, args.steps, args.rounds)
        rows += step_rows(package, times)
    intro = (
        f"resnet18 (random weights, {CLASSES} classes), batches of {args.batch} inputs of 3x{args.size}x{args.size}, "
        f"SGD with momentum 0.9, one thread; {args.rounds} rounds of {args.steps} timed steps per variant. "
        "DSL / native: median over rounds of the per-round ratio, [min, max]; the DSL layer replaces each "
        "BatchNorm and the ReLU after it (`swap_norm_act`, default backend: eager on CPU).\n\n"
    )
    headers = ["model", "DSL layer", "DSL / native", "DSL ms per step", "native ms per step", "verdict"]
    table = markdown_table(headers, rows) if rows else "No model measured: neither package imports."
    return intro + table + ("\n\n" + "\n".join(refusals) if refusals else "")


# --------------------------------------------------------------------------------------------------
# Data loading: a first load_data per kind, then one epoch drawn as the trainer draws it
# --------------------------------------------------------------------------------------------------


def write_arrays(folder: Path, examples: int) -> Path:
    rng = np.random.default_rng(0)
    path = folder / "arrays.npz"
    x = rng.standard_normal((examples, 3, 32, 32)).astype(np.float32)
    np.savez(path, x=x, y=np.arange(examples) % CLASSES)
    return path


def write_factory(folder: Path) -> str:
    (folder / f"{FACTORY_MODULE}.py").write_text(FACTORY_SOURCE, encoding="utf-8")
    sys.path.insert(0, str(folder))
    importlib.invalidate_caches()  # the module was written after the path's finder listed the folder
    return f"{FACTORY_MODULE}:load"


def data_configs(folder: Path, examples: int, torchvision: ModuleType | str) -> dict[str, DataConfig | str]:
    """Per data kind, the config of a small data set written under `folder` (or why there is none)."""
    images = make_image_folder(folder / "digits")  # the digits: 1,797 PNG files, whatever `examples`
    configs: dict[str, DataConfig | str] = {
        "imagefolder": DataConfig(name="imagefolder", path=str(images), mode="grayscale"),
        # The same folder read batch by batch by loader worker processes, as data above in_memory_limit_mib is.
        f"imagefolder, streamed ({STREAM_WORKERS} loader workers)": DataConfig(
            name="imagefolder", path=str(images), mode="grayscale", in_memory=False, loader_workers=STREAM_WORKERS
        ),
        "arrays": DataConfig(name="arrays", path=str(write_arrays(folder, examples))),
        "python": DataConfig(name="python", factory=write_factory(folder), kwargs={"samples": examples}),
        "mnist1d": DataConfig(name="mnist1d", samples=examples),
    }
    configs["torchvision (FakeData)"] = fake_data_config(folder, examples, torchvision)
    return configs


def fake_data_config(folder: Path, examples: int, torchvision: ModuleType | str) -> DataConfig | str:
    """torchvision's FakeData (images made in memory: nothing to download), or why torchvision is missing."""
    if isinstance(torchvision, str):
        return torchvision
    kwargs = {"size": examples, "image_size": [3, 32, 32], "num_classes": CLASSES}
    return DataConfig(name="torchvision", dataset="FakeData", root=str(folder), kwargs=kwargs)


def clear_data_caches() -> None:
    """Forget every data set read in this process: `load_data`'s cache, the readers' caches and the
    factory's module, so the next load reads and computes everything again."""
    for module in (proxy_data, readers):
        for value in vars(module).values():
            # Only the module's own caches: the config adapter it imports holds no data.
            if hasattr(value, "cache_clear") and getattr(value, "__module__", None) == module.__name__:
                value.cache_clear()
    sys.modules.pop(FACTORY_MODULE, None)


def first_load(config: DataConfig) -> tuple[float, ProxyData | StreamedData]:
    clear_data_caches()
    start = time.perf_counter()
    data = load_data(config)
    return time.perf_counter() - start, data


def epoch_seconds(data: ProxyData | StreamedData, batch_size: int, seed: int) -> tuple[float, int]:
    """Seconds to draw one epoch of the training split, and the examples drawn: as `ProxyTrainer` draws
    batches, a seeded permutation and its full batches (a short remainder waits for the next permutation).
    In memory the rows are gathered by index, which copies each row, so every example of the epoch is read;
    streamed, the data's DataLoader reads and decodes them in its worker processes, started and stopped
    inside the timing as each stage of training starts and stops them."""
    batch_size = min(batch_size, data.train_size)
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    order = torch.randperm(data.train_size, generator=generator)
    batches = [order[cursor : cursor + batch_size] for cursor in range(0, len(order) - batch_size + 1, batch_size)]
    if isinstance(data, StreamedData):
        iterator = iter(data.loader(data.train, torch.device("cpu"), batch_sampler=[b.tolist() for b in batches]))
        drawn = sum(len(y) for _, y in iterator)
        shut_down(iterator)
        return time.perf_counter() - start, drawn
    for idx in batches:
        data.train_x[idx], data.train_y[idx]  # the gather is what is timed
    return time.perf_counter() - start, len(batches) * batch_size


def data_row(kind: str, config: DataConfig, rounds: int, batch_size: int) -> list[str]:
    loads, epochs = [], []
    for r in range(rounds):
        seconds, data = first_load(config)
        loads.append(seconds)
        epochs.append(epoch_seconds(data, batch_size, seed=r)[0])
    drawn = epoch_seconds(data, batch_size, seed=0)[1]
    examples = data.train_size + data.scored_size
    load, epoch = statistics.median(loads), statistics.median(epochs)
    shape = "x".join(str(s) for s in (data.train.shape if isinstance(data, StreamedData) else data.train_x.shape[1:]))
    return [
        kind,
        shape,
        f"{data.train_size:,} / {data.scored_size:,}",
        f"{load * 1e3:.1f} [{min(loads) * 1e3:.1f}, {max(loads) * 1e3:.1f}]",
        f"{examples / load:,.0f}",
        f"{epoch * 1e3:.2f} [{min(epochs) * 1e3:.2f}, {max(epochs) * 1e3:.2f}]",
        f"{drawn / epoch:,.0f}",
    ]


def data_section(torchvision: ModuleType | str, args: argparse.Namespace) -> str:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind, config in data_configs(Path(tmp), args.examples, torchvision).items():
            print(f"data: {kind}", flush=True)
            if isinstance(config, str):
                rows.append([kind, "", "", config, "", "", ""])
            else:
                rows.append(data_row(kind, config, args.rounds, args.train_batch))
    headers = [
        "data kind",
        "input shape",
        "train / validation examples",
        "first load_data, ms (median [min, max])",
        "train + validation examples per s of the first load",
        "one epoch, ms (median [min, max])",
        "examples per s in an epoch",
    ]
    intro = (
        f"The search split of each data set ({args.examples:,} examples where the size is chosen; the digits "
        f"folder holds all 1,797 images), median over {args.rounds} rounds. First load: `load_data` with the "
        "caches of `load_data` and of the readers cleared and the factory's module unimported before each "
        "round (the files were just written, so the operating system may still hold them in memory). Epoch: "
        f"the training split in batches of {args.train_batch} drawn as the proxies' trainer draws them; streamed, "
        "through the DataLoader whose worker processes read and decode each batch, their start and stop "
        "included (each stage of training pays both).\n\n"
    )
    return intro + markdown_table(headers, rows)


# --------------------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> Path:
    torch.set_num_threads(1)
    packages = {name: import_package(name) for name in ("torchvision", "timm")}
    sections = [
        f"{args.rounds} rounds per figure, one thread; no cache served any figure: every model is built anew "
        "in each round and every data set is read again with the process's data caches cleared.",
        "## Step time: DSL layer against native BatchNorm and ReLU\n\n" + step_section(packages, args),
        "## Data loading per epoch, per data kind\n\n" + data_section(packages["torchvision"], args),
    ]
    return write_result("own-task", "Users' own models and data: step time and data loading", "\n\n".join(sections))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=MIN_ROUNDS)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per variant and round")
    parser.add_argument("--batch", type=int, default=32, help="inputs per step of the step-time rows")
    parser.add_argument("--size", type=int, default=32, help="height and width of the step-time inputs")
    parser.add_argument("--examples", type=int, default=4000, help="examples of the generated and written data")
    parser.add_argument("--train-batch", type=int, default=64, help="batch size of the epoch (training's default)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: a check that the script runs")
    args = parser.parse_args(argv)
    if args.smoke:
        args.rounds, args.steps, args.batch, args.examples = 2, 2, 4, 100
    elif args.rounds < MIN_ROUNDS:
        parser.error(f"--rounds must be at least {MIN_ROUNDS}: a comparison is the median of that many paired rounds")
    print(f"wrote {run(args)}")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
