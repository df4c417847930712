"""The schema comes only from the Alembic migrations; foreign or newer schemas are refused."""

from __future__ import annotations

import multiprocessing

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from typer.testing import CliRunner

from evonorm_search import store as st
from evonorm_search.cli import app
from evonorm_search.store import StoreError, open_store, schema_status
from evonorm_search.store.migrate import VERSION_TABLE, alembic_config, head_revision
from evonorm_search.store.models import Base
from evonorm_search.store.urls import resolve_url

TABLES = {"searches", "candidates", "evaluations", "search_counters", "candidate_objectives", "pareto_members"}


def _raw_engine(url: str):
    """An engine without the store's set-up, on an existing (possibly empty) database."""
    resolved = resolve_url(url)
    if resolved.sqlite_path is not None:
        resolved.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
    return create_engine(resolved.url)


def test_open_creates_the_schema_at_head(store_url):
    with open_store(store_url) as store:
        assert store.schema_revision() == head_revision()
        assert set(inspect(store.engine).get_table_names()) >= TABLES


def test_migrations_match_the_models(store):
    """What the migrations build is what the models declare: nothing for autogenerate to add."""
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True, "version_table": VERSION_TABLE})
        assert compare_metadata(context, Base.metadata) == []


def test_downgrade_to_base_and_back(store):
    with store.engine.connect() as connection, connection.begin():
        command.downgrade(alembic_config(connection), "base")
    assert not TABLES & set(inspect(store.engine).get_table_names())
    with store.engine.connect() as connection, connection.begin():
        command.upgrade(alembic_config(connection), "head")
    assert store.schema_revision() == head_revision()


def test_a_newer_unknown_revision_is_refused(store_url):
    open_store(store_url).close()
    engine = _raw_engine(store_url)
    with engine.begin() as connection:
        connection.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = 'f00dfeed'"))
    engine.dispose()
    with pytest.raises(StoreError, match=r"revision 'f00dfeed'.*newer evonorm-search.*upgrade evonorm-search"):
        open_store(store_url)
    status = schema_status(store_url)
    assert (status.current, status.known, status.up_to_date) == ("f00dfeed", False, False)


def test_create_false_refuses_an_empty_database_and_says_to_upgrade(store_url):
    engine = _raw_engine(store_url)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE unrelated (id INTEGER PRIMARY KEY)"))
    engine.dispose()
    with pytest.raises(StoreError, match=r"no evonorm-search schema.*db upgrade"):
        open_store(store_url, create=False)


def test_create_false_opens_a_database_at_head(store_url):
    open_store(store_url).close()
    with open_store(store_url, create=False) as store:
        assert store.schema_revision() == head_revision()


def test_tables_without_our_version_are_refused(store_url):
    engine = _raw_engine(store_url)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE searches (id INTEGER PRIMARY KEY, owner TEXT)"))
    engine.dispose()
    with pytest.raises(StoreError, match="not created by evonorm-search"):
        open_store(store_url)
    with pytest.raises(StoreError, match="not created by evonorm-search"):
        schema_status(store_url)


def _open_and_report(url: str, barrier, queue) -> None:
    try:
        barrier.wait(timeout=60)
        with open_store(url) as store:
            queue.put(store.schema_revision())
    except BaseException as e:
        queue.put(f"{type(e).__name__}: {e}")


def test_concurrent_first_opens_from_several_processes(store_url):
    """Processes racing to open a fresh database queue on the migration lock; one creates the schema."""
    context = multiprocessing.get_context("fork")
    barrier, queue = context.Barrier(3), context.Queue()
    children = [context.Process(target=_open_and_report, args=(store_url, barrier, queue)) for _ in range(3)]
    for child in children:
        child.start()
    outcomes = [queue.get(timeout=120) for _ in children]
    for child in children:
        child.join(timeout=60)
    assert outcomes == [head_revision()] * 3
    engine = _raw_engine(store_url)
    with engine.connect() as connection:
        assert connection.execute(text(f"SELECT count(*) FROM {VERSION_TABLE}")).scalar_one() == 1
    engine.dispose()


STRESS_PROCESSES = 8
STRESS_ROUNDS = 12


def _open_each_round(urls: list[str], barrier, queue) -> None:
    """Child process: for each round, wait for the others, then open that round's fresh database."""
    for round_, url in enumerate(urls):
        try:
            barrier.wait(timeout=60)
            with open_store(url) as store:
                queue.put((round_, store.schema_revision()))
        except BaseException as e:
            queue.put((round_, f"{type(e).__name__}: {e}"))


