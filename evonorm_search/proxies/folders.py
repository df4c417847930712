"""Writing a data set as an image folder (`evonorm-search data make-folder`): PNG files in `train/` and
`test/` folders of class subfolders, the layout the `imagefolder` data set reads, so a user (or a test)
has a real folder of images to point a search at."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .config import DataConfig
from .data import dataset_row, declared_spatial_dims
from .errors import DataError
from .readers import Arrays

IMAGE_CHANNELS = (1, 3)  # grayscale and RGB: the images a PNG holds


def _as_pixels(x: np.ndarray, low: float, high: float) -> np.ndarray:
    """Inputs (N, C, H, W) on [low, high] as uint8 pixels (N, H, W) or (N, H, W, 3)."""
    scaled = np.rint((x - low) / max(high - low, 1e-12) * 255.0).clip(0, 255).astype(np.uint8)
    return scaled[:, 0] if scaled.shape[1] == 1 else scaled.transpose(0, 2, 3, 1)


def write_pngs(part: Arrays, folder: Path, low: float, high: float, classes: int) -> None:
    """One PNG per example in `folder/<label>/`; labels zero-padded so their names sort as numbers."""
    from PIL import Image

    width = len(str(classes - 1))
    x, y = part
    for index, (pixels, label) in enumerate(zip(_as_pixels(x, low, high), y, strict=True)):
        target = folder / f"{int(label):0{width}d}"
        target.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(target / f"{index:05d}.png")


def make_image_folder(destination: str | Path, name: str = "digits") -> Path:
    """Write the built-in data set `name` (default config) as `destination/train` and `destination/test`
    class folders of PNG files (its search part and its test split); return `destination`. Pixel values
    span the data set's range, scaled to 0..255."""
    config = DataConfig(name=name)
    if declared_spatial_dims(config) != 2:
        raise DataError(f"{name} does not hold 2-D images; an image folder needs images (digits, for instance)")
    row = dataset_row(config)
    search, test = row.search(config), row.test(config)
    if search[0].shape[1] not in IMAGE_CHANNELS:
        raise DataError(f"{name} images have {search[0].shape[1]} channels; PNG files hold 1 or 3")
    folder = Path(destination).expanduser()
    if folder.exists() and any(folder.iterdir()):
        raise DataError(f"{folder} is not empty; give a new or empty folder")
    low = float(min(search[0].min(), test[0].min()))
    high = float(max(search[0].max(), test[0].max()))
    classes = int(max(search[1].max(), test[1].max())) + 1
    write_pngs(search, folder / "train", low, high, classes)
    write_pngs(test, folder / "test", low, high, classes)
    return folder
