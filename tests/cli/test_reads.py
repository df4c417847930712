"""Reads never write: `status`, `pareto`, `db current` and `export --candidate` open an existing database
read-only, refuse a missing one, create nothing, and work in a read-only directory. Hints carry the
`--db` they were given; a stopped `run` says so in its exit status."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from alembic import command
from typer.testing import CliRunner

from evonorm_search.cli import app
from evonorm_search.store import CandidateStatus, SearchState, list_candidates, open_store, schema_status
from evonorm_search.store.migrate import alembic_config, head_revision
from tests.conftest import wait_until
from tests.search.conftest import tiny_yaml
from tests.service.factories import populate

from .conftest import StoredSearch, evaluated_candidates

runner = CliRunner()
REPOSITORY = Path(__file__).resolve().parents[2]
SLOW_TRAINING = {"steps": 80, "batch_size": 32, "device": "cpu", "threads": 1}
EXIT_STOPPED = 3  # `run --help` documents it


def read_commands(db: str, candidate_id: int) -> list[list[str]]:
    return [
        ["status", "--db", db],
        ["status", "1", "--db", db],
        ["pareto", "1", "--db", db],
        ["pareto", "1", "--db", db, "--json"],
        ["db", "current", "--db", db],
        ["export", "--candidate", str(candidate_id), "--db", db],
    ]


@pytest.mark.parametrize("command", ["status", "status 1", "pareto 1", "db current", "export --candidate 1"])
def test_a_read_refuses_a_missing_database_and_creates_nothing(tmp_path, command):
    missing = tmp_path / "no" / "such" / "typo.db"
    result = runner.invoke(app, [*command.split(), "--db", f"sqlite:///{missing}"])
    assert result.exit_code == 1, result.output
    assert f"no database at {missing}" in result.output
    assert not (tmp_path / "no").exists()


def test_status_without_db_does_not_create_the_default_database(tmp_path, monkeypatch):
    monkeypatch.setenv("EVONORM_HOME", str(tmp_path / "home"))
    result = runner.invoke(app, ["status"])
    assert result.exit_code == 1 and "no database at" in result.output
    assert not (tmp_path / "home").exists()


def test_reads_leave_the_database_byte_for_byte_unchanged(finished: StoredSearch):
    before = finished.path.read_bytes()
    for args in read_commands(finished.db, evaluated_candidates(finished.db)[0].id):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (args, result.output)
    assert finished.path.read_bytes() == before


def test_a_read_neither_creates_nor_migrates_a_schema_on_either_backend(store_url):
    with open_store(store_url) as store:
        with store.engine.connect() as connection, connection.begin():
            command.downgrade(alembic_config(connection), "-1")
        behind = store.schema_revision()
    assert behind != head_revision()
    result = runner.invoke(app, ["status", "--db", store_url])
    assert result.exit_code == 1 and "db upgrade" in result.output, result.output
    assert schema_status(store_url).current == behind  # refused, not migrated
    assert runner.invoke(app, ["db", "upgrade", "--db", store_url]).exit_code == 0
    ready = runner.invoke(app, ["status", "--db", store_url])
    assert ready.exit_code == 0 and "no searches yet" in ready.output, ready.output


def _without_write_permission() -> list[str]:
    """A command prefix under which the file permissions hold: root bypasses them unless it drops the
    capabilities that let it."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: a read-only directory cannot be made to hold")
    caps = "-dac_override,-dac_read_search,-fowner"
    return ["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}"]


