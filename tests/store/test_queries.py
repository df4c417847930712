"""The service's reads, checked against brute force: fronts, summaries, pages, detail."""

from __future__ import annotations

import itertools
import random

import moocore
import pytest

from evonorm_search import store as st

from .helpers import NAMES, OBJECTIVES, evaluated, make_candidate, make_search, values

C = st.CandidateStatus
R = st.RejectionStage


def _dominates(a, b, maximise):
    """Brute-force Pareto dominance, written independently of the store's numpy/moocore code."""
    better_or_equal = all((x >= y) if up else (x <= y) for x, y, up in zip(a, b, maximise, strict=True))
    strictly_better = any((x > y) if up else (x < y) for x, y, up in zip(a, b, maximise, strict=True))
    return better_or_equal and strictly_better


def _brute_front(candidates, names, directions):
    maximise = [directions[n] == "max" for n in names]
    points = {c.id: [c.objectives[n] for n in names] for c in candidates}
    return {i for i, p in points.items() if not any(_dominates(q, p, maximise) for q in points.values())}


def _fill(session, search_id, count, seed, objectives=OBJECTIVES):
    """Evaluated candidates with coarse values (so ties happen), in random completion order."""
    rng = random.Random(seed)
    made = [make_candidate(session, search_id, f"k{i}") for i in range(count)]
    rng.shuffle(made)
    for candidate in made:
        point = {
            o["name"]: rng.choice([0.1, 0.3, 0.5, 0.7, 0.9]) if o["direction"] == "max" else rng.choice([1, 2, 3, 4, 5])
            for o in objectives
        }
        st.complete_candidate(session, candidate.id, point)
    return made


@pytest.fixture
def filled(store):
    with store.session() as s:
        search_id = make_search(s).id
        candidates = _fill(s, search_id, 40, seed=1)
    return search_id, candidates


def _subsets(names):
    return [list(c) for r in range(1, len(names) + 1) for c in itertools.combinations(names, r)]


def test_incremental_fronts_equal_brute_force_for_every_subset(store, filled):
    search_id, candidates = filled
    directions = {o["name"]: o["direction"] for o in OBJECTIVES}
    with store.session() as s:
        for names in _subsets(NAMES):
            got = {c.id for c in st.pareto_front(s, search_id, names)}
            assert got == _brute_front(candidates, names, directions), names


def test_rebuild_reproduces_the_incremental_derived_data(store, filled):
    search_id, _ = filled
    with store.session() as s:
        before = {tuple(n): [c.id for c in st.pareto_front(s, search_id, n)] for n in _subsets(NAMES)}
        summary_before = st.search_summary(s, search_id)
        pages_before = [c.id for c in st.list_candidates(s, search_id, sort="cost", limit=1000).items]
        st.rebuild_derived(s, search_id)
    with store.session() as s:
        after = {tuple(n): [c.id for c in st.pareto_front(s, search_id, n)] for n in _subsets(NAMES)}
        summary_after = st.search_summary(s, search_id)
        assert after == before
        assert summary_after.hypervolume == pytest.approx(summary_before.hypervolume)
        assert (summary_after.best, summary_after.by_status) == (summary_before.best, summary_before.by_status)
        assert [c.id for c in st.list_candidates(s, search_id, sort="cost", limit=1000).items] == pages_before


def test_front_is_ordered_best_first_on_the_first_chosen_objective(store, filled):
    search_id, _ = filled
    with store.session() as s:
        front = st.pareto_front(s, search_id, ["cost", "accuracy_resnet"])
        costs = [c.objectives["cost"] for c in front]
        assert costs == sorted(costs)
        with pytest.raises(st.InvalidInputError, match="unknown objectives"):
            st.pareto_front(s, search_id, ["speed"])
        with pytest.raises(st.InvalidInputError, match="repeated"):
            st.pareto_front(s, search_id, ["cost", "cost"])
        with pytest.raises(st.InvalidInputError, match="at least one"):
            st.pareto_front(s, search_id, [])


