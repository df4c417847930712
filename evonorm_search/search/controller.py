"""The controller: the loop that proposes, checks, queues, evaluates and records candidates.

`run_search(store, search_id, evaluator)` drives one search to its budget. Everything it knows comes
from the store, so it resumes after any interruption (SIGKILL included): completed evaluations are
never repeated, and candidates that were in flight are evaluated again with the next attempt number.
Each outcome is committed before the population, which selection reads, sees it. The search row
carries a heartbeat; setting its state to `stopping` (from the CLI or the API) stops the loop.

The write path is group commits (docs/architecture.md, "The write path: group commits"). The outcomes
of one poll are written in one transaction (split only when writing them would hold it open longer than
a poll interval), and only after it commits do they reach the population, the ladder and the progress
report. A fill writes the backlog and its new proposals in groups: each proposal made, checked and
inserted with its verdict inside the open transaction (`CandidateGroup`), the group closed when it has
filled the slots free when it opened, at the fill's deadline, or once its fixed cost (closing and
committing it) is at most `GROUP_OVERHEAD_SHARE` of its time; its candidates are handed to the evaluator
after the commit. A controller killed inside a group loses the group, never a committed outcome, and
proposes the same births again on resume.
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import socket
import time
from collections import Counter, deque
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from .. import store as db
from ..enums import SEARCH_TRANSITIONS, ProbeSite
from ..ir import Graph
from ..store import (
    Candidate,
    CandidateStatus,
    Objective,
    RejectionStage,
    Search,
    SearchState,
    Store,
)
from .baselines import prepare_baselines
from .check_pool import CheckPool
from .config import SearchConfig
from .evaluator import EvaluationOutcome, EvaluationTask, Evaluator
from .ladder import Ladder, own_examples, proxy_examples, quality_examples, target_examples, target_mean
from .pareto import as_vector
from .rejection import BoundedDuplicateIndex, CheapRejections, DuplicateIndex, Verdict, cheap_rejections
from .score_cache import settings_key
from .scoring import seed_run
from .selection import Member, Proposal, Strategy, aging_population
from .validation import store_run

FINISHED = (SearchState.COMPLETED,)
_PAGE = 1000
FAILURES_BEFORE_GIVING_UP = 3  # evaluations failing in a row, before any succeeds, that stop a run
# A group of proposals stays open until the statements that close and commit it are at most this share of
# its time (`Controller._group_window`): the commit's cost amortised, the workers' wait kept in proportion.
GROUP_OVERHEAD_SHARE = 0.1
# Births proposed ahead per check-pool process: enough that the pool still has work when the controller
# next asks (a check takes up to ~15 ms, a fill and a group of outcomes a few tens of ms), few enough that
# an outcome changing the population wastes little.
SPECULATION_PER_CHECK_WORKER = 4


class ControllerError(RuntimeError):
    """The search cannot be driven: it is finished, controlled elsewhere, or its stored config is unusable."""


@dataclass(frozen=True)
class SearchProgress:
    """What the controller reports after every event (for a progress display)."""

    search_id: int
    name: str
    state: str
    budget: int
    proposed: int
    evaluated: int
    rejected: dict[str, int]
    failed: int
    duplicate_hits: int
    in_flight: int
    best: dict[str, float]
    elapsed: float
    last_event: str = ""


ProgressCallback = Callable[[SearchProgress], None]


def build_strategy(
    config: SearchConfig, objectives: Sequence[Objective], index: DuplicateIndex | None = None
) -> Strategy:
    """The proposer of the config's strategy (`strategies.py`). With `index` (and duplicate rejection
    on), a strategy that mutates tries again for a child the search does not have yet."""
    known = index.knows if index is not None and config.rejection.duplicates else None
    return config.strategy().build(config, objectives, known)


def build_checks(config: SearchConfig, index: DuplicateIndex) -> CheapRejections:
    """The cheap rejection chain the config asks the controller to run: without the probes when the
    workers run them (`rejection.probes: workers`, carried by the evaluation spec)."""
    rejection = config.rejection
    stability = rejection.stability
    on_controller = rejection.probes is ProbeSite.CONTROLLER
    return cheap_rejections(
        config.build_space(),
        groups=config.groups,
        eps=config.eps,
        spatial_dims=config.input_shape()[1],
        index=index if rejection.duplicates else None,
        use_fingerprint=rejection.fingerprint,
        numeric=rejection.numeric and on_controller,
        stability=stability.model_dump(exclude={"enabled"}) if stability.enabled and on_controller else None,
        seed=config.seed,
    )


def candidate_rng(seed: int, birth: int) -> random.Random:
    """Each birth draws from its own stream: proposals do not depend on how often the process restarted."""
    return random.Random(f"evonorm-search:{seed}:{birth}")


@dataclass
class _InFlight:
    candidate_id: int
    attempt: int


@dataclass(frozen=True)
class _TargetRun:
    """One seed of the target task for a promoted candidate or a baseline (the ladder's last rung)."""

    candidate_id: int
    seed: int


@dataclass
class Controller:
    """One run of the loop for one search. Use `run_search` rather than this class directly."""

    store: Store
    search_id: int
    evaluator: Evaluator
    progress: ProgressCallback | None = None
    heartbeat_interval: float = 5.0
    stale_after: timedelta = timedelta(seconds=60)
    poll_interval: float = 0.5
    require_states: frozenset[SearchState] | None = None
    check_workers: int = 0  # processes computing the cheap checks ahead (`check_pool.py`); 0: in this thread
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)

    def __post_init__(self) -> None:
        self.in_flight: dict[int, _InFlight] = {}
        self.backlog: deque[_InFlight] = deque()
        self.index: DuplicateIndex = DuplicateIndex()  # until `_start` knows the budget (`_bounded_index`)
        self.open_session: Session | None = None  # the open group's: it sees the group's own candidates
        self.members: list[Member] = []
        self.started = time.monotonic()
        self.last_heartbeat = 0.0
        self.last_event = ""
        self.worked = False  # some evaluation of this run succeeded (or was rejected on its merits)
        self.failures_in_a_row = 0
        self.ladder: Ladder | None = None
        self.target_backlog: deque[_TargetRun] = deque()
        # Target runs in flight by task id. Evaluators know a task by its candidate id, one at a time, and a
        # promoted candidate trains several seeds: its tasks take ids of their own, negative so they never
        # meet a candidate's.
        self.target_tasks: dict[int, _TargetRun] = {}
        self.next_task_id = -1
        self.stop_checked_at = -math.inf  # the last read of a stop request (time.monotonic)
        self.examples_spent = 0  # training examples of the search's own candidates (`compute_budget`)
        self.events: list[str] = []  # noted since the last report
        self.group_overhead: float | None = None  # seconds to close and commit a group of proposals (estimate)
        # How many groups of each size were committed (bounded: one count per size): candidates per group
        # of proposals, outcomes per group of outcomes.
        self.proposal_groups: Counter[int] = Counter()
        self.outcome_groups: Counter[int] = Counter()
        self.last_group_size = 1  # how many ids the next group of proposals takes ahead (`CandidateIds`)
        self.seconds_per_outcome = 0.0  # the last group's write time per outcome (0: none written yet)
        self.check_pool: CheckPool | None = None
        # Speculation for the check pool: births up to `speculated_until` were handed to it from the
        # population as it was at `speculated_epoch` (`population_epoch` counts its changes).
        self.population_epoch = 0
        self.population_sorted: list[Member] = []  # `_population` at `population_sorted_at`
        self.population_sorted_at = -1
        self.speculated_epoch = -1
        self.speculated_until = 0

    # -- the loop ---------------------------------------------------------------------------------

    def run(self) -> SearchProgress:
        try:
            self._start()
            try:
                final = self._loop()
            except KeyboardInterrupt:
                self._finish(SearchState.STOPPED)
                raise
            except db.ConflictError:
                raise  # another controller took over: it owns the search now, touch nothing
            except Exception as e:
                self._finish(SearchState.FAILED, error=f"{type(e).__name__}: {e}")
                raise
            return self._finish(final)
        finally:
            if self.check_pool is not None:
                self.check_pool.close()

    def _loop(self) -> SearchState:
        while True:
            if self._stop_requested():
                self.evaluator.cancel(list(self.in_flight))
                return SearchState.STOPPED
            self._fill()
            idle = not self.in_flight and not self.backlog and not self.target_backlog
            if idle and not self._may_propose():
                if not self._promote_at_end():
                    return SearchState.COMPLETED
                continue
            # A fill cut short by its deadline left free workers and work to give them: collect what is
            # done without waiting, and go back to filling.
            unfilled = self._free_slots() > 0 and self._has_work()
            self._record_outcomes(self.evaluator.poll(timeout=0.0 if unfilled else self.poll_interval))
            self._report()

    def _free_slots(self) -> int:
        return self.evaluator.capacity() - len(self.in_flight)

    def _has_work(self) -> bool:
        return bool(self.backlog or self.target_backlog) or self._may_propose()

    def _may_propose(self, starting: int = 0) -> bool:
        """Budget left for a new candidate: births, and the compute budget counting what is promised as
        spent (a candidate in training will use a rung-0 run's examples, a promoted candidate's queued or
        running target seeds a target run's each), so promotions keep the compute they were given.
        `starting`: candidates of the open group that start training once it commits."""
        if self.births >= self.config.budget:
            return False
        if self.config.compute_budget is None:
            return True
        targets = [*self.target_backlog, *self.target_tasks.values()]
        own_targets = sum(run.candidate_id not in self.baseline_ids for run in targets) + self._reserved_target_runs()
        training = len(self.in_flight) - len(self.target_tasks) + starting
        promised = training * proxy_examples(self.config) + own_targets * target_examples(self.config)
        return self.examples_spent + promised < self.config.compute_budget

    def _reserved_target_runs(self) -> int:
        """Target runs of the promotions the ladder has not made yet, kept from the compute budget now: a
        ladder that promotes when rung 0 ends spends them after the last proposal, and a search bounded by
        compute must still have them then."""
        if self.ladder is None:
            return 0
        waiting = self.ladder.config.max_promotions - len(self.ladder.promoted)
        return max(waiting, 0) * len(self.config.ladder_seeds())

    # -- start and finish -------------------------------------------------------------------------

    def _start(self) -> None:
        with self.store.session() as s:
            search = db.get_search(s, self.search_id)
            if search.state in FINISHED:
                raise ControllerError(f"search {self.search_id} is already {search.state}")
            if self.require_states is not None and search.state not in self.require_states:
                # A stop that arrived while this controller was being launched: honour it.
                raise ControllerError(f"search {self.search_id} is {search.state}; not started")
            if search.state is SearchState.STOPPING:
                db.set_search_state(s, self.search_id, SearchState.STOPPED)
            stale_after = self._claim_window(search)
            db.claim_controller(s, self.search_id, host=self.host, pid=self.pid, stale_after=stale_after)
            if search.state is not SearchState.RUNNING:
                db.set_search_state(s, self.search_id, SearchState.RUNNING)
            self.name = search.name
            self.objectives = search.objective_specs
            self.config = self._load_config(search.config)
            self.births = search.next_birth  # births allocated so far
            self.index = self._bounded_index()
            self._load_history(s)
            self._requeue_unfinished(s)
            self._queue_baselines(s)
            self._load_ladder(s)
            if self.config.compute_budget is not None:
                self.examples_spent = own_examples(s, db.search_summary(s, self.search_id), self.config)
        self.strategy = build_strategy(self.config, self.objectives, self.index)
        self.checks = build_checks(self.config, self.index)
        if self.check_workers > 0:
            self.check_pool = CheckPool(self.config.model_dump(mode="json"), self.check_workers, build_checks)
        self.spec = self.config.evaluation_spec()
        self.baseline_spec = self.config.proxy_spec()  # a reference is scored, never rejected
        self.last_heartbeat = time.monotonic()
        self._report("started" if self.births == 0 else f"resumed at birth {self.births} of {self.config.budget}")

    def _claim_window(self, search: Search) -> timedelta:
        """A previous controller on this machine whose process is gone has no claim left: take over at once."""
        if search.controller_host == self.host and search.controller_pid not in (None, self.pid):
            try:
                os.kill(search.controller_pid, 0)
            except ProcessLookupError:
                return timedelta(0)
            except PermissionError:
                pass  # alive, owned by someone else
        return self.stale_after

    def _load_config(self, stored: dict[str, Any]) -> SearchConfig:
        try:
            return SearchConfig.from_mapping(stored, origin=f"stored configuration of search {self.search_id}")
        except ValueError as e:
            raise ControllerError(str(e)) from None

    def _bounded_index(self) -> BoundedDuplicateIndex:
        """The duplicate index, its memory fixed by the budget (rejection.py): the search's older
        candidates are looked up in the store, in the open group's transaction when there is one."""
        return BoundedDuplicateIndex(self.config.budget, self._first_candidate_with)

    def _first_candidate_with(self, column: str, key: str) -> int | None:
        if self.open_session is not None:
            return db.first_candidate_with(self.open_session, self.search_id, column, key)
        with self.store.session(readonly=True) as s:
            return db.first_candidate_with(s, self.search_id, column, key)

    def _load_history(self, s: Session) -> None:
        """The duplicate index and the population, from every candidate the search already has."""
        cursor = None
        while True:
            page = db.list_candidates(s, self.search_id, limit=_PAGE, cursor=cursor)
            for c in page.items:
                self.index.add(c.id, c.canonical_hash, c.fingerprint)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        if self.config.strategy().needs_population:
            members = [self._member(c) for c in db.population(s, self.search_id, self.config.population)]
            self.members = self._with_targets(s, members)
            self.population_epoch += 1

    def _requeue_unfinished(self, s: Session) -> None:
        """Candidates left queued or running by a previous controller run again, as their next attempt."""
        for c in db.unfinished_candidates(s, self.search_id):
            if c.status in (CandidateStatus.QUEUED, CandidateStatus.RUNNING):
                c = db.requeue_candidate(s, c.id)
            db.mark_status(s, c.id, CandidateStatus.QUEUED)
            self.backlog.append(_InFlight(c.id, c.attempt))

    def _queue_baselines(self, s: Session) -> None:
        """The config's baselines not evaluated yet go first: outside the budget, same evaluator (baselines.py)."""
        pending = prepare_baselines(s, self.search_id, self.config)
        self.baseline_ids = {b.candidate_id for b in pending}
        self.backlog.extendleft(_InFlight(b.candidate_id, b.attempt) for b in reversed(pending))

    def _load_ladder(self, s: Session) -> None:
        """The ladder's promotions replayed from the stored results (ladder.py), and every target seed of the
        evaluated baselines and the promoted candidates that is not stored yet, queued (baselines first)."""
        if self.config.fidelities is None:
            return
        self.ladder = Ladder(self.config.fidelities, self.objectives)
        self.ladder.replay(
            (cid, as_vector(values, self.objectives)) for cid, values in db.results_in_commit_order(s, self.search_id)
        )
        all_baselines = db.baselines_of(s, self.search_id)
        self.baseline_ids |= {b.id for b in all_baselines}  # their target runs are overhead, not own compute
        baselines = [b.id for b in all_baselines if b.status is CandidateStatus.EVALUATED]
        self._queue_target_runs(s, baselines + self.ladder.promoted)

    def _queue_target_runs(self, s: Session, candidate_ids: Sequence[int]) -> None:
        seeds = self.config.ladder_seeds()
        stored = db.validation_runs(s, list(candidate_ids))
        architectures = {a.label for a in self.config.validation.architectures}
        for cid in candidate_ids:
            done = {r.seed for r in stored.get(cid, []) if architectures <= set(r.accuracies)}
            self.target_backlog.extend(_TargetRun(cid, seed) for seed in seeds if seed not in done)

    def _finish(self, state: SearchState, *, error: str | None = None) -> SearchProgress:
        with self.store.session() as s:
            current = db.get_search(s, self.search_id)
            if current.state is not state and state in _allowed_after(current.state):
                db.set_search_state(s, self.search_id, state, error=error)
            if state is SearchState.STOPPED:
                self._park_unfinished(s)
            db.release_controller(s, self.search_id, host=self.host, pid=self.pid)
        self._report(f"search {state}")
        return self._progress()

    def _park_unfinished(self, s: Session) -> None:
        """A stopped search has nothing queued or running: what was in flight goes back to pending with
        its next attempt (a cancelled evaluation's late result must not count), the backlog to pending as
        it is. Resuming queues them again (`_requeue_unfinished`, `prepare_baselines`)."""
        in_flight = set(self.in_flight)
        for candidate_id in [*in_flight, *(item.candidate_id for item in self.backlog)]:
            status = db.get_candidate(s, candidate_id).status
            if status not in (CandidateStatus.QUEUED, CandidateStatus.RUNNING):
                continue
            if candidate_id in in_flight:
                db.requeue_candidate(s, candidate_id)
            else:
                db.mark_status(s, candidate_id, CandidateStatus.PENDING)

    # -- proposing and checking -------------------------------------------------------------------

    def _fill(self) -> None:
        """Keep the evaluator full: first the backlog, then the promotions' target runs, then new candidates
        until the budget is spent. The backlog and new candidates are written in groups (`_fill_group`).

        A fill lasts at most one poll interval: with thousands of free workers, filling them all before
        collecting a result would leave every finished worker idle until the last proposal is stored
        (benchmarks/results/paper-scale-serial-cpu2.md), so the loop goes back to commit results in between."""
        deadline = time.monotonic() + self.poll_interval
        while self._free_slots() > 0 and time.monotonic() < deadline:
            if self.backlog or (not self.target_backlog and self._may_propose()):
                self._fill_group(deadline)
            elif self.target_backlog:  # promotions before new proposals, as ASHA gives them
                self._submit_target(self.target_backlog.popleft())
            else:
                return
            self._heartbeat_if_due()
            if self._stop_requested():
                return

    def _group_window(self) -> float:
        """How long a group of proposals stays open: until the statements that close and commit it (the
        group's fixed cost, as the last groups measured it) are at most `GROUP_OVERHEAD_SHARE` of its time,
        never past the fill's deadline. Before any group has been measured, the fill's deadline alone."""
        if self.group_overhead is None:
            return math.inf
        return self.group_overhead / GROUP_OVERHEAD_SHARE

    def _fill_group(self, deadline: float) -> None:
        """One write transaction for the backlog's next candidates and new proposals, until the slots free
        when it opened are filled, its window (`_group_window`) or the fill's deadline passes, or target
        runs are waiting. Proposals are made, checked and inserted in it one by one (`CandidateGroup`: one
        INSERT each, births and counters once per group), so each later proposal's duplicate check sees
        the earlier ones. Only once it is committed are its candidates handed to the evaluator and its
        events reported."""
        close_at = min(deadline, time.monotonic() + self._group_window())
        free = self._free_slots()
        ready: list[tuple[_InFlight, Candidate]] = []  # to hand to the evaluator once committed
        rejected: list[tuple[Candidate, Verdict]] = []
        with self.store.session() as s, self._open(s):
            group = db.CandidateGroup(s, self.search_id, first_birth=self.births, expected=self.last_group_size)
            while len(ready) < free:
                if self.backlog:
                    item = self.backlog.popleft()
                    ready.append((item, db.mark_status(s, item.candidate_id, CandidateStatus.RUNNING)))
                elif not self.target_backlog and self._may_propose(starting=len(ready)):
                    self._speculate()
                    candidate, verdict = self._propose_one(group)
                    if verdict.rejection is None:
                        ready.append((_InFlight(candidate.id, candidate.attempt), candidate))
                    else:
                        rejected.append((candidate, verdict))
                else:
                    break
                if time.monotonic() >= close_at:
                    break
            closing = time.monotonic()
            group.close()
        self._measure_group(time.monotonic() - closing)
        if len(group):
            self.proposal_groups[len(group)] += 1
            self.last_group_size = len(group)
        for item, candidate in ready:
            spec = self.baseline_spec if item.candidate_id in self.baseline_ids else self.spec
            task = EvaluationTask(self.search_id, item.candidate_id, candidate.graph, spec, attempt=item.attempt)
            self.in_flight[item.candidate_id] = item
            self.evaluator.submit(task)
        for candidate, verdict in rejected:
            self._note(f"{_name(candidate)}: {_verdict_text(verdict)}")
        for _, candidate in ready:
            self._note(f"{_name(candidate)}: training")
        self._report()

    @contextmanager
    def _open(self, s: Session) -> Iterator[None]:
        self.open_session = s
        try:
            yield
        finally:
            self.open_session = None

    def _measure_group(self, seconds: float) -> None:
        """Fold a group's fixed cost (closing and committing it) into the running estimate."""
        if self.group_overhead is None:
            self.group_overhead = seconds
        else:
            self.group_overhead += (seconds - self.group_overhead) / 8

    def _speculate(self) -> None:
        """Keep the check pool `SPECULATION_PER_CHECK_WORKER` births per process ahead of the next proposal:
        the layers proposed from the population as it is now, as `_propose_one` will propose them unless
        an outcome changes the population first (then speculation starts again from the next birth; the
        pool keeps what it computed, looked up by layer) or a mutation retries for a child the index
        learned meanwhile. A speculated layer that is not proposed in the end only cost the pool its
        checks; speculating past this fill keeps the pool busy while the controller commits outcomes."""
        pool = self.check_pool
        if pool is None or pool.broken is not None:
            return
        if self.speculated_epoch != self.population_epoch or self.speculated_until < self.births:
            self.speculated_epoch, self.speculated_until = self.population_epoch, self.births
        last = min(self.births + SPECULATION_PER_CHECK_WORKER * pool.workers, self.config.budget)
        if self.speculated_until >= last:
            return
        population = self._population()
        for birth in range(self.speculated_until, last):
            pool.submit(self._proposal(population, birth).graph)
        self.speculated_until = last

    def _population(self) -> list[Member]:
        """The aging population, sorted by birth once per change of the members (`population_epoch`): the
        proposals between two outcomes share it, where sorting the members for each one cost two to three
        times the tournament (the trim column of benchmarks/results/paper-scale-lean-writes-cpu2.md)."""
        if self.population_sorted_at != self.population_epoch:
            self.population_sorted = aging_population(self.members, self.config.population)
            self.population_sorted_at = self.population_epoch
        return self.population_sorted

    def _proposal(self, population: Sequence[Member], birth: int) -> Proposal:
        return self.strategy.propose(population, birth, candidate_rng(self.config.seed, birth))

    def _propose_one(self, group: db.CandidateGroup) -> tuple[Candidate, Verdict]:
        """Propose the next birth, run the cheap checks and add it to the open group with their verdict."""
        birth = self.births
        proposal = self._proposal(self._population(), birth)
        known = self.check_pool.take(proposal.graph) if self.check_pool is not None else None
        verdict = self.checks.run(proposal.graph, known)
        candidate = self._add_candidate(group, proposal, verdict)
        self.births = birth + 1
        self.index.add(candidate.id, verdict.facts.canonical_hash, verdict.facts.fingerprint)
        return candidate, verdict

    def _add_candidate(self, group: db.CandidateGroup, proposal: Proposal, verdict: Verdict) -> Candidate:
        """Store the candidate as its checks left it: running when it goes on to training (it is handed to
        the evaluator once the group commits), else rejected at the failing stage, every passed check's
        seconds recorded. A duplicate reuses its original's verdict: its objectives if evaluated, else a
        rejection saying why. It counts against the budget but never joins the population (the original
        is, or was, there)."""
        facts = verdict.facts
        rejection = verdict.rejection
        seconds = {
            stage.value: t for stage, t in verdict.seconds.items() if rejection is None or stage != rejection.stage
        }
        row: dict[str, Any] = {
            "graph": proposal.graph.to_dict(),
            "dsl": proposal.graph.to_text(),
            "canonical_hash": facts.canonical_hash or self.index.hash_of(proposal.graph),
            "fingerprint": facts.fingerprint,
            "parent_id": proposal.parent_id,
            "mutation": proposal.mutation,
            "check_seconds": seconds,
        }
        if rejection is None:
            return group.add(**row, status=CandidateStatus.RUNNING)
        rejection_seconds = verdict.seconds.get(rejection.stage)
        reason = rejection.reason
        if rejection.duplicate_of is not None:
            original = group.original(rejection.duplicate_of)
            if original.status is CandidateStatus.EVALUATED and original.objectives is not None:
                seconds[RejectionStage.DUPLICATE.value] = rejection_seconds or 0.0
                return group.add(
                    **row, status=CandidateStatus.EVALUATED, duplicate_of=original.id, objectives=original.objectives
                )
            if original.status is CandidateStatus.REJECTED:
                reason += f"; it was rejected ({original.rejection_stage}: {original.rejection_reason})"
            elif original.status is CandidateStatus.FAILED:
                reason += f"; its evaluation failed ({original.error})"
            else:
                reason += "; it is still being evaluated"
        if rejection_seconds is not None:
            seconds[rejection.stage.value] = rejection_seconds
        return group.add(
            **row,
            status=CandidateStatus.REJECTED,
            rejection_stage=rejection.stage,
            rejection_reason=reason,
            duplicate_of=rejection.duplicate_of,
        )

    # -- evaluating -------------------------------------------------------------------------------

    def _submit_target(self, run: _TargetRun) -> None:
        with self.store.session(readonly=True) as s:
            candidate = db.get_candidate(s, run.candidate_id)
        if run.candidate_id in self.baseline_ids and self._reuse_baseline_run(candidate, run.seed):
            return
        task_id = self.next_task_id
        self.next_task_id -= 1
        task = EvaluationTask(self.search_id, task_id, candidate.graph, self.config.target_spec(run.seed))
        self.in_flight[task_id] = _InFlight(task_id, task.attempt)
        self.target_tasks[task_id] = run
        self.evaluator.submit(task)
        self._note(f"{_name(candidate)}: target task, seed {run.seed}")

    def _target_key(self, seed: int) -> str:
        """The digest of every setting a target run of `seed` depends on (spec, data identity, package
        version, training code): two searches whose runs share it would train the same thing."""
        return settings_key([self.config.target_spec(seed)])

    def _reuse_baseline_run(self, baseline: Candidate, seed: int) -> bool:
        """Store another search's run of the same baseline under the same target settings as this
        baseline's seed `seed` (marked `reused_from`, no seconds of its own); False when none is stored.
        The baselines train once per configuration, not once per search."""
        architectures = [a.label for a in self.config.validation.architectures]
        with self.store.session() as s:
            found = db.reusable_baseline_run(
                s,
                canonical_hash=baseline.canonical_hash,
                seed=seed,
                key=self._target_key(seed),
                architectures=architectures,
                exclude=baseline.id,
            )
            if found is None:
                return False
            metrics = {a: {**m, "reused_from": found.candidate_id} for a, m in found.metrics.items()}
            db.record_validation(s, baseline.id, seed=seed, metrics=metrics, durations=dict.fromkeys(metrics, 0.0))
        self._note(f"{_name(baseline)}: target seed {seed} reused from candidate id {found.candidate_id}")
        return True

    def _record_target_outcome(self, outcome: EvaluationOutcome) -> None:
        """Store a target run (every architecture of its seed in one transaction). A failed one is not
        stored, so a later run of the controller trains that seed again."""
        run = self.target_tasks.pop(outcome.candidate_id)
        del self.in_flight[outcome.candidate_id]
        scores = seed_run(outcome, run.seed)
        if scores.error is None:
            store_run(self.store, run.candidate_id, scores, extra={"target_key": self._target_key(run.seed)})
            if run.candidate_id not in self.baseline_ids:
                self.examples_spent += target_examples(self.config)
                self._raise_member(run.candidate_id)
            event = f"target seed {run.seed}: mean {scores.score:.3f}"
        else:
            event = f"target seed {run.seed} failed: {scores.error}"
        self._note(f"candidate id {run.candidate_id}: {event}")

    def _promote_at_end(self) -> bool:
        """Rung 0 is complete: the ladder promotes its top (`Ladder.finish`); True when that queued target
        runs (promoted now, or promoted by an earlier run of this search and not all stored yet)."""
        if self.ladder is None:
            return False
        promoted = self.ladder.finish()
        with self.store.session(readonly=True) as s:
            self._queue_target_runs(s, promoted)
        return bool(self.target_backlog)

    def _promote(self, candidate: Candidate) -> None:
        """Hand a new rung-0 result to the ladder; queue the target runs of whom it promotes."""
        if self.ladder is None or candidate.duplicate_of is not None or candidate.objectives is None:
            return
        promoted = self.ladder.add_result(candidate.id, as_vector(candidate.objectives, self.objectives))
        if promoted:
            with self.store.session(readonly=True) as s:
                self._queue_target_runs(s, promoted)

    def _record_outcomes(self, outcomes: Sequence[EvaluationOutcome]) -> None:
        """Commit the outcomes of one poll; only then may selection see them. The search's own outcomes are
        written in groups (`_commit_outcomes`), a target run's on its own; outcomes of stale attempts are
        ignored."""
        group: list[EvaluationOutcome] = []
        grouped: set[int] = set()
        for outcome in outcomes:
            if outcome.candidate_id in self.target_tasks:
                self._commit_outcomes(group)
                group = []
                self._record_target_outcome(outcome)
                continue
            item = self.in_flight.get(outcome.candidate_id)
            if item is None or item.attempt != outcome.attempt or outcome.candidate_id in grouped:
                continue  # a stale attempt, or reported twice (the first one counts)
            grouped.add(outcome.candidate_id)
            group.append(outcome)
        self._commit_outcomes(group)

    def _commit_outcomes(self, outcomes: Sequence[EvaluationOutcome]) -> None:
        """Write outcomes in as few transactions as the bound allows: a group holds every outcome left,
        unless writing them would keep its transaction open longer than one poll interval (the delay the
        loop allows a stop request or a heartbeat), judged by the last group's time per outcome; the rest go
        in the next group. Each group is committed before its outcomes reach the population, the ladder or
        the failure count (`_apply_outcome`)."""
        done = 0
        while done < len(outcomes):
            fits = max(1, int(self.poll_interval / self.seconds_per_outcome)) if self.seconds_per_outcome else None
            group = outcomes[done : done + fits] if fits else outcomes[done:]
            opened = time.monotonic()
            with self.store.session() as s:
                settled = db.settle_candidates(s, self.search_id, [_settlement(o) for o in group])
            self.seconds_per_outcome = (time.monotonic() - opened) / len(group)
            done += len(group)
            self.outcome_groups[len(group)] += 1
            for outcome, candidate in zip(group, settled, strict=True):
                self._apply_outcome(outcome, candidate)

    def _apply_outcome(self, outcome: EvaluationOutcome, candidate: Candidate) -> None:
        """What a committed outcome changes in memory: the slot, the compute spent, the population, the ladder."""
        del self.in_flight[outcome.candidate_id]
        baseline = outcome.candidate_id in self.baseline_ids
        if not baseline:
            self.examples_spent += self._examples_of(candidate)
        joins = self.config.strategy().needs_population and not baseline
        if candidate.status is CandidateStatus.EVALUATED and joins:
            self._admit(self._member(candidate))
        if candidate.status is CandidateStatus.EVALUATED and not baseline:
            self._promote(candidate)
        elif candidate.status is CandidateStatus.EVALUATED and self.ladder is not None:
            with self.store.session(readonly=True) as s:
                self._queue_target_runs(s, [candidate.id])  # a baseline goes through the last rung too
        self._note(f"{_name(candidate)}: {_outcome_text(outcome)}")
        self._watch_failures(outcome)

    def _watch_failures(self, outcome: EvaluationOutcome) -> None:
        """Stop a search whose evaluations all fail (missing data, a GPU that is not there, a bug)
        rather than spend its budget on failures: it ends `failed` with the error, ready to resume
        once the cause is fixed."""
        if outcome.error is None:
            self.worked = True
            return
        self.failures_in_a_row = 0 if self.worked else self.failures_in_a_row + 1
        if self.failures_in_a_row >= FAILURES_BEFORE_GIVING_UP:
            raise ControllerError(
                f"the first {self.failures_in_a_row} evaluations of this run all failed; the last said: {outcome.error}"
            )

    def _examples_of(self, candidate: Candidate) -> int:
        """A settled candidate's rung-0 examples, as `ladder.own_examples` counts them from the store."""
        if candidate.status is CandidateStatus.EVALUATED and candidate.duplicate_of is None:
            return proxy_examples(self.config)
        if candidate.status is CandidateStatus.REJECTED and candidate.rejection_stage is RejectionStage.QUALITY:
            return quality_examples(self.config)
        return 0

    def _admit(self, member: Member) -> None:
        """A newly evaluated candidate joins the population; the oldest age out (trimmed in batches)."""
        self.members.append(member)
        self.population_epoch += 1
        if len(self.members) > 2 * self.config.population:
            self.members = aging_population(self.members, self.config.population)

    def _with_targets(self, s: Session, members: Sequence[Member]) -> list[Member]:
        """Members with their target-rung mean where every ladder seed of it is stored (selection.py reads
        the highest rung a member reached)."""
        if self.config.fidelities is None or not members:
            return list(members)
        runs = db.validation_runs(s, [m.candidate_id for m in members])
        seeds = self.config.ladder_seeds()
        architectures = [a.label for a in self.config.validation.architectures]
        return [replace(m, target=target_mean(runs.get(m.candidate_id, []), seeds, architectures)) for m in members]

    def _raise_member(self, candidate_id: int) -> None:
        """A promoted member's target seed was stored: once all are, selection sees its target mean."""
        held = [m for m in self.members if m.candidate_id == candidate_id]
        if not held:
            return  # aged out of the population, or not a member (random search keeps none)
        with self.store.session(readonly=True) as s:
            raised = self._with_targets(s, held)[0]
        self.members = [raised if m.candidate_id == candidate_id else m for m in self.members]
        self.population_epoch += 1

    def _member(self, candidate: Candidate) -> Member:
        return Member(
            candidate.id,
            candidate.birth,
            Graph.from_dict(candidate.graph),
            as_vector(candidate.objective_values, self.objectives),
        )

    # -- liveness and reporting -------------------------------------------------------------------

    def _heartbeat_if_due(self) -> None:
        if time.monotonic() - self.last_heartbeat < self.heartbeat_interval:
            return
        with self.store.session() as s:
            db.heartbeat_controller(s, self.search_id, host=self.host, pid=self.pid)
            candidates = [cid for cid in self.in_flight if cid not in self.target_tasks]
            if candidates:
                db.heartbeat_candidates(s, candidates)
        self.last_heartbeat = time.monotonic()

    def _stop_requested(self) -> bool:
        """Whether `stop` asked this search to end: read from the store at most once per poll interval (a
        read per proposal was a sixth of the controller's time at paper scale)."""
        self._heartbeat_if_due()
        now = time.monotonic()
        if now - self.stop_checked_at < self.poll_interval:
            return False
        self.stop_checked_at = now
        with self.store.session(readonly=True) as s:
            return db.get_search(s, self.search_id).state is SearchState.STOPPING

    def _note(self, event: str) -> None:
        """An event for the next report."""
        self.events.append(event)

    def _report(self, event: str | None = None) -> None:
        """Hand the progress to the callback once per event noted since the last report (`event` last), or
        once with none new: every call of one report from one read of the store, taken after the writes the
        events describe were committed. Without a callback nothing is read."""
        if event is not None:
            self.events.append(event)
        events, self.events = self.events, []
        if events:
            self.last_event = events[-1]
        if self.progress is None:
            return
        progress = self._progress()
        for each in events[:-1]:
            self.progress(dataclasses.replace(progress, last_event=each))
        self.progress(progress)

    def _progress(self) -> SearchProgress:
        with self.store.session(readonly=True) as s:
            summary = db.search_summary(s, self.search_id)
        return SearchProgress(
            search_id=self.search_id,
            name=self.name,
            state=str(summary.search.state),
            budget=self.config.budget,
            proposed=summary.total,
            evaluated=summary.evaluated,
            rejected={str(k): v for k, v in summary.rejected_by_stage.items() if v},
            failed=summary.by_status.get(CandidateStatus.FAILED, 0),
            duplicate_hits=summary.duplicate_hits,
            in_flight=len(self.in_flight),
            best={name: b.value for name, b in summary.best.items() if b is not None},
            elapsed=time.monotonic() - self.started,
            last_event=self.last_event,
        )


