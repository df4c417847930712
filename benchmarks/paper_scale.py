"""Paper scale: can one controller keep thousands of workers busy? The real controller and the real store
against a simulated cluster, on SQLite and PostgreSQL.

The controller (`run_search`) runs examples/paper.yaml's search (population 2,500, tournament 25, its
mutations, rejections and three architectures; the budget overridden) against a `SimulatedCluster` of
100, 1,000 and 5,000 workers whose evaluations take a lognormal delay around 90 s times `--time-factor`,
fail at `--failure-rate` and lose their worker at `--loss-rate`. Only the evaluations are simulated:
proposals, cheap checks (sympy hash, fingerprint, numeric and stability probes), transactions and
selection are the controller's own, measured in its process:

- results per second (outcomes committed) and proposals per second, over the whole run and per window
  of `--window` candidates stored (how they grow with the candidates stored);
- the share of worker time idle waiting for the controller (`ClusterStats.idle_share`: the time a slot
  sat free between its evaluation finishing and its next task, over that plus the busy time), and
  whether the cluster was ever full;
- write-transaction latency p50/p99 (a store wrapper times each `session()` scope from entry to commit:
  every write the controller makes goes through one, a group commit included), write transactions per
  candidate, and the groups' sizes (outcomes per outcome transaction, candidates per transaction of
  proposals: the controller's own counts), read sessions (progress reports, stop checks);
- where the controller's wall time goes: cheap checks, proposing (selection and mutation), write
  transactions, read sessions, waiting in `poll`;
- controller memory (resident set size) at every window;
- with `--check-workers N` (a list: each configuration runs once per value), the controller's check
  pool (`check_pool.py`): its processes compute the cheap checks of the next proposals ahead, the time the
  controller waits for them, how many proposals found them done, and the CPU time the pool's processes
  spent per candidate (the cores a controller host needs beside the controller's own);
- with `--probes controller,workers`, where the numeric and stability probes run (`rejection.probes`). On
  the workers they are simulated (`SimulatedProbes`) with the rejection shares and seconds the real probes
  give on `--probe-sample` layers like those the run proposes (random layers of paper.yaml's space, or
  their mutants when resuming a full population), measured here first and reported; results/s then
  counts trained outcomes only, not the probes' rejections that come back from the workers.
Selection at the paper's population is also timed on its own (`--selection-proposals` proposals from a
population of 2,500 evaluated members, and of 5,000, the most the controller holds before it trims).

    python benchmarks/paper_scale.py                        # writes benchmarks/results/paper-scale-<machine>.md
    python benchmarks/paper_scale.py --budget 300 --workers 10,50 --skip-postgres
    python benchmarks/paper_scale.py --backends postgresql --workers 100 --postgres URL   # one backend, one size
    python benchmarks/paper_scale.py --check-workers 0,1 --label check-pool   # the controller without and with a pool
    python benchmarks/paper_scale.py --probes controller,workers --rounds 8 --label probes   # the probes' place, paired
    python benchmarks/paper_scale.py --against ../earlier --rounds 6 --label settle  # this code against another
                                                      # checkout's (git worktree add ../earlier REV), paired by round
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import contextlib
import itertools
import multiprocessing
import os
import pickle
import random
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from sqlalchemy import event

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import markdown_table, write_result
from store import fill, temporary_postgres_database

from evonorm_search import store as st
from evonorm_search.search import check_pool, rejection, selection
from evonorm_search.search import controller as controller_module
from evonorm_search.search.config import SearchConfig
from evonorm_search.search.controller import Controller, build_checks, build_strategy, create_search
from evonorm_search.search.mutation import Mutator
from evonorm_search.search.pareto import as_vector
from evonorm_search.search.simulated import LognormalDelay, SimulatedCluster, layer_scores
from evonorm_search.search.space import random_graph
from evonorm_search.statistics import paired_comparison

if TYPE_CHECKING:  # imported where used: --against runs this script with checkouts from before it existed
    from evonorm_search.search.simulated import SimulatedProbes

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "examples" / "paper.yaml"
MEDIAN_SECONDS = 90.0  # a proxy run of the paper's setup: one to two minutes
PAPER_WORKERS = 5000


# -- timing what the controller does ---------------------------------------------------------------


@dataclass
class Timings:
    """Seconds per call of each timed part of the controller, in call order."""

    calls: dict[str, list[float]] = field(default_factory=dict)
    writing: bool = False  # a write transaction is open
    inside: float = 0.0  # seconds of timed parts run inside the open write transaction
    # SQL statements sent on the controller's write engine, by where they were sent from: "outcome groups"
    # (`Controller._commit_outcomes`) or "elsewhere". A count, not a time: it does not move with the load.
    statements: Counter[str] = field(default_factory=Counter)
    sending_from: str = "elsewhere"

    def add(self, name: str, seconds: float) -> None:
        self.calls.setdefault(name, []).append(seconds)
        if self.writing:
            self.inside += seconds

    def of(self, name: str, start: int = 0) -> list[float]:
        return self.calls.get(name, [])[start:]

    def marks(self) -> dict[str, int]:
        return {name: len(samples) for name, samples in self.calls.items()}


class TimedStore:
    """The store the controller receives: every `session()` scope timed from entry to commit (or to the
    end of a read), writes and reads apart. A group of proposals is open while its proposals are made
    and checked: the timed parts run inside a write transaction are left out of its time, so each part
    is counted once. Everything else passes through."""

    def __init__(self, inner: st.Store, timings: Timings):
        self._inner = inner
        self._timings = timings

    @contextlib.contextmanager
    def session(self, *, readonly: bool = False) -> Iterator[Any]:
        if readonly:
            started = time.perf_counter()
            with self._inner.session(readonly=True) as s:
                yield s
            self._timings.add("read session", time.perf_counter() - started)
            return
        self._timings.writing, self._timings.inside = True, 0.0
        started = time.perf_counter()
        try:
            with self._inner.session() as s:
                yield s
        finally:
            self._timings.writing = False
        self._timings.add("write transaction", time.perf_counter() - started - self._timings.inside)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class TimedEvaluator:
    """The simulated cluster, with the controller's time blocked in `poll` measured."""

    def __init__(self, inner: SimulatedCluster, timings: Timings):
        self.inner = inner
        self._timings = timings

    def capacity(self) -> int:
        return self.inner.capacity()

    def submit(self, task) -> None:
        self.inner.submit(task)

    def poll(self, timeout: float):
        started = time.perf_counter()
        found = self.inner.poll(timeout)
        self._timings.add("poll", time.perf_counter() - started)
        return found

    def cancel(self, candidate_ids) -> None:
        self.inner.cancel(candidate_ids)

    def close(self) -> None:
        self.inner.close()


