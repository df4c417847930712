"""The table of data sets: every row through config, each of its splits and its input spec; a throwaway
row registered at test time works everywhere a built-in one does; the built-in data sets load the same
arrays as before they moved onto the table."""

from __future__ import annotations

import hashlib
import pickle
import sys
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from evonorm_search.proxies import DataConfig, ProxyData, load_data
from evonorm_search.proxies.config import DATA_CONFIGS, GeneratedData
from evonorm_search.proxies.data import (
    DATASETS,
    SEARCH_STREAM,
    DataSet,
    clear_caches,
    declared_spatial_dims,
    input_spec,
    register_dataset,
)
from evonorm_search.proxies.folders import make_image_folder
from evonorm_search.search.config import SearchConfig

# --------------------------------------------------------------------------------------------------
# One small config per row, with the files it needs written under tmp_path
# --------------------------------------------------------------------------------------------------


def write_fake_cifar(folder: Path) -> None:
    """Two training batches and a test batch of 60 random images each, ten classes."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    for name in ("data_batch_1", "data_batch_2", "test_batch"):
        data = rng.integers(0, 256, size=(60, 3072), dtype=np.uint8)
        labels = [int(v) for v in np.arange(60) % 10]
        (folder / name).write_bytes(pickle.dumps({b"data": data, b"labels": labels}, protocol=2))


def _arrays(tmp_path: Path) -> dict:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 2, 12)).astype(np.float32)
    np.savez(tmp_path / "arrays.npz", x=x, y=np.arange(60) % 3)
    return {"name": "arrays", "path": str(tmp_path / "arrays.npz"), "confirm_fraction": 0.5}


FACTORY_MODULE = """
import numpy as np

def make(n=60):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, 1, 6, 6)).astype(np.float32)
    y = np.arange(n) % 2
    return x[:40], y[:40], x[40:], y[40:]
