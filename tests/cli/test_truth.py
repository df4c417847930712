"""The CLI tells the truth: `status` names one real layer as the best (its id, mean and per-architecture
scores) beside the baselines; one number, the database id, names a candidate in the live log, `status`
and `export`; `export` says when the candidate it writes was rejected."""

from __future__ import annotations

import re
import statistics

from typer.testing import CliRunner

from evonorm_search import store as st
from evonorm_search.cli import app
from evonorm_search.search.controller import create_search, run_search
from evonorm_search.search.evaluator import InProcessEvaluator
from tests.search.conftest import tiny_config

from .conftest import POPULATED_BASELINES, StoredSearch, evaluated_candidates

runner = CliRunner()
ACCURACIES = ("accuracy_resnet", "accuracy_mobilenetv2")


def mean_accuracy(objectives: dict[str, float]) -> float:
    return statistics.fmean(objectives[name] for name in ACCURACIES)


def line_with(output: str, *fragments: str) -> str:
    """The one line of `output` that holds every fragment."""
    lines = [line for line in output.splitlines() if all(f in line for f in fragments)]
    assert len(lines) == 1, (fragments, output)
    return lines[0]


def test_status_names_the_best_single_layer_not_a_mean_of_bests(populated: StoredSearch):
    layers = evaluated_candidates(populated.db)
    best = max(layers, key=lambda c: mean_accuracy(c.objectives))
    mean_of_bests = statistics.fmean(max(c.objectives[name] for c in layers) for name in ACCURACIES)
    assert mean_of_bests - mean_accuracy(best.objectives) > 1e-3, "the fixture's bests come from one layer"

    detail = runner.invoke(app, ["status", "1", "--db", populated.db])
    assert detail.exit_code == 0, detail.output
    assert f"{mean_of_bests:.4f}" not in detail.output
    row = line_with(detail.output, "│ best layer")
    for shown in (str(best.id), f"{mean_accuracy(best.objectives):.4f}"):
        assert shown in row
    for name in ACCURACIES:
        assert f"{best.objectives[name]:.4f}" in row
    for label, values in POPULATED_BASELINES.items():
        row = line_with(detail.output, f"baseline {label} ")
        assert f"{mean_accuracy(values):.4f}" in row and f"{values['accuracy_resnet']:.4f}" in row

    listing = runner.invoke(app, ["status", "--db", populated.db])
    assert listing.exit_code == 0, listing.output
    row = line_with(listing.output, "completed")
    assert f"{mean_accuracy(best.objectives):.4f}" in row and f"{mean_of_bests:.4f}" not in row
    assert re.search(rf"\b{best.id}\b", row.split("│", 2)[2]), row  # the best layer's id, beside its mean


def test_the_live_log_names_candidates_by_id_with_birth_as_birth(tmp_path):
    events: list[str] = []
    with st.open_store(f"sqlite:///{tmp_path / 'log.db'}") as store:
        search_id = create_search(store, tiny_config(budget=8, baselines=["relu"]))
        evaluator = InProcessEvaluator()
        try:
            run_search(store, search_id, evaluator, progress=lambda p: events.append(p.last_event))
        finally:
            evaluator.close()
        with store.session(readonly=True) as s:
            births = {c.id: c.birth for c in st.list_candidates(s, search_id, limit=1000).items}
    named = [re.match(r"candidate (\d+) \(birth (\d+)\):", event) for event in events]
    named_ids = {int(m[1]): int(m[2]) for m in named if m is not None}
    assert named_ids == births, events  # every candidate, each by its id and its own birth
    assert not [e for e in events if re.match(r"candidate \d+:", e)]


def test_export_warns_when_the_candidate_was_rejected(finished: StoredSearch):
    with st.open_store(finished.db) as store, store.session(readonly=True) as s:
        rejected = st.list_candidates(s, 1, limit=1000, statuses=[st.CandidateStatus.REJECTED]).items[0]
    result = runner.invoke(app, ["export", "--candidate", str(rejected.id), "--db", finished.db])
    assert result.exit_code == 0, result.output
    assert f"class EvoNormCandidate{rejected.id}" in result.stdout
    assert "warning" in result.stderr and f"candidate {rejected.id} was rejected" in result.stderr
    assert str(rejected.rejection_stage) in result.stderr

    evaluated = evaluated_candidates(finished.db)[0]
    clean = runner.invoke(app, ["export", "--candidate", str(evaluated.id), "--db", finished.db])
    assert clean.exit_code == 0 and clean.stderr == ""
