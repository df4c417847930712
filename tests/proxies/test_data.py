"""Proxy data: digits, MNIST-1D, CIFAR-10 from a directory the test writes, synthetic; and every bad input."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from evonorm_search.proxies import DataConfig, DataError, load_data
from evonorm_search.proxies.data import (
    generate_mnist1d,
    input_spec,
    load_cifar10_arrays,
    mnist1d_templates,
    stratified_split,
)


def test_digits_load_offline_split_stratified_and_standardised():
    data = load_data(DataConfig(name="digits", validation_fraction=0.25, seed=3))
    assert data.train_x.shape[1:] == (1, 8, 8) and data.val_x.shape[1:] == (1, 8, 8)
    assert len(data.train_y) + len(data.val_y) == 1797
    assert data.num_classes == 10 and data.in_channels == 1 and data.spatial_dims == 2
    assert data.train_x.dtype == torch.float32 and data.train_y.dtype == torch.int64
    # Standardised with training statistics: mean 0 and std 1 on the training split.
    assert abs(float(data.train_x.mean())) < 1e-4
    assert abs(float(data.train_x.std()) - 1.0) < 1e-2
    # Every class is held out in proportion.
    counts = torch.bincount(data.val_y, minlength=10)
    assert counts.min() >= 40 and counts.max() <= 50
    assert input_spec(DataConfig()) == (1, 2, 10)


def test_splits_are_seeded_and_disjoint():
    labels = np.repeat(np.arange(5), 20)
    train, val = stratified_split(labels, 0.2, seed=7)
    again_train, again_val = stratified_split(labels, 0.2, seed=7)
    other_train, _ = stratified_split(labels, 0.2, seed=8)
    assert np.array_equal(train, again_train) and np.array_equal(val, again_val)
    assert not np.array_equal(train, other_train)
    assert set(train).isdisjoint(val) and len(train) + len(val) == 100
    assert np.bincount(labels[val]).tolist() == [4] * 5


def test_max_train_samples_subsamples_training_only():
    full = load_data(DataConfig(name="digits"))
    small = load_data(DataConfig(name="digits", max_train_samples=100))
    assert len(small.train_y) == 100
    assert len(small.val_y) == len(full.val_y)


def test_mnist1d_is_generated_locally_deterministically():
    x, y = generate_mnist1d(200, seed=1)
    assert x.shape == (200, 1, 40) and y.shape == (200,)
    assert np.bincount(y).tolist() == [20] * 10
    x2, y2 = generate_mnist1d(200, seed=1)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    x3, _ = generate_mnist1d(200, seed=2)
    assert not np.allclose(x, x3)
    templates = mnist1d_templates()
    assert templates.shape == (10, 12) and np.allclose(templates[:, 0], 0.0)
    data = load_data(DataConfig(name="mnist1d", samples=300))
    assert data.train_x.shape[1:] == (1, 40) and data.spatial_dims == 1
    assert input_spec(DataConfig(name="mnist1d")) == (1, 1, 10)


def test_synthetic_data_has_the_configured_shape_and_classes():
    data = load_data(DataConfig(name="synthetic", synthetic_shape=[3, 16], synthetic_classes=5, samples=200))
    assert data.train_x.shape[1:] == (3, 16) and data.num_classes == 5
    assert input_spec(DataConfig(name="synthetic", synthetic_shape=[3, 16], synthetic_classes=5)) == (3, 1, 5)


# -- CIFAR-10 from a local directory ----------------------------------------------------------------


def write_cifar_batch(path, n: int, seed: int, protocol: int = 2) -> None:
    rng = np.random.default_rng(seed)
    batch = {
        b"batch_label": b"training batch",
        b"labels": [int(v) for v in rng.integers(0, 10, n)],
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [f"img{i}.png".encode() for i in range(n)],
    }
    path.write_bytes(pickle.dumps(batch, protocol=protocol))


def test_cifar10_reads_the_standard_python_batches(tmp_path):
    write_cifar_batch(tmp_path / "data_batch_1", 30, seed=0)
    write_cifar_batch(tmp_path / "data_batch_2", 20, seed=1, protocol=4)
    (tmp_path / "test_batch").write_bytes(b"never read")
    x, y = load_cifar10_arrays(tmp_path)
    assert x.shape == (50, 3, 32, 32) and x.dtype == np.uint8 and y.shape == (50,)
    data = load_data(DataConfig(name="cifar10", path=str(tmp_path), validation_fraction=0.2))
    assert data.train_x.shape[1:] == (3, 32, 32) and data.in_channels == 3
    assert len(data.train_y) + len(data.val_y) == 50


def test_cifar10_missing_directory_says_where_to_get_the_data(tmp_path):
    with pytest.raises(
        DataError, match=r"does not exist; run `evonorm-search data download cifar10 DEST`.*cifar-10-python.tar.gz"
    ):
        load_cifar10_arrays(tmp_path / "absent")
    with pytest.raises(DataError, match="no CIFAR-10 training batches"):
        load_cifar10_arrays(tmp_path)


def test_cifar10_malformed_batches_are_clear_errors(tmp_path):
    (tmp_path / "data_batch_1").write_bytes(b"\x80\x04 not a pickle")
    with pytest.raises(DataError, match="not a CIFAR-10 python batch"):
        load_cifar10_arrays(tmp_path)
    (tmp_path / "data_batch_1").write_bytes(pickle.dumps({b"data": np.zeros((3, 10), np.uint8), b"labels": [0, 1, 2]}))
    with pytest.raises(DataError, match=r"expected 'data' of shape \(N, 3072\)"):
        load_cifar10_arrays(tmp_path)
    (tmp_path / "data_batch_1").write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 12]}))
    with pytest.raises(DataError, match=r"labels must lie in 0..9"):
        load_cifar10_arrays(tmp_path)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_cifar10_reader_refuses_pickles_that_would_run_code(tmp_path):
    (tmp_path / "data_batch_1").write_bytes(pickle.dumps({b"data": _Exploit(), b"labels": []}))
    with pytest.raises(DataError, match="forbidden object"):
        load_cifar10_arrays(tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"name": "cifar10"}, "cifar10 needs 'path'"),
        ({"name": "digits", "path": "/tmp"}, "'path' applies to cifar10 only"),
        ({"name": "imagenet"}, "Input should be 'digits', 'mnist1d', 'cifar10' or 'synthetic'"),
        ({"validation_fraction": 1.0}, "less than 1"),
        ({"synthetic_shape": [1, 0]}, "every dimension must be positive"),
        ({"synthetic_shape": [1, 2, 3, 4]}, "at most 3 items"),
        ({"samples": "100"}, "valid integer"),
        ({"sample": 100}, "Extra inputs are not permitted"),
    ],
)
def test_data_config_rejects_bad_values(kwargs, fragment):
    with pytest.raises(ValidationError, match=fragment):
        DataConfig(**kwargs)


def test_a_data_set_has_one_copy_per_device_however_many_trainers_ask():
    from evonorm_search.proxies.data import load_data

    data = load_data(DataConfig(name="synthetic", samples=40, synthetic_shape=[1, 4, 4], synthetic_classes=2))
    assert data.to("cpu") is data  # already there: no copy
    meta = data.to("meta")  # another device: copied once, then shared
    assert meta is data.to(torch.device("meta")) and meta.train_x.device.type == "meta"
    assert meta.train_x.shape == data.train_x.shape and meta.num_classes == data.num_classes
