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
    RECALL_KEYS,
    RECALL_PAIRS,
    RECALL_VALUES,
    _load_cached,
    generate_mnist1d,
    generate_recall,
    input_spec,
    load_cifar10_arrays,
    mnist1d_templates,
    stratified_split,
)


def test_digits_load_offline_split_stratified_and_standardised():
    data = load_data(DataConfig(name="digits", validation_fraction=0.25, seed=3))
    assert data.train_x.shape[1:] == (1, 8, 8) and data.val_x.shape[1:] == (1, 8, 8)
    assert len(data.train_y) + len(data.val_y) == 1797 - 359  # a fixed fifth is the test split
    assert data.num_classes == 10 and data.in_channels == 1 and data.spatial_dims == 2
    assert data.train_x.dtype == torch.float32 and data.train_y.dtype == torch.int64
    # Standardised with training statistics: mean 0 and std 1 on the training split.
    assert abs(float(data.train_x.mean())) < 1e-4
    assert abs(float(data.train_x.std()) - 1.0) < 1e-2
    # Every class is held out in proportion.
    counts = torch.bincount(data.val_y, minlength=10)
    assert counts.min() >= 32 and counts.max() <= 40
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


def _recall_answers(x: np.ndarray) -> np.ndarray:
    """Decode each example the slow way: read the query's key, find the pair holding it, read its value."""
    answers = []
    for example in x:
        query_key = int(np.flatnonzero(example[:RECALL_KEYS, -1])[0])
        for position in range(RECALL_PAIRS):
            if example[query_key, position] == 1.0:
                answers.append(int(np.flatnonzero(example[RECALL_KEYS : RECALL_KEYS + RECALL_VALUES, position])[0]))
    return np.array(answers)


def test_recall_is_generated_locally_deterministically_and_its_label_is_the_recalled_value():
    x, y = generate_recall(300, seed=3)
    assert x.shape == (300, RECALL_KEYS + RECALL_VALUES + 1, RECALL_PAIRS + 1) and x.dtype == np.float32
    assert y.shape == (300,) and y.dtype == np.int64
    pairs, query = x[:, :, :RECALL_PAIRS], x[:, :, RECALL_PAIRS]
    # Every pair token holds one key and one value, keys distinct within an example; no query flag.
    assert (pairs[:, :RECALL_KEYS].sum(axis=1) == 1).all() and (pairs[:, RECALL_KEYS:-1].sum(axis=1) == 1).all()
    assert (pairs[:, :RECALL_KEYS].sum(axis=2) <= 1).all() and (pairs[:, -1] == 0).all()
    # The query holds one key, no value, and the flag.
    assert (query[:, :RECALL_KEYS].sum(axis=1) == 1).all() and (query[:, RECALL_KEYS:-1] == 0).all()
    assert (query[:, -1] == 1).all()
    assert np.array_equal(_recall_answers(x), y)
    assert set(np.unique(y)) == set(range(RECALL_VALUES))
    x2, y2 = generate_recall(300, seed=3)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    assert not np.array_equal(generate_recall(300, seed=4)[0], x)
    assert input_spec(DataConfig(name="recall")) == (RECALL_KEYS + RECALL_VALUES + 1, 1, RECALL_VALUES)


def test_a_larger_recall_task_is_configured_generated_deterministically_and_answerable():
    config = DataConfig(name="recall", samples=240, test_samples=60, confirm_samples=40,
                        recall_pairs=12, recall_keys=24, recall_values=10)  # fmt: skip
    data = load_data(config)
    assert data.train_x.shape[1:] == (24 + 10 + 1, 13) and input_spec(config) == (35, 1, 10)
    x, y = generate_recall(200, [0, 0], pairs=12, keys=24, values=10)
    query_keys = x[:, :24, -1].argmax(axis=1)
    # The label is the value stored at the pair whose key the query asks for.
    stored = [int(np.flatnonzero(x[i, :24, :12][query_keys[i]])[0]) for i in range(len(x))]
    assert np.array_equal(y, x[np.arange(len(x)), 24:34, stored].argmax(axis=1))
    assert np.array_equal(generate_recall(200, [0, 0], pairs=12, keys=24, values=10)[0], x)
    # The streams stay disjoint: no test or confirmation example is a search example.
    target, confirm = load_data(config, split="target"), load_data(config, split="confirm")
    assert _rows(target.val_x).isdisjoint(_rows(target.train_x))
    assert _rows(confirm.val_x).isdisjoint(_rows(target.train_x) | _rows(target.val_x))


