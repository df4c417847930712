"""`evonorm-search data make-folder DIR`: a data set written as PNG class folders a search can read."""

from __future__ import annotations

from typer.testing import CliRunner

from evonorm_search.cli import app
from evonorm_search.proxies import DataConfig, load_data
from evonorm_search.proxies.data import digits_parts


def test_make_folder_writes_the_digits_as_train_and_test_class_folders(tmp_path):
    result = CliRunner().invoke(app, ["data", "make-folder", str(tmp_path / "digits")])
    assert result.exit_code == 0, result.output
    assert "data: {name: imagefolder, path:" in result.output
    (search_x, _), (test_x, _) = digits_parts()
    train, test = tmp_path / "digits" / "train", tmp_path / "digits" / "test"
    assert sorted(p.name for p in train.iterdir()) == [str(d) for d in range(10)]
    assert sum(1 for _ in train.rglob("*.png")) == len(search_x) and sum(1 for _ in test.rglob("*.png")) == len(test_x)
    data = load_data(DataConfig(name="imagefolder", path=str(tmp_path / "digits"), mode="grayscale"), "target")
    assert data.train_x.shape == (len(search_x), 1, 8, 8) and len(data.val_y) == len(test_x)


def test_make_folder_refuses_a_non_empty_folder_and_data_that_is_not_images(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    result = CliRunner().invoke(app, ["data", "make-folder", str(tmp_path / "full")])
    assert result.exit_code == 2 and "is not empty; give a new or empty folder" in result.output
    result = CliRunner().invoke(app, ["data", "make-folder", str(tmp_path / "seq"), "--name", "mnist1d"])
    assert result.exit_code == 2 and "mnist1d does not hold 2-D images" in result.output
    result = CliRunner().invoke(app, ["data", "make-folder", str(tmp_path / "x"), "--name", "imagenet"])
    assert result.exit_code == 2 and "unknown data set 'imagenet'" in result.output