def test_searches_with_many_objectives(store):
    """Beyond five objectives the full front and one front per objective are kept; other subsets come from
    the full front: exactly the non-dominated values, each by at least one candidate."""
    objectives = [{"name": f"o{i}", "direction": "max" if i % 2 else "min", "reference": 0.0} for i in range(6)]
    directions = {o["name"]: o["direction"] for o in objectives}
    with store.session() as s:
        search_id = make_search(s, objectives=objectives).id
        candidates = _fill(s, search_id, 40, seed=2, objectives=objectives)
    names = [o["name"] for o in objectives]
    with store.session() as s:
        for chosen in [names, ["o0"], ["o5"], ["o1", "o2"], ["o0", "o3", "o4"]]:
            got = st.pareto_front(s, search_id, chosen)
            expected = _brute_front(candidates, chosen, directions)
            vector = lambda c, chosen=chosen: tuple(c.objectives[n] for n in chosen)  # noqa: E731
            assert {vector(c) for c in got} == {vector(c) for c in candidates if c.id in expected}, chosen
            assert {c.id for c in got} <= expected
            if len(chosen) in (1, len(names)):
                assert {c.id for c in got} == expected  # tracked exactly, ties included


def test_summary_counts_best_values_hypervolume_and_completion_times(store, filled):
    search_id, candidates = filled
    with store.session() as s:
        rejected = make_candidate(s, search_id, "rej")
        st.record_rejection(s, rejected.id, stage=R.QUALITY, reason="accuracy 0.12 < 0.2 after 100 steps")
        make_candidate(s, search_id, "pending")
        summary = st.search_summary(s, search_id)
    assert summary.total == 42 and summary.evaluated == 40
    assert summary.by_status == {C.PENDING: 1, C.QUEUED: 0, C.RUNNING: 0, C.EVALUATED: 40, C.REJECTED: 1, C.FAILED: 0}
    assert summary.rejected_by_stage[R.QUALITY] == 1 and sum(summary.rejected_by_stage.values()) == 1
    assert summary.best["accuracy_resnet"].value == max(c.objectives["accuracy_resnet"] for c in candidates)
    assert summary.best["cost"].value == min(c.objectives["cost"] for c in candidates)  # minimised
    best_cost = [c for c in candidates if c.objectives["cost"] == summary.best["cost"].value]
    assert summary.best["cost"].birth == min(c.birth for c in best_cost)
    front = _brute_front(candidates, NAMES, {o["name"]: o["direction"] for o in OBJECTIVES})
    assert summary.front_size == len(front)
    points = [[c.objectives[n] for n in NAMES] for c in candidates if c.id in front]
    expected_hv = moocore.hypervolume(points, ref=[0.0, 0.0, 10.0], maximise=[True, True, False])
    assert summary.hypervolume == pytest.approx(expected_hv)
    finished = [c.finished_at for c in candidates] + [summary.last_finished_at]
    assert summary.first_finished_at == min(finished) and summary.last_finished_at == max(finished)


def test_hypervolume_needs_a_reference_for_minimised_objectives(store):
    objectives = [{"name": "accuracy", "direction": "max"}, {"name": "cost", "direction": "min"}]
    with store.session() as s:
        search_id = make_search(s, objectives=objectives).id
        evaluated(s, search_id, {"accuracy": 0.9, "cost": 2.0})
        summary = st.search_summary(s, search_id)
    assert summary.hypervolume is None
    assert summary.best["cost"].value == 2.0


def test_summary_of_a_missing_search_is_not_found(store):
    with pytest.raises(st.NotFoundError), store.session() as s:
        st.search_summary(s, 10_000)


# -- candidate pages ------------------------------------------------------------------------------------


def _walk(session, search_id, limit, **kwargs):
    """Every page in turn; returns the ids in order and the number of pages."""
    ids, cursor, pages = [], None, 0
    while True:
        page = st.list_candidates(session, search_id, limit=limit, cursor=cursor, **kwargs)
        ids += [c.id for c in page.items]
        pages += 1
        if page.next_cursor is None:
            return ids, pages
        cursor = page.next_cursor