def test_recall_settings_are_validated():
    with pytest.raises(ValidationError, match="recall_pairs \\(20\\) must not exceed recall_keys \\(16\\)"):
        DataConfig(name="recall", recall_pairs=20)
    with pytest.raises(ValidationError, match="recall_values"):
        DataConfig(name="recall", recall_values=1)


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
        ({"name": "cifar10"}, r"path\n  Field required"),
        (
            {"name": "digits", "path": "/tmp"},
            "'path' applies to the data sets arrays, cifar10, imagefolder, not to 'digits'",
        ),
        ({"name": "imagenet"}, "unknown data set 'imagenet'; known: arrays, cifar10, digits, imagefolder, mnist1d"),
        ({"validation_fraction": 1.0}, "less than 1"),
        ({"name": "synthetic", "synthetic_shape": [1, 0]}, "every dimension must be positive"),
        ({"name": "synthetic", "synthetic_shape": [1, 2, 3, 4]}, "at most 3 items"),
        ({"name": "mnist1d", "samples": "100"}, "valid integer"),
        ({"name": "mnist1d", "sample": 100}, "Extra inputs are not permitted"),
        ({"samples": 100}, "'samples' applies to the data sets mnist1d, recall, synthetic, not to 'digits'"),
    ],
)
def test_data_config_rejects_bad_values(kwargs, fragment):
    with pytest.raises(ValidationError, match=fragment):
        DataConfig(**kwargs)


def _rows(x: torch.Tensor) -> set[bytes]:
    return {row.numpy().tobytes() for row in x}


@pytest.mark.parametrize(
    "config",
    [
        DataConfig(name="digits", seed=3),
        DataConfig(name="mnist1d", samples=200, test_samples=60, seed=5),
        DataConfig(name="synthetic", synthetic_shape=[2, 6], samples=120, test_samples=40),
    ],
    ids=lambda c: c.name,
)
def test_the_target_split_trains_on_the_search_part_and_scores_on_a_test_split_no_search_reads(config):
    search = load_data(config)
    target = load_data(config, split="target")
    assert search.scored_on == "validation" and target.scored_on == "test"
    # The target trains on everything a search may read: its training and validation splits.
    assert len(target.train_y) == len(search.train_y) + len(search.val_y)
    # The test split is disjoint from every example a search sees, for any seed of the search part.
    other_seed = load_data(config.model_copy(update={"seed": config.seed + 1}))
    test_rows = _rows(target.val_x)
    assert test_rows.isdisjoint(_rows(target.train_x))
    if config.name == "digits":  # the same fixed test images, whatever the seed
        assert len(target.val_y) == 359
        assert test_rows.isdisjoint(_rows(other_seed.train_x) | _rows(other_seed.val_x))
    else:
        assert len(target.val_y) == config.test_samples
    # Standardised with training statistics only.
    assert abs(float(target.train_x.mean())) < 1e-4


def test_cifar10_target_reads_the_test_batch_and_says_when_it_is_missing(tmp_path):
    write_cifar_batch(tmp_path / "data_batch_1", 30, seed=0)
    config = DataConfig(name="cifar10", path=str(tmp_path), validation_fraction=0.2)
    with pytest.raises(DataError, match=r"no CIFAR-10 test batch \(test_batch\).*target task scores on it"):
        load_data(config, split="target")
    write_cifar_batch(tmp_path / "test_batch", 12, seed=2)
    target = load_data(config.model_copy(update={"max_train_samples": 10}), split="target")
    assert len(target.train_y) == 30 and len(target.val_y) == 12 and target.scored_on == "test"


