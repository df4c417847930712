"""The launcher's decisions without a cluster: addresses, unreachable heads, the store check, resources,
settings, heartbeat bookkeeping, and stop requests on each kind of search."""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from evonorm_search.search.controller import create_search
from evonorm_search.store import ConflictError, NotFoundError, SearchState, claim_controller, set_search_state
from workers import (
    ADDRESS_VARIABLE,
    ClusterError,
    HeartbeatBoard,
    RayConnection,
    RaySettings,
    WorkerResources,
    check_settings,
    check_store,
    controller_alive,
    request_stop,
    resolve_address,
)
from workers.cluster import SHIPPED_EXCLUDES, _check_reachable, connect, shipped_code

from .conftest import TINY_SEARCH, tiny_config


def node(cpus: float = 0.0, gpus: float = 0.0, alive: bool = True, memory: float = 8e9) -> dict:
    return {"Alive": alive, "Resources": {"CPU": cpus, "GPU": gpus, "memory": memory}}


# -- addresses ----------------------------------------------------------------------------------------


def test_the_address_comes_from_the_argument_then_the_environment(monkeypatch):
    monkeypatch.delenv(ADDRESS_VARIABLE, raising=False)
    assert resolve_address(None) is None  # a local Ray
    monkeypatch.setenv(ADDRESS_VARIABLE, "head:6379")
    assert resolve_address(None) == "head:6379"
    assert resolve_address("other:6380") == "other:6380"
    assert resolve_address("local") is None  # overrides the environment
    assert resolve_address("  ") is None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_head_is_reported_at_once_with_what_to_do():
    port = free_port()
    with pytest.raises(ClusterError, match=rf"cannot reach the Ray cluster at 127.0.0.1:{port} .*ray start --head"):
        _check_reachable(f"127.0.0.1:{port}")


# -- shipping the user's code ------------------------------------------------------------------------


def test_the_shipped_folder_is_absolute_and_leaves_out_what_never_belongs(tmp_path, monkeypatch):
    (tmp_path / "code").mkdir()
    monkeypatch.chdir(tmp_path)
    env = shipped_code(Path("code"))
    assert env == {"working_dir": str(tmp_path / "code"), "excludes": SHIPPED_EXCLUDES}
    assert {".git", ".venv", "__pycache__"} <= set(SHIPPED_EXCLUDES)
    (tmp_path / "file.py").write_text("")
    for not_a_folder in (tmp_path / "file.py", tmp_path / "missing"):
        with pytest.raises(ClusterError, match=f"cannot ship {not_a_folder} to the Ray workers: it is not a folder"):
            shipped_code(not_a_folder)


def test_a_process_already_connected_cannot_ship_code_and_is_told_how(tmp_path, monkeypatch):
    import ray

    monkeypatch.setattr(ray, "is_initialized", lambda: True)  # a notebook or a service connected before
    with pytest.raises(
        ClusterError, match=r"already connected to Ray, so it cannot ship .*runtime_env=.*--working-dir"
    ):
        connect(None, working_dir=tmp_path)


@pytest.mark.parametrize("address", ["head", "head:", ":6379", "head:port", "head:63a79"])
def test_a_malformed_address_is_refused(address):
    with pytest.raises(ClusterError, match="expected HOST:PORT"):
        _check_reachable(address)


# -- the store check ----------------------------------------------------------------------------------


def connection(*nodes: dict, address: str | None = "head:6379") -> RayConnection:
    return RayConnection(address, owned=False, nodes=list(nodes))


def test_a_sqlite_store_is_refused_on_several_nodes_only():
    sqlite = SimpleNamespace(is_shared_across_nodes=False, url="sqlite:///runs/evonorm.db")
    check_store(sqlite, connection(node(cpus=2)))  # one node: the controller's machine
    check_store(sqlite, connection(node(cpus=2), node(cpus=2, alive=False)))  # a dead node does not count
    with pytest.raises(ClusterError) as refused:
        check_store(sqlite, connection(node(), node(cpus=2), node(cpus=2)))
    assert "has 3 nodes" in str(refused.value) and "sqlite:///runs/evonorm.db" in str(refused.value)
    assert "Use PostgreSQL: --db postgresql+psycopg://" in str(refused.value)
    postgres = SimpleNamespace(is_shared_across_nodes=True, url="postgresql+psycopg://db/evonorm")
    check_store(postgres, connection(node(), node(cpus=2), node(cpus=2)))