@pytest.fixture
def mixed(store):
    """A search with candidates in every status and several rejection stages."""
    rng = random.Random(3)
    with store.session() as s:
        search_id = make_search(s).id
        made = []
        for i in range(30):
            candidate = make_candidate(s, search_id, i)
            kind = rng.choice(["evaluated", "evaluated", "rejected", "running", "pending", "failed"])
            if kind == "evaluated":
                st.complete_candidate(s, candidate.id, values(rng.choice([0.2, 0.4, 0.6]), 0.5, rng.choice([1, 2])))
            elif kind == "rejected":
                st.record_rejection(s, candidate.id, stage=rng.choice([R.NUMERIC, R.STABILITY]), reason="x")
            elif kind == "running":
                st.mark_status(s, candidate.id, C.RUNNING)
            elif kind == "failed":
                st.mark_status(s, candidate.id, C.FAILED, error="boom")
            made.append(st.get_candidate(s, candidate.id))
    return search_id, made


def test_pages_by_birth_with_filters(store, mixed):
    search_id, made = mixed
    with store.session() as s:
        ids, pages = _walk(s, search_id, 7)
        assert ids == [c.id for c in sorted(made, key=lambda c: c.birth)] and pages == 5
        ids, _ = _walk(s, search_id, 4, descending=True)
        assert ids == [c.id for c in sorted(made, key=lambda c: -c.birth)]
        ids, _ = _walk(s, search_id, 3, statuses=[C.REJECTED, C.FAILED])
        assert ids == [c.id for c in made if c.status in (C.REJECTED, C.FAILED)]
        ids, _ = _walk(s, search_id, 2, stages=[R.STABILITY])
        assert ids == [c.id for c in made if c.rejection_stage is R.STABILITY]
        ids, _ = _walk(s, search_id, 2, statuses="running")
        assert ids == [c.id for c in made if c.status is C.RUNNING]


def test_pages_sorted_by_an_objective_best_first_with_ties_by_birth(store, mixed):
    search_id, made = mixed
    done = [c for c in made if c.status is C.EVALUATED]
    with store.session() as s:
        ids, _ = _walk(s, search_id, 3, sort="accuracy_resnet")  # max: best (largest) first
        expected = sorted(done, key=lambda c: (c.objectives["accuracy_resnet"], c.birth), reverse=True)
        assert ids == [c.id for c in expected]
        ids, _ = _walk(s, search_id, 3, sort="cost")  # min: best (smallest) first
        assert ids == [c.id for c in sorted(done, key=lambda c: (c.objectives["cost"], c.birth))]
        ids, _ = _walk(s, search_id, 5, sort="cost", descending=True)
        assert ids == [c.id for c in sorted(done, key=lambda c: (c.objectives["cost"], c.birth), reverse=True)]
        ids, _ = _walk(s, search_id, 5, sort="cost", statuses=[C.REJECTED])
        assert ids == []


def test_bad_page_requests_are_refused(store, mixed):
    search_id, _ = mixed
    with store.session() as s:
        birth_cursor = st.list_candidates(s, search_id, limit=2).next_cursor
        with pytest.raises(st.InvalidInputError, match="cannot sort by 'speed'"):
            st.list_candidates(s, search_id, sort="speed")
        with pytest.raises(st.InvalidInputError, match="belongs to a page ordered by 'birth:asc'"):
            st.list_candidates(s, search_id, sort="cost", cursor=birth_cursor)
        with pytest.raises(st.InvalidInputError, match="invalid page cursor"):
            st.list_candidates(s, search_id, cursor="eyJvIjoiYmlydGg6YXNjIiwiayI6WyJ4Il19")  # a key that is a string
        with pytest.raises(st.InvalidInputError, match="unknown status"):
            st.list_candidates(s, search_id, statuses=["done"])
        with pytest.raises(st.InvalidInputError, match="unknown rejection stage"):
            st.list_candidates(s, search_id, stages=["lazy"])
        with pytest.raises(st.InvalidInputError, match="limit"):
            st.list_candidates(s, search_id, limit=1001)
        with pytest.raises(st.NotFoundError):
            st.list_candidates(s, 10_000)