@contextlib.contextmanager
def timed_parts(timings: Timings) -> Iterator[None]:
    """Time the controller's cheap checks, proposals, tournaments and population trims where they are
    defined (the controller's code is not touched); put everything back afterwards."""
    patches = [
        (rejection.CheapRejections, "run", "cheap checks"),
        (selection.AgingEvolution, "propose", "propose"),
        (selection.ParetoTournament, "select", "tournament"),
        (check_pool.CheckPool, "take", "check pool wait"),
    ]
    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in patches]
    for owner, name, label in patches:
        setattr(owner, name, _timed(getattr(owner, name), timings, label))
    aging = controller_module.aging_population
    controller_module.aging_population = _timed(aging, timings, "population trim")
    commit_outcomes = Controller._commit_outcomes
    Controller._commit_outcomes = _sending_from(commit_outcomes, timings, "outcome groups")  # type: ignore[method-assign]
    try:
        yield
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)
        controller_module.aging_population = aging
        Controller._commit_outcomes = commit_outcomes  # type: ignore[method-assign]


def _sending_from(function: Callable, timings: Timings, label: str) -> Callable:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        timings.sending_from = label
        try:
            return function(*args, **kwargs)
        finally:
            timings.sending_from = "elsewhere"

    return wrapper


@contextlib.contextmanager
def counted_statements(engine: Any, timings: Timings) -> Iterator[None]:
    """Count the statements `engine` sends (executemany once), by `timings.sending_from`."""

    def count(*_: Any) -> None:
        timings.statements[timings.sending_from] += 1

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield
    finally:
        event.remove(engine, "before_cursor_execute", count)


def _timed(function: Callable, timings: Timings, label: str) -> Callable:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            timings.add(label, time.perf_counter() - started)

    return wrapper


def rss_mb() -> float:
    """This process's resident set size (Linux), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# -- one configuration -----------------------------------------------------------------------------


@dataclass
class Window:
    """The state of the run when the candidates stored reached a multiple of the window."""

    at: float
    proposed: int
    collected: int
    marks: dict[str, int]
    rss: float


@dataclass
class Run:
    backend: str
    workers: int
    check_workers: int
    round: int  # of `--rounds`: the runs of one round share the machine's moment, their differences pair
    rounds: int
    budget: int
    proposed: int
    collected: int
    state: str
    seconds: float
    proposing_seconds: float
    first_result_at: float | None
    windows: list[Window]
    timings: Timings
    cluster: Any  # ClusterStats
    rss_start: float
    rss_end: float
    stored: int = 0  # candidates the search held before this run (filled in bulk); `proposed` counts the new ones
    resume_seconds: float = float("nan")  # the controller's start: loading the stored search
    rss_resumed: float = float("nan")  # resident set size once it had loaded the stored search
    pool_hits: int = 0  # proposals whose checks the pool had computed
    pool_misses: int = 0
    pool_cpu_seconds: float = 0.0  # CPU time of the pool's processes (user + system)
    outcome_groups: Counter[int] = field(default_factory=Counter)  # outcomes per write transaction: how many
    code: str = ""  # with --against: the checkout whose evonorm_search this run imported (checkout_label)
    proposal_groups: Counter[int] = field(default_factory=Counter)  # candidates per transaction of proposals
    probes: str = "controller"  # where the numeric and stability probes ran (`rejection.probes`)


def paper_config(budget: int, probes: str = "controller") -> SearchConfig:
    """examples/paper.yaml with `budget` and the probes where `probes` says. On the controller (the default)
    the setting is left out, so a checkout from before it existed (--against) reads the same search."""
    data = yaml.safe_load(PAPER.read_text())
    rejection = {k: v for k, v in data.get("rejection", {}).items() if k != "probes"}
    if probes != "controller":
        rejection["probes"] = probes
    return SearchConfig.from_mapping(data | {"budget": budget, "rejection": rejection}, base_dir=PAPER.parent)


# -- the probes, measured for the simulated workers ------------------------------------------------


@dataclass
class ProbeSample:
    """What the real probes did on a sample of layers: how many reached each probe and how many it rejected,
    and each probe's seconds."""

    kind: str  # "random" or "mutants"
    layers: int
    reached: dict[str, int]
    rejected: dict[str, int]
    seconds: dict[str, list[float]]

    def share(self, stage: str) -> float:
        return self.rejected[stage] / max(self.reached[stage], 1)

    def simulated(self) -> SimulatedProbes:
        """The shares and median seconds, as the simulated workers play them."""
        from evonorm_search.search.simulated import SimulatedProbes

        return SimulatedProbes(
            numeric_share=self.share("numeric"),
            stability_share=self.share("stability"),
            numeric_seconds=statistics.median(self.seconds["numeric"]),
            stability_seconds=statistics.median(self.seconds["stability"]),
        )


def sample_layers(count: int, seed: int, *, mutants: bool) -> list[Any]:
    """`count` layers of paper.yaml's space as the runs propose them: random layers while the population
    fills (a fresh search below 2,500 candidates), or mutants of random layers (a resumed full population)."""
    config = paper_config(count)
    space, rng = config.build_space(), random.Random(seed)
    mutator = Mutator(space)
    layers = []
    for _ in range(count):
        layer = random_graph(space, rng)
        layers.append(mutator.mutate(layer, rng)[0] if mutants else layer)
    return layers


def measure_probes(count: int, seed: int, *, mutants: bool) -> ProbeSample:
    """paper.yaml's chain as the controller builds it (`build_checks`), on `count` sampled layers. Its
    duplicate index stays empty, so it never rejects: a sample this size holds next to no duplicates."""
    chain = build_checks(paper_config(count), rejection.DuplicateIndex())
    stages = ("numeric", "stability")
    reached, rejected = dict.fromkeys(stages, 0), dict.fromkeys(stages, 0)
    seconds: dict[str, list[float]] = {stage: [] for stage in stages}
    for layer in sample_layers(count, seed, mutants=mutants):
        verdict = chain.run(layer)
        for stage in stages:
            if stage in verdict.seconds:
                reached[stage] += 1
                seconds[stage].append(verdict.seconds[stage])
        if verdict.rejection is not None and verdict.rejection.stage in stages:
            rejected[verdict.rejection.stage] += 1
    return ProbeSample("mutants" if mutants else "random", count, reached, rejected, seconds)