def _settlement(outcome: EvaluationOutcome) -> db.Settlement:
    """What the store keeps of an outcome: its evaluation rows, the seconds of the checks the worker ran,
    and its verdict (failed, rejected by the worker's probes or quality check, or evaluated with its
    objective values)."""
    evaluations = [
        {
            "architecture": r.architecture,
            "phase": r.phase,
            "attempt": r.attempt,
            "status": r.status,
            "metrics": r.metrics,
            "duration_seconds": r.duration,
            "node": r.node,
        }
        for r in outcome.records
    ]
    seconds = outcome.check_seconds or None
    if outcome.error is not None:
        return db.Settlement(outcome.candidate_id, evaluations, error=outcome.error, check_seconds=seconds)
    if outcome.rejection is not None:
        rejection = outcome.rejection
        return db.Settlement(
            outcome.candidate_id,
            evaluations,
            rejection=rejection.reason,
            rejection_stage=rejection.stage,
            check_seconds=seconds,
        )
    return db.Settlement(outcome.candidate_id, evaluations, objectives=outcome.objectives or {}, check_seconds=seconds)


def _allowed_after(state: SearchState) -> frozenset[SearchState]:
    return SEARCH_TRANSITIONS[state]


def _name(candidate: Candidate) -> str:
    """How the progress log names a candidate: by its database id, the number `status`, `pareto` and
    `export --candidate` use, with its birth (its position in the search) beside it."""
    if db.is_baseline(candidate):
        return f"baseline {candidate.label}"
    return f"candidate {candidate.id} (birth {candidate.birth})"


