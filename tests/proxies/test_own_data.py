"""The user's own data: image folders, array files, Python factories and torchvision classes, each on
small files the test writes; relative paths; and every bad input's message, naming the field and the path."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError

from evonorm_search.proxies import DataConfig, DataError, load_data
from evonorm_search.proxies.data import clear_caches, digits_parts, input_spec
from evonorm_search.proxies.folders import make_image_folder
from evonorm_search.proxies.readers import call_factory
from evonorm_search.search.config import SearchConfig


@pytest.fixture(autouse=True)
def _fresh_caches():
    clear_caches()  # every reader's and loader's cache: each test's files are new


def _png(path, color, size=(5, 7), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)


def _two_class_folder(root, per_class=6, size=(5, 7)):
    """Red images in `a/`, blue ones in `b/` (sizes vary when `size` is None)."""
    for i in range(per_class):
        _png(root / "a" / f"{i}.png", (200 + i, 10, 10), size or (4 + i, 6))
        _png(root / "b" / f"{i}.png", (10, 10, 200 + i), size or (6, 4 + i))
    return root


# --------------------------------------------------------------------------------------------------
# imagefolder
# --------------------------------------------------------------------------------------------------


def test_an_image_folder_with_train_and_test_folders_reads_them_as_search_part_and_test_split(tmp_path):
    folder = make_image_folder(tmp_path / "digits")
    config = DataConfig(name="imagefolder", path=str(folder), mode="grayscale")
    search, target = load_data(config), load_data(config, split="target")
    (_, search_y), (test_x, test_y) = digits_parts()
    assert len(search.train_y) + len(search.val_y) == len(search_y) and len(target.val_y) == len(test_y) == 359
    assert search.train_x.shape[1:] == (1, 8, 8) and input_spec(config) == (1, 2, 10)
    # The PNG files hold the digits scaled to 0..255 (they span 0..16): the same images, up to rounding.
    first_zero = sorted((folder / "test" / "0").iterdir())[0]  # files are read in name order
    pixels = np.asarray(Image.open(first_zero), dtype=np.float32)
    assert np.abs(pixels / 255 * 16 - test_x[test_y == 0][0, 0]).max() < 0.04


def test_without_split_folders_a_fraction_is_the_test_split_read_in_rgb_and_resized(tmp_path):
    folder = _two_class_folder(tmp_path / "images", per_class=10, size=None)
    config = DataConfig(name="imagefolder", path=str(folder), size=[4, 4], test_fraction=0.3)
    target = load_data(config, split="target")
    assert target.train_x.shape[1:] == (3, 4, 4) and len(target.val_y) == 6 and len(target.train_y) == 14
    assert sorted(set(target.val_y.tolist())) == [0, 1]  # stratified: both classes in the test split
    # Carved with a fixed seed: another search seed never moves a test image into the search part.
    other = load_data(config.model_copy(update={"seed": 9}), split="target")
    assert torch.equal(other.val_x, target.val_x)


def test_given_statistics_normalise_instead_of_the_training_parts(tmp_path):
    folder = _two_class_folder(tmp_path / "images")
    normalise = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
    data = load_data(DataConfig(name="imagefolder", path=str(folder), normalise=normalise), split="target")
    red = data.train_x[data.train_y == 0][0, :, 0, 0]  # red channel 200..205, the others 10, on 0..255
    assert (200 / 255 - 0.5) / 0.25 <= red[0] <= (205 / 255 - 0.5) / 0.25 + 1e-6
    assert torch.allclose(red[1:], torch.full((2,), (10 / 255 - 0.5) / 0.25))
    with pytest.raises(ValidationError, match="normalise needs 1 values per statistic for mode 'grayscale'"):
        DataConfig(name="imagefolder", path=str(folder), mode="grayscale", normalise=normalise)


def _unreadable_image(root):
    (root / "a" / "3.png").write_bytes(b"not a png")


def _empty_class(root):
    for image in (root / "b").iterdir():
        image.unlink()


def _one_class(root):
    _empty_class(root)
    (root / "b").rmdir()


def _odd_size(root):
    _png(root / "b" / "9.png", (1, 2, 3), (9, 9))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_unreadable_image, r"data.path: cannot read image .*3.png"),
        (_empty_class, r"data.path: class folder .*b holds no images"),
        (_one_class, r"data.path: .*images needs at least two class subfolders, found 1"),
        (_odd_size, r"data.size: images differ in size .*9.png.*set data.size to resize"),
    ],
)
def test_a_bad_image_folder_is_a_clear_error(tmp_path, damage, message):
    root = _two_class_folder(tmp_path / "images")
    damage(root)
    with pytest.raises(DataError, match=message):
        load_data(DataConfig(name="imagefolder", path=str(root)))


def test_a_missing_image_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match=r"data.path: image folder .*absent does not exist"):
        load_data(DataConfig(name="imagefolder", path=str(tmp_path / "absent")))


def test_relative_paths_are_resolved_against_the_config_files_folder(tmp_path, monkeypatch):
    _two_class_folder(tmp_path / "project" / "images")
    config_file = tmp_path / "project" / "search.yaml"
    config_file.write_text("name: own\narchitectures: [{kind: resnet}]\ndata: {name: imagefolder, path: images}\n")
    monkeypatch.chdir(tmp_path)  # elsewhere: the path still means the folder beside the config file
    config = SearchConfig.from_yaml(config_file)
    assert config.data.path == str(tmp_path / "project" / "images")
    # Stored and read back (a resumed search, a Ray worker), the path stays absolute.
    assert SearchConfig.from_mapping(config.model_dump(mode="json")).data == config.data
    assert load_data(config.data).in_channels == 3


def test_the_code_folder_is_resolved_against_the_config_files_folder(tmp_path, monkeypatch):
    """`code:` (the folder Ray ships to workers) reads like a data path: beside the config, from anywhere."""
    config_file = tmp_path / "project" / "search.yaml"
    config_file.parent.mkdir()
    config_file.write_text("name: own\narchitectures: [{kind: resnet}]\ncode: src\n")
    monkeypatch.chdir(tmp_path)
    config = SearchConfig.from_yaml(config_file)
    assert config.code == str(tmp_path / "project" / "src")
    assert SearchConfig.from_mapping(config.model_dump(mode="json")).code == config.code
    assert SearchConfig.from_mapping({"name": "own"}).code is None


# --------------------------------------------------------------------------------------------------
# arrays
# --------------------------------------------------------------------------------------------------


def _xy(n=40, classes=2, shape=(1, 3, 3), seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, *shape)).astype(np.float32), np.arange(n) % classes


def test_an_npz_file_with_its_own_test_split(tmp_path):
    x, y = _xy(40)
    x_test, y_test = _xy(10, seed=1)
    np.savez(tmp_path / "d.npz", x=x, y=y, x_test=x_test, y_test=y_test)
    target = load_data(DataConfig(name="arrays", path=str(tmp_path / "d.npz")), split="target")
    assert len(target.train_y) == 40 and len(target.val_y) == 10 and target.train_x.shape[1:] == (1, 3, 3)


def test_a_pt_file_of_tensors_without_a_test_split_carves_one(tmp_path):
    x, y = _xy(50, classes=5, shape=(2, 7))
    torch.save({"x": torch.from_numpy(x), "y": torch.from_numpy(y)}, tmp_path / "d.pt")
    config = DataConfig(name="arrays", path=str(tmp_path / "d.pt"), test_fraction=0.2)
    target = load_data(config, split="target")
    assert len(target.val_y) == 10 and target.spatial_dims == 1 and input_spec(config) == (2, 1, 5)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x": np.zeros((10, 1, 4), np.float32), "y": np.arange(9)}, r"10 inputs but 9 labels"),
        ({"x": np.zeros((10, 1, 4), np.float32), "y": np.arange(10) / 2}, r"labels must be integers .*float64"),
        ({"x": np.array(["a"] * 10).reshape(10, 1, 1), "y": np.arange(10)}, r"inputs must be numbers .*<U1"),
        ({"x": np.zeros((10, 4), np.float32), "y": np.arange(10)}, r"inputs must be \(N, C, L\) or \(N, C, H, W\)"),
        ({"inputs": np.zeros((10, 1, 4)), "y": np.arange(10)}, r"must hold 'x' and 'y'.*got \['inputs', 'y'\]"),
        ({"x": np.zeros((10, 1, 4)), "y": np.arange(10), "x_test": np.zeros((2, 1, 4))}, r"'x_test' and 'y_test'"),
    ],
)
def test_bad_arrays_are_clear_errors_naming_the_file(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=r"data.path.*bad.npz.*" + message):
        load_data(DataConfig(name="arrays", path=str(tmp_path / "bad.npz")))


def test_an_absent_or_unreadable_array_file_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match=r"data.path: array file .*absent.npz does not exist"):
        load_data(DataConfig(name="arrays", path=str(tmp_path / "absent.npz")))
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(DataError, match=r"data.path: cannot read .*junk.pt as a torch .pt file"):
        load_data(DataConfig(name="arrays", path=str(tmp_path / "junk.pt")))
    with pytest.raises(ValidationError, match=r"path must name an .npz or .pt file"):
        DataConfig(name="arrays", path=str(tmp_path / "d.csv"))


# --------------------------------------------------------------------------------------------------
# python factories
# --------------------------------------------------------------------------------------------------

FACTORIES = """
import numpy as np
import torch
from torch.utils.data import TensorDataset

