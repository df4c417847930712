"""Group commits: the outcomes of one poll and the proposals of one fill are written in one transaction
each, and still every outcome is committed before selection sees it; a controller killed inside a group
(mid-transaction, or after the commit and before its candidates reach the evaluator) resumes with
nothing lost or repeated. On SQLite and PostgreSQL, against the simulated cluster."""

from __future__ import annotations

import random
from collections import Counter

from sqlalchemy import event

from evonorm_search.search import LognormalDelay, ManualClock, SimulatedCluster
from evonorm_search.search import controller as controller_module
from evonorm_search.search.controller import Controller, create_search
from evonorm_search.search.simulated import layer_scores
from evonorm_search.store import (
    CandidateStatus,
    evaluations_of,
    get_search,
    list_candidates,
    open_store,
    search_summary,
)

from .conftest import tiny_config

SEED = 3


def cluster(workers: int = 8) -> SimulatedCluster:
    """Every evaluation takes the same simulated time: the tasks of one fill come back in one poll."""
    return SimulatedCluster(
        workers, delay=LognormalDelay(median=60.0, sigma=0.0), time_factor=0.01, clock=ManualClock(), seed=SEED
    )


def all_candidates(store, search_id):
    with store.session(readonly=True) as s:
        return {c.id: c for c in list_candidates(s, search_id, limit=1000).items}


# -- commit before selection -----------------------------------------------------------------------


class CommittedOnlySpy:
    """The real strategy, checking at every proposal that each member it is shown is committed as
    evaluated: read through a store of its own (another connection), which sees committed rows only."""

    def __init__(self, inner, url: str, search_id: int):
        self.inner = inner
        self.search_id = search_id
        self.reader = open_store(url)
        self.shown: set[int] = set()
        self.proposals = 0

    def propose(self, population, birth, rng):
        ids = [m.candidate_id for m in population]
        if ids:
            with self.reader.session(readonly=True) as s:
                committed = {c.id: c.status for c in list_candidates(s, self.search_id, limit=1000).items}
            missing = [i for i in ids if committed.get(i) is not CandidateStatus.EVALUATED]
            assert not missing, f"birth {birth}: selection was shown members not committed as evaluated: {missing}"
        self.shown |= set(ids)
        self.proposals += 1
        return self.inner.propose(population, birth, rng)


def test_group_commit_keeps_every_outcome_committed_before_selection_sees_it(any_store, monkeypatch):
    store = any_store
    url = store.engine.url.render_as_string(hide_password=False)
    search_id = create_search(store, tiny_config(budget=48, population=6, tournament=2))
    spies = []

    def spying_strategy(*args, **kwargs):
        spies.append(CommittedOnlySpy(build(*args, **kwargs), url, search_id))
        return spies[-1]

    build = controller_module.build_strategy
    monkeypatch.setattr(controller_module, "build_strategy", spying_strategy)
    controller = Controller(store, search_id, cluster(workers=8), poll_interval=0.2)
    try:
        final = controller.run()
    finally:
        spies[0].reader.close()
    assert final.state == "completed" and final.proposed == 48
    spy = spies[0]
    assert spy.proposals == 48 and len(spy.shown) >= 6  # selection ran on a full population
    # The groups were groups: several outcomes per transaction, several proposals per transaction.
    assert max(controller.outcome_groups) >= 2, controller.outcome_groups
    assert max(controller.proposal_groups) >= 2, controller.proposal_groups
    outcomes = sum(size * n for size, n in controller.outcome_groups.items())
    assert sum(controller.outcome_groups.values()) < outcomes  # fewer transactions than outcomes
    with store.session(readonly=True) as s:
        summary = search_summary(s, search_id)
    statuses = Counter(c.status for c in all_candidates(store, search_id).values())
    assert summary.total == 48 and summary.by_status[CandidateStatus.EVALUATED] == statuses[CandidateStatus.EVALUATED]


# -- killed inside a group -------------------------------------------------------------------------


class Death(BaseException):
    """The process dies: nothing handles it, nothing is cleaned up."""


class Killer:
    """Kills the controller at a chosen point of a group: the k-th statement executed inside an outcome
    group or inside a group of proposals (the transaction rolls back), or at the k-th hand-over to the
    evaluator after a group of proposals committed (its other candidates never reach a worker)."""

    MODES = ("outcome group", "proposal group", "after commit")

    def __init__(self, store, monkeypatch):
        self.mode: str | None = None
        self.left = 0
        self.inside: str | None = None
        self.group_size = 0
        self.kills: list[tuple[str, int]] = []  # (mode, outcomes in the group being written)
        event.listen(store.engine, "before_cursor_execute", self._statement)
        commit_outcomes = Controller._commit_outcomes
        fill_group = Controller._fill_group

        def committing_outcomes(controller, outcomes):
            self.inside, self.group_size = "outcome group", len(outcomes)
            try:
                return commit_outcomes(controller, outcomes)
            finally:
                self.inside = None

        def filling(controller, deadline):
            self.inside = "proposal group"
            try:
                return fill_group(controller, deadline)
            finally:
                self.inside = None

        monkeypatch.setattr(Controller, "_commit_outcomes", committing_outcomes)
        monkeypatch.setattr(Controller, "_fill_group", filling)

    def arm(self, mode: str, k: int) -> None:
        self.mode, self.left = mode, k

    def _statement(self, *_args) -> None:
        if self.mode is not None and self.inside == self.mode:
            self._tick(self.group_size if self.mode == "outcome group" else 0)

    def handed_over(self) -> None:
        if self.mode == "after commit":
            self._tick(0)

    def _tick(self, size: int) -> None:
        self.left -= 1
        if self.left <= 0:
            self.kills.append((self.mode or "", size))
            self.mode = None
            raise Death()


