"""`export` records where the layer came from: from a stored candidate, its search, id, DSL, canonical
form and scores (in the docstring and the `PROVENANCE` constant); from a library layer or a .dsl file,
that source and nothing invented."""

from __future__ import annotations

from typing import Any

from typer.testing import CliRunner

import evonorm_search as es
from evonorm_search import store as st
from evonorm_search.cli import app

from .conftest import StoredSearch, evaluated_candidates

runner = CliRunner()
SEARCH_FIELDS = {"search", "search_name", "candidate", "birth", "status", "objectives", "mean_accuracy"}


def exported(args: list[str]) -> dict[str, Any]:
    result = runner.invoke(app, ["export", *args])
    assert result.exit_code == 0, result.output
    namespace: dict[str, Any] = {}
    exec(compile(result.stdout, "exported.py", "exec"), namespace)  # the project's own output
    return namespace


def test_a_candidate_export_records_its_search_id_formula_and_scores(populated: StoredSearch):
    candidate = evaluated_candidates(populated.db)[-1]
    namespace = exported(["--candidate", str(candidate.id), "--db", populated.db])
    provenance = namespace["PROVENANCE"]
    assert provenance["source"] == "candidate"
    assert (provenance["search"], provenance["search_name"]) == (1, "finished")
    assert (provenance["candidate"], provenance["birth"]) == (candidate.id, candidate.birth)
    assert provenance["status"] == "evaluated" and provenance["objectives"] == candidate.objectives
    assert provenance["dsl"] == candidate.dsl and provenance["canonical_hash"] == candidate.canonical_hash
    assert provenance["canonical_form"] == es.canonical_form(es.parse(candidate.dsl))
    doc = namespace["__doc__"]
    assert "search: 1" in doc and f"candidate: {candidate.id}" in doc
    assert all(str(value) in doc for value in candidate.objectives.values())


def test_a_rejected_candidate_export_says_so_in_its_provenance(finished: StoredSearch):
    with st.open_store(finished.db) as store, store.session(readonly=True) as s:
        rejected = st.list_candidates(s, 1, limit=1000, statuses=[st.CandidateStatus.REJECTED]).items[0]
    provenance = exported(["--candidate", str(rejected.id), "--db", finished.db])["PROVENANCE"]
    assert provenance["status"] == "rejected"
    assert provenance["rejection_stage"] == str(rejected.rejection_stage)
    assert provenance["rejection_reason"] == rejected.rejection_reason
    assert provenance["objectives"] is None


def test_a_candidate_with_target_runs_records_them(populated: StoredSearch, tmp_path):
    copy = tmp_path / "copy.db"
    copy.write_bytes(populated.path.read_bytes())
    db = f"sqlite:///{copy}"
    candidate = evaluated_candidates(db)[0]
    with st.open_store(db) as store, store.session() as s:
        st.record_validation(s, candidate.id, seed=1000, metrics={"resnet": {"accuracy": 0.625}}, durations={})
    provenance = exported(["--candidate", str(candidate.id), "--db", db])["PROVENANCE"]
    assert provenance["target_runs"] == [{"seed": 1000, "accuracies": {"resnet": 0.625}}]


def test_a_baseline_export_records_its_label_and_no_birth(populated: StoredSearch):
    with st.open_store(populated.db) as store, store.session(readonly=True) as s:
        baseline = st.baselines_of(s, 1)[0]
    provenance = exported(["--candidate", str(baseline.id), "--db", populated.db])["PROVENANCE"]
    assert (provenance["candidate"], provenance["baseline"]) == (baseline.id, baseline.label)
    assert "birth" not in provenance


def test_library_and_file_exports_name_their_source_and_no_search(tmp_path):
    library = exported(["--layer", "evonorm_b0"])["PROVENANCE"]
    assert (library["source"], library["layer"]) == ("library", "evonorm_b0")
    assert not SEARCH_FIELDS & set(library)

    layer = tmp_path / "mine.dsl"
    layer.write_text("t1 = x / std(x, group)\ny = t1 * sigmoid(v1 * t1)\n")
    from_file = exported(["--layer", str(layer)])
    assert (from_file["PROVENANCE"]["source"], from_file["PROVENANCE"]["file"]) == ("file", str(layer))
    assert not SEARCH_FIELDS & set(from_file["PROVENANCE"])
    assert "t1 = x / std(x, group)" in from_file["__doc__"] and "t1 = x / std(x, group)" in from_file["Mine"].__doc__
