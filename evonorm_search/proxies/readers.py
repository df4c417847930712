"""Readers of the user's own data: an image folder, an array file, a Python factory, a torchvision class.

Each returns numpy arrays: inputs float32 (N, C, *spatial), labels int64 (N,), as parts named `train`
and `test` (a part is missing where the source has no test split of its own; `proxies.data` then carves
one). Every problem is a DataError that names the config field and the path or factory at fault.
Readers are cached per process (`functools.lru_cache` on their hashable arguments), so the search,
target and confirmation splits of one data set read the files once.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import DataError

Arrays = tuple[np.ndarray, np.ndarray]
Parts = dict[str, Arrays]
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
SPLIT_FOLDERS = ("train", "test")
PIL_MODES = {"grayscale": "L", "rgb": "RGB"}


# --------------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------------


def image_array(image: Any, mode: str, size: tuple[int, ...] | None) -> np.ndarray:
    """A PIL image as float32 (C, H, W) on the [0, 1] scale, converted to `mode` and resized to `size`."""
    from PIL import Image

    image = image.convert(PIL_MODES[mode])
    if size is not None:
        height, width = (size[0], size[0]) if len(size) == 1 else size
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def _read_image(path: Path, mode: str, size: tuple[int, ...] | None) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image_array(image, mode, size)
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise DataError(f"data.path: cannot read image {path}: {e}") from None


def class_folders(folder: Path) -> list[Path]:
    """The class subfolders of `folder`, sorted by name (the label is the position)."""
    classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise DataError(f"data.path: {folder} needs at least two class subfolders, found {len(classes)}")
    return classes


def _images_of(folder: Path) -> list[Path]:
    images = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise DataError(f"data.path: class folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return images


def _stack_images(images: list[np.ndarray], paths: list[Path]) -> np.ndarray:
    shapes = {a.shape for a in images}
    if len(shapes) > 1:
        first, other = images[0].shape, next(a.shape for a in images if a.shape != images[0].shape)
        where = next(p for p, a in zip(paths, images, strict=True) if a.shape == other)
        raise images_differ(str(paths[0]), first, str(where), other)
    return np.stack(images)


@dataclass(frozen=True)
class ImageFiles:
    """The image files of one part of a folder, in reading order (classes by name, files by name within
    each), with their labels: what a search needs to know of a folder before decoding any image."""

    paths: tuple[str, ...]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.paths)


def _index_classes(folder: Path, classes: Sequence[str]) -> ImageFiles:
    """Every image under `folder/<class>/` for the given class names, labelled by their position."""
    paths: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        class_folder = folder / name
        if not class_folder.is_dir():
            raise DataError(f"data.path: {folder} has no class folder {name!r} (the classes are {list(classes)})")
        images = _images_of(class_folder)
        paths.extend(str(p) for p in images)
        labels.extend([label] * len(images))
    return ImageFiles(tuple(paths), np.asarray(labels, dtype=np.int64))


@functools.lru_cache(maxsize=4)
def image_folder_index(path: str) -> dict[str, ImageFiles]:
    """The files of an image folder: `train/` and `test/` class folders (the same classes in both), or
    class folders (one part, `train`). Scanned once per process: reading the images in memory and
    streaming them both start from this index."""
    folder = Path(path)
    if not folder.is_dir():
        raise DataError(f"data.path: image folder {folder} does not exist or is not a directory")
    if all((folder / part).is_dir() for part in SPLIT_FOLDERS):
        classes = [p.name for p in class_folders(folder / "train")]
        return {part: _index_classes(folder / part, classes) for part in SPLIT_FOLDERS}
    classes = [p.name for p in class_folders(folder)]
    return {"train": _index_classes(folder, classes)}


def read_image(path: str, mode: str, size: tuple[int, ...] | None) -> np.ndarray:
    """One image file as float32 (C, H, W) on [0, 1]; a DataError naming the file when it cannot be read."""
    return _read_image(Path(path), mode, size)


def images_differ(first: str, first_shape: tuple[int, ...], other: str, other_shape: tuple[int, ...]) -> DataError:
    return DataError(
        f"data.size: images differ in size ({first} is {first_shape}, {other} is {other_shape}); "
        "set data.size to resize"
    )


@functools.lru_cache(maxsize=4)
def read_image_folder_part(path: str, part: str, mode: str, size: tuple[int, ...] | None) -> Arrays:
    """One part (`train`, `test`) of an image folder decoded into arrays, the other left unread
    (`image_folder_index` says which files, in which order)."""
    files = image_folder_index(path)[part]
    images = [read_image(p, mode, size) for p in files.paths]
    return _stack_images(images, [Path(p) for p in files.paths]), files.labels


def read_image_folder(path: str, mode: str, size: tuple[int, ...] | None) -> Parts:
    """An image folder's parts decoded into arrays."""
    return {part: read_image_folder_part(path, part, mode, size) for part in image_folder_index(path)}