def test_unknown_split_is_refused():
    with pytest.raises(ValueError, match="split must be one of search, target, confirm"):
        load_data(DataConfig(), split="test")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "config",
    [
        DataConfig(name="mnist1d", samples=200, test_samples=60, confirm_samples=50),
        DataConfig(name="recall", samples=200, test_samples=60, confirm_samples=50),
        DataConfig(name="synthetic", synthetic_shape=[2, 6], samples=120, test_samples=40, confirm_samples=30),
    ],
    ids=lambda c: c.name,
)
def test_the_confirmation_split_of_a_generated_data_set_is_a_stream_no_other_split_draws(config):
    confirm = load_data(config, split="confirm")
    target = load_data(config, split="target")
    assert confirm.scored_on == "confirm" and len(confirm.val_y) == config.confirm_samples
    assert torch.equal(confirm.train_x, target.train_x)  # trained like the target task, on the whole search part
    confirm_rows = _rows(confirm.val_x)
    assert confirm_rows.isdisjoint(_rows(target.val_x)), "confirmation and test examples overlap"
    assert confirm_rows.isdisjoint(_rows(target.train_x)), "confirmation examples are in the search part"
    # Drawn afresh (not from the process's cache), the same: a confirmation is reproducible.
    _load_cached.cache_clear()
    assert torch.equal(load_data(config, split="confirm").val_x, confirm.val_x)


def test_a_fixed_test_split_has_a_confirmation_split_only_when_a_fraction_is_carved():
    with pytest.raises(DataError, match=r"digits has no confirmation split.*confirm_fraction"):
        load_data(DataConfig(name="digits"), split="confirm")
    whole = load_data(DataConfig(name="digits"), split="target")
    carved = DataConfig(name="digits", confirm_fraction=0.5)
    test, confirm = load_data(carved, split="target"), load_data(carved, split="confirm")
    assert len(test.val_y) + len(confirm.val_y) == len(whole.val_y) == 359
    assert 170 <= len(confirm.val_y) <= 190 and sorted(set(confirm.val_y.tolist())) == list(range(10))
    # The two parts are the fixed test split, divided: together they hold exactly its images.
    assert sorted(_rows(test.val_x) | _rows(confirm.val_x)) == sorted(_rows(whole.val_x))
    assert _rows(test.val_x).isdisjoint(_rows(confirm.val_x))


def test_confirm_fraction_is_refused_where_the_confirmation_split_is_generated():
    with pytest.raises(ValidationError, match="'confirm_fraction' applies to the data sets arrays, cifar10, digits"):
        DataConfig(name="mnist1d", confirm_fraction=0.3)


def test_a_data_set_has_one_copy_per_device_however_many_trainers_ask():
    from evonorm_search.proxies.data import load_data

    data = load_data(DataConfig(name="synthetic", samples=40, synthetic_shape=[1, 4, 4], synthetic_classes=2))
    assert data.to("cpu") is data  # already there: no copy
    meta = data.to("meta")  # another device: copied once, then shared
    assert meta is data.to(torch.device("meta")) and meta.train_x.device.type == "meta"
    assert meta.train_x.shape == data.train_x.shape and meta.num_classes == data.num_classes


def test_a_confirmation_spec_trains_like_the_target_and_scores_on_the_confirmation_split():
    from evonorm_search import library
    from evonorm_search.search import InProcessEvaluator  # noqa: F401 (the spec runs through any evaluator)
    from evonorm_search.search.config import SearchConfig
    from evonorm_search.search.evaluator import EvaluationTask, evaluate_task

    config = SearchConfig.from_mapping(
        {
            "name": "confirm",
            "architectures": [{"kind": "resnet", "width": 4, "blocks": [1]}],
            "data": {"name": "synthetic", "synthetic_shape": [1, 6, 6], "synthetic_classes": 3, "samples": 60},
            "validation": {
                "architectures": [{"kind": "resnet", "width": 4, "blocks": [1]}],
                "data": {"name": "synthetic", "synthetic_shape": [1, 6, 6], "synthetic_classes": 3,
                         "samples": 60, "test_samples": 30, "confirm_samples": 21},
                "training": {"steps": 3, "batch_size": 16, "device": "cpu", "threads": 1},
            },
        }
    )  # fmt: skip
    spec = config.confirmation_spec(1000)
    assert spec.split == "confirm" and spec.model_copy(update={"split": "target"}) == config.target_spec(1000)
    outcome = evaluate_task(EvaluationTask(0, 1, library.get("gn_relu").to_dict(), spec))
    accuracy = next(iter(outcome.objectives.values()))
    assert outcome.error is None and round(accuracy * 21) == accuracy * 21  # scored on the 21 confirmation examples
