"""What an export of a stored candidate records of where it comes from (`export_module(provenance=...)`):
one reader for the command line's `export --candidate` and the API's `module.py`, so both say the same."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from ..store import get_candidate, get_search, is_baseline, validation_runs
from .objectives import mean_accuracy


def candidate_provenance(session: Session, candidate_id: int) -> dict[str, Any]:
    """A stored candidate's search, id, birth, status (with the rejection, if any), proxy scores, and
    its target-task runs where the store holds some. NotFoundError when there is no such candidate."""
    candidate = get_candidate(session, candidate_id)
    record: dict[str, Any] = {
        "source": "candidate",
        "search": candidate.search_id,
        "search_name": get_search(session, candidate.search_id).name,
        "candidate": candidate.id,
    }
    if is_baseline(candidate):  # its stored birth only places it outside the search's births
        record["baseline"] = candidate.label
    else:
        record["birth"] = candidate.birth
    record["status"] = str(candidate.status)
    if candidate.rejection_stage is not None:
        record["rejection_stage"] = str(candidate.rejection_stage)
        record["rejection_reason"] = candidate.rejection_reason
    record["objectives"] = candidate.objectives
    record["mean_accuracy"] = mean_accuracy(candidate.objectives)
    runs = validation_runs(session, [candidate.id])[candidate.id]
    if runs:
        record["target_runs"] = [{"seed": r.seed, "accuracies": r.accuracies} for r in runs]
    return record