def test_a_cluster_where_no_evaluation_fits_is_named():
    from workers import capacity_problem

    cpus_only = connection(node(), node(cpus=4))
    assert capacity_problem(cpus_only, WorkerResources(cpus=1)) is None
    assert capacity_problem(cpus_only, WorkerResources(cpus=1, gpus=0.5)) == (
        "no node of the Ray cluster at head:6379 (2 nodes, 4 CPUs) can run an evaluation that needs 1 CPU and 0.5 GPUs"
    )
    assert "needs 8 CPUs" in capacity_problem(cpus_only, WorkerResources(cpus=8))


def test_a_connection_describes_itself():
    assert connection(node(cpus=4), address=None).describe() == "a local Ray (1 node, 4 CPUs)"
    cluster = connection(node(), node(cpus=8, gpus=2), node(cpus=8, gpus=2), node(cpus=8, alive=False))
    assert cluster.describe() == "the Ray cluster at head:6379 (3 nodes, 16 CPUs, 4 GPUs)"


# -- resources and settings ---------------------------------------------------------------------------


def test_slots_count_whole_evaluations_per_node():
    nodes = [node(), node(cpus=3, gpus=1), node(cpus=8, gpus=0), node(cpus=16, gpus=4, alive=False)]
    assert WorkerResources(cpus=1).slots_in(nodes) == 11
    assert WorkerResources(cpus=1, gpus=0.25).slots_in(nodes) == 3  # CPUs bound the GPU node
    assert WorkerResources(cpus=0.5, gpus=0.3).slots_in(nodes) == 3  # 0.9 of 1 GPU: fractions never span nodes
    assert WorkerResources(cpus=2).slots_in(nodes) == 5
    assert WorkerResources(cpus=1, memory_mb=4096).slots_in(nodes) == 2  # 8 GB per node: one 4 GiB each
    assert WorkerResources(cpus=1, gpus=0.1).slots_on({"CPU": 64, "GPU": 0.3}) == 3


def test_resources_become_ray_options():
    assert WorkerResources(cpus=2, gpus=0.5, memory_mb=512).ray_options() == {
        "num_cpus": 2,
        "num_gpus": 0.5,
        "memory": 512 * 1024 * 1024,
    }


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"cpus": -1}, "cpus must be a finite number >= 0"),
        ({"cpus": float("nan")}, "cpus must be a finite number >= 0"),
        ({"gpus": 1.5}, "gpus above 1 must be a whole number"),
        ({"cpus": 0}, "needs some cpus or gpus"),
        ({"memory_mb": 0}, "memory_mb must be a positive number"),
        ({"gpus": "1"}, "gpus must be a finite number"),
    ],
)
def test_bad_resources_are_refused_with_the_reason(kwargs, problem):
    with pytest.raises(ValueError, match=problem):
        WorkerResources(**kwargs)


def test_resources_follow_the_search_unless_given():
    assert RaySettings().resources_for(tiny_config()) == WorkerResources(cpus=1.0, gpus=0.0)
    threads = tiny_config(training={**TINY_SEARCH["training"], "threads": 3})
    assert RaySettings().resources_for(threads).cpus == 3.0
    cuda = tiny_config(training={**TINY_SEARCH["training"], "device": "cuda"})
    assert RaySettings().resources_for(cuda).gpus == 1.0
    assert RaySettings(gpus=0.25, cpus=2).resources_for(cuda) == WorkerResources(cpus=2, gpus=0.25)


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"retries": -1}, "retries must be a whole number >= 0"),
        ({"retries": True}, "retries must be a whole number"),
        ({"evaluation_timeout": 0}, "evaluation_timeout must be positive"),
        ({"heartbeat_interval": 0}, "heartbeat_interval must be positive"),
        ({"heartbeat_interval": 5, "heartbeat_timeout": 8}, "at least twice heartbeat_interval"),
        ({"max_in_flight": 0}, "max_in_flight must be >= 1"),
    ],
)
def test_bad_evaluator_settings_are_refused_with_the_reason(kwargs, problem):
    with pytest.raises(ValueError, match=problem):
        check_settings(**kwargs)


