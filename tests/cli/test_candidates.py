"""A search's candidates from the command line: `candidates SEARCH_ID` lists and filters them (table,
JSON, CSV), `candidate ID` shows one (formula, status, scores per phase, lineage), and
`evaluate --candidate ID` scores a stored candidate again under its search's configuration."""

from __future__ import annotations

import csv
import io
import json
import os
import statistics

import pytest
from typer.testing import CliRunner

from evonorm_search import store as st
from evonorm_search.cli import app
from evonorm_search.cli.app import console

from .conftest import StoredSearch, evaluated_candidates

runner = CliRunner()


@pytest.fixture
def narrow(monkeypatch):
    """The console laid out 80 columns wide, as in an 80-column terminal."""
    monkeypatch.setattr(console, "_width", 80)


def stored_candidates(db: str, search_id: int = 1) -> list[st.Candidate]:
    """Every candidate of the search (no baselines), by birth."""
    with st.open_store(db) as store, store.session(readonly=True) as s:
        return list(st.list_candidates(s, search_id, limit=1000).items)


def listed_ids(output: str) -> list[int]:
    return [row["id"] for row in json.loads(output)]


# -- candidates SEARCH_ID -----------------------------------------------------------------------------


def test_candidates_lists_every_candidate_with_its_formula_whole_at_80_columns(populated: StoredSearch, narrow):
    result = runner.invoke(app, ["candidates", "1", "--db", populated.db, "--limit", "1000"])
    assert result.exit_code == 0, result.output
    assert "…" not in result.stdout
    for candidate in stored_candidates(populated.db):
        for line in candidate.dsl.strip().splitlines():
            assert line in result.stdout, (candidate.id, line)
        assert f"  {candidate.id}:" in result.stdout  # the key of its formula
    rejected = [c for c in stored_candidates(populated.db) if c.rejection_reason]
    assert rejected and all(c.rejection_reason in result.stdout for c in rejected)


def test_candidates_filters_by_status_and_stage_and_limits(populated: StoredSearch):
    everything = stored_candidates(populated.db)
    args = ["candidates", "1", "--db", populated.db, "--json", "--limit", "1000"]

    rejected = runner.invoke(app, [*args, "--status", "rejected"])
    assert rejected.exit_code == 0, rejected.output
    assert listed_ids(rejected.stdout) == [c.id for c in everything if c.status is st.CandidateStatus.REJECTED]

    quality = runner.invoke(app, [*args, "--stage", "quality"])
    assert quality.exit_code == 0, quality.output
    wanted = [c.id for c in everything if c.rejection_stage is st.RejectionStage.QUALITY]
    assert wanted and listed_ids(quality.stdout) == wanted

    several = runner.invoke(app, [*args, "--status", "evaluated", "--status", "failed"])
    expected = [c.id for c in everything if c.status in (st.CandidateStatus.EVALUATED, st.CandidateStatus.FAILED)]
    assert listed_ids(several.stdout) == expected

    limited = runner.invoke(app, ["candidates", "1", "--db", populated.db, "--json", "--limit", "3"])
    assert listed_ids(limited.stdout) == [c.id for c in everything[:3]]


def test_candidates_sorts_by_an_objective_best_first_or_by_birth_newest_first(populated: StoredSearch):
    args = ["candidates", "1", "--db", populated.db, "--json", "--limit", "1000"]
    by_accuracy = json.loads(runner.invoke(app, [*args, "--sort", "accuracy_resnet"]).stdout)
    values = [row["objectives"]["accuracy_resnet"] for row in by_accuracy]
    assert values and values == sorted(values, reverse=True)
    assert len(by_accuracy) == len([c for c in stored_candidates(populated.db) if c.objectives])

    by_cost = json.loads(runner.invoke(app, [*args, "--sort", "cost"]).stdout)
    costs = [row["objectives"]["cost"] for row in by_cost]
    assert costs == sorted(costs)  # minimised: the cheapest first
    dearest = json.loads(runner.invoke(app, [*args, "--sort", "cost", "--reverse"]).stdout)
    assert [row["objectives"]["cost"] for row in dearest] == sorted(costs, reverse=True)

    newest = json.loads(runner.invoke(app, [*args, "--reverse"]).stdout)
    births = [row["birth"] for row in newest]
    assert births == sorted(births, reverse=True)


def test_candidates_refuses_an_unknown_sort_status_or_search(populated: StoredSearch):
    sort = runner.invoke(app, ["candidates", "1", "--db", populated.db, "--sort", "acuracy_resnet"])
    assert sort.exit_code == 2 and "did you mean 'accuracy_resnet'?" in sort.stderr
    status = runner.invoke(app, ["candidates", "1", "--db", populated.db, "--status", "rejcted"])
    assert status.exit_code == 2 and "rejected" in status.output
    missing = runner.invoke(app, ["candidates", "99", "--db", populated.db])
    assert missing.exit_code == 1 and "no search with id 99" in missing.stderr