def children_cpu_seconds() -> float:
    """CPU seconds of this process's children that have ended and been waited for (the pool's, once shut down)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def fill_stored_search(url: str, count: int, budget: int, seed: int, probes: str = "controller") -> int:
    """A paper.yaml search holding `count` finished candidates (bulk-inserted as store.py does), for a
    controller to resume with `budget` more. Run in a process of its own, so the rows it builds in
    memory never count in the controller's resident set."""
    with st.open_store(url) as store:
        config = paper_config(count + budget, probes).model_dump(mode="json")
        return fill(store, count, seed, config=config, finished_only=True)


def stored_search(url: str, count: int, budget: int, seed: int, probes: str = "controller") -> int:
    with cf.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as child:
        return child.submit(fill_stored_search, url, count, budget, seed, probes).result()


def run_configuration(
    backend: str,
    url: str,
    workers: int,
    check_workers: int,
    round_: int,
    args: argparse.Namespace,
    *,
    stored: int = 0,
    probes: str = "controller",
    simulated_probes: SimulatedProbes | None = None,
) -> Run:
    """One run of the controller; with `probes` "workers", `simulated_probes` says how the workers' probes
    behave (from `measure_probes`)."""
    search_id = stored_search(url, stored, args.budget, args.seed, probes) if stored else None
    inner = st.open_store(url)
    timings = Timings()
    simulated = SimulatedCluster(
        workers,
        delay=LognormalDelay(MEDIAN_SECONDS, args.sigma),
        time_factor=args.time_factor,
        failure_rate=args.failure_rate,
        loss_rate=args.loss_rate,
        seed=args.seed,
        **({"probes": simulated_probes} if simulated_probes is not None else {}),
    )
    if search_id is None:
        search_id = create_search(inner, paper_config(args.budget, probes))
    windows: list[Window] = []
    state: dict[str, Any] = {"stop_sent": False, "budget_at": None, "first_result_at": None, "resumed": None}
    started = time.perf_counter()

    def watch(progress) -> None:
        now = time.perf_counter() - started
        stats = simulated.stats()
        proposed = progress.proposed - stored
        if state["resumed"] is None:  # the first report comes once the controller has loaded the search
            state["resumed"] = (now, rss_mb())
        if state["first_result_at"] is None and trained(stats):
            state["first_result_at"] = now
        if state["budget_at"] is None and proposed >= args.budget:
            state["budget_at"] = now
        if proposed >= (len(windows) + 1) * args.window:
            windows.append(Window(now, proposed, trained(stats), timings.marks(), rss_mb()))
        if now > args.max_seconds and not state["stop_sent"]:
            state["stop_sent"] = True  # as the API stops a search: the controller cancels what is in flight
            with inner.session() as s:
                st.set_search_state(s, search_id, st.SearchState.STOPPING)

    rss_start = rss_mb()
    children_before = children_cpu_seconds()
    with timed_parts(timings), counted_statements(inner.engine, timings):
        controller = Controller(  # as run_search drives it, kept to read its group sizes afterwards
            TimedStore(inner, timings),
            search_id,
            TimedEvaluator(simulated, timings),
            progress=watch,
            poll_interval=args.poll_interval,
            check_workers=check_workers,
        )
        final = controller.run()
    seconds = time.perf_counter() - started
    simulated.close()
    inner.close()
    pool = controller.check_pool
    return Run(
        backend=backend,
        workers=workers,
        check_workers=check_workers,
        round=round_,
        rounds=args.rounds,
        budget=args.budget,
        proposed=final.proposed - stored,
        collected=trained(simulated.stats()),
        state=final.state,
        seconds=seconds,
        proposing_seconds=state["budget_at"] or seconds,
        first_result_at=state["first_result_at"],
        windows=windows,
        timings=timings,
        cluster=simulated.stats(),
        rss_start=rss_start,
        rss_end=rss_mb(),
        stored=stored,
        resume_seconds=state["resumed"][0] if state["resumed"] else float("nan"),
        rss_resumed=state["resumed"][1] if state["resumed"] else float("nan"),
        pool_hits=pool.hits if pool is not None else 0,
        pool_misses=pool.misses if pool is not None else 0,
        pool_cpu_seconds=children_cpu_seconds() - children_before,
        outcome_groups=Counter(controller.outcome_groups),
        proposal_groups=Counter(controller.proposal_groups),
        probes=probes,
    )


def trained(stats: Any) -> int:
    """Outcomes of training: those collected less the workers' probe rejections (which train nothing). A
    checkout from before the probes could run on workers has no such count."""
    return stats.collected - getattr(stats, "probe_rejected", 0)


def checkout_label(checkout: Path) -> str:
    """A checkout named by its folder and commit (+ when its tracked files differ from the commit)."""
    git = ["git", "-C", str(checkout)]
    commit = subprocess.run([*git, "rev-parse", "--short=9", "HEAD"], capture_output=True, text=True)
    if commit.returncode != 0:
        return f"{checkout.name} (not a git checkout)"
    dirty = subprocess.run([*git, "diff", "--quiet", "HEAD", "--", "evonorm_search"], capture_output=True)
    return f"{checkout.name}@{commit.stdout.strip()}{'+' if dirty.returncode else ''}"


def knows_worker_probes(checkout: Path) -> bool:
    """Whether `checkout`'s evonorm_search has the probes' place as a setting (`rejection.probes`), asked
    of a process importing it, as `run_in_checkout` would run it."""
    with tempfile.TemporaryDirectory(prefix="evonorm-scale-probe-") as scratch:
        asked = subprocess.run(
            [sys.executable, "-c", "from evonorm_search.enums import ProbeSite"],
            env={**os.environ, "PYTHONPATH": str(checkout)},
            cwd=scratch,
            capture_output=True,
        )
    return asked.returncode == 0


def run_in_checkout(checkout: Path, *args: Any, **kwargs: Any) -> Run:
    """`run_configuration` in a fresh Python process whose evonorm_search comes from `checkout` (first on its
    PYTHONPATH, which the check pool's processes inherit): --against runs both checkouts alike, each run in
    a process of its own. Refuses a run that imported the package from anywhere else."""
    with tempfile.TemporaryDirectory(prefix="evonorm-scale-job-") as scratch:
        job = Path(scratch) / "job.pickle"
        job.write_bytes(pickle.dumps((args, kwargs)))
        inherited = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        path = os.pathsep.join([str(checkout), str(Path(__file__).resolve().parent), *inherited])
        code = f"import paper_scale; paper_scale.run_job({str(job)!r})"
        # From the scratch folder: `python -c` puts the working directory first on its path.
        subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": path}, cwd=scratch, check=True)
        run, package = pickle.loads(job.with_suffix(".done").read_bytes())
    if not Path(package).resolve().is_relative_to(checkout.resolve()):
        raise SystemExit(f"the run meant for {checkout} imported evonorm_search from {package}")
    run.code = checkout_label(checkout)
    return run


