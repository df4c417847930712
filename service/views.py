"""Store objects -> response schemas: what each resource shows, and the figures derived for it
(elapsed time, throughput, estimate to finish, metrics per architecture)."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any

from evonorm_search.enums import UNFINISHED_STATUSES
from evonorm_search.search.fronts import highest_rung, rung_scores
from evonorm_search.search.ladder import ComputeStatus, RungStatus
from evonorm_search.search.objectives import describe, mean_accuracy
from evonorm_search.search.report import improvements
from evonorm_search.search.validation import Validated
from evonorm_search.store import Objective

from . import repository as repo
from .formulas import StoredGraph, Symbolic
from .schemas.candidates import (
    Ancestor,
    CandidateBrief,
    CandidateDetailOut,
    CandidateLinks,
    EvaluationOut,
    Formula,
    RungScore,
    ValidationArchitecture,
    ValidationOut,
)
from .schemas.common import ObjectiveOut
from .schemas.pareto import ParetoFront, ParetoPoint
from .schemas.searches import (
    BaselineLevel,
    BaselineOut,
    BestOut,
    ComputeOut,
    Controller,
    Counts,
    ObjectiveProgress,
    ProgressStep,
    RungOut,
    SearchBrief,
    SearchLinks,
    SearchProgressChart,
    SearchStatus,
)

API_PREFIX = "/api/v1"
LIVE_STATES = (repo.SearchState.RUNNING, repo.SearchState.STOPPING)


# -- searches ------------------------------------------------------------------------------------------


def search_links(search_id: int) -> SearchLinks:
    base = f"{API_PREFIX}/searches/{search_id}"
    return SearchLinks(
        status=base,
        events=f"{base}/events",
        candidates=f"{base}/candidates",
        pareto=f"{base}/pareto",
        fronts=f"{base}/fronts",
        baselines=f"{base}/baselines",
    )


def objectives_of(search: repo.Search) -> list[ObjectiveOut]:
    return [objective_out(o) for o in search.objective_specs]


def objective_out(objective: Objective) -> ObjectiveOut:
    info = describe(objective)
    return ObjectiveOut(
        name=objective.name,
        direction=objective.direction,
        reference=objective.reference,
        kind=info.kind,
        architecture=info.architecture,
        label=info.label,
    )


def search_brief(search: repo.Search) -> SearchBrief:
    return SearchBrief(
        id=search.id,
        name=search.name,
        state=str(search.state),
        budget=search.budget,
        seed=search.seed,
        objectives=objectives_of(search),
        created_at=search.created_at,
        started_at=search.started_at,
        finished_at=search.finished_at,
        error=search.error,
    )


def search_status(
    summary: repo.SearchSummary,
    ladder: Sequence[RungStatus] = (),
    compute: ComputeStatus | None = None,
    now: datetime | None = None,
) -> SearchStatus:
    """`ladder`: the search's fidelity ladder (`search_ladder`), none for a search without one; `compute`:
    its spent compute (`search_compute`), None without a compute budget."""
    now = now or datetime.now(UTC)
    search = summary.search
    finished = summary.total - sum(summary.by_status.get(s, 0) for s in UNFINISHED_STATUSES)
    rate = _finish_rate(finished, summary.first_finished_at, summary.last_finished_at)
    return SearchStatus(
        **search_brief(search).model_dump(),
        counts=Counts(
            total=summary.total,
            finished=finished,
            by_status={str(k): v for k, v in summary.by_status.items()},
            rejected_by_stage={str(k): v for k, v in summary.rejected_by_stage.items()},
            evaluated=summary.evaluated,
            duplicate_hits=summary.duplicate_hits,
        ),
        best={
            name: None if b is None else BestOut(value=b.value, candidate_id=b.candidate_id, birth=b.birth)
            for name, b in summary.best.items()
        },
        hypervolume=summary.hypervolume,
        front_size=summary.front_size,
        elapsed_seconds=_elapsed(search, now),
        throughput_per_hour=None if rate is None else rate * 3600.0,
        estimated_seconds_to_finish=_estimate(search, finished, rate),
        progress=None if not search.budget else min(1.0, finished / search.budget),
        controller=_controller(search),
        config=search.config,
        ladder=[RungOut.model_validate(r) for r in ladder],
        compute=None if compute is None else ComputeOut(spent_examples=compute.spent, budget_examples=compute.budget),
        links=search_links(search.id),
    )


def _finish_rate(finished: int, first: datetime | None, last: datetime | None) -> float | None:
    """Verdicts per second: n verdicts between the first and the last span n - 1 intervals."""
    if finished < 2 or first is None or last is None:
        return None
    span = (last - first).total_seconds()
    return (finished - 1) / span if span > 0 else None


def _elapsed(search: repo.Search, now: datetime) -> float | None:
    if search.started_at is None:
        return None
    end = now if search.state in LIVE_STATES or search.finished_at is None else search.finished_at
    return max(0.0, (end - search.started_at).total_seconds())


def _estimate(search: repo.Search, finished: int, rate: float | None) -> float | None:
    if search.state is repo.SearchState.COMPLETED:
        return 0.0
    if search.state is not repo.SearchState.RUNNING or rate is None or not search.budget:
        return None
    return max(0, search.budget - finished) / rate


def _controller(search: repo.Search) -> Controller | None:
    if search.controller_host is None and search.controller_heartbeat_at is None:
        return None
    return Controller(
        host=search.controller_host, pid=search.controller_pid, heartbeat_at=search.controller_heartbeat_at
    )


# -- candidates ----------------------------------------------------------------------------------------


def candidate_links(candidate: repo.Candidate) -> CandidateLinks:
    base = f"{API_PREFIX}/candidates/{candidate.id}"
    return CandidateLinks(
        search=f"{API_PREFIX}/searches/{candidate.search_id}", module=f"{base}/module.py", kernels=f"{base}/kernels.py"
    )


def candidate_brief(candidate: repo.Candidate) -> CandidateBrief:
    return CandidateBrief(
        id=candidate.id,
        search_id=candidate.search_id,
        birth=candidate.birth,
        status=str(candidate.status),
        rejection_stage=None if candidate.rejection_stage is None else str(candidate.rejection_stage),
        rejection_reason=candidate.rejection_reason,
        objectives=candidate.objectives,
        dsl=candidate.dsl,
        canonical_hash=candidate.canonical_hash,
        parent_id=candidate.parent_id,
        duplicate_of=candidate.duplicate_of,
        role=str(candidate.role),
        label=candidate.label,
        created_at=candidate.created_at,
        finished_at=candidate.finished_at,
    )


def formula_of(candidate: repo.Candidate, symbolic: Symbolic) -> Formula:
    return Formula(text=candidate.dsl, canonical=symbolic.canonical, latex=symbolic.latex, note=symbolic.note)


def candidate_detail(
    detail: repo.CandidateDetail, symbolic: Symbolic, target: Validated | None = None
) -> CandidateDetailOut:
    """`symbolic`: the candidate's symbolic form (FormulaCache.of_stored); `target`: its stored target-task
    score (`candidate_validation`), for its rungs."""
    c = detail.candidate
    rungs = rung_scores(c.objectives, target)
    return CandidateDetailOut(
        **candidate_brief(c).model_dump(),
        fingerprint=c.fingerprint,
        mutation=c.mutation,
        graph=c.graph,
        formula=formula_of(c, symbolic),
        attempt=c.attempt,
        error=c.error,
        check_seconds=c.check_seconds or {},
        metrics_by_architecture=metrics_by_architecture(detail.evaluations),
        mean_accuracy=mean_accuracy(c.objectives),
        evaluations=[EvaluationOut.model_validate(e) for e in detail.evaluations],
        validation=validation_of(detail.evaluations),
        rung=highest_rung(rungs),
        rungs=[RungScore.model_validate(r) for r in rungs],
        lineage=[
            Ancestor(
                id=a.id, birth=a.birth, status=str(a.status), dsl=a.dsl, objectives=a.objectives, mutation=a.mutation
            )
            for a in detail.lineage
        ],
        lineage_truncated=detail.lineage_truncated,
        links=candidate_links(c),
    )


def metrics_by_architecture(evaluations: Iterable[repo.Evaluation]) -> dict[str, dict[str, dict[str, Any]]]:
    """{architecture: {phase: metrics}}, each from the latest attempt of that (architecture, phase)."""
    latest: dict[tuple[str, str], repo.Evaluation] = {}
    for e in evaluations:
        if e.phase is repo.EvaluationPhase.VALIDATION:  # one row per seed, summarised by validation_of
            continue
        key = (e.architecture, str(e.phase))
        if key not in latest or e.attempt >= latest[key].attempt:
            latest[key] = e
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for (architecture, phase), e in sorted(latest.items()):
        out.setdefault(architecture, {})[phase] = dict(e.metrics)
    return out


def validation_of(evaluations: Iterable[repo.Evaluation]) -> ValidationOut | None:
    """The target-task rows (one per architecture and seed) as mean and std over seeds."""
    by_seed: dict[int, dict[str, float]] = {}
    for e in evaluations:
        if e.phase is repo.EvaluationPhase.VALIDATION and e.status is repo.EvaluationStatus.SUCCEEDED:
            by_seed.setdefault(e.attempt, {})[e.architecture] = float(e.metrics["accuracy"])
    if not by_seed:
        return None
    seeds = sorted(by_seed)
    scores = [statistics.fmean(by_seed[seed].values()) for seed in seeds]
    architectures = sorted({a for runs in by_seed.values() for a in runs})
    per_architecture = {}
    for name in architectures:
        values = [by_seed[seed][name] for seed in seeds if name in by_seed[seed]]
        per_architecture[name] = ValidationArchitecture(mean=statistics.fmean(values), std=_stdev(values))
    return ValidationOut(
        seeds=seeds,
        mean=statistics.fmean(scores),
        std=_stdev(scores),
        per_architecture=per_architecture,
        runs=[{"seed": seed, "accuracies": by_seed[seed]} for seed in seeds],
    )


def _stdev(values: Sequence[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


# -- baselines -------------------------------------------------------------------------------------------


def baseline_out(candidate: repo.Candidate) -> BaselineOut:
    return BaselineOut(
        **candidate_brief(candidate).model_dump(),
        mean_accuracy=mean_accuracy(candidate.objectives),
        error=candidate.error,
    )


def progress_chart(
    search: repo.Search, results: Sequence[tuple[int, dict[str, float]]], baselines: Sequence[repo.Candidate]
) -> SearchProgressChart:
    """The best value so far per objective (its steps, as the report's table lists them) and the
    evaluated baselines."""
    objectives = [
        ObjectiveProgress(
            **objective_out(o).model_dump(),
            steps=[
                ProgressStep(evaluated=i.evaluated, candidate_id=i.candidate_id, value=i.value)
                for i in improvements(results, o)
            ],
        )
        for o in search.objective_specs
    ]
    levels = [
        BaselineLevel(candidate_id=b.id, label=b.label or f"baseline {b.id}", objectives=b.objectives)
        for b in baselines
        if b.objectives is not None
    ]
    return SearchProgressChart(search=search.id, evaluated=len(results), objectives=objectives, baselines=levels)


# -- Pareto fronts -------------------------------------------------------------------------------------


def pareto_front(
    points: Sequence[Any],
    objectives: Sequence[ObjectiveOut],
    search_ids: Sequence[int],
    symbolic: Mapping[str, Symbolic],
) -> ParetoFront:
    """`points`: candidates or lean rows (store POINT_COLUMNS); `symbolic`: their symbolic forms by
    canonical hash (`point_graphs` says what FormulaCache.of_stored_many needs for them)."""
    return ParetoFront(
        objectives=list(objectives),
        search_ids=list(search_ids),
        points=[
            ParetoPoint(
                candidate_id=c.id,
                search_id=c.search_id,
                birth=c.birth,
                objectives=c.objectives or {},
                dsl=c.dsl,
                canonical_hash=c.canonical_hash,
                latex=symbolic[c.canonical_hash].latex,
            )
            for c in points
        ],
    )


def point_graphs(points: Sequence[Any], graph_of: Callable[[int], Mapping[str, Any]]) -> dict[str, StoredGraph]:
    """{canonical hash: a function reading the graph} of Pareto points, for their symbolic forms."""
    return {c.canonical_hash: partial(graph_of, c.id) for c in points}
