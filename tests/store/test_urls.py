"""Opening stores: the embedded default, SQLite paths, PostgreSQL URLs, and every way opening can fail."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

import pytest

from evonorm_search.store import StoreError, default_url, open_store
from evonorm_search.store.urls import resolve_url


def test_default_url_lives_under_evonorm_home(tmp_path, monkeypatch):
    monkeypatch.setenv("EVONORM_HOME", str(tmp_path / "home"))
    assert default_url() == f"sqlite:///{tmp_path / 'home' / 'evonorm.db'}"
    with open_store() as store:
        assert store.backend == "sqlite"
        assert not store.is_shared_across_nodes
    assert (tmp_path / "home" / "evonorm.db").is_file()


def test_default_url_without_evonorm_home_is_under_runs(tmp_path, monkeypatch):
    monkeypatch.delenv("EVONORM_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    assert default_url() == f"sqlite:///{tmp_path.resolve() / 'runs' / 'evonorm.db'}"


def test_sqlite_path_creates_parent_directories(tmp_path):
    path = tmp_path / "a" / "b" / "c.db"
    with open_store(f"sqlite:///{path}") as store:
        assert store.url == f"sqlite:///{path}"
    assert path.is_file()
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_relative_sqlite_path_resolves_against_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_url("sqlite:///rel/x.db").sqlite_path == tmp_path.resolve() / "rel" / "x.db"


def test_in_memory_sqlite_keeps_one_database_across_sessions():
    from evonorm_search import store as st

    with open_store("sqlite://") as store:
        with store.session() as s:
            search_id = st.create_search(s, name="m", config={}, objectives=[{"name": "a", "direction": "max"}]).id
        with store.session() as s:
            assert st.get_search(s, search_id).name == "m"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u@h:5433/db", "postgresql+psycopg://u@h:5433/db"),
        ("postgres://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql+psycopg://u:secret@h/db", "postgresql+psycopg://u:***@h/db"),
    ],
)
def test_postgresql_urls_are_normalised_to_psycopg3(url, expected):
    resolved = resolve_url(url)
    assert resolved.backend == "postgresql"
    assert resolved.display == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("runs/evonorm.db", "for a SQLite file write sqlite:///runs/evonorm.db"),
        ("mysql://u@h/db", "unsupported database 'mysql'"),
        ("oracle+cx_oracle://u@h/db", "unsupported database"),
        ("postgresql+psycopg2://u@h/db", "unsupported PostgreSQL driver"),
        ("postgresql+asyncpg://u@h/db", "through psycopg 3"),
        ("postgresql:///db", "names no server"),
        ("postgresql://u@h", "names no database"),
        ("sqlite://host/path.db", "names a file, not a server"),
        ("sqlite:///file:x.db?mode=ro&uri=true", "URI filenames"),
        ("::::://", "cannot parse"),
    ],
)
def test_malformed_or_unsupported_urls_say_what_to_write(url, message):
    with pytest.raises(StoreError, match="(?i)" + message.replace("+", r"\+").replace("?", r"\?")):
        open_store(url)


def test_a_directory_is_not_a_database_file(tmp_path):
    with pytest.raises(StoreError, match="is a directory"):
        open_store(f"sqlite:///{tmp_path}")


def test_parent_that_cannot_be_created(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match=r"cannot create the directory .*EVONORM_HOME"):
        open_store(f"sqlite:///{blocker / 'sub' / 'x.db'}")


def test_a_file_that_is_not_a_database(tmp_path):
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are not the pages of a database" * 100)
    with pytest.raises(StoreError, match="not a usable SQLite database") as info:
        open_store(f"sqlite:///{path}")
    assert info.value.__cause__ is not None  # the driver's error is kept, not shown
    assert path.read_bytes().startswith(b"these are not")


def test_create_false_does_not_create_a_missing_file(tmp_path):
    path = tmp_path / "missing.db"
    with pytest.raises(StoreError, match=r"no database at .*db upgrade"):
        open_store(f"sqlite:///{path}", create=False)
    assert not path.exists()


def _open_as_unprivileged(url: str, queue) -> None:
    """Child process: drop root (root ignores file permissions), then try to open."""
    try:
        if os.geteuid() == 0:
            os.setgid(65534)
            os.setuid(65534)
        open_store(url).close()
        queue.put("opened")
    except StoreError as e:
        queue.put(f"StoreError: {e}")
    except BaseException as e:  # report anything else to the parent instead of dying silently
        queue.put(f"{type(e).__name__}: {e}")


def test_a_read_only_database_file(tmp_path):
    # The directory must be traversable by the unprivileged child; pytest's tmp_path is private to root.
    directory = Path(tempfile.mkdtemp(prefix="evonorm-ro-"))
    try:
        path = directory / "evonorm.db"
        open_store(f"sqlite:///{path}").close()
        for leftover in directory.glob("evonorm.db-*"):
            leftover.unlink()
        path.chmod(0o444)
        directory.chmod(0o555)
        context = multiprocessing.get_context("fork")
        queue = context.Queue()
        child = context.Process(target=_open_as_unprivileged, args=(f"sqlite:///{path}", queue))
        child.start()
        outcome = queue.get(timeout=60)
        child.join(timeout=60)
        assert outcome.startswith("StoreError: "), outcome
        assert "is read-only" in outcome
        assert "writable" in outcome
    finally:
        directory.chmod(0o755)
        shutil.rmtree(directory)


def test_unreachable_postgresql_server_is_a_store_error():
    with pytest.raises(StoreError, match=r"cannot reach PostgreSQL at 127\.0\.0\.1:1 .*server is running") as info:
        open_store("postgresql://postgres@127.0.0.1:1/test")
    assert "Traceback" not in str(info.value)


@pytest.mark.postgres
def test_missing_postgresql_database_says_how_to_create_it(postgres_database_url):
    url = postgres_database_url.set(database="evonorm_no_such_database")
    with pytest.raises(StoreError, match=r"does not exist .*createdb"):
        open_store(url.render_as_string(hide_password=False))


@pytest.mark.postgres
def test_postgresql_is_shared_across_nodes(postgres_url):
    with open_store(postgres_url) as store:
        assert store.backend == "postgresql"
        assert store.is_shared_across_nodes
