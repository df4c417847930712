"""Streamed proxy data: the user's examples read when a batch draws them, through a DataLoader.

A data set that can stream (imagefolder, torchvision, python) is first *indexed*: which examples exist,
their labels, and how to read one (an image file's path, a torchvision or user Dataset and a position,
a row of arrays). The index is made once per process (the readers' caches) and shared by every split and
every candidate; splits are positions into it, drawn by the same seeded rules as in memory, so an
example lands in the same split whether its data set is held in memory or streamed.

`StandardisedExamples` is the torch Dataset of one split: example `i` read, checked for shape and
standardised with per-channel statistics of the training split, with exactly the arithmetic the
in-memory tensors get (`(x - mean) / std` in float32). `channel_statistics` computes those statistics
from chunks of `STATISTICS_CHUNK` training examples in order, the same chunks whether they come from
arrays in memory or from a DataLoader, so both ways give the same numbers to the bit.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .errors import DataError
from .readers import ImageFiles, checked_example, dataset_labels, image_array, images_differ, read_image

Statistics = tuple[list[float], list[float]]
# Training examples per chunk of the statistics pass (in memory and streamed alike).
STATISTICS_CHUNK = 256


class Examples(Protocol):
    """Random access to a part's examples: `read(i)` is input i, unstandardised float32 (C, *spatial)."""

    @property
    def labels(self) -> np.ndarray: ...

    def __len__(self) -> int: ...

    def read(self, index: int) -> np.ndarray: ...

    def where(self, index: int) -> str: ...


@dataclass(frozen=True)
class ArrayExamples:
    """Rows of arrays already in memory (a factory that returned arrays)."""

    x: np.ndarray
    y: np.ndarray

    @property
    def labels(self) -> np.ndarray:
        return self.y

    def __len__(self) -> int:
        return len(self.y)

    def read(self, index: int) -> np.ndarray:
        return np.asarray(self.x[index], dtype=np.float32)

    def where(self, index: int) -> str:
        return f"example {index}"


@dataclass(frozen=True)
class ImageExamples:
    """Image files of an image folder's index, decoded as `mode` and resized to `size` when read."""

    files: ImageFiles
    mode: str
    size: tuple[int, ...] | None

    @property
    def labels(self) -> np.ndarray:
        return self.files.labels

    def __len__(self) -> int:
        return len(self.files)

    def read(self, index: int) -> np.ndarray:
        return read_image(self.files.paths[index], self.mode, self.size)

    def where(self, index: int) -> str:
        return self.files.paths[index]


@dataclass(frozen=True)
class DatasetExamples:
    """A torch Dataset of (input, label) pairs (torchvision's or the user's), its labels read on first use
    and kept. `mode` set: inputs are PIL images, read as in an image folder; else arrays or tensors."""

    dataset: Any
    what: str
    mode: str | None = None
    size: tuple[int, ...] | None = None

    @functools.cached_property
    def labels(self) -> np.ndarray:
        return dataset_labels(self.dataset, self.what)

    def __len__(self) -> int:
        try:
            return len(self.dataset)
        except Exception as e:  # the user's dataset may not know its length
            raise DataError(f"{self.what}: the dataset has no length: {type(e).__name__}: {e}") from None

    def read(self, index: int) -> np.ndarray:
        try:
            item = self.dataset[index][0]
        except Exception as e:  # the user's or torchvision's dataset may raise anything
            raise DataError(f"{self.what}: cannot read example {index}: {type(e).__name__}: {e}") from None
        if self.mode is not None:
            return image_array(item, self.mode, self.size)
        return checked_example(item, f"{self.what} example {index}")

    def where(self, index: int) -> str:
        return f"{self.what} example {index}"


@dataclass(frozen=True)
class Subset:
    """Some examples of another part, by position (a split drawn from it)."""

    base: Examples
    indices: np.ndarray
    labels_: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels_", self.base.labels[self.indices])

    @property
    def labels(self) -> np.ndarray:
        return self.labels_

    def __len__(self) -> int:
        return len(self.indices)

    def read(self, index: int) -> np.ndarray:
        return self.base.read(int(self.indices[index]))

    def where(self, index: int) -> str:
        return self.base.where(int(self.indices[index]))


