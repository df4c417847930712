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

The user's data sets that can be large (imagefolder, torchvision, python) are held in memory as tensors
(`ProxyData`) when small and streamed through a DataLoader (`StreamedData`, `proxies.streaming`) when
large, as their `in_memory` setting says (`data_plan`); either way the same examples land in each split.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, Literal, TypeVar, get_args

import numpy as np
import torch

from .config import (
    DATA_CONFIGS,
    DATA_PATH,
    ArraysData,
    Cifar10Data,
    DataConfig,
    DigitsData,
    FileData,
    FixedTestData,
    GeneratedData,
    ImageData,
    ImageFolderData,
    Mnist1dData,
    PythonData,
    RecallData,
    StreamingData,
    SyntheticData,
    TorchvisionData,
    data_config_adapter,
)
from .errors import DataError
from .readers import (
    Arrays,
    Parts,
    call_factory,
    factory_parts,
    image_folder_index,
    read_arrays_file,
    read_image_folder_part,
    read_torchvision,
    torchvision_parts,
)
from .streaming import (
    ArrayExamples,
    DatasetExamples,
    Examples,
    ImageExamples,
    StandardisedExamples,
    Statistics,
    StreamedData,
    Subset,
    array_chunks,
    channel_statistics,
    example_bytes,
    streamed_statistics,
)

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
# A test split carved from the user's data (`test_fraction`) is drawn with this seed whatever the config's seed.
FILE_TEST_SEED = 20_261_207
CIFAR_URL_HINT = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"


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
    in_memory: ClassVar[bool] = True

    @property
    def in_channels(self) -> int:
        return self.train_x.shape[1]

    @property
    def train_size(self) -> int:
        return len(self.train_y)

    @property
    def scored_size(self) -> int:
        return len(self.val_y)

    @property
    def nbytes(self) -> int:
        """Bytes its tensors hold."""
        return sum(t.element_size() * t.numel() for t in (self.train_x, self.train_y, self.val_x, self.val_y))

    def head(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first `n` training examples (inputs, labels)."""
        return self.train_x[:n], self.train_y[:n]

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


# What `load_data` returns: tensors in memory, or examples streamed through a DataLoader.
LoadedData = ProxyData | StreamedData


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
    name: str,
    train: tuple[np.ndarray, np.ndarray],
    scored: tuple[np.ndarray, np.ndarray],
    scored_on: str,
    statistics: Statistics | None = None,
) -> ProxyData:
    """Standardise per channel with statistics of the training inputs only (or the `statistics` the
    config gives); convert to tensors."""
    train_x = train[0].astype(np.float32)
    reduce_axes = (0, *range(2, train_x.ndim))
    if statistics is None:
        mean = train_x.mean(axis=reduce_axes, keepdims=True)
        std = train_x.std(axis=reduce_axes, keepdims=True) + 1e-6
    else:
        per_channel = (train_x.shape[1], *(1,) * (train_x.ndim - 2))
        mean, std = (np.asarray(v, dtype=np.float32).reshape(per_channel) for v in statistics)

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


def search_indices(labels: np.ndarray, config: DataConfig) -> tuple[np.ndarray, np.ndarray]:
    """Positions (train, validation) in the search part: a seeded stratified split, `max_train_samples`
    subsampling the training split."""
    train_idx, val_idx = stratified_split(labels, config.validation_fraction, config.seed)
    if config.max_train_samples is not None:
        train_idx = train_idx[: config.max_train_samples]
    return train_idx, val_idx


def _search_split(name: str, x: np.ndarray, y: np.ndarray, config: DataConfig, chunked: bool = False) -> ProxyData:
    """Train and validation splits of the search part; `max_train_samples` subsamples the training split.
    `chunked`: statistics by `channel_statistics` (the rows that can stream, so both ways agree)."""
    _check_arrays(name, x, y)
    train_idx, val_idx = search_indices(y, config)
    statistics = _statistics(config, x[train_idx], chunked)
    return _tensors(name, (x[train_idx], y[train_idx]), (x[val_idx], y[val_idx]), "validation", statistics)


def _statistics(config: DataConfig, train_x: np.ndarray, chunked: bool) -> Statistics | None:
    given = config.given_statistics()
    if given is not None or not chunked:
        return given
    return channel_statistics(array_chunks(train_x.astype(np.float32, copy=False)))


def _target_split(
    name: str,
    search: tuple[np.ndarray, np.ndarray],
    scored: tuple[np.ndarray, np.ndarray],
    scored_on: str = "test",
    statistics: Statistics | None = None,
) -> ProxyData:
    """The whole search part for training, the test (or confirmation) split for scoring."""
    _check_arrays(name, *search)
    _check_arrays(f"{name} {scored_on} split", *scored)
    return _tensors(name, search, scored, scored_on, statistics)


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


def _recall(config: RecallData, samples: int, stream: int) -> Arrays:
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


# --------------------------------------------------------------------------------------------------
# Splits shared by rows: carving a test split's confirmation part, carving a test split from user data
# --------------------------------------------------------------------------------------------------


def carve_confirmation(test: Arrays, fraction: float) -> tuple[Arrays, Arrays]:
    """(test, confirmation) parts of a fixed test split: `fraction` of each class goes to the second."""
    x, y = test
    if fraction == 0:
        return (x, y), (x[:0], y[:0])
    test_idx, confirm_idx = stratified_split(y, fraction, CONFIRM_CARVE_SEED)
    return (x[test_idx], y[test_idx]), (x[confirm_idx], y[confirm_idx])


def _no_confirmation(config: FixedTestData) -> DataError:
    return DataError(
        f"{config.name} has no confirmation split: its test split is fixed; set data.confirm_fraction "
        "(e.g. 0.5) to carve one from it (the target task then scores on the rest)"
    )


def _search_and_test(parts: Parts, config: FileData) -> tuple[Arrays, Arrays]:
    """The search part and the test split of user data: its own test part, else `test_fraction` of each
    class carved with a fixed seed (whatever the config's seed, so no search ever sees a test example)."""
    if "test" in parts:
        return parts["train"], parts["test"]
    x, y = parts["train"]
    _check_arrays(f"{config.name} data", x, y)
    search_idx, test_idx = stratified_split(y, config.test_fraction, FILE_TEST_SEED)
    return (x[search_idx], y[search_idx]), (x[test_idx], y[test_idx])


# --------------------------------------------------------------------------------------------------
# The table of data sets
# --------------------------------------------------------------------------------------------------

C = TypeVar("C", bound=DataConfig)
G = TypeVar("G", bound=GeneratedData)
F = TypeVar("F", bound=FixedTestData)
InputSpec = tuple[int, int, int]  # (channels, spatial dims, classes)


@dataclass(frozen=True)
class DataSet(Generic[C]):
    """One data set: its config model and how to read each of its disjoint parts.

    `search` is the search part (searches split it into training and validation), `test` the test split
    only the target task reads, `confirm` the confirmation split only a final confirmation reads (a
    DataError where the config has none). `spec` gives (channels, spatial dims, classes) without reading
    anything (None: read from the loaded data); `spatial_dims` is what is known of the inputs before
    reading (None: nothing), so a config is checked against its architectures without touching files.
    `needs` says what it needs on disk; `identity` where its examples come from (the score cache's key).
    `stream` (rows whose config is a `StreamingData`) gives its parts (`train`, and `test` where the
    source has its own) as examples read one at a time, so it can be streamed instead of held in memory.
    """

    name: str
    config: type[C]
    search: Callable[[C], Arrays]
    test: Callable[[C], Arrays]
    confirm: Callable[[C], Arrays]
    identity: Callable[[C], dict[str, Any]]
    needs: str = "nothing"
    spec: Callable[[C], InputSpec] | None = None
    spatial_dims: int | None = None
    stream: Callable[[C], dict[str, Examples]] | None = None


DATASETS: dict[str, DataSet[Any]] = {}


def register_dataset(row: DataSet[Any]) -> None:
    """Add a data set to the table; its config model then validates `data: {name: <row.name>, ...}`."""
    if get_args(row.config.model_fields["name"].annotation) != (row.name,):
        raise ValueError(f"data set {row.name!r}: its config model's `name` must be Literal[{row.name!r}]")
    DATASETS[row.name] = row
    DATA_CONFIGS[row.name] = row.config


def dataset_row(config: DataConfig) -> DataSet[Any]:
    return DATASETS[config.name]


def path_fields(model: type[DataConfig]) -> list[str]:
    """The fields of a data config model that name files or folders (typed `DataPath`)."""
    return [name for name, info in model.model_fields.items() if DATA_PATH in info.metadata]


# -- generated data sets: each split from its own random stream ---------------------------------------


def _generated_row(
    name: str,
    config: type[G],
    generate: Callable[[G, int, int], Arrays],
    spec: Callable[[G], InputSpec],
    parameters: Callable[[G], dict[str, Any]],
) -> DataSet[G]:
    def identity(c: G) -> dict[str, Any]:
        sizes = {"samples": c.samples, "test_samples": c.test_samples, "confirm_samples": c.confirm_samples}
        return {"generator": name, "seed": c.seed, **sizes, **parameters(c)}

    return DataSet(
        name=name,
        config=config,
        search=lambda c: generate(c, c.samples, SEARCH_STREAM),
        test=lambda c: generate(c, c.test_samples, TEST_STREAM),
        confirm=lambda c: generate(c, c.confirm_samples, CONFIRM_STREAM),
        identity=identity,
        spec=spec,
    )


def _synthetic(config: SyntheticData, samples: int, stream: int) -> Arrays:
    return generate_synthetic(config.synthetic_shape, config.synthetic_classes, samples, config.seed, stream=stream)


# -- data sets with a fixed test split: a confirmation split is carved from it --------------------------


def _fixed_test_row(
    name: str,
    config: type[F],
    search: Callable[[F], Arrays],
    test: Callable[[F], Arrays],
    identity: Callable[[F], dict[str, Any]],
    **extra: Any,
) -> DataSet[F]:
    def carved(c: F) -> tuple[Arrays, Arrays]:
        return carve_confirmation(test(c), c.confirm_fraction)

    def confirm(c: F) -> Arrays:
        if not c.confirm_fraction:
            raise _no_confirmation(c)
        return carved(c)[1]

    return DataSet(name, config, search, lambda c: carved(c)[0], confirm, identity, **extra)


def _folder_identity(folder: str, recursive: bool = False) -> dict[str, Any]:
    """A folder known by its files' names and sizes (a re-extracted copy is the same data)."""
    root = Path(folder).resolve()
    if not root.is_dir():
        return {"folder": str(root), "files": {}}
    found = root.rglob("*") if recursive else root.glob("*")
    files = sorted(p for p in found if p.is_file())
    return {"folder": str(root), "files": {p.relative_to(root).as_posix(): p.stat().st_size for p in files}}


def _file_identity(path: str) -> dict[str, Any]:
    """A file known by its size and modification time (a rewritten file is other data)."""
    file = Path(path).resolve()
    stat = file.stat() if file.is_file() else None
    return {"file": str(file), "size": stat and stat.st_size, "modified_ns": stat and stat.st_mtime_ns}


def _digits_identity(_: DigitsData) -> dict[str, Any]:
    import sklearn

    return {"scikit-learn load_digits": sklearn.__version__}


def _module_identity(factory: str) -> dict[str, Any]:
    """The factory's module file, by size and modification time, when it can be found."""
    try:
        spec = importlib.util.find_spec(factory.partition(":")[0])
    except (ImportError, ValueError):
        spec = None
    origin = spec.origin if spec is not None else None
    return _file_identity(origin) if origin and os.path.isfile(origin) else {"file": None}


# -- the user's data: files read by `proxies.readers` ------------------------------------------------


def _size(config: ImageData) -> tuple[int, ...] | None:
    return None if config.size is None else tuple(config.size)


def _image_folder_part(config: ImageFolderData, which: Literal["search", "test"]) -> Arrays:
    """The search part or the test split of an image folder; with `train/` and `test/` folders the other
    folder's images are never decoded (a search never reads the test split)."""
    index = image_folder_index(config.path)
    if "test" in index:
        part = "train" if which == "search" else "test"
        return read_image_folder_part(config.path, part, config.mode, _size(config))
    whole = {"train": read_image_folder_part(config.path, "train", config.mode, _size(config))}
    search, test = _search_and_test(whole, config)
    return search if which == "search" else test


def _arrays_parts(config: ArraysData) -> tuple[Arrays, Arrays]:
    return _search_and_test(read_arrays_file(config.path), config)


def _python_parts(config: PythonData) -> tuple[Arrays, Arrays]:
    parts = call_factory(config.factory, json.dumps(config.kwargs, sort_keys=True))
    return parts["train"], parts["test"]


def _torchvision_parts(config: TorchvisionData) -> tuple[Arrays, Arrays]:
    kwargs = json.dumps(config.kwargs, sort_keys=True)
    return _search_and_test(read_torchvision(config.dataset, config.root, kwargs, config.mode, _size(config)), config)


@functools.lru_cache(maxsize=2)
def _torchvision_examples(
    dataset: str, root: str, kwargs_json: str, mode: str, size: tuple[int, ...] | None
) -> dict[str, Examples]:
    what = f"data.dataset {dataset!r}"
    parts = torchvision_parts(dataset, root, kwargs_json)
    return {part: DatasetExamples(instance, what, mode, size) for part, instance in parts.items()}


@functools.lru_cache(maxsize=2)
def _factory_examples(factory: str, kwargs_json: str) -> dict[str, Examples]:
    examples: dict[str, Examples] = {}
    for part, value in factory_parts(factory, kwargs_json).items():
        what = f"data.factory {factory!r} {part}"
        examples[part] = ArrayExamples(*value) if isinstance(value, tuple) else DatasetExamples(value, what)
    return examples


def _image_folder_stream(config: ImageFolderData) -> dict[str, Examples]:
    index = image_folder_index(config.path)  # scanned once per process
    return {part: ImageExamples(files, config.mode, _size(config)) for part, files in index.items()}


def _torchvision_stream(config: TorchvisionData) -> dict[str, Examples]:
    kwargs = json.dumps(config.kwargs, sort_keys=True)
    return _torchvision_examples(config.dataset, config.root, kwargs, config.mode, _size(config))


def _python_stream(config: PythonData) -> dict[str, Examples]:
    return _factory_examples(config.factory, json.dumps(config.kwargs, sort_keys=True))


def _user_row(
    name: str,
    config: type[F],
    parts: Callable[[F], tuple[Arrays, Arrays]],
    identity: Callable[[F], dict[str, Any]],
    needs: str,
    spatial_dims: int | None,
    stream: Callable[[F], dict[str, Examples]] | None = None,
) -> DataSet[F]:
    return _fixed_test_row(
        name,
        config,
        lambda c: parts(c)[0],
        lambda c: parts(c)[1],
        identity,
        needs=needs,
        spatial_dims=spatial_dims,
        stream=stream,
    )


BUILT_IN_DATASETS: tuple[DataSet[Any], ...] = (
    _fixed_test_row(
        "digits",
        DigitsData,
        search=lambda c: digits_parts()[0],
        test=lambda c: digits_parts()[1],
        identity=_digits_identity,
        spec=lambda c: (1, 2, 10),
    ),
    _fixed_test_row(
        "cifar10",
        Cifar10Data,
        search=lambda c: load_cifar10_arrays(c.path),
        test=lambda c: load_cifar10_test_arrays(c.path),
        identity=lambda c: _folder_identity(c.path),
        needs="a folder of CIFAR-10 python batches (data_batch_1..5, test_batch)",
        spec=lambda c: (3, 2, 10),
    ),
    _generated_row(
        "mnist1d",
        Mnist1dData,
        generate=lambda c, samples, stream: generate_mnist1d(samples, [c.seed, stream]),
        spec=lambda c: (1, 1, 10),
        parameters=lambda c: {},
    ),
    _generated_row(
        "recall",
        RecallData,
        generate=_recall,
        spec=lambda c: (c.recall_keys + c.recall_values + 1, 1, c.recall_values),
        parameters=lambda c: {"pairs": c.recall_pairs, "keys": c.recall_keys, "values": c.recall_values},
    ),
    _generated_row(
        "synthetic",
        SyntheticData,
        generate=_synthetic,
        spec=lambda c: (c.synthetic_shape[0], len(c.synthetic_shape) - 1, c.synthetic_classes),
        parameters=lambda c: {"shape": c.synthetic_shape, "classes": c.synthetic_classes},
    ),
    _fixed_test_row(
        "imagefolder",
        ImageFolderData,
        search=lambda c: _image_folder_part(c, "search"),
        test=lambda c: _image_folder_part(c, "test"),
        identity=lambda c: _folder_identity(c.path, recursive=True),
        needs="a folder of class subfolders of images (or train/ and test/ folders of them)",
        spatial_dims=2,
        stream=_image_folder_stream,
    ),
    _user_row(
        "arrays",
        ArraysData,
        parts=_arrays_parts,
        identity=lambda c: _file_identity(c.path),
        needs="an .npz or .pt file holding x, y (and optionally x_test, y_test)",
        spatial_dims=None,
    ),
    _user_row(
        "python",
        PythonData,
        parts=_python_parts,
        identity=lambda c: {"factory": c.factory, "kwargs": c.kwargs, "module": _module_identity(c.factory)},
        needs="an importable module whose function returns the data",
        spatial_dims=None,
        stream=_python_stream,
    ),
    _user_row(
        "torchvision",
        TorchvisionData,
        parts=_torchvision_parts,
        identity=lambda c: {"dataset": c.dataset, **_folder_identity(c.root, recursive=True)},
        needs="a torchvision data set's files under root (never downloaded)",
        spatial_dims=2,
        stream=_torchvision_stream,
    ),
)
for _row in BUILT_IN_DATASETS:
    register_dataset(_row)


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataPlan:
    """Whether a data set is held in memory or streamed, and why: `estimated_bytes` is the decoded size
    (float32) of every example of its search part and test split, `examples` their number, `shape` one
    example's (None where the data set cannot stream: it is always held in memory)."""

    in_memory: bool
    reason: str
    examples: int | None = None
    shape: tuple[int, ...] | None = None
    estimated_bytes: int | None = None


@functools.lru_cache(maxsize=8)
def _plan_cached(config_json: str) -> DataPlan:
    config = data_config_adapter().validate_json(config_json)
    row = dataset_row(config)
    if row.stream is None or not isinstance(config, StreamingData):
        return DataPlan(True, f"{config.name} is always in memory")
    parts = row.stream(config)
    examples = sum(len(part) for part in parts.values())
    if not len(parts["train"]):
        raise DataError(f"data.name {config.name}: the data holds no examples")
    shape = tuple(parts["train"].read(0).shape)
    size = examples * example_bytes(shape)
    if config.in_memory == "auto":
        in_memory = size <= config.in_memory_limit_bytes
        limit = f"in_memory_limit_mib {config.in_memory_limit_mib}"
        reason = f"auto: {'<=' if in_memory else '>'} {limit}"
    else:
        in_memory = bool(config.in_memory)
        reason = f"in_memory: {str(in_memory).lower()}"
    return DataPlan(in_memory, reason, examples, shape, size)


def data_plan(config: DataConfig) -> DataPlan:
    """Whether `config`'s data set is held in memory or streamed (`in_memory`: auto compares the estimated
    decoded size with `in_memory_limit_mib`), with the estimate; found once per process."""
    return _plan_cached(config.model_dump_json())


def _check_labels(name: str, labels: np.ndarray) -> None:
    if len(np.unique(labels)) < 2:
        raise DataError(f"{name}: need inputs and labels of equal length with at least two classes")


def stream_parts(config: StreamingData) -> tuple[Examples, Examples]:
    """The search part and the test split of a data set that can stream, as examples: its own test part,
    else `test_fraction` of each class carved with the seed the in-memory path uses."""
    stream = dataset_row(config).stream
    if stream is None:
        raise ValueError(f"data set {config.name!r} cannot stream")
    parts = stream(config)
    if "test" in parts:
        return parts["train"], parts["test"]
    if not isinstance(config, FileData):
        raise DataError(f"{config.name}: the data has no test split")
    whole = parts["train"]
    _check_labels(f"{config.name} data", whole.labels)
    search_idx, test_idx = stratified_split(whole.labels, config.test_fraction, FILE_TEST_SEED)
    return Subset(whole, search_idx), Subset(whole, test_idx)


def _streamed(config: StreamingData, split: Split, plan: DataPlan) -> StreamedData:
    """A split streamed: positions into the indexed examples, chosen as the in-memory split chooses rows."""
    search, test = stream_parts(config)
    _check_labels(config.name, search.labels)
    train: Examples
    scored: Examples
    if split == "search":
        train_idx, val_idx = search_indices(search.labels, config)
        train, scored, scored_on = Subset(search, train_idx), Subset(search, val_idx), "validation"
    else:
        scored_on = "confirm" if split == "confirm" else "test"
        scored = _carved_examples(test, config, split)
        train = search
        _check_labels(f"{config.name} {scored_on} split", scored.labels)
    assert plan.shape is not None and plan.estimated_bytes is not None
    statistics = config.given_statistics() or streamed_statistics(train, plan.shape, config.loader_workers)
    return StreamedData(
        name=config.name,
        train=StandardisedExamples(train, plan.shape, statistics),
        scored=StandardisedExamples(scored, plan.shape, statistics),
        num_classes=int(max(train.labels.max(), scored.labels.max())) + 1,
        loader_workers=config.loader_workers,
        estimated_bytes=plan.estimated_bytes,
        scored_on=scored_on,
    )


def _carved_examples(test: Examples, config: StreamingData, split: Split) -> Examples:
    """The test split less its confirmation part (`split="target"`), or that part (`"confirm"`)."""
    fraction = config.confirm_fraction if isinstance(config, FixedTestData) else 0.0
    if split == "confirm" and not fraction:
        if isinstance(config, FixedTestData):
            raise _no_confirmation(config)
        raise DataError(f"{config.name} has no confirmation split")
    if not fraction:
        return test
    test_idx, confirm_idx = stratified_split(test.labels, fraction, CONFIRM_CARVE_SEED)
    return Subset(test, confirm_idx if split == "confirm" else test_idx)


@functools.lru_cache(maxsize=4)
def _load_cached(config_json: str, split: Split) -> LoadedData:
    config = data_config_adapter().validate_json(config_json)  # the cache key is the config's dump
    row = dataset_row(config)
    chunked = row.stream is not None  # rows that can stream: statistics computed as streaming computes them
    if chunked and isinstance(config, StreamingData) and not (plan := data_plan(config)).in_memory:
        return _streamed(config, split, plan)
    if split == "search":
        return _search_split(config.name, *row.search(config), config, chunked)
    scored = row.confirm(config) if split == "confirm" else row.test(config)
    scored_on = "confirm" if split == "confirm" else "test"
    search = row.search(config)
    return _target_split(config.name, search, scored, scored_on, _statistics(config, search[0], chunked))


def clear_caches() -> None:
    """Forget every data set, index and factory result this process has read (tests; changed files)."""
    for cached in (
        _load_cached,
        _plan_cached,
        _torchvision_examples,
        _factory_examples,
        read_image_folder_part,
        image_folder_index,
        read_arrays_file,
        call_factory,
        factory_parts,
        read_torchvision,
        torchvision_parts,
    ):
        cached.cache_clear()


def load_data(config: DataConfig, split: Split = "search") -> LoadedData:
    """The data set described by `config` (cached per process, keyed by the whole config and the split).

    `split="search"`: the search part's training split, scored on its validation split (what searches
    see). `split="target"`: the whole search part for training, scored on the test split (what the
    target task sees; no search ever reads it). `split="confirm"`: the whole search part for training,
    scored on the confirmation split (only a final confirmation reads it). Held in memory as tensors
    (`ProxyData`) or streamed (`StreamedData`) as `data_plan(config)` says."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    return _load_cached(config.model_dump_json(), split)


def input_spec(config: DataConfig) -> InputSpec:
    """(channels, spatial dims, classes) of a data set: without loading it where the row knows them, else
    read from its search part (loaded once per process)."""
    row = dataset_row(config)
    if row.spec is not None:
        return row.spec(config)
    data = load_data(config)
    return data.in_channels, data.spatial_dims, data.num_classes


def declared_spatial_dims(config: DataConfig) -> int | None:
    """The inputs' spatial dims where known without reading any file or running any code (None: not)."""
    row = dataset_row(config)
    return row.spec(config)[1] if row.spec is not None else row.spatial_dims


def data_identity_source(config: DataConfig) -> dict[str, Any]:
    """Where a data set's examples come from (files, generator, factory), for keys of cached scores."""
    return dataset_row(config).identity(config)