def run_job(job: str) -> None:
    """The child's side of `run_in_checkout`: one configuration, and the file its package came from."""
    import evonorm_search

    args, kwargs = pickle.loads(Path(job).read_bytes())
    run = run_configuration(*args, **kwargs)
    Path(job).with_suffix(".done").write_bytes(pickle.dumps((run, evonorm_search.__file__)))


# -- the duplicate index at a million candidates -------------------------------------------------------


def index_memory(counts: list[int], budget: int, seed: int) -> list[list[object]]:
    """The memory the duplicate index holds after `count` candidates (a canonical hash and a fingerprint
    each, as the controller adds them), for the exact in-memory index and for the controller's bounded
    one (`BoundedDuplicateIndex`, sized for `budget` candidates): traced Python allocations, in MiB.
    Every candidate is new here, the most the index can hold; its store look-ups are not exercised."""
    rows = []
    for count in counts:
        sizes = []
        for make in (rejection.DuplicateIndex, lambda: rejection.BoundedDuplicateIndex(budget, lambda c, k: None)):
            rng = random.Random(seed)
            tracemalloc.start()
            index = make()
            for candidate_id in range(count):
                index.add(candidate_id, f"{rng.getrandbits(256):064x}", f"{rng.getrandbits(256):064x}")
            current, _ = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            sizes.append(current / 2**20)
            del index
        rows.append([f"{count:,}", f"{sizes[0]:.1f}", f"{sizes[1]:.1f}"])
    return rows


# -- selection at the paper's population -----------------------------------------------------------


def time_selection(population: int, proposals: int, seed: int) -> list[list[object]]:
    """Propose from `population` evaluated members (and from twice as many, the most the controller
    keeps before trimming) as the controller does: trim to the newest `population`, tournament, mutate."""
    config = paper_config(1000)
    objectives = config.objectives_spec()
    spec = config.evaluation_spec()
    space = config.build_space()
    rng = random.Random(seed)
    members = []
    for birth in range(2 * population):
        graph = random_graph(space, rng)
        values = as_vector(layer_scores(graph.to_dict(), spec, seed), objectives)
        members.append(selection.Member(birth + 1, birth, graph, values))
    strategy = build_strategy(config, objectives)
    rows = []
    for held in (population, 2 * population):
        trim, tournament, propose = [], [], []
        for birth in range(proposals):
            proposal_rng = controller_module.candidate_rng(seed, 10**6 + birth)
            t0 = time.perf_counter()
            current = selection.aging_population(members[:held], population)
            t1 = time.perf_counter()
            strategy.selection.select(current, random.Random(birth))
            t2 = time.perf_counter()
            strategy.propose(current, 10**6 + birth, proposal_rng)
            t3 = time.perf_counter()
            trim.append(t1 - t0)
            tournament.append(t2 - t1)
            propose.append(t3 - t2)
        rows.append(
            [
                f"{held:,}",
                ms(statistics.median(trim)),
                ms(statistics.median(tournament)),
                ms(statistics.median(propose)),
                ms(statistics.median([a + b for a, b in zip(trim, propose, strict=True)])),
            ]
        )
    return rows


# -- reporting -------------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def percentile(samples: list[float], q: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def group_sizes(histogram: Counter[int]) -> str:
    """p50 / max of group sizes given as {size: how many groups}."""
    if not histogram:
        return "none"
    sizes = sorted(histogram.elements())
    return f"{sizes[len(sizes) // 2]} / {sizes[-1]}"


def mean_or_nan(samples: list[float]) -> float:
    return statistics.fmean(samples) if samples else float("nan")


def results_per_second(run: Run) -> float:
    """Outcomes committed per second from the first one to the end of the run (the sustained rate: the
    cluster's first wave, before any result can exist, is left out)."""
    if run.first_result_at is None or run.seconds <= run.first_result_at:
        return float("nan")
    return run.collected / (run.seconds - run.first_result_at)


def cluster_busy(run: Run) -> float:
    """The share of all the cluster's worker time (workers x the run's wall time) spent evaluating."""
    return run.cluster.busy_seconds / (run.workers * run.seconds)


def summary_row(run: Run) -> list[object]:
    t = run.timings
    writes = t.of("write transaction")
    tournaments = t.of("tournament")
    full = (
        "never" if run.cluster.full_at is None else f"after {run.cluster.full_at - run.cluster.first_submit_at:.0f} s"
    )
    return [
        *run_key(run),
        f"{run.proposed:,}" + ("" if run.state == "completed" else f" ({run.state})"),
        f"{run.collected:,}",
        f"{run.seconds:.0f}",
        f"{results_per_second(run):.1f}",
        f"{run.proposed / run.proposing_seconds:.1f}",
        f"{run.first_result_at:.0f}" if run.first_result_at is not None else "none",
        f"{run.cluster.idle_share:.0%}",
        f"{cluster_busy(run):.0%}",
        full,
        f"{ms(percentile(writes, 0.5))} / {ms(percentile(writes, 0.99))}",
        f"{len(writes) / max(run.proposed, 1):.2f}",
        group_sizes(run.outcome_groups),
        f"{statements_per_outcome(run):.2f}",
        group_sizes(run.proposal_groups),
        f"{ms(mean_or_nan(tournaments))} ({len(tournaments):,})" if tournaments else "not reached",
        f"{run.rss_start:.0f} → {run.rss_end:.0f}",
    ]


def statements_per_outcome(run: Run) -> float:
    """SQL statements the outcome groups sent, per outcome they wrote."""
    outcomes = sum(size * groups for size, groups in run.outcome_groups.items())
    return run.timings.statements["outcome groups"] / outcomes if outcomes else float("nan")


def run_key(run: Run) -> list[object]:
    code = [run.code] if run.code else []
    key: list[object] = [run.backend, f"{run.workers:,}", *code, run.check_workers, run.probes]
    return [*key, run.round + 1] if run.rounds > 1 else key


def key_headers(runs: list[Run]) -> list[str]:
    code = ["code"] if runs[0].code else []
    return ["backend", "workers", *code, "check workers", "probes on"] + (["round"] if runs[0].rounds > 1 else [])