# --------------------------------------------------------------------------------------------------
# Arrays and tensors from the user: files, factories
# --------------------------------------------------------------------------------------------------


def _as_array(value: Any, what: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return value
    raise DataError(f"{what}: expected an array or a tensor, got {type(value).__name__}")


def checked_arrays(x: Any, y: Any, what: str) -> Arrays:
    """Inputs float32 (N, C, *spatial) and labels int64 (N,), or a DataError saying which rule `what` breaks."""
    x, y = _as_array(x, f"{what} inputs"), _as_array(y, f"{what} labels")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)) or x.dtype == np.bool_:
        raise DataError(f"{what}: inputs must be numbers (float or integer), got dtype {x.dtype}")
    if not np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_:
        raise DataError(f"{what}: labels must be integers (class indices), got dtype {y.dtype}")
    if x.ndim not in (3, 4):
        raise DataError(f"{what}: inputs must be (N, C, L) or (N, C, H, W), got shape {x.shape}")
    if y.ndim != 1:
        raise DataError(f"{what}: labels must be one-dimensional (N,), got shape {y.shape}")
    if len(x) != len(y):
        raise DataError(f"{what}: {len(x)} inputs but {len(y)} labels; they must match")
    if len(y) and y.min() < 0:
        raise DataError(f"{what}: labels must be class indices 0, 1, ..., got {int(y.min())}")
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        raise DataError(f"{what}: inputs hold NaN or infinite values")
    return x.astype(np.float32), y.astype(np.int64)


def _arrays_from_mapping(arrays: Any, path: Path) -> Parts:
    if not hasattr(arrays, "keys") or "x" not in arrays or "y" not in arrays:
        keys = sorted(arrays.keys()) if hasattr(arrays, "keys") else type(arrays).__name__
        raise DataError(f"data.path: {path} must hold 'x' and 'y' (and optionally 'x_test', 'y_test'), got {keys}")
    has_x_test, has_y_test = "x_test" in arrays, "y_test" in arrays
    if has_x_test != has_y_test:
        raise DataError(f"data.path: {path} holds one of 'x_test' and 'y_test' without the other")
    parts = {"train": checked_arrays(arrays["x"], arrays["y"], f"data.path {path} ('x', 'y')")}
    if has_x_test:
        parts["test"] = checked_arrays(arrays["x_test"], arrays["y_test"], f"data.path {path} ('x_test', 'y_test')")
    return parts


def _load_npz(path: Path) -> Parts:
    try:
        # allow_pickle=False: an object array in the file is refused, never unpickled.
        with np.load(path, allow_pickle=False) as archive:
            return _arrays_from_mapping({key: archive[key] for key in archive.files}, path)
    except (OSError, ValueError, EOFError) as e:
        if isinstance(e, DataError):
            raise
        raise DataError(f"data.path: cannot read {path} as a numpy .npz file: {e}") from None


def _load_pt(path: Path) -> Parts:
    try:
        # weights_only=True: tensors and plain containers only, nothing in the file runs code.
        arrays = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds (pickle errors, RuntimeError) for a bad file
        raise DataError(f"data.path: cannot read {path} as a torch .pt file of tensors: {e}") from None
    return _arrays_from_mapping(arrays, path)


