"""`evonorm-search serve`: the real command, in its own process, serving a database given by path."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import httpx
from typer.testing import CliRunner

from evonorm_search import store as st
from evonorm_search.cli import app
from evonorm_search.cli.serve import database_url
from tests.conftest import wait_until

from .factories import populate

SERVE = [sys.executable, "-m", "evonorm_search", "serve"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_answers_over_http_on_the_given_port_and_database(tmp_path):
    db = tmp_path / "runs" / "evonorm.db"
    with st.open_store(database_url(str(db))) as store:
        search = populate(store, candidates=3)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVONORM_")}
    process = subprocess.Popen(
        [*SERVE, "--host", "127.0.0.1", "--port", str(port), "--db", str(db)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            try:
                return httpx.get(f"{base}/readyz", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(ready, limit=60, interval=0.2, what="the server's readiness")
        listed = httpx.get(f"{base}/api/v1/searches").json()["items"]
        assert [s["id"] for s in listed] == [search.id]
        assert httpx.get(f"{base}/").headers["content-type"].startswith("text/html")
        refused = httpx.post(f"{base}/api/v1/searches", json={"name": "x"})
        assert refused.status_code == 403  # no keys configured: reads only
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert f"dashboard: http://127.0.0.1:{port}/" in output
    assert "no API keys" in output


def test_serve_refuses_bad_settings_without_echoing_keys(monkeypatch):
    monkeypatch.setenv("EVONORM_API_KEYS", "short-secret")
    result = CliRunner().invoke(app, ["serve", "--port", "8123"])
    assert result.exit_code == 2
    assert "shorter than 16 characters" in result.output
    assert "short-secret" not in result.output


def test_db_option_takes_urls_or_paths(tmp_path):
    assert database_url(None) is None
    assert database_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"
    assert database_url(str(tmp_path / "x.db")) == f"sqlite:///{tmp_path / 'x.db'}"
    assert database_url("relative.db") == f"sqlite:///{os.path.abspath('relative.db')}"