Setting = tuple[str, int, str]


def setting_of(run: Run) -> Setting:
    """What the paired table compares: the code a run imported (with --against), its check pool and where
    its probes ran."""
    return run.code, run.check_workers, run.probes


def setting_text(setting: Setting, settings: list[Setting]) -> str:
    """A setting named by what varies among `settings`."""
    code, check_workers, probes = setting
    parts = [code] if len({s[0] for s in settings}) > 1 else []
    parts += [f"{check_workers} check workers"] if len({s[1] for s in settings}) > 1 else []
    parts += [f"probes on the {probes}"] if len({s[2] for s in settings}) > 1 else []
    return ", ".join(parts) or f"{check_workers} check workers"


def paired_rows(runs: list[Run]) -> list[list[object]]:
    """Per backend and worker count, each setting (the code with --against, the check pool) against the
    first over the rounds: results/s sustained per round, the median of the paired differences with their
    range, how many rounds it was ahead, and the Wilcoxon signed-rank p-value."""
    rows = []
    settings = list(dict.fromkeys(setting_of(r) for r in runs))
    for backend, workers, stored in dict.fromkeys((r.backend, r.workers, r.stored) for r in runs):
        of = {
            setting: sorted(
                (
                    r
                    for r in runs
                    if (r.backend, r.workers, r.stored, *setting_of(r)) == (backend, workers, stored, *setting)
                ),
                key=lambda r: r.round,
            )
            for setting in settings
        }
        base = [results_per_second(r) for r in of[settings[0]]]
        for setting in settings[1:]:
            other = [results_per_second(r) for r in of[setting]]
            if len(other) != len(base) or len(base) < 2:
                continue
            comparison = paired_comparison(other, base)
            differences = comparison.differences
            p = "no test" if comparison.p_value is None else f"{comparison.p_value:.3g}"
            rows.append(
                [
                    backend,
                    f"{workers:,}" + (f" resuming {stored:,}" if stored else ""),
                    f"{setting_text(setting, settings)} vs {setting_text(settings[0], settings)}",
                    f"{statistics.median(other):.1f} [{min(other):.1f}, {max(other):.1f}]",
                    f"{statistics.median(base):.1f} [{min(base):.1f}, {max(base):.1f}]",
                    f"{statistics.median(differences):+.1f} [{min(differences):+.1f}, {max(differences):+.1f}]",
                    _interval(comparison.median_difference),
                    f"{comparison.wins} of {len(differences)}",
                    p,
                    comparison.verdict,
                ]
            )
    return rows


def _interval(median: Any) -> str:
    if median.low is None or median.high is None:
        return "none (fewer than 8 rounds)"
    return f"[{median.low:+.1f}, {median.high:+.1f}]"


SUMMARY_HEADERS = [
    "candidates stored",
    "results",
    "wall s",
    "results/s sustained",
    "proposals/s",
    "first result committed at s",
    "worker time idle",
    "cluster busy",
    "cluster full",
    "write txn p50 / p99 ms",
    "write txns per candidate",
    "outcomes per outcome txn p50 / max",
    "statements per outcome",
    "candidates per proposal txn p50 / max",
    "tournament ms (calls)",
    "RSS MiB start → end",
]

PARTS = ["cheap checks", "check pool wait", "propose", "write transaction", "read session", "poll"]


def breakdown_row(run: Run) -> list[object]:
    """Where the controller's wall time went, as shares of the run."""
    totals = {part: sum(run.timings.of(part)) for part in PARTS}
    rest = run.seconds - sum(totals.values())
    per_candidate = {part: totals[part] / max(run.proposed, 1) for part in PARTS}
    cells = [f"{totals[p] / run.seconds:.0%} ({ms(per_candidate[p])})" for p in PARTS]
    return [*run_key(run), *cells, f"{rest / run.seconds:.0%}"]


def pool_row(run: Run) -> list[object]:
    """What the check pool did: proposals that found their checks done ahead, and its processes' CPU time."""
    asked = run.pool_hits + run.pool_misses
    return [
        *run_key(run),
        f"{run.pool_hits:,} of {asked:,} ({run.pool_hits / max(asked, 1):.0%})",
        ms(run.pool_cpu_seconds / max(run.proposed, 1)),
        f"{run.pool_cpu_seconds / run.seconds:.2f}",
    ]


def ceiling_row(run: Run) -> list[object]:
    """What the controller could sustain if it never waited: its busy time per candidate stored (the run's
    wall time less its time blocked in `poll`) caps candidates/s; the share of candidates sent to training
    turns that into results/s, and results/s x 90 s is how many 90 s workers one controller keeps busy."""
    busy = run.seconds - sum(run.timings.of("poll"))
    per_candidate = busy / max(run.proposed, 1)
    trained = sent_to_training(run)
    candidates_per_second = 1 / per_candidate
    results = candidates_per_second * trained
    return [
        *run_key(run),
        ms(per_candidate),
        f"{trained:.0%}",
        f"{candidates_per_second:.0f}",
        f"{results:.0f}",
        f"{results * MEDIAN_SECONDS:,.0f}",
    ]


def sent_to_training(run: Run) -> float:
    """The share of candidates stored that trained: submitted to the cluster, less those the workers'
    probes rejected first."""
    return (run.cluster.submitted - getattr(run.cluster, "probe_rejected", 0)) / max(run.proposed, 1)


def spare_cores_row(run: Run) -> list[object]:
    """Extrapolated, not measured: a run with a check pool, had its pool never kept the controller
    waiting (enough cores for it beside the controller's): the controller's own time per candidate (busy
    less its wait for the pool) caps candidates/s, and the pool's CPU time per candidate says how many
    cores the pool then needs to keep up."""
    busy = run.seconds - sum(run.timings.of("poll")) - sum(run.timings.of("check pool wait"))
    own = busy / max(run.proposed, 1)
    trained = sent_to_training(run)
    results = trained / own
    pool_per_candidate = run.pool_cpu_seconds / max(run.proposed, 1)
    return [
        *run_key(run),
        ms(own),
        f"{1 / own:.0f}",
        f"{results:.0f}",
        f"{results * MEDIAN_SECONDS:,.0f}",
        f"{pool_per_candidate / own:.1f}",
    ]