@functools.lru_cache(maxsize=2)
def read_arrays_file(path: str) -> Parts:
    """`x`, `y` and optionally `x_test`, `y_test` from an .npz or .pt file."""
    file = Path(path)
    if not file.is_file():
        raise DataError(f"data.path: array file {file} does not exist")
    return _load_npz(file) if file.suffix == ".npz" else _load_pt(file)


def import_factory(factory: str, field: str = "data.factory") -> Callable[..., Any]:
    """The function `module:function` names; a DataError naming the factory and the cause otherwise."""
    module_name, _, function_name = factory.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # an import runs the user's module: any error it raises is the cause
        raise DataError(f"{field}: cannot import {module_name!r} for {factory!r}: {type(e).__name__}: {e}") from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise DataError(f"{field}: {module_name!r} has no function {function_name!r} ({factory!r})")
    return function


def dataset_arrays(dataset: Any, what: str) -> Arrays:
    """A torch Dataset of (input, label) pairs as arrays (inputs stacked as they come)."""
    try:
        pairs = [dataset[i] for i in range(len(dataset))]
        inputs = np.stack([_as_array(torch.as_tensor(x), what) for x, _ in pairs])
        labels = np.asarray([int(y) for _, y in pairs], dtype=np.int64)
    except DataError:
        raise
    except Exception as e:  # the user's dataset may raise anything while being read
        raise DataError(f"{what}: cannot read the dataset's (input, label) pairs: {type(e).__name__}: {e}") from None
    return checked_arrays(inputs, labels, what)


def _factory_result(result: Any, factory: str) -> dict[str, Any]:
    """A factory's `train` and `test` parts: checked arrays, or the torch Datasets it returned as they are."""
    what = f"data.factory {factory!r}"
    if isinstance(result, tuple) and len(result) == 4:
        x, y, x_test, y_test = result
        return {
            "train": checked_arrays(x, y, f"{what} (x_train, y_train)"),
            "test": checked_arrays(x_test, y_test, f"{what} (x_test, y_test)"),
        }
    if isinstance(result, tuple) and len(result) == 2 and all(hasattr(d, "__getitem__") for d in result):
        return {"train": result[0], "test": result[1]}
    raise DataError(
        f"{what} returned {type(result).__name__}; expected (x_train, y_train, x_test, y_test) arrays or tensors, "
        "or (train, test) torch Datasets"
    )


@functools.lru_cache(maxsize=2)
def factory_parts(factory: str, kwargs_json: str) -> dict[str, Any]:
    """What a `module:function` factory returns when called with the JSON kwargs, called once per process:
    its `train` and `test` parts, each checked arrays or a torch Dataset of (input, label) pairs."""
    function = import_factory(factory)
    try:
        result = function(**json.loads(kwargs_json))
    except Exception as e:  # the user's code may raise anything
        raise DataError(f"data.factory {factory!r} failed: {type(e).__name__}: {e}") from None
    return _factory_result(result, factory)


@functools.lru_cache(maxsize=2)
def call_factory(factory: str, kwargs_json: str) -> Parts:
    """The train and test parts a `module:function` factory returns, as arrays (Datasets read whole)."""
    what = f"data.factory {factory!r}"
    return {
        part: value if isinstance(value, tuple) else dataset_arrays(value, f"{what} {part}")
        for part, value in factory_parts(factory, kwargs_json).items()
    }


def dataset_labels(dataset: Any, what: str) -> np.ndarray:
    """The labels of a Dataset of (input, label) pairs: its `targets` (torchvision's convention) when it
    has one per example, else read pair by pair (once per process: the index is cached with the data)."""
    targets = getattr(dataset, "targets", None)
    try:
        if targets is not None and len(targets) == len(dataset):
            labels = np.asarray([int(t) for t in targets], dtype=np.int64)
        else:
            labels = np.asarray([int(dataset[i][1]) for i in range(len(dataset))], dtype=np.int64)
    except Exception as e:  # the user's dataset may raise anything while being read
        raise DataError(f"{what}: cannot read the dataset's labels: {type(e).__name__}: {e}") from None
    if len(labels) and labels.min() < 0:
        raise DataError(f"{what}: labels must be class indices 0, 1, ..., got {int(labels.min())}")
    return labels


