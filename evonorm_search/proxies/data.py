"""Proxy data sets, all available offline: digits, MNIST-1D, CIFAR-10 from a local directory, associative
recall, synthetic.

Every data set has disjoint parts: the *search part*, which searches train on and score on (a held-out
validation split drawn from it with a seeded, stratified shuffle), the *test split*, which only the
target task reads (`split="target"`: train on the whole search part, score on the test split), so a
layer's validated score is measured on data that no search ever saw, and the *confirmation split*
(`split="confirm"`: train on the whole search part, score on it), which no search, no validation and no
design choice reads: the project's defaults (proxies, thresholds, mutations) were chosen by looking at
the test split, so only the confirmation split can confirm them (docs/splits.md says which split chose
what):

| data set | test split | confirmation split |
| --- | --- | --- |
| digits | a fixed stratified fifth of scikit-learn's 1,797 images (the same for every `seed`) | `confirm_fraction` of the test split, carved stratified with a fixed seed (none by default) |
| mnist1d, recall, synthetic | `test_samples` examples generated from a random stream that searches never draw | `confirm_samples` examples from a third stream |
| cifar10 | the standard `test_batch` file | `confirm_fraction` of it, as for digits |

Inputs are float32 of shape (N, C, *spatial), labels int64, standardised per channel with statistics of
the training data only. Loading is cached per process, keyed by the configuration and the split.
"""

from __future__ import annotations

import functools
import pickle
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from .config import DataConfig

Split = Literal["search", "target", "confirm"]
SPLITS: tuple[Split, ...] = ("search", "target", "confirm")
CIFAR_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST_FILE = "test_batch"
# The digits test split is drawn with this seed whatever the configuration's seed, so no search's
# validation split can ever contain a test image.
DIGITS_TEST_FRACTION = 0.2
DIGITS_TEST_SEED = 20_200_405
# Random streams (numpy SeedSequence entropy [seed, stream]): searches draw stream 0, the test split stream 1,
# the confirmation split stream 2.
SEARCH_STREAM, TEST_STREAM, CONFIRM_STREAM = 0, 1, 2
# A confirmation fraction carved from a fixed test split is drawn with this seed whatever the config's seed.
CONFIRM_CARVE_SEED = 20_261_206
CIFAR_IMAGE_SHAPE = (3, 32, 32)
FIXED_TEST_SPLITS = ("digits", "cifar10")  # data sets whose test split is a fixed set of examples
CIFAR_URL_HINT = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"


class DataError(ValueError):
    """Proxy data that cannot be loaded: a missing directory, a malformed file, an empty split."""