def window_rows(run: Run) -> list[list[object]]:
    rows = []
    previous = Window(0.0, 0, 0, {}, run.rss_start)
    for w in run.windows:
        span = max(w.at - previous.at, 1e-9)
        writes = run.timings.of("write transaction")[
            previous.marks.get("write transaction", 0) : w.marks.get("write transaction", 0)
        ]
        rows.append(
            [
                *run_key(run),
                f"{previous.proposed:,} to {w.proposed:,}",
                f"{(w.proposed - previous.proposed) / span:.1f}",
                f"{(w.collected - previous.collected) / span:.1f}",
                f"{ms(percentile(writes, 0.5))} / {ms(percentile(writes, 0.99))}",
                f"{w.rss:.0f}",
            ]
        )
        previous = w
    return rows


def stored_section(runs: list[Run]) -> list[str]:
    """The controller resuming searches that already hold many candidates: what loading them costs and
    whether its memory grows with them."""
    if not runs:
        return []
    rows = [
        [
            r.backend,
            f"{r.workers:,}",
            *([r.code] if r.code else []),
            f"{r.stored:,}",
            f"{r.resume_seconds:.1f}",
            f"{r.rss_resumed:.0f}",
            f"{r.rss_end:.0f}",
            f"{r.proposed:,}",
            f"{results_per_second(r):.1f}",
            f"{ms(percentile(r.timings.of('write transaction'), 0.5))} / "
            f"{ms(percentile(r.timings.of('write transaction'), 0.99))}",
        ]
        for r in runs
    ]
    return [
        "## The controller on a search that already holds many candidates\n\n"
        "A paper.yaml search filled in bulk with N finished candidates (store.py's funnel, real random layers, "
        "in a process of its own), then resumed by the controller for the budget above. Resumed at: seconds "
        "from the controller's start to its first report (it loads the duplicate index and the population "
        "from the store). RSS: the controller process's resident set once resumed and at the end (every "
        "earlier run of this script was in the same process, so compare the rows with each other).\n\n"
        + markdown_table(
            [
                "backend",
                "workers",
                *(["code"] if runs[0].code else []),
                "candidates stored before",
                "resumed at s",
                "RSS MiB resumed",
                "RSS MiB end",
                "new candidates",
                "results/s sustained",
                "write txn p50 / p99 ms",
            ],
            rows,
        )
    ]


def paired_section(runs: list[Run]) -> list[str]:
    rows = paired_rows(runs)
    if not rows:
        return []
    return [
        "## Settings paired over rounds\n\n"
        "Each round runs every setting (the code with --against, the check pool) back to back on fresh "
        "databases, so a round's runs share the machine's moment and their difference pairs. Results/s "
        "sustained per setting: median [min, max] over the rounds; the difference is the setting's less the "
        "first's, per round.\n\n"
        + markdown_table(
            [
                "backend",
                "workers",
                "setting",
                "results/s (setting)",
                "results/s (first)",
                "difference median [min, max]",
                "bootstrap 95% interval of the median difference",
                "setting ahead",
                "Wilcoxon p",
                "verdict",
            ],
            rows,
        )
    ]


def probe_section(samples: dict[str, ProbeSample]) -> list[str]:
    """How the simulated workers play the probes, and the real probes' measurement it comes from."""
    if not samples:
        return []
    rows = []
    for sample in samples.values():
        cells: list[object] = [sample.kind, sample.layers]
        for stage in ("numeric", "stability"):
            times = sample.seconds[stage]
            cells += [
                f"{sample.rejected[stage]} of {sample.reached[stage]} ({sample.share(stage):.1%})",
                f"{ms(statistics.median(times))} / {ms(statistics.fmean(times))}",
            ]
        rows.append(cells)
    headers = ["layers", "sampled", "numeric rejects", "numeric ms median / mean"]
    headers += ["stability rejects", "stability ms median / mean"]
    return [
        "## The probes on the workers\n\n"
        "Runs with the probes on the workers (`rejection.probes: workers`) play them as `SimulatedProbes`: each "
        "rejects a layer with the share below (drawn from a hash of the layer) after the median seconds below, "
        "times the time factor. The shares and seconds are the real probes' (paper.yaml's chain, in this process, "
        "before the runs) on the sampled layers: random layers of the space for fresh searches (which propose "
        "random layers until the population of 2,500 fills), mutants of random layers for resumed ones. A share "
        "is of the layers that reached the probe (passed the static check, and the numeric probe for stability). "
        "With the probes on the controller, the same work runs in the controller's thread (its 'cheap checks').\n\n"
        + markdown_table(headers, rows)
    ]


def machine_load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min)"