def checked_example(x: Any, what: str) -> np.ndarray:
    """One input of a Dataset as float32 (C, *spatial), or a DataError saying which rule it breaks."""
    try:
        array = _as_array(torch.as_tensor(x), what)
    except DataError:
        raise
    except Exception as e:  # torch.as_tensor of the user's value
        raise DataError(f"{what}: expected an array or a tensor input: {type(e).__name__}: {e}") from None
    if (
        not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer))
        or array.dtype == np.bool_
    ):
        raise DataError(f"{what}: inputs must be numbers (float or integer), got dtype {array.dtype}")
    if array.ndim not in (2, 3):
        raise DataError(f"{what}: an input must be (C, L) or (C, H, W), got shape {array.shape}")
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        raise DataError(f"{what}: inputs hold NaN or infinite values")
    return array.astype(np.float32)


# --------------------------------------------------------------------------------------------------
# torchvision
# --------------------------------------------------------------------------------------------------


def import_torchvision_datasets() -> Any:
    """torchvision.datasets, or a DataError that says why it cannot be imported (and what to do)."""
    try:
        import torchvision.datasets
    except Exception as e:  # ImportError when absent; RuntimeError when built for another torch
        raise DataError(
            f"data.name torchvision: cannot import torchvision ({type(e).__name__}: {e}); install the torchvision "
            "release built for this torch release, or write the data as an image folder or an array file"
        ) from None
    return torchvision.datasets


def _torchvision_part(cls: Any, root: str, train: bool | None, kwargs: dict[str, Any], what: str) -> Any:
    """One part of a torchvision class, read from `root` and never downloaded (where it takes those)."""
    parameters = _parameters(cls)
    fixed: dict[str, Any] = {"root": root, "download": False, "train": train}
    known = {key: value for key, value in fixed.items() if key in parameters and value is not None}
    try:
        return cls(**known, **kwargs)
    except Exception as e:  # missing files raise RuntimeError, a wrong keyword TypeError, others vary
        raise DataError(f"{what}: cannot read it from data.root {root} (nothing is downloaded): {e}") from None


def _pil_dataset_arrays(dataset: Any, mode: str, size: tuple[int, ...] | None, what: str) -> Arrays:
    try:
        pairs = [dataset[i] for i in range(len(dataset))]
    except Exception as e:  # a torchvision class reading files may raise anything
        raise DataError(f"{what}: cannot read its examples: {type(e).__name__}: {e}") from None
    images = [image_array(image, mode, size) for image, _ in pairs]
    labels = np.asarray([int(label) for _, label in pairs], dtype=np.int64)
    return checked_arrays(np.stack(images), labels, what)


@functools.lru_cache(maxsize=2)
def torchvision_parts(dataset: str, root: str, kwargs_json: str) -> dict[str, Any]:
    """A torchvision data set's train=True and train=False parts (just one, `train`, when the class has no
    `train`) as the class's own Dataset objects, made once per process; nothing is decoded yet."""
    datasets = import_torchvision_datasets()
    cls = getattr(datasets, dataset, None)
    what = f"data.dataset {dataset!r}"
    if not isinstance(cls, type):
        raise DataError(f"{what}: torchvision.datasets has no data set class of that name")
    kwargs = json.loads(kwargs_json)
    if "train" not in _parameters(cls):
        return {"train": _torchvision_part(cls, root, None, kwargs, what)}
    return {part: _torchvision_part(cls, root, part == "train", kwargs, what) for part in SPLIT_FOLDERS}


@functools.lru_cache(maxsize=2)
def read_torchvision(dataset: str, root: str, kwargs_json: str, mode: str, size: tuple[int, ...] | None) -> Parts:
    """A torchvision data set's parts (`torchvision_parts`) decoded into arrays."""
    what = f"data.dataset {dataset!r}"
    return {
        part: _pil_dataset_arrays(instance, mode, size, what)
        for part, instance in torchvision_parts(dataset, root, kwargs_json).items()
    }


def _parameters(cls: type) -> set[str]:
    return set(inspect.signature(cls).parameters)