# -- candidate detail -----------------------------------------------------------------------------------


def test_candidate_detail_with_evaluations_and_lineage(store):
    with store.session() as s:
        search_id = make_search(s).id
        chain = [make_candidate(s, search_id, 0)]
        for i in range(1, 6):
            chain.append(make_candidate(s, search_id, i, parent_id=chain[-1].id))
        leaf = chain[-1]
        for arch in ("resnet", "mobilenet"):
            st.record_evaluation(
                s,
                leaf.id,
                architecture=arch,
                phase="proxy",
                attempt=0,
                status="succeeded",
                metrics={"accuracy": 0.5},
                duration_seconds=3.0,
            )
    with store.session() as s:
        full = st.candidate_detail(s, leaf.id)
        assert full.candidate.id == leaf.id
        assert [c.id for c in full.lineage] == [c.id for c in reversed(chain[:-1])]
        assert not full.lineage_truncated
        assert [e.architecture for e in full.evaluations] == ["mobilenet", "resnet"]
        short = st.candidate_detail(s, leaf.id, lineage_limit=2)
        assert [c.id for c in short.lineage] == [chain[4].id, chain[3].id] and short.lineage_truncated
        exact = st.candidate_detail(s, leaf.id, lineage_limit=5)
        assert len(exact.lineage) == 5 and not exact.lineage_truncated
        root = st.candidate_detail(s, chain[0].id)
        assert (root.lineage, root.evaluations, root.lineage_truncated) == ([], [], False)
        assert st.candidate_detail(s, leaf.id, lineage_limit=0).lineage_truncated
        with pytest.raises(st.InvalidInputError, match="lineage_limit"):
            st.candidate_detail(s, leaf.id, lineage_limit=-1)
        with pytest.raises(st.NotFoundError):
            st.candidate_detail(s, 10_000)


# -- fronts across searches -----------------------------------------------------------------------------


def test_front_across_searches(store):
    with store.session() as s:
        a = make_search(s).id
        b = make_search(s).id
        other = make_search(s, objectives=[{"name": "accuracy_resnet", "direction": "max"}]).id
        a_best = evaluated(s, a, values(0.9, 0.2, 3.0), "a1")
        evaluated(s, a, values(0.5, 0.5, 1.0), "a2")  # dominated by b's on the two accuracies
        b_best = evaluated(s, b, values(0.6, 0.8, 5.0), "b1")
        b_tie = evaluated(s, b, values(0.6, 0.8, 4.0), "b2")
        lone = evaluated(s, other, {"accuracy_resnet": 0.95}, "o1")
    with store.session() as s:
        front = st.pareto_front_across(s, ["accuracy_resnet", "accuracy_mobilenet"])
        assert [c.id for c in front] == [a_best.id, b_best.id, b_tie.id]  # resnet accuracy, best first
        assert {c.search_id for c in front} == {a, b}
        assert [c.id for c in st.pareto_front_across(s, ["accuracy_resnet"])] == [lone.id]
        assert [c.id for c in st.pareto_front_across(s, ["accuracy_resnet"], search_ids=[a, b])] == [a_best.id]
        with pytest.raises(st.NotFoundError, match="no searches with ids"):
            st.pareto_front_across(s, ["accuracy_resnet"], search_ids=[a, 10_000])
        with pytest.raises(st.InvalidInputError, match="has no objective 'cost'"):
            st.pareto_front_across(s, ["cost"], search_ids=[other])
        assert st.pareto_front_across(s, ["nothing_has_this"]) == []


def test_front_across_searches_refuses_conflicting_directions(store):
    with store.session() as s:
        make_search(s, objectives=[{"name": "loss", "direction": "min", "reference": 9.0}])
        make_search(s, objectives=[{"name": "loss", "direction": "max"}])
    conflict = "maximised in some searches and minimised in others"
    with pytest.raises(st.InvalidInputError, match=conflict), store.session() as s:
        st.pareto_front_across(s, ["loss"])


