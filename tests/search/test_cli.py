"""`run`, `status`, `pareto` and `export --candidate`, including SIGKILL of a real `run` and its resumption."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter

import pytest
from typer.testing import CliRunner

import evonorm_search as es
from evonorm_search.cli import app
from evonorm_search.store import CandidateStatus, evaluations_of, list_candidates, open_store
from tests.conftest import wait_until

from .conftest import tiny_yaml

runner = CliRunner()


@pytest.fixture
def workspace(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(tiny_yaml(budget=10))
    return config, f"sqlite:///{tmp_path / 'cli.db'}"


def invoke(*args: str):
    return runner.invoke(app, list(args))


def test_run_then_status_pareto_and_export(workspace, tmp_path):
    config, db = workspace
    result = invoke("run", str(config), "--db", db, "--no-live", "--in-process")
    assert result.exit_code == 0, result.output
    assert "started search 1 (tiny)" in result.output
    assert "10/10 candidates" in result.output and "search completed" in result.output
    assert f"evonorm-search pareto 1 --db {db}" in result.output

    listing = invoke("status", "--db", db)
    assert listing.exit_code == 0 and "tiny" in listing.output and "completed" in listing.output
    detail = invoke("status", "1", "--db", db)
    assert detail.exit_code == 0
    assert "candidates" in detail.output and "10 of 10" in detail.output and "rejected (stability)" in detail.output

    front = invoke("pareto", "1", "--db", db, "--json")
    assert front.exit_code == 0, front.output
    data = json.loads(front.output)
    assert data["objectives"] == ["accuracy_resnet", "accuracy_mobilenetv2"] and data["proxy"]
    best = data["proxy"][0]
    table = invoke("pareto", "1", "--db", db)
    assert table.exit_code == 0 and "Pareto front of search 1" in table.output

    out = tmp_path / "layer.py"
    exported = invoke("export", "--candidate", str(best["candidate"]), "--db", db, "-o", str(out))
    assert exported.exit_code == 0, exported.output
    source = out.read_text()
    assert f"class EvoNormCandidate{best['candidate']}" in source
    namespace: dict = {}
    exec(compile(source, str(out), "exec"), namespace)
    layer = namespace[f"EvoNormCandidate{best['candidate']}"](8, groups=2)
    reference = es.NormAct(es.parse(best["layer"]), 8, groups=2, backend="torch")
    import torch

    x = torch.randn(4, 8, 3, 3)
    assert torch.allclose(layer(x), reference(x), atol=1e-6)


def test_running_the_same_config_again_resumes_only_unfinished_searches(workspace):
    config, db = workspace
    assert invoke("run", str(config), "--db", db, "--no-live", "--in-process").exit_code == 0
    again = invoke("run", str(config), "--db", db, "--no-live", "--in-process")
    assert again.exit_code == 0 and "started search 2 (tiny)" in again.output  # the first one is completed
    resumed = invoke("run", "--resume", "2", "--db", db, "--no-live", "--in-process")
    assert resumed.exit_code == 1 and "search 2 is completed: its budget is spent" in resumed.output  # as `resume 2`


@pytest.mark.parametrize(
    ("args", "fragment", "code"),
    [
        (["run"], "give CONFIG.yaml, or --resume ID", 2),
        (["run", "missing.yaml"], "no such file: missing.yaml", 2),
        (["run", "--resume", "99"], "no search with id 99", 1),
        (["status", "99"], "no search with id 99", 1),
        (["pareto", "99"], "no search with id 99", 1),
        (["export", "--candidate", "99"], "no candidate with id 99", 1),
        (["export", "--candidate", "1", "--layer", "relu"], "give one of --layer NAME|FILE or --candidate ID", 2),
        (["export", "--layer", "relu", "--db", "sqlite:///x.db"], "--db applies to --candidate only", 2),
    ],
)
def test_bad_requests_are_clear_errors(workspace, args, fragment, code):
    _, db = workspace
    open_store(db).close()  # an empty database: reads refuse a missing one
    needs_db = args[0] in ("run", "status", "pareto") or "--candidate" in args
    result = invoke(*args, *(["--db", db] if needs_db and "--db" not in args else []))
    assert result.exit_code == code, result.output
    assert fragment in result.output


def test_a_bad_config_names_the_field(tmp_path, workspace):
    _, db = workspace
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ntraining: {lr: -1}\npopulaton: 3\n")
    result = invoke("run", str(bad), "--db", db)
    assert result.exit_code == 2
    assert "training.lr: Input should be greater than 0" in result.output
    assert "populaton: Extra inputs are not permitted" in result.output


def test_resume_with_a_different_config_is_refused(workspace, tmp_path):
    config, db = workspace
    assert invoke("run", str(config), "--db", db, "--no-live", "--in-process").exit_code == 0
    other = tmp_path / "other.yaml"
    other.write_text(tiny_yaml(budget=11))
    result = invoke("run", str(other), "--resume", "1", "--db", db)
    assert result.exit_code == 2 and "different configuration" in result.output


EVALUATION_FLAGS = ["--in-process", "--cpus-per-evaluation", "3", "--gpus", "0.5", "--evaluation-timeout", "7"]
EVALUATION_FLAGS += ["--retries", "4", "--ray-address", "head:6379"]


@pytest.mark.parametrize(
    ("module", "command"),
    [
        ("search", ["run", "CONFIG"]),
        ("search", ["resume", "1"]),
        ("search", ["run", "--resume", "1"]),
        ("scoring", ["evaluate", "--layer", "relu", "--config", "CONFIG"]),
        ("scoring", ["validate", "--layer", "relu", "--config", "CONFIG", "--no-baselines"]),
    ],
)
def test_every_evaluating_command_takes_the_one_evaluation_option_set(workspace, monkeypatch, module, command):
    import importlib

    import typer

    from evonorm_search.cli.common import EvaluationOptions

    config, db = workspace
    with open_store(db) as store:  # a search for `resume 1` (created: resumable)
        from evonorm_search.search import SearchConfig
        from evonorm_search.search.controller import create_search

        create_search(store, SearchConfig.from_yaml(config))
    received = []

    def record(store, config, options, **kwargs):
        received.append(options)
        raise typer.Exit(0)

    monkeypatch.setattr(importlib.import_module(f"evonorm_search.cli.{module}"), "make_evaluator", record)
    args = [str(config) if a == "CONFIG" else a for a in command]
    needs_db = command[0] in ("run", "resume")
    result = invoke(*args, *EVALUATION_FLAGS, *(["--db", db] if needs_db else []))
    assert result.exit_code == 0, result.output
    assert received == [
        EvaluationOptions(
            ray_address="head:6379", in_process=True, cpus=3.0, gpus=0.5, evaluation_timeout=7.0, retries=4
        )
    ]


def test_status_of_an_empty_database_says_how_to_start(workspace):
    _, db = workspace
    assert invoke("db", "upgrade", "--db", db).exit_code == 0
    result = invoke("status", "--db", db)
    assert result.exit_code == 0 and "no searches yet" in result.output
    assert f"evonorm-search run examples/quick.yaml --db {db}" in result.output


# -- SIGKILL of a real controller process ----------------------------------------------------------------


def snapshot(url: str) -> dict:
    store = open_store(url)
    try:
        with store.session(readonly=True) as s:
            candidates = list_candidates(s, 1, limit=1000).items
            return {
                c.id: (c, [(e.architecture, e.phase.value, e.attempt, e.id) for e in evaluations_of(s, c.id)])
                for c in candidates
            }
    finally:
        store.close()


def start_run(config, db) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "evonorm_search", "run", str(config), "--db", db, "--no-live", "--in-process"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        preexec_fn=_ctrl_c_as_in_a_terminal,
    )


def _ctrl_c_as_in_a_terminal() -> None:
    """SIGINT at its default in the child, as a terminal starts a command. An ignored SIGINT is inherited
    across exec, and Python then keeps ignoring it (no KeyboardInterrupt): a test worker whose SIGINT an
    earlier test (a Ray driver, a server) left ignored would start a `run` that Ctrl-C cannot stop."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for_work_in_flight(url: str, process: subprocess.Popen) -> dict:
    """Wait until a few candidates are finished and one is training; then the kill hits mid-evaluation."""

    def work_in_flight() -> dict | None:
        assert process.poll() is None, f"the search exited before it had work in flight: {process.poll()=}"
        try:
            state = snapshot(url)
        except Exception:  # the database may not exist yet
            return None
        finished = [c for c, _ in state.values() if c.status in (CandidateStatus.EVALUATED, CandidateStatus.REJECTED)]
        running = [c for c, _ in state.values() if c.status is CandidateStatus.RUNNING]
        return state if len(finished) >= 4 and running else None

    return wait_until(work_in_flight, what="work in flight")