@dataclass(frozen=True)
class ProxyData:
    """Training data and the data it is scored on: the validation split (`scored_on="validation"`, what
    searches use) or the test split (`"test"`, the target task's)."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    num_classes: int
    scored_on: str = "validation"
    # Copies of this data set on other devices, made once: every candidate's trainer on every architecture
    # shares one (the copies live as long as this data set, which `load_data` keeps for the process).
    _copies: dict[str, ProxyData] = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def in_channels(self) -> int:
        return self.train_x.shape[1]

    @property
    def spatial_dims(self) -> int:
        return self.train_x.dim() - 2

    def to(self, device: torch.device | str) -> ProxyData:
        """This data set on `device`: itself when it is there, else one copy per device, made on first use."""
        target = torch.device(device)
        if self.train_x.device == target:
            return self
        key = str(target)
        copy = self._copies.get(key)
        if copy is None:
            copy = ProxyData(
                self.name,
                self.train_x.to(target),
                self.train_y.to(target),
                self.val_x.to(target),
                self.val_y.to(target),
                self.num_classes,
                self.scored_on,
            )
            self._copies[key] = copy
        return copy


# --------------------------------------------------------------------------------------------------
# Splitting and standardising
# --------------------------------------------------------------------------------------------------


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, validation) with `fraction` of each class held out (at least one per class)."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        rng.shuffle(idx)
        n_val = min(len(idx) - 1, max(1, round(fraction * len(idx))))
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(val))


def _check_arrays(name: str, x: np.ndarray, y: np.ndarray) -> None:
    if len(x) != len(y) or len(np.unique(y)) < 2:
        raise DataError(f"{name}: need inputs and labels of equal length with at least two classes")


def _tensors(
    name: str, train: tuple[np.ndarray, np.ndarray], scored: tuple[np.ndarray, np.ndarray], scored_on: str
) -> ProxyData:
    """Standardise per channel with statistics of the training inputs only; convert to tensors."""
    train_x = train[0].astype(np.float32)
    reduce_axes = (0, *range(2, train_x.ndim))
    mean = train_x.mean(axis=reduce_axes, keepdims=True)
    std = train_x.std(axis=reduce_axes, keepdims=True) + 1e-6

    def standardise(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray((x.astype(np.float32) - mean) / std))

    return ProxyData(
        name=name,
        train_x=standardise(train_x),
        train_y=torch.from_numpy(train[1].astype(np.int64)),
        val_x=standardise(scored[0]),
        val_y=torch.from_numpy(scored[1].astype(np.int64)),
        num_classes=int(max(train[1].max(), scored[1].max())) + 1,
        scored_on=scored_on,
    )


def _search_split(name: str, x: np.ndarray, y: np.ndarray, config: DataConfig) -> ProxyData:
    """Train and validation splits of the search part; `max_train_samples` subsamples the training split."""
    _check_arrays(name, x, y)
    train_idx, val_idx = stratified_split(y, config.validation_fraction, config.seed)
    if config.max_train_samples is not None:
        train_idx = train_idx[: config.max_train_samples]
    return _tensors(name, (x[train_idx], y[train_idx]), (x[val_idx], y[val_idx]), "validation")


def _target_split(
    name: str, search: tuple[np.ndarray, np.ndarray], scored: tuple[np.ndarray, np.ndarray], scored_on: str = "test"
) -> ProxyData:
    """The whole search part for training, the test (or confirmation) split for scoring."""
    _check_arrays(name, *search)
    _check_arrays(f"{name} {scored_on} split", *scored)
    return _tensors(name, search, scored, scored_on)


# --------------------------------------------------------------------------------------------------
# The data sets
# --------------------------------------------------------------------------------------------------


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes): no download."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.images[:, None, :, :].astype(np.float32), bunch.target.astype(np.int64)


def digits_parts() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """(search part, test split) of the digits: a fixed stratified fifth is the test split."""
    x, y = load_digits_arrays()
    search_idx, test_idx = stratified_split(y, DIGITS_TEST_FRACTION, DIGITS_TEST_SEED)
    return (x[search_idx], y[search_idx]), (x[test_idx], y[test_idx])


# The ten MNIST-1D digit templates (Greydanus, 2020): 12-point 1-D strokes, one per class.
_MNIST1D_TEMPLATES = np.array(
    [
        [5, 6, 6.5, 6.75, 7, 7, 7, 7, 6.75, 6.5, 6, 5],
        [5, 3, 3, 3.4, 3.8, 4.2, 4.6, 5, 5.4, 5.8, 5, 5],
        [5, 6, 6.5, 6.5, 6, 5.25, 4.75, 4, 3.5, 3.5, 4, 5],
        [5, 6, 6.5, 6.5, 6, 5, 5, 6, 6.5, 6.5, 6, 5],
        [5, 4.4, 3.8, 3.2, 2.6, 2.6, 5, 5, 5, 5, 5, 5],
        [5, 3, 3, 3, 3, 5, 6, 6.5, 6.5, 6, 4.5, 5],
        [5, 4, 3.5, 3.25, 3, 3, 3, 3, 3.25, 3.5, 4, 5],
        [5, 7, 7, 6.6, 6.2, 5.8, 5.4, 5, 4.6, 4.2, 5, 5],
        [5, 4, 3.5, 3.5, 4, 5, 5, 4, 3.5, 3.5, 4, 5],
        [5, 4, 3.5, 3.5, 4, 5, 5, 5, 5, 4.7, 4.3, 5],
    ]
)
MNIST1D_LENGTH = 40


def mnist1d_templates() -> np.ndarray:
    """Templates whitened, shifted to start at 0 and scaled, as in the MNIST-1D paper."""
    t = _MNIST1D_TEMPLATES - _MNIST1D_TEMPLATES.mean(axis=1, keepdims=True)
    t = t / t.std(axis=1, keepdims=True)
    return (t - t[:, :1]) / 6.0


def _resample(signal: np.ndarray, length: int) -> np.ndarray:
    return np.interp(np.linspace(0.0, 1.0, length), np.linspace(0.0, 1.0, len(signal)), signal)


def _mnist1d_example(template: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One MNIST-1D example: pad, dilate, scale, translate, add correlated and i.i.d. noise, shear, resample."""
    from scipy.ndimage import gaussian_filter1d

    low, high, max_translation = 36, 60, 48
    padded = np.concatenate([template + 1e-8, np.zeros(low + int(rng.integers(0, high - low + 1)))])
    signal = _resample(padded, len(template) + high)
    signal = signal * (1.0 + 0.4 * (rng.random() - 0.5))
    signal = np.roll(signal, int(rng.integers(0, max_translation)))
    background = signal == 0
    signal = np.where(background, gaussian_filter1d(0.25 * rng.standard_normal(len(signal)), 2), signal)
    signal = signal + 0.02 * rng.standard_normal(len(signal))
    signal = signal - 0.75 * (rng.random() - 0.5) * np.linspace(-0.5, 0.5, len(signal))
    return _resample(signal, MNIST1D_LENGTH)


