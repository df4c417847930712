"""`data download cifar10 DEST`: fetch a proxy data set on request (searches themselves never download);
`data make-folder DIR`: write a data set as PNG class folders (the `imagefolder` layout)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from ..proxies.data import DataError
from ..proxies.download import CIFAR10_URL, download_cifar10
from ..proxies.folders import make_image_folder
from .app import app, console, fail

data_app = typer.Typer(
    help="Proxy data sets: digits and MNIST-1D need nothing; CIFAR-10 is downloaded on request; "
    "make-folder writes an image folder."
)
app.add_typer(data_app, name="data")

DATASETS = ("cifar10",)


@data_app.command("download")
def download_command(
    dataset: Annotated[str, typer.Argument(help="data set to fetch: cifar10")],
    destination: Annotated[Path, typer.Argument(help="folder to put it in")] = Path("data"),
    url: Annotated[str, typer.Option(help="mirror of the archive (checked against the published MD5)")] = CIFAR10_URL,
) -> None:
    """Download, verify and extract a data set; print the folder to use as `data.path`."""
    if dataset not in DATASETS:
        raise fail(f"unknown data set {dataset!r}; downloadable: {', '.join(DATASETS)}")
    columns = ("[progress.description]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(dataset, total=None)
        try:
            folder = download_cifar10(
                destination, url=url, progress=lambda done, total: bar.update(task, completed=done, total=total)
            )
        except DataError as e:
            raise fail(str(e)) from None
    console.print(f"{dataset}: {folder}\nuse it in a search configuration as  data: {{name: cifar10, path: {folder}}}")


@data_app.command("make-folder")
def make_folder_command(
    directory: Annotated[Path, typer.Argument(help="new or empty folder to write train/ and test/ into")],
    name: Annotated[str, typer.Option(help="built-in data set of 2-D images to write")] = "digits",
) -> None:
    """Write a data set as PNG files in train/ and test/ class folders; print the config that reads them."""
    try:
        folder = make_image_folder(directory, name)
    except (DataError, ValueError) as e:  # ValueError: an unknown name (a pydantic ValidationError)
        raise fail(str(e)) from None
    console.print(
        f"{name}: {folder}\nuse it in a search configuration as  data: {{name: imagefolder, path: {folder.resolve()}, "
        "mode: grayscale}",
        highlight=False,
        markup=False,
    )