def test_sigkill_then_run_again_completes_the_budget_without_losing_or_repeating_evaluations(tmp_path):
    config = tmp_path / "kill.yaml"
    budget = 16
    config.write_text(tiny_yaml(budget=budget, training={"steps": 80, "batch_size": 32, "device": "cpu", "threads": 1}))
    db = f"sqlite:///{tmp_path / 'kill.db'}"
    process = start_run(config, db)
    try:
        wait_for_work_in_flight(db, process)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL
    before = snapshot(db)
    assert len(before) < budget

    second = start_run(config, db)
    output, _ = second.communicate(timeout=300)
    assert second.returncode == 0, output.decode()
    assert b"resuming unfinished search 1 (tiny)" in output

    after = snapshot(db)
    births = sorted(c.birth for c, _ in after.values())
    assert births == list(range(budget))
    assert all(c.status in (CandidateStatus.EVALUATED, CandidateStatus.REJECTED) for c, _ in after.values())
    for cid, (_, rows) in after.items():
        keys = Counter((arch, phase) for arch, phase, _, _ in rows)
        assert all(n == 1 for n in keys.values()), f"candidate {cid} evaluated twice: {rows}"
        old = before.get(cid)
        if old is not None and old[0].status is not CandidateStatus.RUNNING:
            assert rows == old[1]  # finished before the kill: untouched
    interrupted = [after[cid][0] for cid, (c, _) in before.items() if c.status is CandidateStatus.RUNNING]
    assert interrupted and all(c.attempt == 1 for c in interrupted)


def test_ctrl_c_leaves_the_search_stopped_and_resume_finishes_it(tmp_path):
    config = tmp_path / "interrupt.yaml"
    config.write_text(tiny_yaml(budget=12, training={"steps": 80, "batch_size": 32, "device": "cpu", "threads": 1}))
    db = f"sqlite:///{tmp_path / 'interrupt.db'}"
    process = start_run(config, db)
    try:
        wait_for_work_in_flight(db, process)
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, output.decode()
    assert f"interrupted: search 1 is stopped; `evonorm-search resume 1 --db {db}` continues it".encode() in output
    store = open_store(db)
    try:
        with store.session(readonly=True) as s:
            from evonorm_search.store import get_search

            search = get_search(s, 1)
            assert search.state.value == "stopped" and search.controller_pid is None
    finally:
        store.close()
    resumed = invoke("run", "--resume", "1", "--db", db, "--no-live", "--in-process")
    assert resumed.exit_code == 0, resumed.output
    assert "resuming search 1 (tiny)" in resumed.output and "12/12 candidates" in resumed.output