# -- heartbeat bookkeeping ----------------------------------------------------------------------------


def test_the_board_counts_tries_and_ignores_superseded_workers():
    board = HeartbeatBoard()
    assert board.snapshot([1]) == {}  # not started: still queued in Ray
    assert board.start(1, "host/aaaa", pid=100) == 1
    assert board.start(1, "host/bbbb", pid=200) == 2  # Ray retried it on another node
    board.beat(1, pid=100)  # a late beat from the lost worker keeps nothing alive
    seen = board.snapshot([1, 2])
    assert list(seen) == [1]
    assert (seen[1].tries, seen[1].node, seen[1].pid) == (2, "host/bbbb", 200)
    assert seen[1].silent_for >= 0 and seen[1].running_for >= seen[1].silent_for - 1e-9
    board.forget([1])
    assert board.snapshot([1]) == {}


# -- stop requests ------------------------------------------------------------------------------------


@pytest.fixture
def sqlite_store(tmp_path):
    from evonorm_search.store import open_store

    with open_store(f"sqlite:///{tmp_path / 'evonorm.db'}") as store:
        yield store


def test_stopping_each_kind_of_search(sqlite_store):
    store = sqlite_store
    created = create_search(store, tiny_config())
    assert request_stop(store, created) is SearchState.STOPPED  # nobody drives it
    assert request_stop(store, created) is SearchState.STOPPED  # twice is harmless

    driven = create_search(store, tiny_config(name="driven"))
    with store.session() as s:
        claim_controller(s, driven, host=socket.gethostname(), pid=os.getpid(), stale_after=timedelta(seconds=60))
        set_search_state(s, driven, SearchState.RUNNING)
    assert request_stop(store, driven) is SearchState.STOPPING  # its live controller will stop it

    abandoned = create_search(store, tiny_config(name="abandoned"))
    with store.session() as s:
        claim_controller(s, abandoned, host=socket.gethostname(), pid=_dead_pid(), stale_after=timedelta(seconds=60))
        set_search_state(s, abandoned, SearchState.RUNNING)
    assert request_stop(store, abandoned) is SearchState.STOPPED  # its controller was killed: none would answer

    with store.session() as s:
        set_search_state(s, driven, SearchState.STOPPED)
        set_search_state(s, driven, SearchState.RUNNING)
        set_search_state(s, driven, SearchState.COMPLETED)
    with pytest.raises(ConflictError, match="already completed; there is nothing to stop"):
        request_stop(store, driven)
    with pytest.raises(NotFoundError):
        request_stop(store, 999)


def test_a_controller_on_this_machine_whose_process_is_gone_is_not_alive():
    now = datetime.now(UTC)
    dead_pid = _dead_pid()
    here = SimpleNamespace(controller_host=socket.gethostname(), controller_pid=dead_pid, controller_heartbeat_at=now)
    assert not controller_alive(here)
    assert controller_alive(
        SimpleNamespace(controller_host=socket.gethostname(), controller_pid=os.getpid(), controller_heartbeat_at=now)
    )
    never = SimpleNamespace(controller_host=None, controller_pid=None, controller_heartbeat_at=None)
    assert not controller_alive(never)
    remote = SimpleNamespace(controller_host="elsewhere", controller_pid=1, controller_heartbeat_at=now)
    assert controller_alive(remote)  # another machine: only its heartbeat tells
    assert not controller_alive(remote, now=now + timedelta(minutes=5))


def _dead_pid() -> int:
    import subprocess
    import sys

    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(child.stdout)
