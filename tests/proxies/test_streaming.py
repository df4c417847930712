"""Streamed data: when a data set streams (`in_memory` and its auto rule), the same examples in each split as
in memory, a test split no search reads, training bit-identical to the in-memory path (batch order,
standardisation, scores), loader workers started and stopped, the index read once per process, and every
bad setting refused at validation with its field named."""

from __future__ import annotations

import multiprocessing
import os
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from pydantic import ValidationError

import evonorm_search as es
from evonorm_search.proxies import (
    ArchitectureConfig,
    DataConfig,
    DataError,
    ProxyData,
    ProxyTrainer,
    StreamedData,
    TrainingConfig,
    build_model,
    load_data,
    readers,
    streaming,
)
from evonorm_search.proxies.data import SPLITS, clear_caches, data_plan
from evonorm_search.proxies.folders import make_image_folder
from evonorm_search.proxies.readers import image_folder_index
from evonorm_search.search.config import ConfigError, SearchConfig
from tests import optional_packages

TRAINING = TrainingConfig(steps=24, batch_size=16, eval_batch_size=100, device="cpu", threads=1)


@pytest.fixture(autouse=True)
def _fresh_caches():
    clear_caches()
    yield
    clear_caches()


@pytest.fixture(scope="module")
def digits_folder(tmp_path_factory) -> Path:
    """scikit-learn's digits as PNG files in train/ and test/ class folders (the `data make-folder` helper)."""
    return make_image_folder(tmp_path_factory.mktemp("own") / "digits")


def _folder(path: Path, **settings) -> DataConfig:
    return DataConfig(name="imagefolder", path=str(path), mode="grayscale", **settings)


def _both(config: DataConfig, split: str = "search", workers: int = 0) -> tuple[ProxyData, StreamedData]:
    in_memory = load_data(config.model_copy(update={"in_memory": True}), split)
    streamed = load_data(config.model_copy(update={"in_memory": False, "loader_workers": workers}), split)
    assert isinstance(in_memory, ProxyData) and isinstance(streamed, StreamedData)
    return in_memory, streamed


def _stacked(dataset: streaming.StandardisedExamples) -> tuple[torch.Tensor, torch.Tensor]:
    pairs = [dataset[i] for i in range(len(dataset))]
    return torch.stack([x for x, _ in pairs]), torch.tensor([y for _, y in pairs])


def _model(data, layer: str = "bn_relu"):
    return build_model(
        ArchitectureConfig(kind="resnet", width=4, blocks=[1]),
        es.library.get(layer),
        in_channels=data.in_channels,
        classes=data.num_classes,
        spatial_dims=data.spatial_dims,
        groups=2,
        eps=1e-5,
        seed=0,
    )


def _trained(data, layer: str = "bn_relu", stages: tuple[int, ...] = (10, 24)):
    trainer = ProxyTrainer(_model(data, layer), data, TRAINING, seed=3)
    for step in stages:
        trainer.train_until(step)
    return trainer.evaluate()


# --------------------------------------------------------------------------------------------------
# When a data set streams
# --------------------------------------------------------------------------------------------------


def test_auto_holds_small_data_in_memory_and_streams_data_above_the_limit(digits_folder):
    small = data_plan(_folder(digits_folder))
    assert small.in_memory and small.examples == 1797 and small.shape == (1, 8, 8)
    assert small.estimated_bytes == 1797 * 4 * 8 * 8 and "auto: <= in_memory_limit_mib 1024" in small.reason
    assert isinstance(load_data(_folder(digits_folder)), ProxyData)
    # Resized to 32x32 the 1,797 images decode to 7 MiB: above a 4 MiB limit they stream, below 8 they do not.
    large = _folder(digits_folder, size=[32], in_memory_limit_mib=4)
    plan = data_plan(large)
    assert (
        not plan.in_memory and plan.estimated_bytes == 1797 * 4 * 32 * 32 and "> in_memory_limit_mib 4" in plan.reason
    )
    data = load_data(large)
    assert isinstance(data, StreamedData) and data.train.shape == (1, 32, 32) and data.loader_workers == 2
    assert data_plan(large.model_copy(update={"in_memory_limit_mib": 8})).in_memory
    # An explicit choice wins over the estimate; data sets that cannot stream are always in memory.
    assert not data_plan(_folder(digits_folder, in_memory=False)).in_memory
    assert data_plan(_folder(digits_folder, size=[32], in_memory_limit_mib=4, in_memory=True)).in_memory
    assert data_plan(DataConfig(name="digits")).reason == "digits is always in memory"


