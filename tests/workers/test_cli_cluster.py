"""`run --ray-address`, `stop` and `resume` as a user runs them: real controller processes attached to the
multi-node cluster, PostgreSQL as the store. A controller killed with SIGKILL, or stopped, then resumed,
completes the budget exactly without repeating an evaluation. Errors are clean messages and exit codes."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from evonorm_search.cli import app
from evonorm_search.search.controller import create_search
from evonorm_search.store import (
    CandidateStatus,
    SearchState,
    claim_controller,
    get_search,
    list_searches,
    search_summary,
    set_search_state,
)
from tests.conftest import wait_until

from .accounting import assert_fully_accounted
from .conftest import TINY_SEARCH, tiny_config

ARCHITECTURES = ["resnet", "mobilenetv2"]
SLOW_TRAINING = {**TINY_SEARCH["training"], "steps": 120}  # long enough to be caught mid-evaluation
runner = CliRunner()


def write_config(tmp_path: Path, **changes) -> Path:
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump({**TINY_SEARCH, "training": SLOW_TRAINING, **changes}))
    return path


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "evonorm_search", *args]


def start_run(tmp_path: Path, config: Path, db: str, address: str) -> subprocess.Popen:
    log = (tmp_path / "run.log").open("w")
    return subprocess.Popen(
        cli("run", str(config), "--db", db, "--ray-address", address, "--no-live"), stdout=log, stderr=subprocess.STDOUT
    )


def wait_for(store, predicate, process: subprocess.Popen, limit: float = 240.0):
    """Poll the store until `predicate(summary)` holds (the limit only guards against a hang)."""

    def reached():
        assert process.poll() is None, f"the controller exited early with {process.returncode}"
        with store.session(readonly=True) as s:
            searches = list_searches(s).items
            summary = search_summary(s, searches[0].id) if searches else None
        return summary if summary is not None and predicate(summary) else None

    return wait_until(reached, limit=limit, interval=0.2, what="the awaited point of the search")


def snapshot_evaluations(store, search_id: int):
    from sqlalchemy import select

    from evonorm_search.store import Candidate, Evaluation

    with store.session(readonly=True) as s:
        rows = s.execute(
            select(Evaluation.id, Evaluation.candidate_id, Evaluation.architecture, Evaluation.attempt)
            .join(Candidate)
            .where(Candidate.search_id == search_id)
        ).all()
    return {tuple(r) for r in rows}


@pytest.mark.xdist_group("ray")
@pytest.mark.postgres
def test_sigkill_of_the_controller_then_resume_completes_the_budget_exactly(cluster, pg_store, postgres_url, tmp_path):
    config = write_config(tmp_path)
    run = start_run(tmp_path, config, postgres_url, cluster.address)
    try:
        wait_for(pg_store, lambda s: s.evaluated >= 2 and s.by_status.get(CandidateStatus.RUNNING, 0) >= 1, run)
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=30)
    finally:
        if run.poll() is None:
            run.kill()
    search_id = 1
    with pg_store.session(readonly=True) as s:
        assert get_search(s, search_id).state is SearchState.RUNNING  # it died without a word
    before = snapshot_evaluations(pg_store, search_id)

    resumed = subprocess.run(
        cli("resume", str(search_id), "--db", postgres_url, "--ray-address", cluster.address, "--no-live"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"resuming search {search_id} (tiny)" in resumed.stdout
    assert "evaluating on the Ray cluster at" in resumed.stdout

    assert_fully_accounted(pg_store, search_id, budget=TINY_SEARCH["budget"], architectures=ARCHITECTURES)
    after = snapshot_evaluations(pg_store, search_id)
    assert before <= after, "an evaluation committed before the kill was lost or rewritten"
    rerun = {(c, a) for (_, c, a, _) in after - before} & {(c, a) for (_, c, a, _) in before}
    assert not rerun, f"evaluations repeated after resume: {rerun}"


@pytest.mark.xdist_group("ray")
@pytest.mark.postgres
def test_stop_then_resume(cluster, pg_store, postgres_url, tmp_path):
    # Evaluations long enough that the `stop` process (seconds to start) arrives while work is left.
    config = write_config(tmp_path, training={**SLOW_TRAINING, "steps": 600})
    run = start_run(tmp_path, config, postgres_url, cluster.address)
    try:
        wait_for(pg_store, lambda s: s.evaluated >= 1 and s.by_status.get(CandidateStatus.RUNNING, 0) >= 1, run)
        stopped = subprocess.run(
            cli("stop", "1", "--db", postgres_url, "--timeout", "120"), capture_output=True, text=True, timeout=180
        )
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert "search 1: stopped" in stopped.stdout
        assert run.wait(timeout=60) == 3  # the controller ended on its own: `run`'s status for a stopped search
    finally:
        if run.poll() is None:
            run.kill()
    with pg_store.session(readonly=True) as s:
        summary = search_summary(s, 1)
    ended = sum(summary.by_status.get(s, 0) for s in (CandidateStatus.EVALUATED, CandidateStatus.REJECTED))
    assert summary.search.state is SearchState.STOPPED
    assert ended < TINY_SEARCH["budget"], "the search was stopped with work left for resume to do"

    resumed = subprocess.run(
        cli("resume", "1", "--db", postgres_url, "--ray-address", cluster.address, "--no-live"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert_fully_accounted(pg_store, 1, budget=TINY_SEARCH["budget"], architectures=ARCHITECTURES)


@pytest.mark.xdist_group("ray")
def test_run_refuses_sqlite_on_the_multi_node_cluster(cluster, tmp_path):
    db = f"sqlite:///{tmp_path / 'evonorm.db'}"
    result = runner.invoke(app, ["run", str(write_config(tmp_path)), "--db", db, "--ray-address", cluster.address])
    assert result.exit_code == 1
    assert "SQLite file on this machine" in result.output and "Use PostgreSQL" in result.output


def test_run_with_an_unreachable_cluster_fails_fast_with_what_to_do(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    db = f"sqlite:///{tmp_path / 'evonorm.db'}"
    result = subprocess.run(
        cli("run", str(write_config(tmp_path)), "--db", db, "--ray-address", f"127.0.0.1:{port}", "--no-live"),
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "EVONORM_RAY_ADDRESS": ""},
    )
    assert result.returncode == 1
    assert f"cannot reach the Ray cluster at 127.0.0.1:{port}" in result.stderr


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--gpus-per-evaluation", "-1"], "gpus must be a finite number >= 0"),
        (["--cpus-per-evaluation", "0"], "needs some cpus or gpus"),
        (["--retries", "-1"], "retries must be a whole number >= 0"),
        (["--evaluation-timeout", "0"], "evaluation_timeout must be positive"),
    ],
)
def test_bad_ray_options_are_usage_errors(tmp_path, options, message):
    db = f"sqlite:///{tmp_path / 'evonorm.db'}"
    result = runner.invoke(app, ["run", str(write_config(tmp_path)), "--db", db, *options])
    assert result.exit_code == 2
    assert message in result.output


@pytest.fixture
def sqlite_db(tmp_path):
    from evonorm_search.store import open_store

    url = f"sqlite:///{tmp_path / 'evonorm.db'}"
    with open_store(url) as store:
        yield url, store


def test_resume_and_stop_explain_what_they_cannot_do(sqlite_db):
    url, store = sqlite_db
    done = create_search(store, tiny_config(name="done"))
    busy = create_search(store, tiny_config(name="busy"))
    with store.session() as s:
        set_search_state(s, done, SearchState.RUNNING)
        set_search_state(s, done, SearchState.COMPLETED)
        claim_controller(s, busy, host=socket.gethostname(), pid=os.getpid(), stale_after=timedelta(0))
        set_search_state(s, busy, SearchState.RUNNING)

    cases = [
        (["resume", "99"], "no search with id 99"),
        (["resume", str(done)], f"search {done} is completed: its budget is spent"),
        (["resume", str(busy)], f"search {busy} is being driven by process {os.getpid()}"),
        (["stop", "99"], "no search with id 99"),
        (["stop", str(done)], f"search {done} is already completed; there is nothing to stop"),
    ]
    for args, message in cases:
        result = runner.invoke(app, [*args, "--db", url])
        assert result.exit_code == 1, (args, result.output)
        assert message in result.output, (args, result.output)

    result = runner.invoke(app, ["stop", str(busy), "--db", url, "--no-wait"])
    assert result.exit_code == 0 and f"search {busy}: stopping" in result.output
    result = runner.invoke(app, ["stop", str(busy), "--db", url, "--timeout", "0.5"])
    assert result.exit_code == 1 and "still stopping after 0.5s" in result.output


def local_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "EVONORM_RAY_ADDRESS"}


@pytest.mark.xdist_group("ray")
def test_run_starts_a_local_ray_by_default(tmp_path):
    db = f"sqlite:///{tmp_path / 'evonorm.db'}"
    config = write_config(tmp_path, budget=4, training=TINY_SEARCH["training"])
    result = subprocess.run(
        cli("run", str(config), "--db", db, "--no-live"), capture_output=True, text=True, timeout=300, env=local_env()
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"evaluating on a local Ray \(1 node, \d+ CPUs\)", result.stdout)
    from evonorm_search.store import open_store

    with open_store(db) as store:
        facts = assert_fully_accounted(store, 1, budget=4, architectures=ARCHITECTURES)
    assert all("/" in e.node for e in facts["evaluations"])  # labelled by the Ray task: host/ray-node


@pytest.mark.xdist_group("ray")
def test_a_local_ray_that_cannot_fit_one_evaluation_is_refused(tmp_path):
    db = f"sqlite:///{tmp_path / 'evonorm.db'}"
    result = subprocess.run(
        cli("run", str(write_config(tmp_path)), "--db", db, "--gpus-per-evaluation", "1", "--no-live"),
        capture_output=True,
        text=True,
        timeout=300,
        env=local_env(),
    )
    assert result.returncode == 1
    assert "no node of a local Ray (1 node" in result.stderr and "needs 1 CPU and 1 GPU" in result.stderr
