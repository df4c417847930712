"""The fidelity ladder: a search promotes its best candidates from the proxies to the target task.

Rung 0 is the proxies every candidate trains on; the last rung is the target task (`validation:`:
larger networks, longer training, the test split, seeds the search never uses). By default promotion
happens when rung 0 ends (`Ladder.finish`). With `min_results` set it is asynchronous and
multi-objective, as MOASHA does it: each time a candidate's proxy result arrives, the
candidates of rung 0 are ranked by non-dominated sorting (moocore's Pareto rank; ties by crowding
distance, then birth), and every candidate in the top `1/eta` not promoted yet is promoted, until
`max_promotions` have been. A promoted candidate trains on the target task for each seed; each seed is
stored as the `validation` evaluations `evonorm-search validate` stores, so `validate` reuses them.
Once every seed of a promoted member is stored, parent selection reads its target mean (`target_mean`,
`selection.ParetoTournament`): a tournament compares the highest rung its sample reached, never numbers
from different rungs. With the default schedule no target score exists before the last proposal.

Promotions are not stored as such: they are a deterministic function of the order in which rung-0
results were committed (candidate `finished_at`, then id), so a controller that resumes replays that
order, finds the same promotions, and trains only the seeds that are not stored yet: a crash between a
promotion and its results loses nothing and repeats nothing.

Compute is counted in one unit: training examples processed (steps x batch size x architectures, per
seed), the same on any machine and for any backend, so rungs of different shapes add up and a budget in
it means the same thing on a laptop and a cluster (seconds would not). A search bounded by compute keeps
the target runs of the promotions not made yet out of its budget while it proposes, so promotions that
come when rung 0 ends still fit in it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import moocore
import numpy as np
from sqlalchemy.orm import Session

from .. import store as db
from ..store import CandidateStatus, Objective, RejectionStage, SearchState
from .config import ConfigError, FidelityConfig, SearchConfig
from .pareto import as_vector, maximise_flags


def crowding_distance(points: np.ndarray) -> np.ndarray:
    """NSGA-II's crowding distance of each point within its set (boundary points: infinity)."""
    n, m = points.shape
    distance = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for j in range(m):
        order = np.argsort(points[:, j], kind="stable")
        span = points[order[-1], j] - points[order[0], j]
        distance[order[0]] = distance[order[-1]] = np.inf
        if span > 0:
            distance[order[1:-1]] += (points[order[2:], j] - points[order[:-2], j]) / span
    return distance


def promotion_ranking(points: Sequence[Sequence[float]], objectives: Sequence[Objective]) -> list[int]:
    """Indices of `points` best first: Pareto rank, then crowding distance within the rank, then index."""
    if not points:
        return []
    data = np.asarray(points, dtype=float).reshape(len(points), len(objectives))
    # Every objective as one to maximise: moocore 0.3's pareto_rank ranks two points of one minimised
    # objective the wrong way round (tests/search/test_ladder.py), and a sign flip ranks the same.
    signs = np.where(maximise_flags(objectives), 1.0, -1.0)
    data = data * signs
    ranks = moocore.pareto_rank(data, maximise=True)
    crowding = np.zeros(len(points))
    for rank in np.unique(ranks):
        members = np.flatnonzero(ranks == rank)
        crowding[members] = crowding_distance(data[members])
    return sorted(range(len(points)), key=lambda i: (int(ranks[i]), -crowding[i], i))