@pytest.mark.parametrize("start", ["no file", "an empty file"])
def test_first_opens_from_many_processes_in_rounds(tmp_path, start):
    """Eight processes open a new SQLite database at the same moment, round after round, each round on a
    new file: every open succeeds, and each file ends with the schema at head, built once. "an empty
    file" (an existing file in rollback-journal mode) makes every process switch it to WAL itself."""
    paths = [tmp_path / f"round{round_}" / "evonorm.db" for round_ in range(STRESS_ROUNDS)]
    if start == "an empty file":
        for path in paths:
            path.parent.mkdir()
            path.touch()
    urls = [f"sqlite:///{path}" for path in paths]
    context = multiprocessing.get_context("fork")
    barrier, queue = context.Barrier(STRESS_PROCESSES), context.Queue()
    children = [context.Process(target=_open_each_round, args=(urls, barrier, queue)) for _ in range(STRESS_PROCESSES)]
    for child in children:
        child.start()
    outcomes = [queue.get(timeout=120) for _ in range(STRESS_PROCESSES * STRESS_ROUNDS)]
    for child in children:
        child.join(timeout=60)
    failures = sorted(outcome for outcome in outcomes if outcome[1] != head_revision())
    assert failures == []
    for path in paths:
        engine = _raw_engine(f"sqlite:///{path}")
        with engine.connect() as connection:
            assert connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all() == [
                head_revision()
            ]
            names = connection.execute(text("SELECT name FROM sqlite_master WHERE type = 'table'")).scalars().all()
            assert sorted(names) == sorted(TABLES | {VERSION_TABLE})
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
        engine.dispose()
        leftovers = {p.name for p in path.parent.iterdir()} - {path.name, f"{path.name}-wal", f"{path.name}-shm"}
        assert leftovers == set()  # no private file from creating it


# -- the command line -----------------------------------------------------------------------------------


def test_db_current_and_upgrade_commands(store_url):
    runner = CliRunner()
    before = runner.invoke(app, ["db", "current", "--db", store_url])
    if store_url.startswith("sqlite"):  # the file does not exist yet
        assert before.exit_code == 1 and "no database at" in before.output, before.output
    else:
        assert before.exit_code == 0, before.output
    assert f"`evonorm-search db upgrade --db {store_url}`" in before.output
    upgraded = runner.invoke(app, ["db", "upgrade", "--db", store_url])
    assert upgraded.exit_code == 0, upgraded.output
    assert f"upgraded from an empty database to revision {head_revision()}" in upgraded.output
    again = runner.invoke(app, ["db", "upgrade", "--db", store_url])
    assert f"already at the newest schema revision {head_revision()}" in again.output
    after = runner.invoke(app, ["db", "current", "--db", store_url])
    assert f"revision {head_revision()} (the newest)" in after.output


def test_db_commands_report_bad_urls_without_a_traceback():
    result = CliRunner().invoke(app, ["db", "upgrade", "--db", "mysql://u@h/db"])
    assert result.exit_code == 1
    assert "unsupported database 'mysql'" in result.output
    assert "Traceback" not in result.output


def test_db_current_does_not_create_a_missing_file(tmp_path):
    path = tmp_path / "never.db"
    result = CliRunner().invoke(app, ["db", "current", "--db", f"sqlite:///{path}"])
    assert result.exit_code == 1
    assert f"no database at {path}" in result.output
    assert not path.exists()