# --------------------------------------------------------------------------------------------------
# The split rules: the same examples in each split, a test split no search reads
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("layout", ["train and test folders", "a carved test fraction"])
def test_each_split_holds_the_same_examples_streamed_or_in_memory(digits_folder, tmp_path, split, layout):
    if layout == "a carved test fraction":  # class folders only: test_fraction of each class is the test split
        config = _folder(digits_folder / "train", test_fraction=0.3, confirm_fraction=0.5, seed=4)
    else:
        config = _folder(digits_folder, confirm_fraction=0.5, max_train_samples=500)
    in_memory, streamed = _both(config, split)
    # Bit-identical inputs (read, standardised), the same labels, in the same order: the same examples.
    for tensors, dataset in ((in_memory.train_x, streamed.train), (in_memory.val_x, streamed.scored)):
        x, _ = _stacked(dataset)
        assert torch.equal(x, tensors)
    assert torch.equal(torch.from_numpy(streamed.train.labels), in_memory.train_y)
    assert torch.equal(torch.from_numpy(streamed.scored.labels), in_memory.val_y)
    assert streamed.num_classes == in_memory.num_classes == 10 and streamed.scored_on == in_memory.scored_on


def _paths(examples) -> set[str]:
    return {examples.where(i) for i in range(len(examples))}


def test_streamed_splits_are_disjoint_and_the_test_split_is_the_test_folder(digits_folder):
    config = _folder(digits_folder, in_memory=False, loader_workers=0, confirm_fraction=0.5)
    search = load_data(config)
    target, confirm = load_data(config, "target"), load_data(config, "confirm")
    assert isinstance(search, StreamedData) and isinstance(target, StreamedData) and isinstance(confirm, StreamedData)
    searched = _paths(search.train.examples) | _paths(search.scored.examples)
    tested, confirming = _paths(target.scored.examples), _paths(confirm.scored.examples)
    assert searched == _paths(target.train.examples)  # the target trains on the whole search part
    assert all("/test/" in p for p in tested | confirming) and not any("/test/" in p for p in searched)
    assert tested.isdisjoint(confirming) and len(tested | confirming) == 359
    # Another search seed moves examples between training and validation, never into the test split.
    other = load_data(config.model_copy(update={"seed": 7}))
    assert isinstance(other, StreamedData)
    assert _paths(other.train.examples) | _paths(other.scored.examples) == searched


@pytest.mark.parametrize("in_memory", [False, True])
def test_a_search_never_reads_the_test_split(digits_folder, tmp_path, monkeypatch, in_memory):
    """Every test image is replaced by junk: a search, streamed or in memory, trains and scores without
    noticing, and the target task, which scores on them, is the one that fails."""
    import shutil

    folder = tmp_path / "digits"
    shutil.copytree(digits_folder, folder)
    for image in (folder / "test").rglob("*.png"):
        image.write_bytes(b"not a png")
    opened: list[str] = []
    original = streaming.read_image
    monkeypatch.setattr(streaming, "read_image", lambda path, *a: opened.append(path) or original(path, *a))
    config = _folder(folder, in_memory=in_memory, loader_workers=0)
    metrics = _trained(load_data(config))
    assert metrics.steps == 24 and not any("/test/" in p for p in opened)
    assert in_memory or len(opened) > 24 * 16  # streamed: every batch read its images
    with pytest.raises(DataError, match=r"data.path: cannot read image .*/test/"):
        _trained(load_data(config, "target"), stages=(1,))  # streamed: indexed, standardised, then scored