def report(
    runs: list[Run],
    stored_runs: list[Run],
    selection_rows: list[list[object]],
    index_rows: list[list[object]],
    args: argparse.Namespace,
    loads: list[str],
    samples: dict[str, ProbeSample] | None = None,
) -> str:
    demand = {w: w / (MEDIAN_SECONDS * args.time_factor) for w in args.workers}
    parts = [
        f"examples/paper.yaml (population 2,500, tournament 25, its mutations and rejections, 3 architectures), "
        f"budget {args.budget:,} candidates per configuration (stopped after {args.max_seconds:.0f} s if not "
        f"spent). Simulated evaluations: lognormal, median {MEDIAN_SECONDS:.0f} s, sigma {args.sigma}, times "
        f"a time factor of {args.time_factor} (median {MEDIAN_SECONDS * args.time_factor:.2f} s of wall time); "
        f"failure rate {args.failure_rate}, worker-loss rate {args.loss_rate} (2 retries). With that factor the "
        "workers ask for "
        + ", ".join(f"{demand[w]:,.0f} results/s at {w:,} workers" for w in args.workers)
        + f"; the paper's cluster ({PAPER_WORKERS:,} workers, {MEDIAN_SECONDS:.0f} s) asks for "
        f"{PAPER_WORKERS / MEDIAN_SECONDS:.0f}. The scale reached is {max(r.proposed for r in runs):,} candidates "
        f"stored per search (growth per window of {args.window:,} below; the store's write path at 100k "
        "candidates is in store-cpu2.md).",
        "Loads while running: " + "; ".join(loads) + ". No cache serves any figure: every evaluation is "
        "simulated, every proposal, check and transaction is made by the run itself.",
        "## Throughput\n\n" + markdown_table([*key_headers(runs), *SUMMARY_HEADERS], [summary_row(r) for r in runs]),
        "Results/s sustained: outcomes committed from the first one to the end of the run. Proposals/s: candidates "
        "stored until the budget was spent. Worker time idle: the share of worker time a slot sat free between "
        "its evaluation finishing and its next task (the initial fill and the final drain not counted: where the "
        "controller never filled the cluster, no slot was ever refilled and this share says nothing). Cluster "
        "busy: evaluation time over workers x the run's wall time (fill and drain included). Write "
        "transaction: one `Store.session()` scope, timed from entry through commit (a group of outcomes or of "
        "proposals is one). Outcomes per outcome txn: the outcomes one poll returned are written in groups, "
        "each one transaction. Statements per outcome: the SQL statements those groups sent, per outcome written (a "
        "count, so the load does not move it). Candidates per proposal txn: the new candidates of a fill's groups. Tournament: "
        "`ParetoTournament.select`; 'not reached' when the population (2,500) never filled within the budget.",
        *paired_section(list({id(r): r for r in [*runs, *stored_runs]}.values())),
        *probe_section(samples or {}),
        "## Where the controller's time goes\n\nShare of the run's wall time (and ms per candidate stored).\n\n"
        + markdown_table([*key_headers(runs), *PARTS, "other"], [breakdown_row(r) for r in runs])
        + "\n\nCheap checks: the chain in the controller's thread (with a check pool, only the duplicate index's "
        "lookups for a proposal the pool had checked). Check pool wait: the controller waiting for the pool's "
        "answer for the layer it proposed.",
        "## The check pool\n\nCheck workers: processes computing the cheap checks of the next proposals ahead "
        "(0: none, the checks run in the controller's thread). Found done: proposals whose checks the pool had "
        "computed (the rest were checked in the controller). Pool CPU: user and system time of the pool's "
        "processes, per candidate stored and as cores busy over the run.\n\n"
        + markdown_table(
            [*key_headers(runs), "found done", "pool CPU ms per candidate", "pool cores busy"],
            [pool_row(r) for r in runs if r.check_workers > 0],
        ),
        "## What one controller can drive\n\n"
        "The controller's busy time per candidate stored (wall time less its time blocked in `poll`) caps how "
        "many candidates it stores a second; the share sent to training (the rest were rejected by the cheap "
        f"checks) turns that into results a second, and results/s x {MEDIAN_SECONDS:.0f} s is how many workers "
        f"with {MEDIAN_SECONDS:.0f} s evaluations one controller keeps busy (the paper: {PAPER_WORKERS:,}).\n\n"
        + markdown_table(
            [
                *key_headers(runs),
                "controller ms per candidate",
                "sent to training",
                "candidates/s ceiling",
                "results/s ceiling",
                f"{MEDIAN_SECONDS:.0f} s workers kept busy",
            ],
            [ceiling_row(r) for r in runs],
        )
        + "\n\nWith a check pool and cores to spare for it (extrapolated from the runs with a pool, not "
        "measured: this machine's cores are shared by the controller, its pool and the database). The "
        "controller's own time per candidate is its busy time less its wait for the pool; the pool's "
        "cores are its CPU time per candidate over that.\n\n"
        + markdown_table(
            [
                *key_headers(runs),
                "controller's own ms per candidate",
                "candidates/s ceiling",
                "results/s ceiling",
                f"{MEDIAN_SECONDS:.0f} s workers kept busy",
                "pool cores needed",
            ],
            [spare_cores_row(r) for r in runs if r.check_workers > 0],
        ),
        *stored_section(stored_runs),
        "## Growth with the candidates stored\n\n"
        + markdown_table(
            [*key_headers(runs), "candidates", "proposals/s", "results/s", "write txn p50 / p99 ms", "RSS MiB"],
            [row for r in runs for row in window_rows(r)],
        ),
        f"## Selection at the paper's population\n\n{args.selection_proposals} proposals each, median ms; "
        f"members held = what the controller keeps before trimming to the newest {args.selection_population:,} "
        "(it trims when it holds twice that).\n\n"
        + markdown_table(
            [
                "members held",
                "trim (sort) ms",
                "tournament ms",
                "propose (tournament + mutation) ms",
                "trim + propose ms",
            ],
            selection_rows,
        ),
    ]
    if index_rows:
        parts.append(
            "## The duplicate index at a million candidates\n\n"
            "Memory the controller's duplicate index holds after N candidates, each with a new canonical hash and "
            "fingerprint (traced Python allocations, MiB). Exact: every key in a dict, as the controller kept them "
            f"before. Bounded: the controller's index now, sized for {max(args.index_keys):,} candidates: a Bloom "
            "filter per key (1% false positives), the newest 16,384 keys of each exactly, the store for the rest. "
            "Measured on the index alone: the runs above store far fewer candidates.\n\n"
            + markdown_table(["candidates", "exact MiB", "bounded MiB"], index_rows)
        )
    return "\n\n".join(parts)


@contextlib.contextmanager
def fresh_store(backend: str, name: str, args: argparse.Namespace, directory: str) -> Iterator[str]:
    """An empty database per configuration, so no run reads tables another run filled."""
    if backend == "sqlite":
        yield f"sqlite:///{directory}/scale-{name}.db"
        return
    url, drop = temporary_postgres_database(args.postgres)
    try:
        yield url
    finally:
        drop()


BACKENDS = {"sqlite": "SQLite (WAL)", "postgresql": "PostgreSQL"}