def generate_mnist1d(samples: int, seed: int | Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """MNIST-1D generated locally (the procedure of Greydanus, 2020): inputs (N, 1, 40), labels (N,).

    `seed` is numpy SeedSequence entropy: an int, or `[seed, stream]` for independent streams."""
    rng = np.random.default_rng(seed)
    templates = mnist1d_templates()
    labels = np.arange(samples) % len(templates)
    rng.shuffle(labels)
    x = np.stack([_mnist1d_example(templates[label], rng) for label in labels])
    return x[:, None, :].astype(np.float32), labels.astype(np.int64)


# Associative recall: RECALL_PAIRS (key, value) tokens with distinct keys, then a query token holding one
# of those keys; the label is the value stored under it. Each token is one position: channels are a
# one-hot key, a one-hot value (zero in the query) and a query flag. No position or token alone tells
# the answer: the query must be matched against every pair by content, which is what attention does.
RECALL_KEYS = 16
RECALL_VALUES = 8
RECALL_PAIRS = 6


def generate_recall(
    samples: int,
    seed: int | Sequence[int],
    *,
    pairs: int = RECALL_PAIRS,
    keys: int = RECALL_KEYS,
    values: int = RECALL_VALUES,
) -> tuple[np.ndarray, np.ndarray]:
    """Associative recall: `pairs` (key, value) tokens, then a query token holding one of the keys; the
    label is the value stored under it. Inputs (N, keys + values + 1, pairs + 1) one-hot (the last
    channel flags the query), labels (N,). Keys are distinct within an example."""
    if not 1 <= pairs <= keys:
        raise ValueError(
            f"recall needs 1 <= pairs <= keys (keys are distinct within an example), got {pairs} and {keys}"
        )
    rng = np.random.default_rng(seed)
    stored_keys = np.argsort(rng.random((samples, keys)), axis=1)[:, :pairs]  # distinct per row
    stored_values = rng.integers(0, values, size=(samples, pairs))
    asked = rng.integers(0, pairs, size=samples)
    rows = np.arange(samples)
    x = np.zeros((samples, keys + values + 1, pairs + 1), dtype=np.float32)
    positions = np.arange(pairs)
    x[rows[:, None], stored_keys, positions] = 1.0
    x[rows[:, None], keys + stored_values, positions] = 1.0
    x[rows, stored_keys[rows, asked], pairs] = 1.0
    x[rows, keys + values, pairs] = 1.0
    return x, stored_values[rows, asked].astype(np.int64)


def _recall(config: DataConfig, samples: int, stream: int) -> tuple[np.ndarray, np.ndarray]:
    shape = {"pairs": config.recall_pairs, "keys": config.recall_keys, "values": config.recall_values}
    return generate_recall(samples, [config.seed, stream], **shape)


def generate_synthetic(
    shape: list[int], classes: int, samples: int, seed: int, stream: int = SEARCH_STREAM
) -> tuple[np.ndarray, np.ndarray]:
    """A learnable task for tests: one random prototype per class (drawn from `seed`) plus Gaussian noise
    (drawn from the stream `[seed, stream]`, so the test split shares the prototypes, not the examples)."""
    prototypes = np.random.default_rng(seed).standard_normal((classes, *shape))
    rng = np.random.default_rng([seed, stream])
    labels = np.arange(samples) % classes
    rng.shuffle(labels)
    x = prototypes[labels] + 0.5 * rng.standard_normal((samples, *shape))
    return x.astype(np.float32), labels.astype(np.int64)


class _CifarUnpickler(pickle.Unpickler):
    """Reads the CIFAR-10 batches and nothing else: only the numpy array constructors are allowed,
    so a malicious file in the data directory cannot run code."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 store bytes
    }

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"forbidden object {module}.{name} in a CIFAR-10 batch")


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch: images (N, 3, 32, 32) uint8 and labels (N,)."""
    try:
        with path.open("rb") as f:
            batch = _CifarUnpickler(f, encoding="bytes").load()
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (OSError, pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as e:
        raise DataError(f"{path} is not a CIFAR-10 python batch: {e}") from None
    if data.ndim != 2 or data.shape[1] != int(np.prod(CIFAR_IMAGE_SHAPE)) or len(labels) != len(data):
        raise DataError(f"{path}: expected 'data' of shape (N, 3072) and N labels, got {data.shape} and {len(labels)}")
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{path}: labels must lie in 0..9")
    return data.reshape(-1, *CIFAR_IMAGE_SHAPE), labels


def load_cifar10_arrays(directory: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """The CIFAR-10 training batches found in `directory` (the extracted cifar-10-batches-py).

    Batches that are absent are skipped (a partial copy is fine for proxies); none at all is an error.
    The test batch is never read: searches score on a validation split of the training data.
    """
    folder = Path(directory).expanduser()
    if not folder.is_dir():
        raise DataError(
            f"CIFAR-10 directory {folder} does not exist; run `evonorm-search data download cifar10 DEST` "
            f"(or fetch {CIFAR_URL_HINT} and extract it) and point data.path at the cifar-10-batches-py folder"
        )
    present = [folder / name for name in CIFAR_TRAIN_FILES if (folder / name).is_file()]
    if not present:
        raise DataError(f"no CIFAR-10 training batches ({', '.join(CIFAR_TRAIN_FILES)}) in {folder}")
    parts = [read_cifar_batch(path) for path in present]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def load_cifar10_test_arrays(directory: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10's `test_batch`: the target task's test split (searches never read it)."""
    path = Path(directory).expanduser() / CIFAR_TEST_FILE
    if not path.is_file():
        raise DataError(
            f"no CIFAR-10 test batch ({CIFAR_TEST_FILE}) in {path.parent}: the target task scores on it; "
            f"extract the whole of {CIFAR_URL_HINT} there"
        )
    return read_cifar_batch(path)


def _search_arrays(config: DataConfig) -> tuple[np.ndarray, np.ndarray]:
    if config.name == "digits":
        return digits_parts()[0]
    if config.name == "cifar10":
        return load_cifar10_arrays(config.path)  # type: ignore[arg-type]  # DataConfig requires a path for cifar10
    return _generated(config, config.samples, SEARCH_STREAM)


def _generated(config: DataConfig, samples: int, stream: int) -> tuple[np.ndarray, np.ndarray]:
    """`samples` examples of a generated data set (mnist1d, recall, synthetic) from the stream [seed, stream]."""
    if config.name == "mnist1d":
        return generate_mnist1d(samples, [config.seed, stream])
    if config.name == "recall":
        return _recall(config, samples, stream)
    return generate_synthetic(config.synthetic_shape, config.synthetic_classes, samples, config.seed, stream=stream)


def _fixed_test_arrays(config: DataConfig) -> tuple[np.ndarray, np.ndarray]:
    """The test split of a data set whose test split is fixed (digits, cifar10), before any carving."""
    if config.name == "digits":
        return digits_parts()[1]
    return load_cifar10_test_arrays(config.path)  # type: ignore[arg-type]  # DataConfig requires a path for cifar10


def _carved(config: DataConfig) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """(test, confirmation) parts of a fixed test split: `confirm_fraction` of each class goes to the second."""
    x, y = _fixed_test_arrays(config)
    if config.confirm_fraction == 0:
        return (x, y), (x[:0], y[:0])
    test_idx, confirm_idx = stratified_split(y, config.confirm_fraction, CONFIRM_CARVE_SEED)
    return (x[test_idx], y[test_idx]), (x[confirm_idx], y[confirm_idx])


def _test_arrays(config: DataConfig) -> tuple[np.ndarray, np.ndarray]:
    if config.name in FIXED_TEST_SPLITS:
        return _carved(config)[0]
    return _generated(config, config.test_samples, TEST_STREAM)


def _confirm_arrays(config: DataConfig) -> tuple[np.ndarray, np.ndarray]:
    if config.name in FIXED_TEST_SPLITS:
        if config.confirm_fraction == 0:
            raise DataError(
                f"{config.name} has no confirmation split: its test split is fixed; set data.confirm_fraction "
                "(e.g. 0.5) to carve one from it (the target task then scores on the rest)"
            )
        return _carved(config)[1]
    return _generated(config, config.confirm_samples, CONFIRM_STREAM)


@functools.lru_cache(maxsize=4)
def _load_cached(config_json: str, split: Split) -> ProxyData:
    config = DataConfig.model_validate_json(config_json)
    if split == "search":
        return _search_split(config.name, *_search_arrays(config), config)
    if split == "confirm":
        return _target_split(config.name, _search_arrays(config), _confirm_arrays(config), "confirm")
    return _target_split(config.name, _search_arrays(config), _test_arrays(config))


def load_data(config: DataConfig, split: Split = "search") -> ProxyData:
    """The data set described by `config` (cached per process).

    `split="search"`: the search part's training split, scored on its validation split (what searches
    see). `split="target"`: the whole search part for training, scored on the test split (what the
    target task sees; no search ever reads it). `split="confirm"`: the whole search part for training,
    scored on the confirmation split (only a final confirmation reads it)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    return _load_cached(config.model_dump_json(), split)


def input_spec(config: DataConfig) -> tuple[int, int, int]:
    """(channels, spatial dims, classes) of a data set without loading it where that is known."""
    if config.name == "digits":
        return 1, 2, 10
    if config.name == "mnist1d":
        return 1, 1, 10
    if config.name == "cifar10":
        return 3, 2, 10
    if config.name == "recall":
        return config.recall_keys + config.recall_values + 1, 1, config.recall_values
    return config.synthetic_shape[0], len(config.synthetic_shape) - 1, config.synthetic_classes