"""


def _python(tmp_path: Path) -> dict:
    (tmp_path / "table_factory.py").write_text(FACTORY_MODULE)
    sys.path.insert(0, str(tmp_path))
    return {"name": "python", "factory": "table_factory:make", "confirm_fraction": 0.5}


def _torchvision(tmp_path: Path) -> dict:
    try:
        import torchvision  # noqa: F401
    except Exception as e:  # RuntimeError where torchvision was built for another torch
        pytest.skip(f"torchvision does not import here ({type(e).__name__}: {e}); its refusal is tested")
    kwargs = {"size": 40, "image_size": [3, 8, 8], "num_classes": 2}
    return {
        "name": "torchvision",
        "dataset": "FakeData",
        "root": str(tmp_path),
        "kwargs": kwargs,
        "confirm_fraction": 0.5,
    }


def _cifar10(tmp_path: Path) -> dict:
    write_fake_cifar(tmp_path / "cifar")
    return {"name": "cifar10", "path": str(tmp_path / "cifar"), "confirm_fraction": 0.3}


def _imagefolder(tmp_path: Path) -> dict:
    folder = make_image_folder(tmp_path / "digits")
    return {"name": "imagefolder", "path": str(folder), "mode": "grayscale", "confirm_fraction": 0.5}


def _generated(name: str) -> dict:
    return {"name": name, "samples": 100, "test_samples": 40, "confirm_samples": 30}


EXAMPLES = {
    "digits": lambda tmp_path: {"name": "digits", "confirm_fraction": 0.5},
    "cifar10": _cifar10,
    "mnist1d": lambda tmp_path: _generated("mnist1d"),
    "recall": lambda tmp_path: _generated("recall"),
    "synthetic": lambda tmp_path: _generated("synthetic"),
    "imagefolder": _imagefolder,
    "arrays": _arrays,
    "python": _python,
    "torchvision": _torchvision,
}


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_caches()
    path = list(sys.path)
    yield
    sys.path[:] = path


def test_every_row_has_an_example_here():
    assert set(EXAMPLES) == set(DATASETS), "give a new data set an example config in EXAMPLES"


def _rows(x: torch.Tensor) -> set[bytes]:
    return {row.numpy().tobytes() for row in x}


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_every_row_loads_each_split_and_its_input_spec(name, tmp_path):
    config = DataConfig(**EXAMPLES[name](tmp_path))
    assert type(config) is DATASETS[name].config and DATA_CONFIGS[name] is type(config)
    # The config survives a search config's round trip (how it is stored and shipped to workers).
    search_config = SearchConfig.from_mapping({"name": "t", "architectures": [{"kind": "resnet"}],
                                               "data": config.model_dump(mode="json")})  # fmt: skip
    assert search_config.data == config
    search, target, confirm = (load_data(config, split) for split in ("search", "target", "confirm"))
    assert isinstance(search, ProxyData) and (search.scored_on, target.scored_on) == ("validation", "test")
    assert confirm.scored_on == "confirm"
    # The target trains on the whole search part; the test and confirmation splits are not in it.
    assert len(target.train_y) == len(search.train_y) + len(search.val_y)
    assert torch.equal(confirm.train_x, target.train_x)
    # Statistics of the training part only: compare raw rows, standardised the same way in both loads.
    assert _rows(target.val_x).isdisjoint(_rows(confirm.val_x))
    channels, dims, classes = input_spec(config)
    assert (channels, dims) == (search.in_channels, search.spatial_dims) and classes == search.num_classes
    assert declared_spatial_dims(config) in (None, dims)


# --------------------------------------------------------------------------------------------------
# A throwaway row
# --------------------------------------------------------------------------------------------------


class StripesData(GeneratedData):
    """Throwaway: horizontal (label 0) or vertical (label 1) stripes of `period`."""

    name: Literal["stripes"]
    period: int = 2


def _stripes(config: StripesData, samples: int, stream: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([config.seed, stream])
    y = np.arange(samples) % 2
    stripe = (np.arange(6) // config.period % 2).astype(np.float32)
    images = np.where(y[:, None, None] == 0, stripe[None, :, None], stripe[None, None, :]) * np.ones((1, 6, 6))
    return (images[:, None] + 0.1 * rng.standard_normal((samples, 1, 6, 6))).astype(np.float32), y


@pytest.fixture
def stripes_row():
    row = DataSet(
        name="stripes",
        config=StripesData,
        search=lambda c: _stripes(c, c.samples, SEARCH_STREAM),
        test=lambda c: _stripes(c, c.test_samples, 1),
        confirm=lambda c: _stripes(c, c.confirm_samples, 2),
        identity=lambda c: {"generator": "stripes", "period": c.period},
        spec=lambda c: (1, 2, 2),
    )
    register_dataset(row)
    yield row
    DATASETS.pop("stripes")
    DATA_CONFIGS.pop("stripes")


def test_a_registered_row_works_like_a_built_in_one(stripes_row):
    config = DataConfig(name="stripes", samples=80, test_samples=40, confirm_samples=20, period=3)
    assert isinstance(config, StripesData) and config.period == 3
    search_config = SearchConfig.from_mapping({"name": "t", "architectures": [{"kind": "resnet"}],
                                               "data": {"name": "stripes", "samples": 80}})  # fmt: skip
    assert isinstance(search_config.data, StripesData) and search_config.input_shape() == (1, 2, 2)
    data = load_data(config)
    assert data.train_x.shape[1:] == (1, 6, 6) and len(data.train_y) + len(data.val_y) == 80
    assert len(load_data(config, "target").val_y) == 40 and len(load_data(config, "confirm").val_y) == 20
    with pytest.raises(ValidationError, match=r"periodd\n  Extra inputs are not permitted"):
        DataConfig(name="stripes", periodd=3)


def test_a_row_whose_model_does_not_name_it_is_refused():
    with pytest.raises(ValueError, match=r"its config model's `name` must be Literal\['other'\]"):
        register_dataset(DataSet("other", StripesData, *(lambda c: None,) * 4))  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# The built-in data sets load what they loaded before the table
# --------------------------------------------------------------------------------------------------

# SHA-256 (first 16 hex digits) over train_x, train_y, val_x and val_y of `load_data(config, split)`,
# computed with the code before the data sets moved onto the table (commit 2f155c9 on main) by running
# this module's `_digest` over the same configs, the CIFAR-10 folder written by `write_fake_cifar`.
BEFORE_THE_TABLE = {
    ("digits", "search"): "0bbc77a49ef12f07",
    ("digits", "target"): "0d7cf5c97f39d120",
    ("digits_carved", "search"): "e99ac865d0ef7aba",
    ("digits_carved", "target"): "6e389c473ce58fa3",
    ("digits_carved", "confirm"): "63b72bbcb8c1c187",
    ("mnist1d", "search"): "a89eb7d86c70753a",
    ("mnist1d", "target"): "7870663bab4af568",
    ("mnist1d", "confirm"): "be0f31a86bedd2d1",
    ("recall", "search"): "b0aa2a1e6818c888",
    ("recall", "target"): "9cc241ce8a23eb7e",
    ("recall", "confirm"): "ac965be76ca742c2",
    ("synthetic", "search"): "906c3443cff391fa",
    ("synthetic", "target"): "f8ef99bb76fb39b9",
    ("synthetic", "confirm"): "251c2c3cae6c254c",
    ("cifar10", "search"): "2411808e45c990fc",
    ("cifar10", "target"): "0d6f60b2c6b2dcc4",
    ("cifar10", "confirm"): "049dac0623d6b892",
}
CHECKSUM_CONFIGS = {
    "digits": {"name": "digits", "seed": 3},
    "digits_carved": {"name": "digits", "confirm_fraction": 0.5, "max_train_samples": 100},
    "mnist1d": {"name": "mnist1d", "samples": 200, "test_samples": 60, "confirm_samples": 50, "seed": 5},
    "recall": {"name": "recall", "samples": 200, "test_samples": 60, "confirm_samples": 50, "recall_pairs": 4},
    "synthetic": {"name": "synthetic", "synthetic_shape": [1, 6, 6], "synthetic_classes": 3, "samples": 240},
    "cifar10": {"name": "cifar10", "validation_fraction": 0.2, "confirm_fraction": 0.3},
}


def _digest(data: ProxyData) -> str:
    digest = hashlib.sha256()
    for tensor in (data.train_x, data.train_y, data.val_x, data.val_y):
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()[:16]


@pytest.mark.parametrize(("key", "split"), sorted(BEFORE_THE_TABLE))
def test_built_in_data_sets_load_bit_identical_arrays(key, split, tmp_path):
    kwargs = dict(CHECKSUM_CONFIGS[key])
    if kwargs["name"] == "cifar10":
        write_fake_cifar(tmp_path)
        kwargs["path"] = str(tmp_path)
    assert _digest(load_data(DataConfig(**kwargs), split=split)) == BEFORE_THE_TABLE[key, split]


# The flat DataConfig every data set shared before the table, as `model_dump(mode="json")` wrote it into
# stored searches (the defaults of commit 2f155c9): a stored search must still resume.
FLAT_DUMP = {
    "validation_fraction": 0.25, "max_train_samples": None, "seed": 0, "path": None, "samples": 4000,
    "test_samples": 1000, "confirm_samples": 1000, "confirm_fraction": 0.0, "recall_pairs": 6, "recall_keys": 16,
    "recall_values": 8, "synthetic_shape": [1, 8, 8], "synthetic_classes": 4,
}  # fmt: skip


@pytest.mark.parametrize("name", ["digits", "mnist1d", "recall", "synthetic", "cifar10"])
def test_a_stored_flat_config_still_validates_to_its_data_sets_model(name, tmp_path):
    stored = {**FLAT_DUMP, "name": name, "path": str(tmp_path) if name == "cifar10" else None}
    config = SearchConfig.from_mapping({"name": "stored", "architectures": [{"kind": "resnet"}], "data": stored})
    assert config.data == DataConfig(**{k: v for k, v in stored.items() if k in type(config.data).model_fields})
    assert set(config.data.model_dump()) <= set(stored)