def test_candidates_json_rows_carry_what_the_table_shows(populated: StoredSearch):
    result = runner.invoke(app, ["candidates", "1", "--db", populated.db, "--json", "--limit", "1000"])
    rows = {row["id"]: row for row in json.loads(result.stdout)}
    for c in stored_candidates(populated.db):
        row = rows[c.id]
        assert (row["birth"], row["status"], row["dsl"]) == (c.birth, str(c.status), c.dsl)
        assert row["rejection_stage"] == (None if c.rejection_stage is None else str(c.rejection_stage))
        assert row["rejection_reason"] == c.rejection_reason
        assert row["objectives"] == c.objectives and row["parent_id"] == c.parent_id


def api_json(db: str, path: str) -> object:
    """What the service answers at `path` over the same database."""
    from tests.service.conftest import AUTH, client_for, settings_for

    with client_for(settings_for(db)) as client:
        response = client.get(f"/api/v1{path}", headers=AUTH)
    assert response.status_code == 200, response.text
    return response.json()


def test_candidates_json_is_the_apis_page_of_candidates(populated: StoredSearch):
    """One JSON shape for the same thing: each row as the API's page lists it, plus its mean accuracy."""
    shown = json.loads(runner.invoke(app, ["candidates", "1", "--db", populated.db, "--json", "--sort", "cost"]).stdout)
    api = api_json(populated.db, "/searches/1/candidates?sort=cost")
    assert [{k: row[k] for k in row if k != "mean_accuracy"} for row in shown] == api["items"]  # type: ignore[index]
    assert all("mean_accuracy" in row for row in shown)


def test_candidate_json_is_the_apis_candidate(populated: StoredSearch):
    child = a_child(populated.db).candidate
    shown = json.loads(runner.invoke(app, ["candidate", str(child.id), "--db", populated.db, "--json"]).stdout)
    assert shown == api_json(populated.db, f"/candidates/{child.id}?lineage_limit=100")