def test_reads_work_in_a_read_only_directory(finished: StoredSearch, tmp_path):
    candidate_id = evaluated_candidates(finished.db)[0].id
    folder = tmp_path / "locked"
    folder.mkdir()
    copy = folder / "evonorm.db"
    shutil.copyfile(finished.path, copy)
    db = f"sqlite:///{copy}"
    script = (
        "import json, sys\n"
        "from typer.testing import CliRunner\n"
        "from evonorm_search.cli import app\n"
        "results = [CliRunner().invoke(app, args) for args in json.loads(sys.argv[1])]\n"
        "print(json.dumps([[r.exit_code, r.output] for r in results]))\n"
    )
    copy.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    try:
        commands = read_commands(db, candidate_id)
        proc = subprocess.run(
            [*_without_write_permission(), sys.executable, "-c", script, json.dumps(commands)],
            capture_output=True,
            text=True,
            cwd=REPOSITORY,
            env={**os.environ, "PYTHONPATH": str(REPOSITORY)},
            timeout=300,
        )
    finally:
        folder.chmod(stat.S_IRWXU)
    assert proc.returncode == 0, proc.stderr
    for args, (code, output) in zip(commands, json.loads(proc.stdout.splitlines()[-1]), strict=True):
        assert code == 0, (args, output)
        assert "read-only" not in output and "readonly" not in output
    assert sorted(p.name for p in folder.iterdir()) == ["evonorm.db"]


def test_the_missing_database_hint_carries_the_db_it_was_given(finished: StoredSearch):
    other = finished.db.replace("evonorm.db", "other.db")
    result = runner.invoke(app, ["status", "--db", other])
    assert f"--db {other}" in result.output


# -- a stopped run ---------------------------------------------------------------------------------------


def _wait_for_running(db: str, process: subprocess.Popen) -> None:
    """Until the search has evaluated something and has work in flight."""

    def work_in_flight() -> bool:
        assert process.poll() is None, f"the search exited before it had work in flight: {process.poll()=}"
        try:
            with open_store(db, create=False) as store, store.session(readonly=True) as s:
                statuses = [c.status for c in list_candidates(s, 1, limit=100).items]
        except Exception:  # the database may not exist yet
            return False
        return CandidateStatus.EVALUATED in statuses and CandidateStatus.RUNNING in statuses

    wait_until(work_in_flight, what="work in flight")


def test_a_stopped_run_exits_with_its_own_status_and_a_resume_hint(tmp_path):
    config = tmp_path / "slow.yaml"
    config.write_text(tiny_yaml(budget=12, training=SLOW_TRAINING, baselines=["relu", "gn_relu"]))
    db = f"sqlite:///{tmp_path / 'stop.db'}"
    process = subprocess.Popen(
        [sys.executable, "-m", "evonorm_search", "run", str(config), "--db", db, "--no-live", "--in-process"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPOSITORY)},
    )
    try:
        _wait_for_running(db, process)
        stopped = runner.invoke(app, ["stop", "1", "--db", db, "--timeout", "120"])
        output, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
    assert stopped.exit_code == 0 and "search 1: stopped" in stopped.output, stopped.output
    assert f"evonorm-search resume 1 --db {db}" in stopped.output
    assert process.returncode == EXIT_STOPPED != 0, output
    assert f"evonorm-search resume 1 --db {db}" in output

    status = runner.invoke(app, ["status", "1", "--db", db])
    assert status.exit_code == 0, status.output
    assert "running" not in status.output and "queued" not in status.output
    help_text = runner.invoke(app, ["run", "--help"]).output
    assert f"{EXIT_STOPPED}" in help_text and "stop" in help_text

    resumed = runner.invoke(app, ["resume", "1", "--db", db, "--no-live", "--in-process"])
    assert resumed.exit_code == 0, resumed.output
    assert "12/12 candidates" in resumed.output


def test_a_hint_in_an_error_carries_the_db(tmp_path):
    db = f"sqlite:///{tmp_path / 'driven.db'}"
    with open_store(db) as store:
        populate(store, candidates=3, final_state=SearchState.RUNNING)  # this process holds the controller
    result = runner.invoke(app, ["resume", "1", "--db", db, "--in-process"])
    assert result.exit_code == 1, result.output
    assert f"`evonorm-search stop 1 --db {db}`" in result.output