def _verdict_text(verdict: Verdict) -> str:
    r = verdict.rejection
    return "queued" if r is None else f"rejected ({r.stage}): {r.reason}"


def _outcome_text(outcome: EvaluationOutcome) -> str:
    if outcome.error is not None:
        return f"failed: {outcome.error}"
    if outcome.rejection is not None:
        return f"rejected ({outcome.rejection.stage}): {outcome.rejection.reason}"
    values = ", ".join(f"{k} {v:.3f}" for k, v in (outcome.objectives or {}).items())
    return f"evaluated in {outcome.duration:.1f}s: {values}"


def run_search(
    store: Store,
    search_id: int,
    evaluator: Evaluator,
    *,
    progress: ProgressCallback | None = None,
    heartbeat_interval: float = 5.0,
    stale_after: timedelta = timedelta(seconds=60),
    poll_interval: float = 0.5,
    require_states: Collection[SearchState] | None = None,
    check_workers: int = 0,
) -> SearchProgress:
    """Drive search `search_id` until its budget is spent (state `completed`) or its state becomes
    `stopping` (then `stopped`). Resumes whatever the store holds. Returns the final progress.

    `require_states`: start only from these states (ControllerError otherwise). Launchers starting a
    new search pass `{created}`, so a stop requested before the controller got going is not undone.

    `check_workers`: processes that compute the cheap checks of the next proposals ahead while this
    thread stores and collects (`check_pool.py`); the search is the same with any number, 0 keeps them
    in this thread. Worth it where the controller feeds many workers (docs/cluster.md).

    Raises ControllerError when the search is finished or its stored config is unusable, and the
    store's ConflictError when another live controller holds it. Ctrl-C leaves the search `stopped`,
    ready to resume; any other exception leaves it `failed` with the error recorded.
    """
    controller = Controller(
        store,
        search_id,
        evaluator,
        progress,
        heartbeat_interval=heartbeat_interval,
        stale_after=stale_after,
        poll_interval=poll_interval,
        require_states=None if require_states is None else frozenset(require_states),
        check_workers=check_workers,
    )
    return controller.run()


def create_search(store: Store, config: SearchConfig) -> int:
    """Store a new search for `config` (state `created`) and return its id."""
    with store.session() as s:
        search = db.create_search(
            s,
            name=config.name,
            config=config.model_dump(mode="json"),
            objectives=config.objectives_spec(),
            seed=config.seed,
            budget=config.budget,
        )
        return search.id
