"""download_cifar10 on archives the tests write, served from file:// URLs (no network)."""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest

from evonorm_search.proxies.data import DataError, load_cifar10_arrays
from evonorm_search.proxies.download import CIFAR10_FOLDER, download_cifar10


def _batch_bytes(n: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    batch = {
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"labels": [int(v) for v in rng.integers(0, 10, n)],
    }
    return pickle.dumps(batch, protocol=2)


def _archive(path: Path, members: dict[str, bytes], symlink: str | None = None) -> tuple[str, str]:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if symlink is not None:
            info = tarfile.TarInfo(symlink)
            info.type = tarfile.SYMTYPE
            info.linkname = "/etc/passwd"
            tar.addfile(info)
    return path.as_uri(), hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def _good_members() -> dict[str, bytes]:
    members = {f"{CIFAR10_FOLDER}/data_batch_{i}": _batch_bytes(4, i) for i in range(1, 6)}
    members[f"{CIFAR10_FOLDER}/batches.meta"] = pickle.dumps({b"label_names": [b"cat"]})
    return members


def test_download_extracts_checks_and_loads(tmp_path):
    url, md5 = _archive(tmp_path / "c.tar.gz", _good_members())
    seen: list[int] = []
    folder = download_cifar10(tmp_path / "data", url=url, md5=md5, progress=lambda done, total: seen.append(done))
    assert folder == tmp_path / "data" / CIFAR10_FOLDER
    x, y = load_cifar10_arrays(folder)
    assert x.shape == (20, 3, 32, 32) and y.shape == (20,)
    assert seen and seen[-1] == (tmp_path / "c.tar.gz").stat().st_size
    # A complete copy is kept: a second call fetches nothing, even from a dead URL.
    assert download_cifar10(tmp_path / "data", url="file:///nonexistent.tar.gz", md5=md5) == folder


def test_checksum_mismatch_keeps_nothing(tmp_path):
    url, _ = _archive(tmp_path / "c.tar.gz", _good_members())
    with pytest.raises(DataError, match="checksum mismatch"):
        download_cifar10(tmp_path / "data", url=url, md5="0" * 32)
    assert list((tmp_path / "data").iterdir()) == []


@pytest.mark.parametrize(
    ("members", "symlink", "fragment"),
    [
        ({"../evil": b"x"}, None, "outside cifar-10-batches-py"),
        ({"/abs/evil": b"x"}, None, "outside cifar-10-batches-py"),
        ({f"{CIFAR10_FOLDER}/data_batch_1": _batch_bytes(2, 0)}, f"{CIFAR10_FOLDER}/link", "not a regular file"),
        ({f"{CIFAR10_FOLDER}/data_batch_1": b"not a pickle"}, None, "not a CIFAR-10 python batch"),
    ],
)
def test_hostile_or_broken_archives_are_refused(tmp_path, members, symlink, fragment):
    url, md5 = _archive(tmp_path / "c.tar.gz", members, symlink)
    with pytest.raises(DataError, match=fragment):
        download_cifar10(tmp_path / "data", url=url, md5=md5)
    assert not (tmp_path / "data" / CIFAR10_FOLDER).exists()
    assert not (tmp_path / "evil").exists()


def test_unreachable_url_and_incomplete_folder(tmp_path):
    with pytest.raises(DataError, match="could not download"):
        download_cifar10(tmp_path / "data", url=(tmp_path / "missing.tar.gz").as_uri())
    (tmp_path / "data" / CIFAR10_FOLDER).mkdir(parents=True)
    with pytest.raises(DataError, match="exists but is incomplete"):
        download_cifar10(tmp_path / "data", url="file:///unused")


def test_cli_downloads_from_a_mirror_and_names_the_folder(tmp_path):
    from typer.testing import CliRunner

    from evonorm_search.cli import app

    url, _ = _archive(tmp_path / "c.tar.gz", _good_members())
    runner = CliRunner()
    # A mirror is still checked against the published checksum: this test archive is not CIFAR-10.
    result = runner.invoke(app, ["data", "download", "cifar10", str(tmp_path / "d"), "--url", url])
    assert result.exit_code == 2 and "checksum mismatch" in result.output
    result = runner.invoke(app, ["data", "download", "imagenet", str(tmp_path / "d")])
    assert result.exit_code == 2 and "unknown data set 'imagenet'" in result.output