@dataclass
class Ladder:
    """The promotion state of one search: rung-0 results in commit order, and who was promoted."""

    config: FidelityConfig
    objectives: Sequence[Objective]
    results: list[tuple[int, tuple[float, ...]]] = field(default_factory=list)  # (candidate id, objectives)
    promoted: list[int] = field(default_factory=list)

    def add_result(self, candidate_id: int, vector: tuple[float, ...]) -> list[int]:
        """Record a rung-0 result; the candidates it promotes now (best first)."""
        self.results.append((candidate_id, vector))
        quota = len(self.results) // self.config.eta  # the top 1/eta of the rung
        room = self.config.max_promotions - len(self.promoted)
        waiting = self.config.min_results is None or len(self.results) < self.config.min_results
        if waiting or quota == 0 or room <= 0:
            return []
        ranking = promotion_ranking([v for _, v in self.results], self.objectives)
        top = [self.results[i][0] for i in ranking[:quota]]
        # As ASHA: whoever is in the top now and was not promoted goes up, even if one promoted earlier fell out.
        fresh = [cid for cid in top if cid not in self.promoted][:room]
        self.promoted.extend(fresh)
        return fresh

    def finish(self) -> list[int]:
        """Rung 0 is complete (the search proposes nothing more): its top `ceil(n / eta)` not promoted yet go
        up, within `max_promotions`, as at the end of an ASHA bracket. A search with fewer results than
        `eta` or `min_results` would otherwise end without a validated layer."""
        room = self.config.max_promotions - len(self.promoted)
        if not self.results or room <= 0:
            return []
        quota = -(-len(self.results) // self.config.eta)
        ranking = promotion_ranking([v for _, v in self.results], self.objectives)
        top = [self.results[i][0] for i in ranking[:quota]]
        fresh = [cid for cid in top if cid not in self.promoted][:room]
        self.promoted.extend(fresh)
        return fresh

    def replay(self, results: Iterable[tuple[int, tuple[float, ...]]]) -> None:
        """Rebuild the promotions from stored results in commit order (a resumed controller)."""
        for candidate_id, vector in results:
            self.add_result(candidate_id, vector)


def target_mean(runs: Sequence[db.ValidationRun], seeds: Sequence[int], architectures: Sequence[str]) -> float | None:
    """A candidate's score on the last rung: the mean over the ladder's seeds of the mean accuracy over the
    target's architectures, once every seed is stored with every architecture (None before: a partial
    rung is not compared with a whole one)."""
    by_seed = {r.seed: r for r in runs if set(architectures) <= set(r.accuracies)}
    if not seeds or any(seed not in by_seed for seed in seeds):
        return None
    return float(np.mean([np.mean([by_seed[seed].accuracies[a] for a in architectures]) for seed in seeds]))


# -- compute accounting -------------------------------------------------------------------------------


def examples_per_run(architectures: int, steps: int, batch_size: int) -> int:
    """Training examples one run processes: the unit every rung's compute is counted in."""
    return architectures * steps * batch_size


def proxy_examples(config: SearchConfig) -> int:
    """A candidate's rung-0 training: every proxy, the full budget of steps (the quality prefix is part of it)."""
    training = config.training
    return examples_per_run(len(config.architectures), training.steps, training.batch_size)


def quality_examples(config: SearchConfig) -> int:
    """A candidate the quality check rejects: every proxy up to the check's step."""
    return examples_per_run(len(config.architectures), config.rejection.quality.steps, config.training.batch_size)


def target_examples(config: SearchConfig) -> int:
    """One seed of the target task: every target architecture for the target's steps."""
    training = config.validation.training
    return examples_per_run(len(config.validation.architectures), training.steps, training.batch_size)


@dataclass(frozen=True)
class RungStatus:
    """One rung as `status` shows it."""

    rung: int
    name: str
    evaluated: int  # candidates with a complete result at this rung
    promoted: int  # candidates sent on to the next rung (or, for the last rung, sent here)
    pending: int  # candidates at this rung whose result is not complete yet
    examples: int  # training examples processed at this rung (compute)


def ladder_status(
    session: Session, summary: db.SearchSummary, config: SearchConfig, objectives: Sequence[Objective]
) -> list[RungStatus]:
    """`summary`: the search's (its caller has read it). Per rung: candidates with a complete result, promoted on, pending, and the training examples spent;
    then the baselines' target runs, the ladder's fixed overhead (once per search)."""
    assert config.fidelities is not None, "ladder_status of a search without a ladder"
    results = db.results_in_commit_order(session, summary.search.id)
    ladder = Ladder(config.fidelities, objectives)
    ladder.replay((cid, as_vector(values, objectives)) for cid, values in results)
    if summary.search.state is SearchState.COMPLETED or summary.total >= config.budget:
        ladder.finish()  # the controller promoted the rung's top at its end too
    baselines = [b.id for b in db.baselines_of(session, summary.search.id)]
    seeds = set(config.ladder_seeds())
    architectures = {a.label for a in config.validation.architectures}
    stored = db.validation_runs(session, ladder.promoted + baselines)

    def seeds_done(cid: int) -> int:
        return len({r.seed for r in stored.get(cid, []) if architectures <= set(r.accuracies)} & seeds)

    quality_rejected = summary.rejected_by_stage.get(RejectionStage.QUALITY, 0)
    complete = [cid for cid in ladder.promoted if seeds_done(cid) == len(seeds)]
    return [
        RungStatus(
            0,
            "proxies",
            len(results),
            len(ladder.promoted),
            sum(summary.by_status.get(status, 0) for status in (CandidateStatus.QUEUED, CandidateStatus.RUNNING)),
            len(results) * proxy_examples(config) + quality_rejected * quality_examples(config),
        ),
        RungStatus(
            1,
            "target task",
            len(complete),
            0,
            len(ladder.promoted) - len(complete),
            sum(seeds_done(cid) for cid in ladder.promoted) * target_examples(config),
        ),
        RungStatus(
            1,
            "baselines on the target task",
            sum(seeds_done(b) == len(seeds) for b in baselines),
            0,
            sum(seeds_done(b) < len(seeds) for b in baselines),
            sum(seeds_done(b) for b in baselines) * target_examples(config),
        ),
    ]


@dataclass(frozen=True)
class ComputeStatus:
    """A compute-bounded search's training examples: spent by its own candidates, and its budget."""

    spent: int
    budget: int


def search_compute(session: Session, summary: db.SearchSummary) -> ComputeStatus | None:
    """The compute spent against `compute_budget`, for a search that has one (None otherwise)."""
    search = summary.search
    if not search.config.get("compute_budget"):
        return None
    try:
        config = SearchConfig.from_mapping(search.config, origin=f"stored configuration of search {search.id}")
    except ConfigError:
        return None
    assert config.compute_budget is not None
    return ComputeStatus(own_examples(session, summary, config), config.compute_budget)


def search_ladder(session: Session, summary: db.SearchSummary) -> list[RungStatus]:
    """The fidelity ladder's rungs of a search that has one, else none (as for a stored configuration
    this version cannot read: it has no ladder this version could have run)."""
    search = summary.search
    if not search.config.get("fidelities"):
        return []  # most searches have no ladder: no need to validate their whole configuration
    try:
        config = SearchConfig.from_mapping(search.config, origin=f"stored configuration of search {search.id}")
    except ConfigError:
        return []
    if config.fidelities is None:
        return []
    return ladder_status(session, summary, config, search.objective_specs)


def own_examples(session: Session, summary: db.SearchSummary, config: SearchConfig) -> int:
    """Training examples the search's own candidates have used (what `compute_budget` bounds): rung 0
    (evaluated originals and quality rejections) and every complete target seed of a candidate that is
    not a baseline (`ladder_status`'s accounting without the baselines' overhead)."""
    search_id = summary.search.id
    evaluated = len(db.results_in_commit_order(session, search_id))
    quality_rejected = summary.rejected_by_stage.get(RejectionStage.QUALITY, 0)
    spent = evaluated * proxy_examples(config) + quality_rejected * quality_examples(config)
    if config.fidelities is None:
        return spent
    architectures = {a.label for a in config.validation.architectures}
    own = db.validated_candidates(session, search_id)
    baselines = {b.id for b in db.baselines_of(session, search_id)}
    runs = db.validation_runs(session, [cid for cid in own if cid not in baselines])
    seeds = sum(architectures <= set(r.accuracies) for found in runs.values() for r in found)
    return spent + seeds * target_examples(config)