def test_0002_keeps_existing_rows_and_downgrades_cleanly(store_url):
    """Rows written at 0001 survive 0002 as role `candidate`; the validation phase exists only at 0002."""
    engine = _raw_engine(store_url)
    with engine.begin() as connection:
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql("PRAGMA foreign_keys = ON")  # as the store's connections have it
        command.upgrade(alembic_config(connection), "0001")
        connection.execute(
            text(
                "INSERT INTO searches (id, name, config, objectives, state, seed, next_birth, created_at, updated_at) "
                "VALUES (1, 's', '{}', '[]', 'created', 0, 1, '2026-01-01', '2026-01-01')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO candidates (id, search_id, birth, graph, dsl, canonical_hash, status, check_seconds, "
                "attempt, created_at, updated_at, heartbeat_at) "
                "VALUES (1, 1, 0, '{}', 'x', 'h', 'evaluated', '{}', 0, '2026-01-01', '2026-01-01', '2026-01-01')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO evaluations (candidate_id, architecture, phase, attempt, status, metrics, "
                "duration_seconds, finished_at) VALUES (1, 'resnet', 'proxy', 1, 'succeeded', '{}', 1.0, '2026-01-01')"
            )
        )
        command.upgrade(alembic_config(connection), "0002")
        assert connection.execute(text("SELECT role, label FROM candidates")).all() == [("candidate", None)]
        assert connection.execute(text("SELECT phase FROM evaluations")).scalars().all() == ["proxy"]
        connection.execute(
            text(
                "INSERT INTO evaluations (candidate_id, architecture, phase, attempt, status, metrics, "
                "duration_seconds, finished_at) "
                "VALUES (1, 'resnet', 'validation', 1000, 'succeeded', '{}', 1.0, '2026-01-01')"
            )
        )
        command.downgrade(alembic_config(connection), "0001")
        assert connection.execute(text("SELECT phase FROM evaluations")).scalars().all() == ["proxy"]
        columns = {c["name"] for c in inspect(connection).get_columns("candidates")}
        assert not {"role", "label"} & columns
        command.upgrade(alembic_config(connection), "head")
    engine.dispose()
    with open_store(store_url) as store, store.session(readonly=True) as s:
        kept = st.get_candidate(s, 1)
        assert (kept.role, [e.phase for e in st.evaluations_of(s, 1)]) == (st.CandidateRole.CANDIDATE, ["proxy"])


def test_0002_refuses_an_unknown_role_and_phase(store):
    with store.engine.connect() as connection:
        trans = connection.begin()
        connection.execute(
            text(
                "INSERT INTO searches (id, name, config, objectives, state, seed, next_birth, created_at, updated_at) "
                "VALUES (7, 's', '{}', '[]', 'created', 0, 0, '2026-01-01', '2026-01-01')"
            )
        )
        with pytest.raises(Exception, match=r"(?i)check"):
            connection.execute(
                text(
                    "INSERT INTO candidates (search_id, birth, graph, dsl, canonical_hash, status, check_seconds, "
                    "attempt, role, created_at, updated_at, heartbeat_at) VALUES (7, 0, '{}', 'x', 'h', 'pending', "
                    "'{}', 0, 'mentor', '2026-01-01', '2026-01-01', '2026-01-01')"
                )
            )
        trans.rollback()


def _candidate_indexes(connection) -> set[str]:
    return {index["name"] for index in inspect(connection).get_indexes("candidates")}


def test_0003_adds_the_birth_page_index_and_downgrades_cleanly(store_url):
    """0003 indexes (search_id, role, birth) over existing rows; its downgrade drops only that index."""
    engine = _raw_engine(store_url)
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0002")
        connection.execute(
            text(
                "INSERT INTO searches (id, name, config, objectives, state, seed, next_birth, created_at, updated_at) "
                "VALUES (1, 's', '{}', '[]', 'created', 0, 2, '2026-01-01', '2026-01-01')"
            )
        )
        for birth, role in ((0, "candidate"), (1, "baseline")):
            connection.execute(
                text(
                    "INSERT INTO candidates (search_id, birth, graph, dsl, canonical_hash, status, check_seconds, "
                    "attempt, role, created_at, updated_at, heartbeat_at) VALUES (1, :birth, '{}', 'x', 'h', "
                    "'pending', '{}', 0, :role, '2026-01-01', '2026-01-01', '2026-01-01')"
                ),
                {"birth": birth, "role": role},
            )
        before = _candidate_indexes(connection)
        assert "ix_candidates_search_role_birth" not in before
        command.upgrade(alembic_config(connection), "0003")
        assert _candidate_indexes(connection) == before | {"ix_candidates_search_role_birth"}
        rows = connection.execute(text("SELECT role, birth FROM candidates ORDER BY birth")).all()
        assert rows == [("candidate", 0), ("baseline", 1)]
        command.downgrade(alembic_config(connection), "0002")
        assert _candidate_indexes(connection) == before
        command.upgrade(alembic_config(connection), "head")
    engine.dispose()
    with open_store(store_url) as store, store.session(readonly=True) as s:
        page = st.list_candidates(s, 1)
        assert [c.birth for c in page.items] == [0]  # the search's own candidates; its baseline stays out
