"""`evonorm-search check CONFIG.yaml`: every architecture on one batch before any compute, bad ones refused
with the field named (exit 2); and the example of a search on your own model, its factory beside it."""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from evonorm_search.cli import app
from evonorm_search.search import SearchConfig
from tests import optional_packages

runner = CliRunner()
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

TINY = """\
name: check
budget: 4
population: 2
tournament: 1
architectures:
{architectures}
data: {{name: synthetic, synthetic_shape: [1, 8, 8], synthetic_classes: 3, samples: 60}}
training: {{steps: 20, batch_size: 8, device: cpu, threads: 1}}
rejection: {{quality: {{threshold: 0.1, steps: 10}}}}
validation:
  architectures: [{{kind: resnet, width: 4, blocks: [1]}}]
  data: {{name: synthetic, synthetic_shape: [1, 8, 8], synthetic_classes: 3, samples: 60}}
  training: {{steps: 30, batch_size: 8, device: cpu, threads: 1}}
  seeds: 1
"""


@pytest.fixture
def python_path(monkeypatch):
    """sys.path and PYTHONPATH as they were, after the test (loading a config adds its directory)."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))


def write(tmp_path: Path, *architectures: str) -> Path:
    path = tmp_path / "search.yaml"
    path.write_text(TINY.format(architectures="\n".join(f"  - {a}" for a in architectures)), encoding="utf-8")
    return path


def test_check_prints_each_architectures_slots_and_cost(tmp_path, python_path):
    path = write(
        tmp_path,
        "{kind: resnet, width: 4, blocks: [1]}",
        '{kind: python, name: mine, factory: "tests.proxies.factories:batchnorm_cnn"}',
    )
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    resnet = next(line for line in lines if "architectures.0 " in line and "proxy" in line)
    mine = next(line for line in lines if "architectures.1 " in line)
    assert "resnet" in resnet and " 3 " in resnet  # two slots per block plus the final one
    assert "python" in mine and " 1 " in mine  # the BatchNorm-ReLU pair swapped
    assert any("validation.architectures.0" in line and "target" in line for line in lines)
    assert "config ok: about" in result.output and "20 steps on each of 2 proxies" in result.output


@pytest.mark.parametrize(
    ("architecture", "message"),
    [
        (
            '{kind: python, factory: "tests.proxies.factories:raises"}',
            "architectures.1: factory 'tests.proxies.factories:raises' raised ValueError: unsupported number",
        ),
        (
            '{kind: python, factory: "no_such_module:f"}',
            "architectures.1: factory 'no_such_module:f': module 'no_such_module' cannot be imported",
        ),
        (
            '{kind: python, factory: "tests.proxies.factories:sequence_cnn"}',
            "architectures.1: factory 'tests.proxies.factories:sequence_cnn': the model rejects the data's input",
        ),
        # The data's dims are known without building: the config itself is refused (field <root>).
        ("{kind: transformer, width: 8}", "<root>: architecture 'transformer' (kind transformer) takes 1-D inputs"),
    ],
)
def test_a_bad_architecture_fails_the_check_naming_its_field(tmp_path, python_path, architecture, message):
    result = runner.invoke(app, ["check", str(write(tmp_path, "{kind: resnet, width: 4, blocks: [1]}", architecture))])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())


def test_an_invalid_config_fails_before_anything_is_built(tmp_path):
    result = runner.invoke(
        app, ["check", str(write(tmp_path, "{kind: python, factory: m:f, kwargs: {num_classes: 3}}"))]
    )
    assert result.exit_code == 2
    assert "architectures.0.kwargs" in result.output and "num_classes must not be in kwargs" in result.output


def test_check_says_whether_each_data_set_is_held_in_memory_or_streamed_and_its_size(tmp_path, python_path):
    from evonorm_search.proxies.data import clear_caches
    from evonorm_search.proxies.folders import make_image_folder

    clear_caches()
    folder = make_image_folder(tmp_path / "digits")
    text = TINY.format(architectures="  - {kind: resnet, width: 4, blocks: [1]}")
    streamed = f"{{name: imagefolder, path: {folder}, mode: grayscale, in_memory: false, loader_workers: 0}}"
    text = text.replace(
        "  data: {name: synthetic, synthetic_shape: [1, 8, 8], synthetic_classes: 3, samples: 60}",
        f"  data: {streamed}",
    )
    text = text.replace(
        "data: {name: synthetic, synthetic_shape: [1, 8, 8], synthetic_classes: 3, samples: 60}",
        f"data: {{name: imagefolder, path: {folder}, mode: grayscale}}",
        1,
    )
    path = tmp_path / "search.yaml"
    path.write_text(text, encoding="utf-8")
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    proxy = next(line for line in lines if "│ data " in line)
    target = next(line for line in lines if "validation.data" in line)
    # 1,797 digits of 1x8x8 float32: 0.4 MiB decoded.
    assert "imagefolder" in proxy and "1,079 / 359" in proxy and "1x8x8" in proxy and "0.4 MiB" in proxy
    assert "in memory" in proxy and "auto: <= in_memory_limit_mib 1024" in proxy
    assert "1,438 / 359" in target and "streamed, no workers" in target and "in_memory: false" in target
    clear_caches()


def test_check_of_a_layer_file_is_unchanged(tmp_path):
    layer = tmp_path / "layer.dsl"
    layer.write_text("y = relu(x)\n", encoding="utf-8")
    result = runner.invoke(app, ["check", str(layer)])
    assert result.exit_code == 0 and "valid layer" in result.output


def test_the_own_model_example_checks_from_any_directory(tmp_path, python_path, monkeypatch):
    # The factory's module is found beside the config: the command line puts the config's directory on the
    # Python path, for itself and the workers it starts (PYTHONPATH).
    for name in ("own-model.yaml", "own_model.py"):
        shutil.copy(EXAMPLES / name, tmp_path / name)
    monkeypatch.chdir(Path(os.sep))
    config = SearchConfig.from_yaml(tmp_path / "own-model.yaml")
    injected, swapped = "own_model:small_cnn", "own_model:small_cnn_with_batchnorm"
    assert config.python_factories() == [injected, swapped, injected]  # proxies, then the target task
    result = runner.invoke(app, ["check", str(tmp_path / "own-model.yaml")])
    assert result.exit_code == 0, result.output
    assert "injected" in result.output and "swapped" in result.output and "config ok" in result.output
    assert str(tmp_path) in sys.path and str(tmp_path) in os.environ["PYTHONPATH"].split(os.pathsep)


def test_run_refuses_a_users_model_that_cannot_be_a_proxy_before_storing_the_search(tmp_path, python_path):
    path = write(tmp_path, '{kind: python, name: mine, factory: "tests.proxies.factories:without_norms"}')
    db = f"sqlite:///{tmp_path / 'run.db'}"
    result = runner.invoke(app, ["run", str(path), "--db", db, "--no-live", "--in-process"])
    assert result.exit_code == 2, result.output
    output = " ".join(result.output.split())
    assert "architectures.0: factory 'tests.proxies.factories:without_norms': the model has no norm slot" in output
    assert not (tmp_path / "run.db").exists()  # nothing was stored: the search never started


def test_a_compile_target_applies_to_layers_not_to_configs(tmp_path):
    result = runner.invoke(app, ["check", str(write(tmp_path, "{kind: resnet}")), "--target", "cuda:90"])
    assert result.exit_code == 2 and "--target applies to a layer, not to a search config" in result.output


def test_the_own_model_example_runs_and_ends_with_its_validated_front_beside_the_baselines(tmp_path, python_path):
    """`run examples/own-model.yaml` (a smaller budget): its ladder trains the best candidates and the
    baselines on the target task, and the run ends with that answer."""
    for name in ("own-model.yaml", "own_model.py"):
        shutil.copy(EXAMPLES / name, tmp_path / name)
    db = f"sqlite:///{tmp_path / 'own.db'}"
    # Small: the search starts from two library layers (so two candidates surely train and are promoted)
    # and the target task trains a third as long.
    settings = ["budget=8", "space.seed_layers=[evonorm_s0, gn_silu]"]
    settings += ["validation.training.steps=100"]
    args = ["run", str(tmp_path / "own-model.yaml"), "--db", db, "--no-live", "--in-process"]
    args += [part for setting in settings for part in ("--set", setting)]
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    output = result.output
    assert "validated front of search 1" in output
    table = output[output.index("validated front of search 1") :]
    # One row per layer in the first table (a wider one continues in another that repeats the layer):
    # the promoted candidates, then both baselines.
    first = table[: table.index("└")]
    rows = [line.split("│")[1].strip() for line in first.splitlines() if line.startswith("│")]
    assert rows.count("bn_relu") == 1 and rows.count("gn_relu") == 1 and rows.count("candidate") >= 1, table
    assert len(re.findall(r"\d\.\d{4} ±", first)) == rows.count("candidate") + 2, table
    assert "validated layers (id: layer):" in table


def test_the_torchvision_example_checks_and_runs_to_its_validated_front(tmp_path):
    """`examples/torchvision.yaml`: torchvision's resnet18 and mobilenet_v2 on the 8x8 digits pass `check`
    (each built on one batch with its slots counted), and a short run of it ends with the validated
    front beside bn_relu and gn_relu."""
    optional_packages.torchvision()
    example = EXAMPLES / "torchvision.yaml"
    result = runner.invoke(app, ["check", str(example)])
    assert result.exit_code == 0, result.output
    assert "resnet18" in result.output and "mobilenet_v2" in result.output and "config ok" in result.output
    db = f"sqlite:///{tmp_path / 'tv.db'}"
    # Small: two library layers start the search so that two candidates surely train and are promoted.
    settings = ["budget=2", "space.seed_layers=[evonorm_s0, gn_silu]", "training.steps=10", "training.warmup_steps=2"]
    settings += ["rejection.quality.steps=5", "rejection.quality.threshold=0.0"]
    settings += ["validation.training.steps=20", "validation.training.warmup_steps=2", "fidelities.seeds=1"]
    args = ["run", str(example), "--db", db, "--no-live", "--in-process"]
    result = runner.invoke(app, args + [part for setting in settings for part in ("--set", setting)])
    assert result.exit_code == 0, result.output
    table = result.output[result.output.index("validated front of search 1") :]
    first = table[: table.index("└")]
    rows = [line.split("│")[1].strip() for line in first.splitlines() if line.startswith("│")]
    assert rows.count("bn_relu") == 1 and rows.count("gn_relu") == 1 and rows.count("candidate") >= 1, table