UNREADABLE_TEST = """
import torch
from torch.utils.data import Dataset, TensorDataset


class Unreadable(Dataset):
    targets = [0, 1] * 10

    def __len__(self):
        return 20

    def __getitem__(self, i):
        raise RuntimeError("the test split was read")


def make():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(60) % 3
    x = torch.randn(60, 2, 6, generator=g) + y[:, None, None]
    return TensorDataset(x, y), Unreadable()
"""


def test_a_streamed_python_factorys_test_dataset_is_never_read_by_a_search(tmp_path, monkeypatch):
    (tmp_path / "unreadable_test.py").write_text(UNREADABLE_TEST)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        config = DataConfig(name="python", factory="unreadable_test:make", in_memory=False, loader_workers=0)
        data = load_data(config)
        assert isinstance(data, StreamedData) and data.spatial_dims == 1 and data.train_size == 45
        assert _trained(data).steps == 24
        with pytest.raises(DataError, match="the test split was read"):
            _trained(load_data(config, "target"), stages=(1,))
    finally:
        sys.modules.pop("unreadable_test", None)


# --------------------------------------------------------------------------------------------------
# Equivalence: the same batches and the same scores, streamed or in memory
# --------------------------------------------------------------------------------------------------


def test_batches_come_in_the_same_order_streamed_or_in_memory_across_stages_and_epochs(digits_folder):
    in_memory, streamed = _both(_folder(digits_folder, max_train_samples=100))
    a = ProxyTrainer(_model(in_memory), in_memory, TRAINING.model_copy(update={"steps": 20}), seed=5)
    b = ProxyTrainer(_model(streamed), streamed, TRAINING.model_copy(update={"steps": 20}), seed=5)
    batches_a, batches_b = [], []
    for trainer, batches in ((a, batches_a), (b, batches_b)):
        for _ in range(14):  # 100 examples, batches of 16: six per epoch, a new permutation each epoch
            batches.append(trainer._next_batch())
            if len(batches) == 4:
                trainer.close()  # a stage ends: the loader goes, its fetched-ahead batches come first next time
    for (xa, ya), (xb, yb) in zip(batches_a, batches_b, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    b.close()
    # The same seed, the same order; another seed, another order.
    same, other = (ProxyTrainer(_model(streamed), streamed, TRAINING, seed=seed) for seed in (5, 6))
    assert torch.equal(same._next_batch()[1], batches_a[0][1])
    assert not torch.equal(other._next_batch()[1], batches_a[0][1])


@pytest.mark.parametrize("layer", ["bn_relu", "evonorm_s0"])
def test_a_library_layer_scores_bit_identically_streamed_or_in_memory(digits_folder, layer):
    for split in ("search", "target"):
        in_memory, streamed = _both(_folder(digits_folder), split)
        a, b = _trained(in_memory, layer), _trained(streamed, layer)
        assert (a.accuracy, a.loss, a.steps) == (b.accuracy, b.loss, b.steps)


def test_statistics_are_computed_the_same_way_streamed_or_in_memory(digits_folder):
    in_memory, streamed = _both(_folder(digits_folder, size=[12, 10], in_memory_limit_mib=1))
    x, _ = _stacked(streamed.train)
    assert torch.equal(x, in_memory.train_x)
    # Standardised with the training split's statistics: mean about 0 and std about 1 per channel.
    assert abs(float(x.mean())) < 1e-5 and abs(float(x.std()) - 1) < 1e-3


def _children_alive() -> set[int]:
    """The pids of this process's live children: compared before and after, so a pool another test in the
    same worker process left running (the service's formula workers) is not counted as a loader's."""
    return {child.pid for child in multiprocessing.active_children() if child.pid is not None}


@pytest.mark.timeout(240)
def test_loader_workers_start_read_and_stop(digits_folder, tmp_path, monkeypatch):
    pids = tmp_path / "pids"
    original = streaming.read_image

    def read_and_note(path, *args):
        with pids.open("a") as f:
            f.write(f"{os.getpid()}\n")
        return original(path, *args)

    monkeypatch.setattr(streaming, "read_image", read_and_note)  # forked workers inherit it
    earlier = _children_alive()
    in_memory, streamed = _both(_folder(digits_folder, max_train_samples=300), workers=2)
    pids.unlink()  # the notes of the statistics pass
    a, b = _trained(in_memory), _trained(streamed)
    assert (a.accuracy, a.loss) == (b.accuracy, b.loss)
    readers_ = {int(p) for p in pids.read_text().split()}
    assert os.getpid() not in readers_ and len(readers_) >= 2  # read in worker processes, several per stage
    assert _children_alive() == earlier  # every worker stopped: none outlives its stage


def test_a_search_candidate_on_streamed_data_leaves_no_worker_behind(digits_folder):
    from evonorm_search.search.config import SearchConfig
    from evonorm_search.search.evaluator import EvaluationTask, evaluate_task

    config = SearchConfig.from_mapping(
        {
            "name": "streamed",
            "architectures": [{"kind": "resnet", "width": 4, "blocks": [1]}],
            "data": {
                "name": "imagefolder",
                "path": str(digits_folder),
                "mode": "grayscale",
                "in_memory": False,
                "loader_workers": 1,
                "max_train_samples": 200,
            },
            "training": {"steps": 12, "batch_size": 16, "device": "cpu", "threads": 1},
            "rejection": {"quality": {"threshold": 0.0, "steps": 4}},
        }
    )
    graph = es.library.get("bn_relu")
    earlier = _children_alive()
    outcome = evaluate_task(EvaluationTask(1, 1, graph.to_dict(), config.evaluation_spec()))
    assert outcome.error is None, outcome.error
    assert [r.phase.value for r in outcome.records] == ["quality", "proxy"]
    assert _children_alive() == earlier


# --------------------------------------------------------------------------------------------------
# Read once per process
# --------------------------------------------------------------------------------------------------


def test_the_folder_is_scanned_once_and_shared_by_every_split_and_candidate(digits_folder, monkeypatch):
    config = _folder(digits_folder, in_memory=False, loader_workers=0, max_train_samples=64)
    first = load_data(config)
    _trained(first, stages=(4,))

    def no_scan(self):
        raise AssertionError(f"{self} scanned again")

    monkeypatch.setattr(readers.Path, "iterdir", no_scan)
    assert load_data(config) is first  # the same split: the same object
    for seed in (1, 2):  # other splits and candidates read the index made for the first
        other = load_data(config.model_copy(update={"seed": seed}))
        _trained(other, stages=(4,))
    load_data(config, "target")
    assert image_folder_index.cache_info().misses == 1


# --------------------------------------------------------------------------------------------------
# torchvision and python factories stream too
# --------------------------------------------------------------------------------------------------


def test_a_torchvision_class_streams_with_the_same_splits_as_in_memory(tmp_path):
    optional_packages.torchvision()
    fake = {"size": 40, "image_size": [3, 6, 6], "num_classes": 2}
    config = DataConfig(name="torchvision", dataset="FakeData", root=str(tmp_path), kwargs=fake, confirm_fraction=0.5)
    for split in SPLITS:
        in_memory, streamed = _both(config, split)
        assert torch.equal(_stacked(streamed.train)[0], in_memory.train_x)
        assert torch.equal(_stacked(streamed.scored)[0], in_memory.val_x)
        assert torch.equal(torch.from_numpy(streamed.scored.labels), in_memory.val_y)


DATASETS_FACTORY = """
import torch
from torch.utils.data import TensorDataset


def make(n=80):
    g = torch.Generator().manual_seed(1)
    y = torch.arange(n) % 4
    x = torch.randn(n, 1, 6, 6, generator=g) + y[:, None, None, None]
    return TensorDataset(x[:60], y[:60]), TensorDataset(x[60:], y[60:])


def arrays(n=80):
    train, test = make(n)
    return (*train.tensors, *test.tensors)
"""


@pytest.mark.parametrize("function", ["make", "arrays"])
def test_a_python_factory_streams_datasets_or_arrays_as_it_holds_them_in_memory(tmp_path, monkeypatch, function):
    (tmp_path / "stream_factory.py").write_text(DATASETS_FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        config = DataConfig(name="python", factory=f"stream_factory:{function}")
        for split in ("search", "target"):
            in_memory, streamed = _both(config, split)
            assert torch.equal(_stacked(streamed.train)[0], in_memory.train_x)
            a, b = _trained(in_memory), _trained(streamed)
            assert (a.accuracy, a.loss) == (b.accuracy, b.loss)
    finally:
        sys.modules.pop("stream_factory", None)


# --------------------------------------------------------------------------------------------------
# Bad settings: refused at validation, the field named
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"loader_workers": -1}, r"data.loader_workers: Input should be greater than or equal to 0"),
        ({"in_memory": "sometimes"}, r"data.in_memory: in_memory must be auto, true or false, got 'sometimes'"),
        ({"in_memory": 1}, r"data.in_memory: in_memory must be auto, true or false, got 1"),
        ({"in_memory_limit_mib": 0}, r"data.in_memory_limit_mib: Input should be greater than or equal to 1"),
        (
            {"name": "arrays", "path": "/d/a.npz", "in_memory": False},
            r"data: 'in_memory' applies to the data sets that can stream \(imagefolder, python, torchvision\), "
            r"not to 'arrays': it is always held in memory",
        ),
        ({"name": "mnist1d", "loader_workers": 2}, r"data: 'loader_workers' applies to .*not to 'mnist1d'"),
        ({"name": "digits", "in_memory_limit_mib": 64}, r"data: 'in_memory_limit_mib' applies to .*not to 'digits'"),
    ],
)
def test_bad_streaming_settings_are_refused_naming_the_field(data, message):
    mapping = {"name": "imagefolder", "path": "/d/images", **data}
    with pytest.raises(ConfigError, match=message):
        SearchConfig.from_mapping({"name": "t", "architectures": [{"kind": "resnet"}], "data": mapping})
    with pytest.raises(ValidationError):
        DataConfig(**mapping)


def test_streaming_settings_round_trip_through_a_stored_config(tmp_path):
    data = {"name": "imagefolder", "path": str(tmp_path), "in_memory": False, "loader_workers": 3}
    config = SearchConfig.from_mapping({"name": "t", "architectures": [{"kind": "resnet"}], "data": data})
    assert SearchConfig.from_mapping(config.model_dump(mode="json")).data == config.data
    assert (config.data.in_memory, config.data.loader_workers, config.data.in_memory_limit_mib) == (False, 3, 1024)


def test_images_of_another_size_in_a_streamed_folder_are_a_clear_error(tmp_path):
    for label in ("a", "b"):
        for i in range(6):
            (tmp_path / label).mkdir(exist_ok=True)
            Image.new("L", (5, 5) if (label, i) != ("b", 5) else (7, 7), 100 + i).save(tmp_path / label / f"{i}.png")
    config = _folder(tmp_path, in_memory=False, loader_workers=0, normalise={"mean": [0.5], "std": [0.25]})
    data = load_data(config, "target")
    assert isinstance(data, StreamedData)
    with pytest.raises(DataError, match=r"data.size: images differ in size .*b/5.png is \(1, 7, 7\).*set data.size"):
        _stacked(data.train)
        _stacked(data.scored)
