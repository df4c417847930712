"""Baselines in every search, and the validation stage (`evaluate`, `validate`) on tiny synthetic configs."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from evonorm_search import store as db
from evonorm_search.cli import app
from evonorm_search.search.baselines import prepare_baselines
from evonorm_search.search.controller import create_search, run_search
from evonorm_search.search.evaluator import InProcessEvaluator
from evonorm_search.store import CandidateRole, CandidateStatus, EvaluationPhase

from .conftest import run_to_end, tiny_config

runner = CliRunner()

# A target task as small as the proxies: one network, five steps, two seeds.
TINY_TARGET = {
    "architectures": [{"kind": "resnet", "width": 4, "blocks": [1]}],
    "data": {
        "name": "synthetic",
        "synthetic_shape": [1, 6, 6],
        "synthetic_classes": 3,
        "samples": 60,
        "test_samples": 30,
    },
    "training": {"steps": 5, "batch_size": 16, "device": "cpu", "threads": 1},
    "seeds": 2,
}
TINY_DATA = {
    "name": "synthetic",
    "synthetic_shape": [1, 6, 6],
    "synthetic_classes": 3,
    "samples": 60,
    "test_samples": 30,
}


def small_config(**overrides):
    settings = {
        "budget": 5,
        "data": TINY_DATA,
        "training": {"steps": 5, "batch_size": 16, "device": "cpu", "threads": 1},
        "rejection": {"quality": {"threshold": 0.0, "steps": 2}, "stability": {"steps": 2}},
        "baselines": ["gn_relu", "relu"],
        "validation": TINY_TARGET,
    }
    settings.update(overrides)
    return tiny_config(**settings)


def test_baselines_are_evaluated_outside_the_budget_population_counters_and_front(any_store):
    config = small_config(space={"seed_layers": ["gn_relu"]})
    search_id, final = run_to_end(any_store, config)
    with any_store.session(readonly=True) as s:
        baselines = db.baselines_of(s, search_id)
        search = db.get_search(s, search_id)
        summary = db.search_summary(s, search_id)
        own = db.list_candidates(s, search_id, limit=100).items
        front_ids = {c.id for c in db.pareto_front(s, search_id)}
        population_ids = {c.id for c in db.population(s, search_id, 100)}
        evaluations = {b.id: db.evaluations_of(s, b.id) for b in baselines}
    assert [(b.label, b.role, b.status) for b in baselines] == [
        ("gn_relu", CandidateRole.BASELINE, CandidateStatus.EVALUATED),
        ("relu", CandidateRole.BASELINE, CandidateStatus.EVALUATED),
    ]
    assert set(baselines[0].objectives) == {"accuracy_resnet", "accuracy_mobilenetv2"}
    # Same proxies, no quality rejection: only full-training (proxy) records.
    assert all({e.phase for e in rows} == {EvaluationPhase.PROXY} for rows in evaluations.values())
    # Outside the budget: births and counters hold the search's own candidates only.
    assert search.next_birth == config.budget == summary.total == final.proposed == len(own)
    assert sorted(c.birth for c in own) == list(range(config.budget))
    baseline_ids = {b.id for b in baselines}
    assert not baseline_ids & (front_ids | population_ids)
    # The seed layer gn_relu is also a baseline: it is proposed and evaluated as a candidate of its own.
    gn_relu = baselines[0]
    seeded = [c for c in own if c.canonical_hash == gn_relu.canonical_hash]
    assert seeded and seeded[0].status is CandidateStatus.EVALUATED and seeded[0].duplicate_of is None
    # Rebuilding the derived data from scratch agrees: baselines are in none of it.
    with any_store.session() as s:
        db.rebuild_derived(s, search_id)
    with any_store.session(readonly=True) as s:
        assert db.search_summary(s, search_id).total == config.budget
        assert not baseline_ids & {c.id for c in db.pareto_front(s, search_id)}


def test_a_resumed_controller_evaluates_no_baseline_twice(store):
    config = small_config(budget=2)
    search_id = create_search(store, config)
    with store.session() as s:  # a previous controller stored the baselines and died while gn_relu trained
        db.set_search_state(s, search_id, db.SearchState.RUNNING)
        pending = prepare_baselines(s, search_id, config)
        db.mark_status(s, pending[0].candidate_id, CandidateStatus.RUNNING)
    submitted = []

    class Recording(InProcessEvaluator):
        def submit(self, task):
            submitted.append((task.candidate_id, task.attempt))
            super().submit(task)

    evaluator = Recording()
    try:
        run_search(store, search_id, evaluator, poll_interval=0.01)
        with store.session(readonly=True) as s:
            baselines = db.baselines_of(s, search_id)
        assert [b.status for b in baselines] == [CandidateStatus.EVALUATED] * 2
        assert baselines[0].attempt == 1  # re-queued once
        # Another start would find everything done: no baseline is queued again.
        with store.session() as s:
            assert prepare_baselines(s, search_id, config) == []
    finally:
        evaluator.close()
    baseline_submissions = [t for t in submitted if t[0] in {b.id for b in baselines}]
    assert len(baseline_submissions) == 2


def test_no_baselines_when_the_config_lists_none(store):
    search_id, _ = run_to_end(store, small_config(budget=2, baselines=[]))
    with store.session(readonly=True) as s:
        assert db.baselines_of(s, search_id) == []


def test_status_and_pareto_show_the_baselines(tmp_path):
    url = f"sqlite:///{tmp_path / 'b.db'}"
    with db.open_store(url) as store:
        search_id, _ = run_to_end(store, small_config())
    status = runner.invoke(app, ["status", str(search_id), "--db", url])
    assert status.exit_code == 0, status.output
    assert "baseline gn_relu" in status.output and "baseline relu" in status.output
    shown = runner.invoke(app, ["pareto", str(search_id), "--db", url, "--json"])
    assert shown.exit_code == 0, shown.output
    front = json.loads(shown.stdout)
    assert [b["label"] for b in front["baselines"]] == ["gn_relu", "relu"]
    relu = front["baselines"][1]
    for row in front["proxy"]:
        versus = row["vs_baselines"]["relu"]
        assert math.isclose(versus["mean"], row["mean"] - relu["mean"])
        assert math.isclose(
            versus["per_objective"]["accuracy_resnet"],
            row["objectives"]["accuracy_resnet"] - relu["objectives"]["accuracy_resnet"],
        )
    table = runner.invoke(app, ["pareto", str(search_id), "--db", url])
    assert "vs gn_relu" in table.output and "vs relu" in table.output


# -- evaluate and validate --------------------------------------------------------------------------


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(small_config().to_yaml())
    return path


def json_of(result):
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # nothing but the JSON list on stdout


def check_score(item, architectures):
    assert set(item) >= {"layer", "mean", "std", "per_architecture"}
    assert set(item["per_architecture"]) == set(architectures)
    seed_scores = [sum(r["accuracies"].values()) / len(r["accuracies"]) for r in item["runs"]]
    assert math.isclose(item["mean"], sum(seed_scores) / len(seed_scores))
    assert 0.0 <= item["mean"] <= 1.0 and item["std"] >= 0.0


def test_evaluate_prints_the_proxy_score_of_each_layer(config_file, tmp_path):
    dsl = tmp_path / "mine.dsl"
    dsl.write_text("x * sigmoid(x)\n")
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--layer",
            "bn_relu",
            "--layer",
            str(dsl),
            "--config",
            str(config_file),
            "--seeds",
            "2",
            "--in-process",
            "--json",
        ],
    )
    items = json_of(result)
    assert [i["label"] for i in items] == ["bn_relu", str(dsl)]
    assert items[1]["layer"] == "x * sigmoid(x)"
    for item in items:
        check_score(item, ["resnet", "mobilenetv2"])
        assert item["seeds"] == [1, 2]  # config.seed, config.seed + 1
    table = runner.invoke(app, ["evaluate", "--layer", "relu", "--config", str(config_file), "--in-process"])
    assert table.exit_code == 0 and "mean ± std" in table.output


def test_validate_given_layers_trains_them_beside_the_baselines_on_the_target(config_file):
    result = runner.invoke(
        app,
        [
            "validate",
            "--layer",
            "identity",
            "--layer",
            "gn_relu",
            "--config",
            str(config_file),
            "--in-process",
            "--json",
        ],
    )
    items = json_of(result)
    # gn_relu is given, so it is not trained a second time as a baseline; relu is the other baseline.
    assert [(i["label"], i["role"]) for i in items] == [
        ("identity", "layer"),
        ("gn_relu", "layer"),
        ("relu", "baseline"),
    ]
    for item in items:
        check_score(item, ["resnet"])
        assert item["seeds"] == [1000, 1001]  # validation.first_seed, ...
    identity, relu = items[0], items[2]
    assert math.isclose(identity["vs_baselines"]["relu"], identity["mean"] - relu["mean"])


def test_validate_a_search_stores_the_validation_phase_and_reuses_it(tmp_path):
    url = f"sqlite:///{tmp_path / 'v.db'}"
    with db.open_store(url) as store:
        search_id, _ = run_to_end(store, small_config())
    args = ["validate", str(search_id), "--db", url, "--top", "1", "--seeds", "1", "--in-process", "--json"]
    first = json_of(runner.invoke(app, args))
    assert [i["role"] for i in first] == ["layer", "baseline", "baseline"]
    assert all(i["reused_seeds"] == [] for i in first)
    with db.open_store(url) as store, store.session(readonly=True) as s:
        rows = {
            i["candidate_id"]: [
                e for e in db.evaluations_of(s, i["candidate_id"]) if e.phase is EvaluationPhase.VALIDATION
            ]
            for i in first
        }
    for item in first:
        assert [(e.architecture, e.attempt, e.metrics["seed"]) for e in rows[item["candidate_id"]]] == [
            ("resnet", 1000, 1000)
        ]
        assert math.isclose(rows[item["candidate_id"]][0].metrics["accuracy"], item["mean"])
    # Again with two seeds: seed 1000 comes from the store, only seed 1001 trains.
    second = json_of(runner.invoke(app, [*args[:-4], "--seeds", "2", "--in-process", "--json"]))
    assert [i["reused_seeds"] for i in second] == [[1000]] * 3
    assert [i["runs"][0]["accuracies"] for i in second] == [i["runs"][0]["accuracies"] for i in first]
    third = json_of(runner.invoke(app, [*args[:-4], "--seeds", "2", "--in-process", "--json"]))
    assert [i["reused_seeds"] for i in third] == [[1000, 1001]] * 3
    assert [i["mean"] for i in third] == [i["mean"] for i in second]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["validate", "--layer", "no_such_layer", "--config", "CONFIG"], "unknown layer 'no_such_layer'"),
        (["evaluate", "--layer", "missing/file.dsl", "--config", "CONFIG"], "no such file"),
        (["evaluate", "--layer", "relu"], "needs --config"),
        (["validate"], "give SEARCH_ID, or --layer"),
        (["validate", "--layer", "relu", "--config", "BAD"], "invalid"),
        (["validate", "1", "--layer", "relu"], "give SEARCH_ID, or --layer"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(args, message, config_file, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nbudget: -3\n")
    args = [str(config_file) if a == "CONFIG" else str(bad) if a == "BAD" else a for a in args]
    result = runner.invoke(app, [*args, "--in-process"])
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_validate_refuses_a_search_without_evaluated_candidates_and_stores_nothing(tmp_path):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    with db.open_store(url) as store:
        search_id = create_search(store, small_config())
    result = runner.invoke(app, ["validate", str(search_id), "--db", url, "--in-process"])
    assert result.exit_code == 2
    assert "has no evaluated candidates" in result.output
    missing = runner.invoke(app, ["validate", "999", "--db", url, "--in-process"])
    assert missing.exit_code == 2 and "no search with id 999" in missing.output
    with db.open_store(url) as store, store.session(readonly=True) as s:
        assert db.list_candidates(s, search_id).items == [] and db.baselines_of(s, search_id) == []