# -- lean reads: the columns a route shows, and nothing else --------------------------------------------


def _columns(row, columns):
    return {c.key: getattr(row, c.key) for c in columns}


def test_brief_pages_hold_the_brief_columns_of_the_same_candidates(store, mixed):
    search_id, _ = mixed
    orderings = [
        {},
        {"descending": True},
        {"statuses": [C.REJECTED, C.FAILED]},
        {"stages": [R.STABILITY]},
        {"sort": "accuracy_resnet"},
        {"sort": "cost", "descending": True},
    ]
    with store.session(readonly=True) as s:
        for ordering in orderings:
            full = st.list_candidates(s, search_id, limit=4, **ordering)
            brief = st.list_candidates(s, search_id, limit=4, brief=True, **ordering)
            assert [_columns(r, st.BRIEF_COLUMNS) for r in brief.items] == [
                _columns(c, st.BRIEF_COLUMNS) for c in full.items
            ], ordering
            assert brief.next_cursor == full.next_cursor, ordering
            assert all(not hasattr(r, "graph") for r in brief.items)
            if full.next_cursor is not None:  # a brief page's cursor continues the same walk
                after_full = st.list_candidates(s, search_id, limit=4, cursor=full.next_cursor, **ordering)
                after_brief = st.list_candidates(
                    s, search_id, limit=4, cursor=brief.next_cursor, brief=True, **ordering
                )
                assert [r.id for r in after_brief.items] == [c.id for c in after_full.items], ordering


def test_brief_fronts_hold_the_point_columns_of_the_same_candidates(store, filled):
    search_id, _ = filled
    with store.session(readonly=True) as s:
        for names in [None, *_subsets(NAMES)]:
            full = st.pareto_front(s, search_id, names)
            brief = st.pareto_front(s, search_id, names, brief=True)
            assert [_columns(r, st.POINT_COLUMNS) for r in brief] == [_columns(c, st.POINT_COLUMNS) for c in full]
        across = st.pareto_front_across(s, NAMES[:2], brief=True)
        assert [r.id for r in across] == [c.id for c in st.pareto_front_across(s, NAMES[:2])]
        graphs = st.candidate_graphs(s, [r.id for r in across] + [10_000])  # a missing id is left out
        assert graphs == {r.id: st.get_candidate(s, r.id).graph for r in across}
        assert st.candidate_graphs(s, []) == {}


def test_lineage_rows_hold_the_ancestor_columns(store):
    with store.session() as s:
        search_id = make_search(s).id
        root = evaluated(s, search_id, values(0.5, 0.5, 1.0), "root")
        child = make_candidate(s, search_id, "child", parent_id=root.id, mutation={"kind": "rewire"})
        leaf = make_candidate(s, search_id, "leaf", parent_id=child.id)
    with store.session(readonly=True) as s:
        lineage = st.candidate_detail(s, leaf.id).lineage
        expected = [st.get_candidate(s, child.id), st.get_candidate(s, root.id)]
        assert [_columns(r, st.ANCESTOR_COLUMNS) for r in lineage] == [
            _columns(c, st.ANCESTOR_COLUMNS) for c in expected
        ]


# -- query plans: every read is index probes, whatever SQLite's statistics say -------------------------


