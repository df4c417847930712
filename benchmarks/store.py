"""The Pareto database at 100,000 candidates: how fast the service's reads answer, on SQLite and PostgreSQL.

Fills one search with 100,000 candidates (a realistic rejection funnel, lineage from an aging population,
evaluations on 3 architectures, objectives = accuracy per architecture), builds the derived data, then
times each read the API makes (status summary, candidate pages, Pareto fronts, candidate detail) in its
own read-only session, as a request would. Baselines, measured in the same run, answer the same question
without the derived data (GROUP BY scans, JSON-extract sorts, non-dominated filtering of every evaluated
candidate). Also times the controller's write path (a new candidate through to completion) on the full
database. Target: every read's p99 <= 20 ms on this machine. Writes benchmarks/results/store-<machine>.md.

    python benchmarks/store.py [--candidates N] [--postgres URL] [--skip-postgres]
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from _common import markdown_table, write_result
from sqlalchemy import create_engine, func, insert, make_url, select, text, update

from evonorm_search import store as st
from evonorm_search.search.space import SearchSpace, random_graph
from evonorm_search.store import CandidateStatus as C
from evonorm_search.store import RejectionStage as R
from evonorm_search.store.models import Base, Candidate, Evaluation, Search
from evonorm_search.store.objectives import non_dominated
from evonorm_search.store.types import utcnow

ARCHITECTURES = ("resnet", "mobilenetv2", "efficientnet")
OBJECTIVES = [{"name": f"accuracy_{a}", "direction": "max"} for a in ARCHITECTURES]
NAMES = [o["name"] for o in OBJECTIVES]
POPULATION = 100
TARGET_P99_MS = 20.0
# The funnel: the share of candidates ending in each state (the paper rejects most candidates cheaply).
FUNNEL = [
    ("evaluated", 0.50),
    ("rejected:static", 0.12),
    ("rejected:duplicate", 0.10),
    ("rejected:numeric", 0.08),
    ("rejected:stability", 0.07),
    ("rejected:quality", 0.10),
    ("failed", 0.02),
    ("running", 0.005),
    ("pending", 0.005),
]


# -- filling ---------------------------------------------------------------------------------------------


def graph_pool(size: int, rng: random.Random) -> list[tuple[dict, str]]:
    """Real random layers (graph JSON and DSL text), reused across candidates: the store never parses them."""
    space = SearchSpace()
    graphs = [random_graph(space, rng) for _ in range(size)]
    return [(g.to_dict(), g.to_text()) for g in graphs]


def fill(store: st.Store, count: int, seed: int, *, config: dict | None = None, finished_only: bool = False) -> int:
    """Bulk-insert `count` candidates with evaluations into a new search, then build its derived data.
    `config`: the search's stored configuration (a controller can then resume it); `finished_only`: no
    candidate left running or pending (a resuming controller would evaluate those first)."""
    rng = random.Random(seed)
    np_rng = np.random.default_rng(seed)
    pool = graph_pool(200, rng)
    with store.session() as s:
        search = st.create_search(
            s, name="benchmark", config=config or {"population": POPULATION}, objectives=OBJECTIVES
        )
        search_id = search.id
        base_id = (s.execute(select(func.max(Candidate.id))).scalar_one() or 0) + 1
    funnel = [(o, w) for o, w in FUNNEL if not (finished_only and o in ("running", "pending"))]
    outcomes = rng.choices([o for o, _ in funnel], weights=[w for _, w in funnel], k=count)
    start = utcnow()
    evaluated_ids: list[int] = []
    candidates, evaluations = [], []
    skill = np_rng.beta(4, 3, size=count)  # a latent quality; accuracies across architectures correlate with it
    for birth, outcome in enumerate(outcomes):
        candidate_id = base_id + birth
        graph, dsl = pool[birth % len(pool)]
        parent = rng.choice(evaluated_ids[-POPULATION:]) if evaluated_ids else None
        status, _, stage = outcome.partition(":")
        finished = None if status in ("running", "pending") else start
        row = {
            "id": candidate_id,
            "search_id": search_id,
            "birth": birth,
            "graph": graph,
            "dsl": dsl,
            "canonical_hash": uuid.UUID(int=rng.getrandbits(128)).hex * 2,
            "fingerprint": uuid.UUID(int=rng.getrandbits(128)).hex * 2,
            "parent_id": parent,
            "mutation": {"kind": rng.choice(["replace_op", "rewire", "insert", "delete"]), "node": rng.randrange(8)},
            "status": C(status),
            "rejection_stage": R(stage) if stage else None,
            "rejection_reason": f"{stage} check failed" if stage else None,
            "objectives": None,
            "check_seconds": {"static": 0.001, "duplicate": 0.0004, "numeric": 0.004, "stability": 0.02},
            "attempt": 0,
            "created_at": start,
            "updated_at": start,
            "heartbeat_at": start,
            "finished_at": finished,
        }
        if status == "evaluated":
            accuracies = np.clip(skill[birth] + np_rng.normal(0, 0.05, size=3), 0.05, 0.99)
            row["objectives"] = {n: round(float(a), 4) for n, a in zip(NAMES, accuracies, strict=True)}
            evaluated_ids.append(candidate_id)
        candidates.append(row)
        evaluations += evaluation_rows(candidate_id, status, stage, row["objectives"], start)
    with store.session() as s:
        for chunk in range(0, count, 5000):
            s.execute(insert(Candidate), candidates[chunk : chunk + 5000])
        for chunk in range(0, len(evaluations), 10000):
            s.execute(insert(Evaluation), evaluations[chunk : chunk + 10000])
        s.execute(update(Search).where(Search.id == search_id).values(next_birth=count))
        if store.backend == "postgresql":  # explicit ids do not advance the id sequence
            s.execute(
                text("SELECT setval(pg_get_serial_sequence('candidates', 'id'), (SELECT max(id) FROM candidates))")
            )
        st.rebuild_derived(s, search_id)
    if store.backend == "postgresql":
        # Statistics for the planner, as autovacuum's analyze takes them after a bulk of inserts on a server
        # that runs it (PostgreSQL's default). Without them, the planner takes the tables for the empty ones
        # it last saw: the duplicate index's look-up then walked a search in birth order, a scan that grew
        # with the search, where the key's index answers at once (EXPLAIN ANALYZE shows either plan).
        tables = ", ".join(table.name for table in Base.metadata.sorted_tables)  # this schema's, by search_path
        with store.engine.connect() as connection:
            connection.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(f"ANALYZE {tables}")
    return search_id


def evaluation_rows(candidate_id: int, status: str, stage: str, objectives: dict | None, at) -> list[dict]:
    if status != "evaluated" and stage != "quality":
        return []
    rows = []
    for architecture in ARCHITECTURES:
        quality = {"accuracy": 0.3, "loss": 1.9, "steps": 100}
        rows.append(evaluation_row(candidate_id, architecture, "quality", "succeeded", quality, 2.0, at))
        if status == "evaluated":
            proxy = {"accuracy": objectives[f"accuracy_{architecture}"], "loss": 0.4, "steps": 2000}
            rows.append(evaluation_row(candidate_id, architecture, "proxy", "succeeded", proxy, 40.0, at))
    return rows


def evaluation_row(candidate_id, architecture, phase, status, metrics, seconds, at) -> dict:
    return {
        "candidate_id": candidate_id,
        "architecture": architecture,
        "phase": st.EvaluationPhase(phase),
        "attempt": 0,
        "status": st.EvaluationStatus(status),
        "metrics": metrics,
        "duration_seconds": seconds,
        "node": "node-1",
        "started_at": at,
        "finished_at": at,
    }


# -- timing ----------------------------------------------------------------------------------------------


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def timed(fn: Callable[[], object], repeats: int, warmup: int = 3) -> tuple[float, float]:
    """(p50, p99) in milliseconds of `repeats` calls after `warmup`."""
    return interleaved([fn], repeats, warmup)[0]


def interleaved(fns: list[Callable[[], object]], repeats: int, warmup: int = 3) -> list[tuple[float, float]]:
    """(p50, p99) in milliseconds of each function, called round-robin so that a burst of load from other
    processes on the machine spreads over all of them instead of landing on one."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, into in zip(fns, samples, strict=True):
            start = time.perf_counter()
            fn()
            into.append((time.perf_counter() - start) * 1000)
    return [percentiles(s) for s in samples]


