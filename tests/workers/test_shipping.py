"""A user's model module reaches Ray workers that never had it: `run --working-dir DIR` ships DIR through
Ray's `runtime_env`, and each worker imports the factory from its own copy.

The cluster's nodes were started by this test process, before the module existed, so neither their
Python path nor their working directory holds it; the factory records the file each process imported it
from, so the test sees the workers' copies rather than trusting that evaluations succeeded."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from evonorm_search.cli import app
from evonorm_search.store import CandidateStatus, list_candidates, list_searches

from .conftest import TINY_SEARCH

FACTORY_MODULE = '''
"""A factory only the driver's folder holds."""
import os
from torch import nn


def net(num_classes, in_channels, norm_act, width, log):
    with open(log, "a") as f:
        f.write(f"{os.getpid()} {os.path.abspath(__file__)}\\n")
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1, bias=False), norm_act(width),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes),
    )
'''


def write_search(tmp_path: Path, module: str) -> tuple[Path, Path, Path]:
    code = tmp_path / "code"
    code.mkdir()
    (code / f"{module}.py").write_text(FACTORY_MODULE)
    log = tmp_path / "imports.log"
    config = tmp_path / "configs" / "search.yaml"  # not beside the module: only shipping finds it
    config.parent.mkdir()
    architecture = {
        "kind": "python",
        "name": "mine",
        "factory": f"{module}:net",
        "kwargs": {"width": 4, "log": str(log)},
    }
    config.write_text(yaml.safe_dump({**TINY_SEARCH, "budget": 4, "architectures": [architecture]}))
    return config, code, log


@pytest.mark.xdist_group("ray")
@pytest.mark.postgres
def test_run_ships_the_working_dir_to_workers_that_never_had_the_module(cluster, pg_store, postgres_url, tmp_path):
    module = f"shipped_model_{os.getpid()}"  # a name no other test process imports
    config, code, log = write_search(tmp_path, module)
    args = ["run", str(config), "--db", postgres_url, "--ray-address", cluster.address, "--no-live"]
    run = subprocess.run(
        [sys.executable, "-m", "evonorm_search", *args, "--working-dir", str(code)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    with pg_store.session(readonly=True) as s:
        search = list_searches(s).items[0]
        candidates = list_candidates(s, search.id, limit=100).items
    evaluated = [c for c in candidates if c.status is CandidateStatus.EVALUATED]
    assert evaluated, [c.status for c in candidates]
    assert not [c for c in candidates if c.status is CandidateStatus.FAILED]

    imports = [line.split(" ", 1) for line in log.read_text().splitlines()]
    driver = {path for _, path in imports if Path(path).parent == code}
    shipped = {path for _, path in imports if Path(path).parent != code}
    assert driver, "the driver builds the model from the folder it was given"
    assert shipped, "no worker imported the factory"
    # Each worker's copy is Ray's unpacked package of the folder, not the folder itself.
    assert all("working_dir_files" in path or "runtime_resources" in path for path in shipped), shipped


def test_a_working_dir_that_is_not_a_folder_is_refused_before_anything_runs(tmp_path):
    config, _, _ = write_search(tmp_path, "never_imported")
    missing, db = tmp_path / "nowhere", tmp_path / "search.db"
    check = ["check", str(config), "--working-dir", str(missing)]
    run = ["run", str(config), "--working-dir", str(missing), "--in-process", "--db", f"sqlite:///{db}"]
    for args in (check, run):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2, result.output
        assert f"--working-dir {missing} is not a folder" in result.stderr
    assert not db.exists()  # refused before the store opened