def one_run(
    backend: str,
    workers: int,
    check_workers: int,
    round_: int,
    checkout: Path | None,
    args: argparse.Namespace,
    directory: str,
    loads: list[str],
    stored: int = 0,
    probes: str = "controller",
    samples: dict[str, ProbeSample] | None = None,
) -> Run:
    """One configuration on a fresh database: in this process, or with --against in a process importing
    `checkout`'s package; `stored`: resuming a search bulk-filled with that many candidates; `probes`: where
    the probes run (on the workers, played as `samples` measured them: mutants when resuming, else random)."""
    code = f"{checkout.name}, " if checkout else ""
    resuming = f"resuming {stored:,}, " if stored else ""
    where = f", probes on the {probes}" if len(args.probes) > 1 else ""
    label = (
        f"{BACKENDS[backend]} {workers:,} ({resuming}{code}check workers {check_workers}{where}, round {round_ + 1})"
    )
    loads.append(f"{label}: {machine_load()} at start")
    name = f"{workers}-{check_workers}-{round_}-{args.checkouts.index(checkout)}-{stored}-{probes}"
    kwargs: dict[str, Any] = {"stored": stored}
    if probes != "controller":
        assert samples is not None, "probes on the workers need the measured sample"
        kwargs |= {"probes": probes, "simulated_probes": samples["mutants" if stored else "random"].simulated()}
    with fresh_store(backend, name, args, directory) as url:
        if checkout is None:
            return run_configuration(BACKENDS[backend], url, workers, check_workers, round_, args, **kwargs)
        return run_in_checkout(checkout, BACKENDS[backend], url, workers, check_workers, round_, args, **kwargs)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=int, default=2000)
    parser.add_argument("--workers", type=lambda s: [int(w) for w in s.split(",")], default=[100, 1000, 5000])
    parser.add_argument(
        "--check-workers",
        type=lambda s: [int(w) for w in s.split(",")],
        default=[0],
        help="comma-separated: processes of the controller's check pool, one run per value (0: no pool)",
    )
    parser.add_argument("--time-factor", type=float, default=0.02)
    parser.add_argument("--sigma", type=float, default=0.5)
    parser.add_argument("--failure-rate", type=float, default=0.01)
    parser.add_argument("--loss-rate", type=float, default=0.01)
    parser.add_argument("--window", type=int, default=500)
    parser.add_argument("--max-seconds", type=float, default=240.0)
    parser.add_argument("--poll-interval", type=float, default=0.5)
    parser.add_argument("--selection-proposals", type=int, default=200)
    parser.add_argument("--selection-population", type=int, default=2500)
    parser.add_argument(
        "--stored",
        type=lambda s: [int(n) for n in s.split(",") if n],
        default=[],
        help="comma-separated counts: also resume searches already holding that many candidates (bulk-filled), "
        "with each --workers and no check pool",
    )
    parser.add_argument("--stored-only", action="store_true", help="only the --stored runs (the tables then show them)")
    parser.add_argument(
        "--rounds", type=int, default=1, help="runs of every configuration, interleaved; 2 or more pair the settings"
    )
    parser.add_argument(
        "--index-keys",
        type=lambda s: [int(n) for n in s.split(",") if n],
        default=[10_000, 100_000, 1_000_000],
        help="comma-separated candidate counts at which the duplicate index's memory is measured ('': not measured)",
    )
    parser.add_argument(
        "--against",
        type=Path,
        default=None,
        help="another checkout (a git worktree of an earlier commit): every configuration also runs with its "
        "evonorm_search, first in each round, each run in a process of its own, paired with this checkout's",
    )
    parser.add_argument(
        "--probes",
        type=lambda s: s.split(","),
        default=["controller"],
        help="comma-separated: where the numeric and stability probes run (controller, workers), one run per value",
    )
    parser.add_argument(
        "--probe-sample",
        type=int,
        default=300,
        help="layers the real probes are measured on, to play them on the simulated workers (--probes workers)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--backends", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql")
    parser.add_argument(
        "--label", default="", help="names the results file paper-scale-LABEL-<machine>.md, beside earlier runs"
    )
    args = parser.parse_args()
    if args.label and not re.fullmatch(r"[a-z0-9-]+", args.label):
        parser.error(f"--label {args.label!r}: use lower-case letters, digits and hyphens")
    args.backends = [b for b in args.backends.split(",") if not (args.skip_postgres and b == "postgresql")]
    unknown = set(args.backends) - set(BACKENDS)
    if unknown:
        parser.error(f"unknown backends {sorted(unknown)}; choose from {sorted(BACKENDS)}")
    if args.stored_only and not args.stored:
        parser.error("--stored-only needs --stored")
    if args.rounds < 1:
        parser.error(f"--rounds {args.rounds}: at least 1")
    sites = ["controller", "workers"]
    if not args.probes or len(set(args.probes)) != len(args.probes) or not set(args.probes) <= set(sites):
        parser.error(f"--probes {','.join(args.probes)}: each of {', '.join(sites)} at most once")
    if args.probe_sample < 10:
        parser.error(f"--probe-sample {args.probe_sample}: at least 10 layers")
    if any(w < 0 for w in args.check_workers):
        parser.error(f"--check-workers {args.check_workers}: each must be 0 or more")
    if args.against is not None and not (args.against / "evonorm_search" / "__init__.py").is_file():
        parser.error(f"--against {args.against}: not a checkout of this project (no evonorm_search/__init__.py)")
    if args.against is not None and "workers" in args.probes and not knows_worker_probes(args.against):
        parser.error(
            f"--probes workers: the checkout at {args.against} cannot run the probes on the workers (its "
            "evonorm_search has no enums.ProbeSite); compare it with the probes on the controller: leave --probes out"
        )
    # Checkouts each configuration runs with: None is this process's own import.
    args.checkouts = [None] if args.against is None else [args.against.resolve(), ROOT]
    return args


def main() -> None:
    args = parse_args()
    runs: list[Run] = []
    loads: list[str] = []
    samples = {}
    if "workers" in args.probes:  # measured before any run, with the machine as the runs find it
        kinds = ([] if args.stored_only else ["random"]) + (["mutants"] if args.stored else [])
        samples = {kind: measure_probes(args.probe_sample, args.seed, mutants=kind == "mutants") for kind in kinds}
    with tempfile.TemporaryDirectory(prefix="evonorm-scale-") as directory:
        for backend in [] if args.stored_only else args.backends:
            for workers in args.workers:
                for round_ in range(args.rounds):
                    for checkout, check_workers, probes in itertools.product(
                        args.checkouts, args.check_workers, args.probes
                    ):
                        run = one_run(
                            backend,
                            workers,
                            check_workers,
                            round_,
                            checkout,
                            args,
                            directory,
                            loads,
                            0,
                            probes,
                            samples,
                        )
                        print(summary_row(run), flush=True)
                        runs.append(run)
    stored_runs = []
    with tempfile.TemporaryDirectory(prefix="evonorm-scale-") as directory:
        for count, backend, workers in itertools.product(args.stored, args.backends, args.workers):
            for round_ in range(args.rounds):
                for checkout, probes in itertools.product(args.checkouts, args.probes):
                    run = one_run(
                        backend,
                        workers,
                        0,
                        round_,
                        checkout,
                        args,
                        directory,
                        loads,
                        count,
                        probes,
                        samples,
                    )
                    print(stored_section([run])[0].splitlines()[-1], flush=True)
                    stored_runs.append(run)
    selection_rows = time_selection(args.selection_population, args.selection_proposals, args.seed)
    index_rows = index_memory(args.index_keys, max(args.index_keys), args.seed) if args.index_keys else []
    body = report(runs or stored_runs, stored_runs, selection_rows, index_rows, args, loads, samples)
    name = f"paper-scale-{args.label}" if args.label else "paper-scale"
    path = write_result(name, "Paper scale: one controller against a simulated cluster", body)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