def arrays(n=30):
    x = torch.randn(n, 1, 5, generator=torch.Generator().manual_seed(0))
    y = torch.arange(n) % 3
    return x, y, x[:9], y[:9]

def datasets():
    x, y, x_test, y_test = arrays()
    return TensorDataset(x, y), TensorDataset(x_test, y_test)

def wrong():
    return "data"

def failing():
    raise RuntimeError("no data today")
"""


@pytest.fixture
def factory_module(tmp_path, monkeypatch):
    (tmp_path / "own_factories.py").write_text(FACTORIES)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "own_factories"
    sys.modules.pop("own_factories", None)


@pytest.mark.parametrize("function", ["arrays", "datasets"])
def test_a_factory_returning_arrays_or_datasets(factory_module, function):
    config = DataConfig(name="python", factory=f"{factory_module}:{function}")
    target = load_data(config, split="target")
    assert len(target.train_y) == 30 and len(target.val_y) == 9 and input_spec(config) == (1, 1, 3)


def test_factory_kwargs_reach_it_and_each_call_is_made_once_per_process(factory_module):
    config = DataConfig(name="python", factory=f"{factory_module}:arrays", kwargs={"n": 45})
    assert len(load_data(config, split="target").train_y) == 45
    load_data(config)
    assert call_factory.cache_info().misses == 1  # the search and target splits share one call
    assert load_data(config) is load_data(config)


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        ("absent_module_xyz:make", r"data.factory: cannot import 'absent_module_xyz' .*ModuleNotFoundError"),
        ("own_factories:absent", r"data.factory: 'own_factories' has no function 'absent'"),
        ("own_factories:wrong", r"returned str; expected \(x_train, y_train, x_test, y_test\)"),
        ("own_factories:failing", r"data.factory 'own_factories:failing' failed: RuntimeError: no data today"),
    ],
)
def test_a_bad_factory_is_a_clear_error_naming_it(factory_module, factory, message):
    with pytest.raises(DataError, match=message):
        load_data(DataConfig(name="python", factory=factory))


def test_a_factory_is_checked_for_form_and_never_imported_by_validation():
    with pytest.raises(ValidationError, match="factory\n  String should match pattern"):
        DataConfig(name="python", factory="no_colon")
    config = SearchConfig.from_mapping({"name": "t", "data": {"name": "python", "factory": "absent_module_xyz:f"}})
    assert config.data.factory == "absent_module_xyz:f" and "absent_module_xyz" not in sys.modules


# --------------------------------------------------------------------------------------------------
# torchvision
# --------------------------------------------------------------------------------------------------


def test_torchvision_that_does_not_import_is_refused_with_the_cause(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # import torchvision now raises ImportError
    config = DataConfig(name="torchvision", dataset="MNIST", root=str(tmp_path))
    with pytest.raises(DataError, match=r"data.name torchvision: cannot import torchvision \(\w*Error: .*\); install"):
        load_data(config)


def test_torchvision_refusal_in_this_environment_names_the_real_cause(tmp_path):
    try:
        import torchvision  # noqa: F401
    except Exception as e:
        cause = f"{type(e).__name__}: {e}"
    else:
        pytest.skip("torchvision imports here; the refusal is tested with the import blocked")
    with pytest.raises(DataError, match="cannot import torchvision") as info:
        load_data(DataConfig(name="torchvision", dataset="MNIST", root=str(tmp_path)))
    assert cause in str(info.value)


def test_a_torchvision_class_reads_locally_and_never_downloads(tmp_path):
    try:
        import torchvision  # noqa: F401
    except Exception as e:  # RuntimeError where torchvision was built for another torch
        pytest.skip(f"torchvision does not import here ({type(e).__name__}: {e})")
    fake = {"size": 30, "image_size": [3, 6, 6], "num_classes": 3}
    config = DataConfig(name="torchvision", dataset="FakeData", root=str(tmp_path), kwargs=fake, size=[4])
    assert load_data(config, split="target").train_x.shape[1:] == (3, 4, 4)
    with pytest.raises(DataError, match=r"data.dataset 'MNIST': cannot read it from data.root .*nothing is downloaded"):
        load_data(DataConfig(name="torchvision", dataset="MNIST", root=str(tmp_path)))
    assert not any(tmp_path.iterdir())  # nothing was fetched
