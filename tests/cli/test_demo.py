"""The README's main job: `evonorm-search demo` runs a real search on local Ray and SQLite, prints its
Pareto front, then serves the dashboard over the results."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import httpx
import pytest

from tests.conftest import wait_until
from tests.search.conftest import tiny_yaml

pytestmark = pytest.mark.xdist_group("ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_demo_runs_a_search_then_serves_its_results(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(tiny_yaml(budget=8))
    port = _free_port()
    env = os.environ | {"EVONORM_HOME": str(tmp_path / "home"), "RAY_ADDRESS": "", "EVONORM_RAY_ADDRESS": ""}
    proc = subprocess.Popen(
        [sys.executable, "-m", "evonorm_search", "demo", str(config), "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:

        def dashboard_answer() -> httpx.Response | None:
            assert proc.poll() is None, f"the demo exited with {proc.poll()} before the dashboard came up"
            try:
                return httpx.get(f"http://127.0.0.1:{port}/api/v1/searches", timeout=2)
            except httpx.HTTPError:
                return None

        status = wait_until(dashboard_answer, limit=240, interval=1, what="the dashboard")
        assert status.status_code == 200
        searches = status.json()["items"]
        assert len(searches) == 1 and searches[0]["state"] == "completed"
        page = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
        assert page.status_code == 200 and "<html" in page.text.lower()
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            output, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate()
    assert "Pareto front of search 1" in output, output[-3000:]
    assert f"results: search 1 in sqlite:///{tmp_path / 'home' / 'evonorm.db'}" in output
    assert (tmp_path / "home" / "evonorm.db").is_file()


def test_demo_refuses_a_missing_configuration(tmp_path):
    from typer.testing import CliRunner

    from evonorm_search.cli import app

    result = CliRunner().invoke(app, ["demo", str(tmp_path / "absent.yaml"), "--no-serve"])
    assert result.exit_code == 2 and "no such configuration" in result.output
