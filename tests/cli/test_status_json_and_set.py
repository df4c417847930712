"""`status --json` (one JSON object, in the API's shape plus the best single layer) and `run --set
key=value` (repeatable, dotted keys, validated like the file)."""

from __future__ import annotations

import json
import statistics

import pytest
import yaml
from typer.testing import CliRunner

from evonorm_search import store as st
from evonorm_search.cli import app
from tests.search.conftest import tiny_yaml

from .conftest import POPULATED_BASELINES, StoredSearch, evaluated_candidates

runner = CliRunner()


def mean_accuracy(objectives: dict[str, float]) -> float:
    return statistics.fmean(v for k, v in objectives.items() if k.startswith("accuracy_"))


def test_status_json_of_one_search_is_the_api_status_with_the_best_layer(populated: StoredSearch):
    from service.views import search_status

    result = runner.invoke(app, ["status", "1", "--db", populated.db, "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)  # nothing but one JSON object on stdout
    with st.open_store(populated.db) as store, store.session(readonly=True) as s:
        api = search_status(st.search_summary(s, 1)).model_dump(mode="json")
    assert set(api) <= set(shown)
    assert shown["counts"] == api["counts"] and shown["best"] == api["best"] and shown["id"] == 1
    best = max(evaluated_candidates(populated.db), key=lambda c: mean_accuracy(c.objectives))
    assert shown["best_layer"]["candidate"] == best.id and shown["best_layer"]["dsl"] == best.dsl
    assert shown["best_layer"]["mean_accuracy"] == pytest.approx(mean_accuracy(best.objectives))
    assert [b["label"] for b in shown["baselines"]] == list(POPULATED_BASELINES)
    bn_relu = shown["baselines"][0]
    assert bn_relu["mean_accuracy"] == pytest.approx(mean_accuracy(POPULATED_BASELINES["bn_relu"]))


def test_status_json_lists_searches_as_one_object(populated: StoredSearch):
    result = runner.invoke(app, ["status", "--db", populated.db, "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert isinstance(shown, dict) and [s["id"] for s in shown["items"]] == [1]
    item = shown["items"][0]
    assert item["name"] == "finished" and item["counts"]["total"] == 30
    best = max(evaluated_candidates(populated.db), key=lambda c: mean_accuracy(c.objectives))
    assert item["best_layer"]["candidate"] == best.id


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(tiny_yaml(budget=10))
    return path


def test_run_set_overrides_the_file(config_file, tmp_path):
    db = f"sqlite:///{tmp_path / 'set.db'}"
    result = runner.invoke(
        app,
        [
            "run", str(config_file), "--db", db, "--no-live", "--in-process",
            "--set", "budget=3", "--set", "training.steps=5", "--set", "name=renamed",
            "--set", "rejection.quality.threshold=0.0", "--set", "training.lr=5e-2",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "started search 1 (renamed)" in result.output and "3/3 candidates" in result.output
    with st.open_store(db) as store, store.session(readonly=True) as s:
        stored = st.get_search(s, 1).config
    assert stored["budget"] == 3 and stored["training"]["steps"] == 5
    assert stored["rejection"]["quality"]["threshold"] == 0.0 and stored["training"]["lr"] == 0.05
    assert stored["training"]["batch_size"] == yaml.safe_load(config_file.read_text())["training"]["batch_size"]


@pytest.mark.parametrize(
    ("setting", "fragment"),
    [
        ("populaton=3", "populaton: Extra inputs are not permitted (did you mean 'population'?)"),
        ("training.steps=-1", "training.steps: Input should be greater than or equal to 1"),
        ("training.lr=1e-3x", "training.lr: Input should be a valid number"),
        ("budget", "--set takes KEY=VALUE"),
        ("budget.x=1", "--set budget.x=1: budget is not a mapping"),
    ],
)
def test_run_set_is_validated_like_the_file(config_file, tmp_path, setting, fragment):
    db = f"sqlite:///{tmp_path / 'bad.db'}"
    result = runner.invoke(app, ["run", str(config_file), "--db", db, "--in-process", "--set", setting])
    assert result.exit_code == 2, result.output
    assert fragment in result.output
    assert not (tmp_path / "bad.db").exists()


def test_run_set_needs_a_config_file(tmp_path):
    result = runner.invoke(app, ["run", "--resume", "1", "--set", "budget=3", "--db", f"sqlite:///{tmp_path / 'x.db'}"])
    assert result.exit_code == 2 and "--set applies to CONFIG.yaml" in result.output