def _plans_of_reads(store, search_id, leaf_id) -> dict[str, list[str]]:
    """{statement: its EXPLAIN QUERY PLAN lines} for every SELECT the service's reads send."""
    from sqlalchemy import event

    statements: list[tuple[str, tuple]] = []

    def record(_conn, _cursor, statement, parameters, _context, _many) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            statements.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", record)
    try:
        with store.session(readonly=True) as s:
            st.search_summary(s, search_id)
            for ordering in ({}, {"descending": True}, {"statuses": [C.EVALUATED]}, {"stages": [R.NUMERIC]}):
                page = st.list_candidates(s, search_id, limit=2, brief=True, **ordering)
                st.list_candidates(s, search_id, limit=2, brief=True, cursor=page.next_cursor, **ordering)
            page = st.list_candidates(s, search_id, sort="cost", limit=2, brief=True)
            st.list_candidates(s, search_id, sort="cost", limit=2, brief=True, cursor=page.next_cursor)
            st.pareto_front(s, search_id, brief=True)
            st.pareto_front(s, search_id, NAMES[:2], brief=True)
            st.candidate_detail(s, leaf_id)
    finally:
        event.remove(store.engine, "before_cursor_execute", record)
    with store.engine.connect() as connection:
        return {
            sql: [row[3] for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params).all()]
            for sql, params in statements
        }


LARGE_TABLES = ("candidates", "candidate_objectives", "pareto_members", "evaluations")  # grow with a search
# SQLite's statistics (sqlite_stat1) of the 100,000-candidate benchmark database, taken before migration
# 0003 added ix_candidates_search_role_birth: planning with them reproduces that database's choices.
STATISTICS_AT_100K = [
    ("candidates", "ix_candidates_duplicate_of", "100000 100000"),
    ("candidates", "ix_candidates_parent", "100000 3"),
    ("candidates", "ix_candidates_search_finished", "100000 100000 50000"),
    ("candidates", "ix_candidates_search_fingerprint", "100000 100000 1"),
    ("candidates", "ix_candidates_search_hash", "100000 100000 1"),
    ("candidates", "ix_candidates_search_stage_birth", "100000 100000 16667 1"),
    ("candidates", "ix_candidates_search_status_birth", "100000 100000 20000 1"),
    ("candidates", "sqlite_autoindex_candidates_1", "100000 100000 1"),
    ("candidate_objectives", "ix_candidate_objectives_sort", "150264 150264 50088 7 1"),
    ("candidate_objectives", "sqlite_autoindex_candidate_objectives_1", "150264 3 1"),
    ("pareto_members", "ix_pareto_members_candidate", "431 2"),
    ("pareto_members", "sqlite_autoindex_pareto_members_1", "431 431 62 1"),
    ("evaluations", "sqlite_autoindex_evaluations_1", "330975 6 2 1 1"),
]


@pytest.mark.parametrize("statistics", ["none", "analyzed", "older than an index, at 100,000 candidates"])
def test_sqlite_reads_probe_indexes_and_never_scan_a_search(tmp_path, statistics):
    with st.open_store(f"sqlite:///{tmp_path / 'plans.db'}") as store:
        with store.session() as s:
            search_id = make_search(s).id
            chain = _fill(s, search_id, 30, seed=2)
            leaf = make_candidate(s, search_id, "leaf", parent_id=chain[0].id)
            st.record_rejection(s, make_candidate(s, search_id, "bad").id, stage=R.NUMERIC, reason="nan")
        if statistics != "none":
            with store.engine.begin() as connection:
                connection.exec_driver_sql("ANALYZE")
                if statistics != "analyzed":
                    connection.exec_driver_sql("DELETE FROM sqlite_stat1")
                    for row in STATISTICS_AT_100K:
                        connection.exec_driver_sql("INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES (?, ?, ?)", row)
            store.engine.dispose()  # new connections plan with these statistics
        plans = _plans_of_reads(store, search_id, leaf.id)
    assert plans
    for sql, lines in plans.items():
        scans = [line for line in lines if line.split(" ")[:2] in (["SCAN", t] for t in LARGE_TABLES)]
        assert not scans, (sql, lines)
        if "min(" in sql or "ORDER BY candidates.finished_at" in sql:
            assert all("ix_candidates_search_finished" in line for line in lines if "candidates" in line), lines
    completion = next(sql for sql in plans if "finished_at" in sql and "pareto_members" in sql)
    probes = [line for line in plans[completion] if "SEARCH candidates" in line]
    assert len(probes) == 2 and all("ix_candidates_search_finished" in line for line in probes), plans[completion]
