"""Fetching CIFAR-10 for users who ask for it. Searches never download: they read data.path.

`download_cifar10(dest)` streams the archive to a temporary file, checks its MD5 against the published
value, extracts only regular files under `cifar-10-batches-py/` (no links, no paths that climb out), and
moves the folder into place in one rename, so an interrupted or corrupted download leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from .data import CIFAR_TRAIN_FILES, DataError, load_cifar10_arrays

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"  # published with the data set
CIFAR10_FOLDER = "cifar-10-batches-py"
_CHUNK = 1 << 20


def _fetch(url: str, target: Path, timeout: float, progress: Callable[[int, int | None], None] | None) -> str:
    """Stream `url` into `target`; return the MD5 of what was written."""
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, target.open("wb") as out:  # noqa: S310
            total = response.headers.get("Content-Length")
            done = 0
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, int(total) if total else None)
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise DataError(f"could not download {url}: {e}") from None
    return digest.hexdigest()


def _safe_members(archive: tarfile.TarFile) -> list[tarfile.TarInfo]:
    members = []
    for m in archive.getmembers():
        path = PurePosixPath(m.name)
        if path.is_absolute() or ".." in path.parts or not path.parts or path.parts[0] != CIFAR10_FOLDER:
            raise DataError(f"refusing archive member {m.name!r}: outside {CIFAR10_FOLDER}/")
        if m.isdir():
            continue
        if not m.isfile():
            raise DataError(f"refusing archive member {m.name!r}: not a regular file")
        members.append(m)
    return members


def _extract(archive_path: Path, into: Path) -> Path:
    try:
        with tarfile.open(archive_path, "r:gz") as archive:
            for member in _safe_members(archive):
                target = into / member.name
                target.parent.mkdir(parents=True, exist_ok=True)
                source = archive.extractfile(member)
                assert source is not None  # regular files always have content
                with source, target.open("wb") as out:
                    shutil.copyfileobj(source, out)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DataError(f"{archive_path} is not a readable CIFAR-10 archive: {e}") from None
    return into / CIFAR10_FOLDER


def download_cifar10(
    destination: str | Path,
    *,
    url: str = CIFAR10_URL,
    md5: str | None = CIFAR10_MD5,
    timeout: float = 60.0,
    progress: Callable[[int, int | None], None] | None = None,
) -> Path:
    """Download and extract CIFAR-10 into `destination/cifar-10-batches-py`; return that folder.

    An existing complete folder is kept (nothing is fetched). Use the returned path as `data.path`.
    """
    dest = Path(destination).expanduser()
    folder = dest / CIFAR10_FOLDER
    if folder.is_dir() and all((folder / name).is_file() for name in CIFAR_TRAIN_FILES):
        return folder
    if folder.exists():
        raise DataError(f"{folder} exists but is incomplete; remove it and download again")
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest, prefix=".cifar10-") as tmp:
        archive = Path(tmp) / "cifar-10-python.tar.gz"
        got = _fetch(url, archive, timeout, progress)
        if md5 is not None and got != md5:
            raise DataError(f"checksum mismatch for {url}: expected MD5 {md5}, got {got}; nothing was kept")
        extracted = _extract(archive, Path(tmp) / "extracted")
        load_cifar10_arrays(extracted)  # refuse an archive whose batches do not read
        extracted.rename(folder)
    return folder