def read(store: st.Store, query: Callable) -> Callable[[], object]:
    def run():
        with store.session(readonly=True) as s:
            return query(s)

    return run


def reads(
    store: st.Store, search_id: int, rng: random.Random
) -> tuple[int, list[tuple[str, Callable, Callable | None]]]:
    """(name, the store's read, a baseline answering the same question without derived data)."""
    with store.session(readonly=True) as s:
        depth = st.search_summary(s, search_id).evaluated // 2000 * 1000  # halfway down the sorted list
        deep_cursor = None
        for _ in range(depth // 1000):
            deep_cursor = st.list_candidates(s, search_id, sort=NAMES[0], limit=1000, cursor=deep_cursor).next_cursor
        evaluated = [c.id for c in st.list_candidates(s, search_id, statuses=[C.EVALUATED], limit=1000).items]
    late = [i for i in evaluated[-200:]]

    def detail(s):
        return st.candidate_detail(s, rng.choice(late), lineage_limit=100)

    return depth, [
        ("status summary", lambda s: st.search_summary(s, search_id), lambda s: naive_summary(s, search_id)),
        (
            f"candidate page: 50 best by {NAMES[0]}",
            lambda s: st.list_candidates(s, search_id, sort=NAMES[0], limit=50),
            lambda s: naive_sorted_page(s, search_id, NAMES[0]),
        ),
        (
            f"candidate page: 50 by {NAMES[0]} after {depth:,} rows",
            lambda s: st.list_candidates(s, search_id, sort=NAMES[0], limit=50, cursor=deep_cursor),
            None,
        ),
        (
            "candidate page: 50 rejected at quality, by birth",
            lambda s: st.list_candidates(s, search_id, statuses=[C.REJECTED], stages=[R.QUALITY], limit=50),
            None,
        ),
        (
            "Pareto front, 3 objectives",
            lambda s: st.pareto_front(s, search_id),
            lambda s: naive_front(s, search_id, NAMES),
        ),
        (
            "Pareto front, 2 of 3 objectives",
            lambda s: st.pareto_front(s, search_id, NAMES[:2]),
            lambda s: naive_front(s, search_id, NAMES[:2]),
        ),
        ("Pareto front across searches", lambda s: st.pareto_front_across(s, NAMES), None),
        ("candidate detail (evaluations, 100 ancestors)", detail, None),
    ]


def naive_summary(s, search_id: int):
    """What the status page costs without counters and fronts: a GROUP BY scan and a scan of the objectives."""
    grouped = s.execute(
        select(Candidate.status, Candidate.rejection_stage, func.count())
        .where(Candidate.search_id == search_id)
        .group_by(Candidate.status, Candidate.rejection_stage)
    ).all()
    best = [
        s.execute(select(func.max(Candidate.objectives[n].as_float())).where(Candidate.search_id == search_id)).scalar()
        for n in NAMES
    ]
    return grouped, best


def naive_sorted_page(s, search_id: int, name: str):
    value = Candidate.objectives[name].as_float()
    query = (
        select(Candidate)
        .where(Candidate.search_id == search_id, Candidate.status == C.EVALUATED)
        .order_by(value.desc(), Candidate.birth.desc())
        .limit(50)
    )
    return list(s.execute(query).scalars())


def naive_front(s, search_id: int, names: list[str]):
    rows = s.execute(
        select(Candidate.id, Candidate.objectives).where(
            Candidate.search_id == search_id, Candidate.status == C.EVALUATED
        )
    ).all()
    points = np.array([[r.objectives[n] for n in names] for r in rows])
    return [rows[i].id for i in np.flatnonzero(non_dominated(points, [True] * len(names)))]


def controller_write(store: st.Store, search_id: int, rng: random.Random) -> Callable[[], object]:
    """One candidate from birth to completion in one transaction, as the controller commits an outcome."""
    with store.session(readonly=True) as s:
        parents = [c.id for c in st.population(s, search_id, POPULATION)]
    counter = iter(range(10**9))

    def run():
        with store.session() as s:
            k = next(counter)
            candidate = st.add_candidate(
                s,
                search_id,
                graph={"version": 1, "nodes": [{"op": "x"}], "output": 0},
                dsl="x",
                canonical_hash=f"write-{k}",
                fingerprint=f"write-{k}",
                parent_id=rng.choice(parents),
            )
            for architecture in ARCHITECTURES:
                st.record_evaluation(
                    s,
                    candidate.id,
                    architecture=architecture,
                    phase="proxy",
                    attempt=0,
                    status="succeeded",
                    metrics={"accuracy": 0.5},
                    duration_seconds=40.0,
                )
            values = {n: round(rng.betavariate(4, 3), 4) for n in NAMES}
            st.complete_candidate(s, candidate.id, values)

    return run


def benchmark_backend(label: str, url: str, count: int, repeats: int) -> tuple[list[list[object]], list[str]]:
    with st.open_store(url) as store:
        started = time.perf_counter()
        search_id = fill(store, count, seed=0)
        fill_seconds = time.perf_counter() - started
        with store.session(readonly=True) as s:
            summary = st.search_summary(s, search_id)
        # The fill leaves a large heap of long-lived objects; a full garbage collection over it is a pause
        # no request should pay. Services freeze their start-up heap the same way (gc.freeze).
        gc.collect()
        gc.freeze()
        rng = random.Random(1)
        rows = []
        _, queries = reads(store, search_id, rng)
        timings = interleaved([read(store, query) for _, query, _ in queries], repeats)
        for (name, _, baseline), (p50, p99) in zip(queries, timings, strict=True):
            if baseline is not None:
                b50, b99 = timed(read(store, baseline), max(5, repeats // 20), warmup=1)
                versus = f"{b50:.1f} / {b99:.1f}", f"{b50 / p50:.0f}x"
            else:
                versus = "-", "-"
            verdict = "yes" if p99 <= TARGET_P99_MS else "NO"
            rows.append([label, name, f"{p50:.2f}", f"{p99:.2f}", verdict, *versus])
            print(rows[-1], flush=True)
        w50, w99 = timed(controller_write(store, search_id, rng), max(20, repeats // 2))
        notes = [
            f"{label}: filled {count:,} candidates ({summary.evaluated:,} evaluated, front of {summary.front_size}) "
            f"and built the derived data in {fill_seconds:.0f} s; the controller's write path (add a candidate, "
            f"record 3 evaluations, complete it: one transaction) takes p50 {w50:.1f} ms / p99 {w99:.1f} ms "
            "on the full database."
        ]
        return rows, notes


def temporary_postgres_database(server_url: str) -> tuple[str, Callable[[], None]]:
    server = make_url(server_url).set(drivername="postgresql+psycopg")
    name = f"evonorm_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()

    return server.set(database=name).render_as_string(hide_password=False), drop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--candidates", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args()
    rows, notes = [], []
    with tempfile.TemporaryDirectory(prefix="evonorm-bench-") as directory:
        r, n = benchmark_backend("SQLite (WAL)", f"sqlite:///{directory}/bench.db", args.candidates, args.repeats)
        rows += r
        notes += n
    if not args.skip_postgres:
        url, drop = temporary_postgres_database(args.postgres)
        try:
            r, n = benchmark_backend("PostgreSQL 15", url, args.candidates, args.repeats)
            rows += r
            notes += n
        finally:
            drop()
    headers = [
        "backend",
        "read",
        "p50 ms",
        "p99 ms",
        f"p99 <= {TARGET_P99_MS:.0f} ms",
        "baseline p50 / p99 ms",
        "speed-up (p50)",
    ]
    body = (
        f"One search of {args.candidates:,} candidates, 3 objectives (accuracy per architecture), "
        f"{len(ARCHITECTURES)} architectures. Each read runs in its own read-only session (as an API request "
        f"would), {args.repeats} times after 3 warm-up runs, the reads taking turns; p50 and p99 in milliseconds. Baselines answer the "
        "same question without the store's derived data (counters, objective index, maintained fronts): a GROUP "
        "BY scan plus JSON max per objective, a sort on a JSON-extracted value, non-dominated filtering of every "
        "evaluated candidate.\n\n" + markdown_table(headers, rows) + "\n\n" + "\n\n".join(notes)
    )
    # The machine's 2 cores are shared: the load says how much of the spread (p99) came from other work.
    body += f"\n\nLoad average at the end: {os.getloadavg()[0]:.2f} (1 min), {os.getloadavg()[1]:.2f} (5 min)."
    path = write_result("store", f"Pareto database: reads at {args.candidates:,} candidates", body)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