def test_candidates_csv_to_stdout_and_to_a_file(populated: StoredSearch, tmp_path):
    result = runner.invoke(app, ["candidates", "1", "--db", populated.db, "--csv", "--limit", "1000"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    header = ["id", "birth", "status", "rejection_stage", "rejection_reason"]
    assert list(rows[0])[:5] == header
    assert {"accuracy_resnet", "accuracy_mobilenetv2", "cost", "mean_accuracy", "dsl"} <= set(rows[0])
    everything = stored_candidates(populated.db)
    assert [int(r["id"]) for r in rows] == [c.id for c in everything]
    for row, c in zip(rows, everything, strict=True):
        assert row["dsl"] == c.dsl  # several lines, quoted whole
        if c.objectives:
            assert float(row["accuracy_resnet"]) == c.objectives["accuracy_resnet"]
            mean = statistics.fmean([c.objectives["accuracy_resnet"], c.objectives["accuracy_mobilenetv2"]])
            assert float(row["mean_accuracy"]) == pytest.approx(mean)
        else:
            assert row["accuracy_resnet"] == "" and row["mean_accuracy"] == ""

    out = tmp_path / "candidates.csv"
    written = runner.invoke(app, ["candidates", "1", "--db", populated.db, "--csv", "-o", str(out), "--limit", "1000"])
    assert written.exit_code == 0, written.output
    assert out.read_text(encoding="utf-8") == result.stdout


def test_candidates_reads_without_writing(populated: StoredSearch, tmp_path):
    missing = tmp_path / "nowhere" / "typo.db"
    result = runner.invoke(app, ["candidates", "1", "--db", f"sqlite:///{missing}"])
    assert result.exit_code == 1 and "no database at" in result.stderr
    assert not missing.parent.exists()
    before = os.stat(populated.path).st_mtime_ns
    assert runner.invoke(app, ["candidates", "1", "--db", populated.db]).exit_code == 0
    assert os.stat(populated.path).st_mtime_ns == before


# -- candidate ID --------------------------------------------------------------------------------------


def a_child(db: str) -> st.CandidateDetail:
    """An evaluated candidate with a parent, and its detail."""
    with st.open_store(db) as store, store.session(readonly=True) as s:
        child = next(c for c in st.list_candidates(s, 1, limit=1000).items if c.parent_id and c.objectives)
        return st.candidate_detail(s, child.id)


def test_candidate_shows_formula_scores_per_phase_and_lineage(populated: StoredSearch, narrow):
    detail = a_child(populated.db)
    c = detail.candidate
    result = runner.invoke(app, ["candidate", str(c.id), "--db", populated.db])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "…" not in out
    assert f"candidate {c.id} (birth {c.birth}) of search 1" in out
    for line in c.dsl.strip().splitlines():
        assert line in out
    assert c.canonical_hash in out
    for phase in ("quality", "proxy"):
        assert phase in out
    for value in c.objectives.values():
        assert f"{value:.4f}" in out
    parent = detail.lineage[0]
    assert parent.id == c.parent_id
    assert "replace_op" in out  # the mutation that made it
    for line in parent.dsl.strip().splitlines():
        assert line in out  # the parent's formula, whole


def test_candidate_shows_the_rejection_stage_and_reason(populated: StoredSearch):
    rejected = next(c for c in stored_candidates(populated.db) if c.rejection_stage is st.RejectionStage.QUALITY)
    result = runner.invoke(app, ["candidate", str(rejected.id), "--db", populated.db])
    assert result.exit_code == 0, result.output
    assert "rejected" in result.stdout and f"quality: {rejected.rejection_reason}" in result.stdout


def test_candidate_json_and_target_task_runs(populated: StoredSearch, tmp_path):
    # A copy of the store, so the target-task runs written here reach no other test.
    copy = tmp_path / "copy.db"
    copy.write_bytes(populated.path.read_bytes())
    db = f"sqlite:///{copy}"
    detail = a_child(db)
    c = detail.candidate
    with st.open_store(db) as store, store.session() as s:
        for seed, accuracy in ((1000, 0.61), (1001, 0.65)):
            st.record_validation(
                s, c.id, seed=seed, metrics={"resnet": {"accuracy": accuracy}}, durations={"resnet": 2.0}
            )
    result = runner.invoke(app, ["candidate", str(c.id), "--db", db, "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert (shown["id"], shown["search_id"], shown["birth"], shown["status"]) == (c.id, 1, c.birth, "evaluated")
    assert shown["formula"]["text"] == c.dsl and shown["canonical_hash"] == c.canonical_hash
    assert shown["formula"]["canonical"] and shown["formula"]["latex"]
    assert shown["objectives"] == c.objectives
    assert {e["phase"] for e in shown["evaluations"]} == {"quality", "proxy", "validation"}
    assert shown["validation"]["runs"] == [
        {"seed": 1000, "accuracies": {"resnet": 0.61}},
        {"seed": 1001, "accuracies": {"resnet": 0.65}},
    ]
    assert shown["validation"]["mean"] == pytest.approx(0.63)
    assert shown["lineage"][0]["id"] == c.parent_id
    assert "mutation" in shown["lineage"][0]
    assert shown["mutation"] == {"kind": "replace_op"}

    table = runner.invoke(app, ["candidate", str(c.id), "--db", db])
    assert "1000" in table.stdout and "0.6100" in table.stdout and "0.6300" in table.stdout  # runs and their mean


def test_a_baseline_is_named_by_its_label_not_by_a_birth(populated: StoredSearch):
    with st.open_store(populated.db) as store, store.session(readonly=True) as s:
        baseline = st.baselines_of(s, 1)[0]
    result = runner.invoke(app, ["candidate", str(baseline.id), "--db", populated.db])
    assert result.exit_code == 0, result.output
    assert f"candidate {baseline.id} (baseline {baseline.label}) of search 1" in result.stdout
    assert str(baseline.birth) not in result.stdout  # a baseline's stored birth is internal
    shown = json.loads(runner.invoke(app, ["candidate", str(baseline.id), "--db", populated.db, "--json"]).stdout)
    assert (shown["role"], shown["label"]) == ("baseline", baseline.label)  # the API's shape: role tells


def test_candidate_refuses_an_unknown_id(populated: StoredSearch):
    result = runner.invoke(app, ["candidate", "9999", "--db", populated.db])
    assert result.exit_code == 1 and "9999" in result.stderr


# -- evaluate --candidate ------------------------------------------------------------------------------


def test_evaluate_a_stored_candidate_under_its_searchs_configuration(finished: StoredSearch):
    candidate = evaluated_candidates(finished.db)[0]
    result = runner.invoke(
        app, ["evaluate", "--candidate", str(candidate.id), "--db", finished.db, "--in-process", "--json"]
    )
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    assert row["candidate_id"] == candidate.id and row["layer"] == candidate.dsl
    assert row["label"] == f"candidate {candidate.id}"
    for name, value in row["per_architecture"].items():
        assert value == pytest.approx(candidate.objectives[f"accuracy_{name}"]), name  # the search's score, again


def test_evaluate_a_candidate_beside_a_layer_under_another_config(finished: StoredSearch, tmp_path):
    from tests.search.conftest import tiny_yaml

    config = tmp_path / "other.yaml"
    config.write_text(tiny_yaml(seed=5, baselines=[]))
    candidate = evaluated_candidates(finished.db)[0]
    args = ["evaluate", "--candidate", str(candidate.id), "--layer", "relu", "--config", str(config)]
    result = runner.invoke(app, [*args, "--db", finished.db, "--in-process", "--json"])
    assert result.exit_code == 0, result.output
    assert [row["label"] for row in json.loads(result.stdout)] == [f"candidate {candidate.id}", "relu"]


def test_evaluate_refuses_db_without_candidate_and_an_unknown_candidate(finished: StoredSearch):
    alone = runner.invoke(app, ["evaluate", "--layer", "relu", "--db", finished.db, "--in-process"])
    assert alone.exit_code == 2 and "--db" in alone.stderr
    missing = runner.invoke(app, ["evaluate", "--candidate", "9999", "--db", finished.db, "--in-process"])
    assert missing.exit_code == 1 and "9999" in missing.stderr


def test_run_ends_with_the_candidates_command_and_its_db(finished: StoredSearch):
    assert f"evonorm-search candidates 1 --db {finished.db}" in finished.output