class LoggedCluster:
    """The simulated cluster, logging every (candidate, attempt) handed to it, across controller runs."""

    def __init__(self, inner: SimulatedCluster, log: Counter, killer: Killer):
        self.inner, self.log, self.killer = inner, log, killer

    def capacity(self):
        return self.inner.capacity()

    def submit(self, task):
        self.killer.handed_over()
        self.log[(task.candidate_id, task.attempt)] += 1
        self.inner.submit(task)

    def poll(self, timeout):
        return self.inner.poll(timeout)

    def cancel(self, ids):
        self.inner.cancel(ids)

    def close(self):
        self.inner.close()


def finished_state(store, search_id):
    """Every finished candidate with its verdict and its evaluation rows: what a crash must not change."""
    with store.session(readonly=True) as s:
        return {
            c.id: (
                c.birth,
                c.status,
                c.objectives,
                c.rejection_reason,
                c.attempt,
                [(e.id, e.architecture, e.phase, e.attempt) for e in evaluations_of(s, c.id)],
            )
            for c in list_candidates(s, search_id, limit=1000).items
            if c.status not in (CandidateStatus.PENDING, CandidateStatus.QUEUED, CandidateStatus.RUNNING)
        }


def test_a_controller_killed_inside_group_commits_resumes_with_nothing_lost_or_repeated(any_store, monkeypatch):
    store = any_store
    budget = 120
    config = tiny_config(budget=budget, population=6, tournament=2)
    search_id = create_search(store, config)
    killer = Killer(store, monkeypatch)
    handed: Counter = Counter()
    rng = random.Random(11)
    committed: dict = {}
    final = None
    kills = 15  # five of each kind; then a run that is left to finish
    for run in range(kills + 1):
        mode = Killer.MODES[run % 3]
        if run < kills:
            killer.arm(mode, rng.randint(1, 8 if mode == "after commit" else 60))
        controller = Controller(store, search_id, LoggedCluster(cluster(), handed, killer), poll_interval=0.2)
        try:
            final = controller.run()
            break
        except Death:
            pass
        now = finished_state(store, search_id)
        assert {c: now[c] for c in committed} == committed, "a committed verdict changed after a kill"
        committed = now
    assert final is not None and final.state == "completed" and final.proposed == budget

    kinds = Counter(mode for mode, _ in killer.kills)
    assert all(kinds[m] >= 2 for m in Killer.MODES), kinds  # some kills may miss: the budget was spent first
    assert any(size >= 2 for mode, size in killer.kills if mode == "outcome group"), killer.kills

    assert_nothing_lost_or_repeated(store, search_id, config, handed, committed)


def assert_nothing_lost_or_repeated(store, search_id: int, config, handed: Counter, committed: dict) -> None:
    """After kills and a last run to the end: verdicts committed before the last kill unchanged, the budget
    spent exactly, counters matching the rows, each (candidate, attempt) handed to a worker at most once,
    one evaluation row per (architecture, phase, attempt), and the simulated scores kept."""
    budget = config.budget
    after = finished_state(store, search_id)
    assert {c: after[c] for c in committed} == committed  # nothing committed before the last kill changed
    candidates = all_candidates(store, search_id)
    # The budget: exactly `budget` births, each once, all finished.
    assert sorted(c.birth for c in candidates.values()) == list(range(budget))
    with store.session(readonly=True) as s:
        assert get_search(s, search_id).next_birth == budget
        summary = search_summary(s, search_id)
        rows = {cid: evaluations_of(s, cid) for cid in candidates}
    assert all(c.status in (CandidateStatus.EVALUATED, CandidateStatus.REJECTED) for c in candidates.values())
    # Counters shifted by the groups match the rows (rolled-back groups shifted nothing).
    statuses = Counter(c.status for c in candidates.values())
    assert summary.total == budget and summary.evaluated == statuses[CandidateStatus.EVALUATED]
    # Each (candidate, attempt) reached a worker at most once; no candidate of a rolled-back group did.
    assert max(handed.values()) == 1, [k for k, n in handed.items() if n > 1]
    assert {cid for cid, _ in handed} <= set(candidates)
    spec = config.evaluation_spec()
    for cid, c in candidates.items():
        # Evaluated exactly once per attempt: one row per (architecture, phase) of each attempt stored,
        # only attempts that were handed to a worker, and the final attempt's outcome is the one kept.
        keys = Counter((e.architecture, e.phase, e.attempt) for e in rows[cid])
        assert all(n == 1 for n in keys.values()), f"candidate {cid} evaluated twice: {keys}"
        assert all((cid, e.attempt) in handed for e in rows[cid])
        if c.status is CandidateStatus.EVALUATED and c.duplicate_of is None:
            assert (cid, c.attempt) in handed and {e.attempt for e in rows[cid]} == {c.attempt}
            assert c.objectives == layer_scores(c.graph, spec, seed=SEED)