class StandardisedExamples(Dataset[tuple[torch.Tensor, int]]):
    """One split as a torch Dataset: (input standardised per channel, label). Without `statistics` the
    inputs come raw (the statistics pass). Every input must have `shape`, the first example's."""

    def __init__(self, examples: Examples, shape: tuple[int, ...], statistics: Statistics | None):
        self.examples = examples
        self.shape = shape
        self.labels = examples.labels
        self.standardise: tuple[np.ndarray, np.ndarray] | None = None
        if statistics is not None:
            per_channel = (shape[0], *(1,) * (len(shape) - 1))
            mean, std = (np.asarray(v, dtype=np.float32).reshape(per_channel) for v in statistics)
            self.standardise = (mean, std)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        x = self.examples.read(index)
        if x.shape != self.shape:
            raise images_differ(self.examples.where(0), self.shape, self.examples.where(index), x.shape)
        if self.standardise is not None:
            mean, std = self.standardise
            x = (x - mean) / std
        return torch.from_numpy(np.ascontiguousarray(x)), int(self.labels[index])


def channel_statistics(chunks: Iterable[np.ndarray]) -> Statistics:
    """Per-channel (mean, std + 1e-6) of float32 inputs (N, C, *spatial) given in chunks, summed in float64
    chunk by chunk (so the same chunks give the same numbers, however they were read)."""
    count, total, squares = 0, np.zeros(0), np.zeros(0)
    for chunk in chunks:
        wide = chunk.astype(np.float64)
        axes = (0, *range(2, wide.ndim))
        sums, square_sums = wide.sum(axis=axes), np.square(wide).sum(axis=axes)
        total, squares = (sums, square_sums) if not count else (total + sums, squares + square_sums)
        count += wide.size // wide.shape[1]
    if not count:
        raise DataError("no training examples to compute the normalisation statistics on")
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 0.0)) + 1e-6
    return [float(v) for v in mean], [float(v) for v in std]


def array_chunks(x: np.ndarray) -> Iterator[np.ndarray]:
    """`x` in chunks of STATISTICS_CHUNK rows, in order."""
    for start in range(0, len(x), STATISTICS_CHUNK):
        yield x[start : start + STATISTICS_CHUNK]


def streamed_statistics(examples: Examples, shape: tuple[int, ...], workers: int) -> Statistics:
    """`channel_statistics` of every example of `examples`, read through a DataLoader in order."""
    raw = StandardisedExamples(examples, shape, None)
    loader = DataLoader(raw, batch_size=STATISTICS_CHUNK, shuffle=False, num_workers=workers)
    return channel_statistics(x.numpy() for x, _ in loader)


def example_bytes(shape: tuple[int, ...]) -> int:
    """Bytes of one decoded example as float32."""
    return 4 * math.prod(shape)


@dataclass(frozen=True)
class StreamedData:
    """Training data read batch by batch and the split it is scored on (as `ProxyData`, but streamed):
    `train` and `scored` are torch Datasets; `loader_workers` worker processes read them."""

    name: str
    train: StandardisedExamples
    scored: StandardisedExamples
    num_classes: int
    loader_workers: int
    estimated_bytes: int
    scored_on: str = "validation"
    in_memory: ClassVar[bool] = False

    @property
    def in_channels(self) -> int:
        return self.train.shape[0]

    @property
    def spatial_dims(self) -> int:
        return len(self.train.shape) - 1

    @property
    def train_size(self) -> int:
        return len(self.train)

    @property
    def scored_size(self) -> int:
        return len(self.scored)

    def to(self, device: torch.device | str) -> StreamedData:
        """Itself: batches move to the training device as they are drawn."""
        return self

    def head(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first `n` training examples (inputs, labels), read here."""
        pairs = [self.train[i] for i in range(min(n, len(self.train)))]
        return torch.stack([x for x, _ in pairs]), torch.tensor([y for _, y in pairs], dtype=torch.int64)

    def loader(self, dataset: StandardisedExamples, device: torch.device, **kwargs: Any) -> DataLoader[Any]:
        """A DataLoader over `dataset` with this data's workers (`kwargs`: its batch sampler or size and
        generator). Its own generator keeps the global random stream untouched."""
        kwargs.setdefault("generator", torch.Generator().manual_seed(0))
        return DataLoader(
            dataset,
            num_workers=self.loader_workers,
            pin_memory=device.type == "cuda",
            **kwargs,
        )


def shut_down(iterator: Iterator[Any] | None) -> None:
    """Stop a DataLoader iterator's worker processes now (not when it is collected)."""
    stop = getattr(iterator, "_shutdown_workers", None)
    if stop is not None:
        stop()
