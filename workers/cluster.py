"""Connecting to Ray and running searches on it.

`connect()` starts a local Ray by default, or attaches to an existing cluster given as `address` or in
EVONORM_RAY_ADDRESS. A cluster of several nodes needs a database every node (and the API service) can
reach, so a SQLite file is refused there with a message that says to use PostgreSQL. `open_evaluator`
connects and returns a `RayEvaluator` that leaves Ray again when it is closed; `RayLauncher` is what the
API service uses to drive searches on Ray (`EVONORM_LAUNCHER=ray`, the default when this module exists).
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray

from evonorm_search.search.background import BackgroundLauncher
from evonorm_search.search.config import SearchConfig
from evonorm_search.store import Store, get_search

from .ray_evaluator import RayEvaluator
from .resources import WorkerResources

ADDRESS_VARIABLE = "EVONORM_RAY_ADDRESS"
LOCAL = "local"  # as an address: start a local Ray (the default)
CONNECT_TIMEOUT = 5.0  # seconds to reach an explicit address before saying it is unreachable


class ClusterError(RuntimeError):
    """Ray cannot be used as asked (unreachable, or a database its nodes cannot share); the message says
    what to do."""


@dataclass(frozen=True)
class RaySettings:
    """How evaluations run on Ray. `cpus=None` takes the search's `training.threads` (or 1); `gpus=None`
    follows the search and the cluster (`default_gpus`); `max_calls=None` takes the search's
    `workers.max_calls`. See `RayEvaluator` for the rest."""

    cpus: float | None = None
    gpus: float | None = None
    memory_mb: int | None = None
    retries: int = 2
    evaluation_timeout: float | None = None
    heartbeat_interval: float = 5.0
    heartbeat_timeout: float = 60.0
    max_in_flight: int | None = None
    max_calls: int | None = None

    def resources_for(self, config: SearchConfig, *, cluster_gpus: float = 0.0) -> WorkerResources:
        """What one evaluation of `config` reserves on a cluster whose alive nodes have `cluster_gpus` GPUs."""
        cpus = self.cpus if self.cpus is not None else float(config.training.threads or 1)
        gpus = self.gpus if self.gpus is not None else default_gpus(config, cluster_gpus)
        return WorkerResources(cpus=cpus, gpus=gpus, memory_mb=self.memory_mb)

    def max_calls_for(self, config: SearchConfig) -> int:
        return self.max_calls if self.max_calls is not None else config.workers.max_calls


def default_gpus(config: SearchConfig, cluster_gpus: float) -> float:
    """GPUs one evaluation reserves unless told: none when it trains on `cpu`; the search's
    `workers.gpus_per_evaluation` on `cuda`, and on `auto` when the cluster has GPUs. A CPU-only cluster
    runs `auto` on CPU. (An evaluation granted no GPU trains `auto` on CPU: see `workers.remote`.)"""
    device = config.training.device
    on_gpu = device == "cuda" or (device == "auto" and cluster_gpus > 0)
    return config.workers.gpus_per_evaluation if on_gpu else 0.0


@dataclass
class RayConnection:
    """This process's link to Ray. `address` None: a local Ray this process started."""

    address: str | None
    owned: bool  # whether this process connected (and so disconnects on close)
    nodes: list[dict[str, Any]] = field(repr=False)

    @property
    def alive_nodes(self) -> int:
        return sum(1 for n in self.nodes if n.get("Alive"))

    def total(self, resource: str) -> float:
        return sum(n.get("Resources", {}).get(resource, 0.0) for n in self.nodes if n.get("Alive"))

    def describe(self) -> str:
        where = "a local Ray" if self.address is None else f"the Ray cluster at {self.address}"
        gpus = self.total("GPU")
        devices = f"{self.total('CPU'):g} CPUs" + (f", {gpus:g} GPUs" if gpus else "")
        return f"{where} ({self.alive_nodes} node{'s' if self.alive_nodes != 1 else ''}, {devices})"

    def close(self) -> None:
        if self.owned and ray.is_initialized():
            ray.shutdown()


def resolve_address(address: str | None) -> str | None:
    """The cluster to attach to: `address`, else EVONORM_RAY_ADDRESS; None (or 'local') starts a local Ray."""
    chosen = (address if address is not None else os.environ.get(ADDRESS_VARIABLE, "")).strip()
    return None if chosen in ("", LOCAL) else chosen


def connect(
    address: str | None = None,
    *,
    store: Store | None = None,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    working_dir: Path | None = None,
) -> RayConnection:
    """Connect this process to Ray (see the module doc). `num_cpus`/`num_gpus` size a local Ray.
    `working_dir`, a folder of the user's code, is shipped to every worker (Ray's `runtime_env`): each
    worker starts in its copy and imports from it, on nodes that never had the files.

    If this process is already connected (a notebook, a test), that connection is used and left open.
    With `store`, refuses a database the cluster's nodes cannot share. Every problem is a ClusterError.
    """
    target = resolve_address(address)
    owned = not ray.is_initialized()
    runtime_env = shipped_code(working_dir) if working_dir is not None else None
    if owned:
        if target is not None:
            _check_reachable(target)
        _init(target, num_cpus, num_gpus, runtime_env)
    elif runtime_env is not None:
        raise ClusterError(
            f"this process is already connected to Ray, so it cannot ship {working_dir} to the workers; pass "
            f"runtime_env={{'working_dir': {str(working_dir)!r}}} to ray.init where it connects, or run the search "
            "from the command line with --working-dir"
        )
    elif target is not None and target != "auto" and target != _current_address():
        raise ClusterError(
            f"this process is already connected to the Ray cluster at {_current_address()}; it cannot also use {target}"
        )
    connection = RayConnection(target, owned, ray.nodes())
    if store is not None:
        try:
            check_store(store, connection)
        except ClusterError:
            connection.close()
            raise
    return connection


def check_store(store: Store, connection: RayConnection) -> None:
    """A cluster of several nodes needs a database they all reach: PostgreSQL, not a SQLite file."""
    if connection.alive_nodes > 1 and not store.is_shared_across_nodes:
        raise ClusterError(
            f"{connection.describe()} has {connection.alive_nodes} nodes, but the database {store.url} is a "
            "SQLite file on this machine that the other nodes and the API service cannot reach. Use PostgreSQL: "
            "--db postgresql+psycopg://USER@HOST:5432/DB (see docs/cluster.md)"
        )


def capacity_problem(connection: RayConnection, resources: WorkerResources) -> str | None:
    """Why no evaluation could run on the connected nodes now (None when at least one can)."""
    if resources.slots_in(connection.nodes) > 0:
        return None
    return f"no node of {connection.describe()} can run an evaluation that needs {resources.describe()}"


def open_evaluator(
    store: Store, config: SearchConfig, *, address: str | None = None, settings: RaySettings | None = None
) -> RayEvaluator:
    """Connect to Ray and return an evaluator for `config`'s searches; closing it leaves Ray again."""
    settings = settings or RaySettings()
    settings.resources_for(config)  # a bad setting fails before any Ray starts
    connection = connect(address, store=store)
    try:
        return RayEvaluator(
            settings.resources_for(config, cluster_gpus=connection.total("GPU")),
            max_calls=settings.max_calls_for(config),
            retries=settings.retries,
            evaluation_timeout=settings.evaluation_timeout,
            heartbeat_interval=settings.heartbeat_interval,
            heartbeat_timeout=settings.heartbeat_timeout,
            max_in_flight=settings.max_in_flight,
            on_close=connection.close,
        )
    except BaseException:
        connection.close()
        raise


def _current_address() -> str:
    return ray.get_runtime_context().gcs_address


def _check_reachable(address: str) -> None:
    """Fail in seconds, not minutes, when an explicit HOST:PORT does not answer (Ray itself retries long)."""
    if address == "auto" or "://" in address:
        return  # `auto` reads Ray's own files; ray:// is Ray Client, which reports its own errors
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ClusterError(
            f"cannot use the Ray address {address!r}: expected HOST:PORT (the head node's GCS address, port 6379 "
            "by default), ray://HOST:10001, auto, or local"
        )
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT):
            pass
    except OSError as e:
        raise ClusterError(
            f"cannot reach the Ray cluster at {address} ({e.strerror or e}); check that `ray start --head` runs "
            f"there and the port is open, or leave out --ray-address and {ADDRESS_VARIABLE} to start a local Ray"
        ) from None


# Ray refuses a working_dir above its package limit; these never belong in a shipped code folder.
SHIPPED_EXCLUDES = [".git", "__pycache__", "*.pyc", ".venv", "*.db", "*.db-wal", "*.db-shm"]


def shipped_code(folder: Path) -> dict[str, Any]:
    """The `runtime_env` that ships `folder` (made absolute: the driver's working directory may change)."""
    folder = Path(folder).expanduser().resolve()
    if not folder.is_dir():
        raise ClusterError(f"cannot ship {folder} to the Ray workers: it is not a folder")
    return {"working_dir": str(folder), "excludes": SHIPPED_EXCLUDES}


def _init(target: str | None, num_cpus: int | None, num_gpus: int | None, runtime_env: dict | None = None) -> None:
    common: dict[str, Any] = {"namespace": "evonorm-search", "logging_level": logging.WARNING}
    if runtime_env is not None:
        common["runtime_env"] = runtime_env
    try:
        if target is None:
            # "local" forces a new Ray: without it ray.init() joins whatever Ray this machine already runs.
            ray.init(address=LOCAL, num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False, **common)
        else:
            ray.init(address=target, **common)
    except (ConnectionError, RuntimeError, ValueError, OSError) as e:
        where = "start a local Ray" if target is None else f"connect to the Ray cluster at {target}"
        raise ClusterError(f"cannot {where}: {e}") from None


# -- the API service's launcher -------------------------------------------------------------------------


class RayLauncher(BackgroundLauncher):
    """Drives each launched search in a thread of this process, its evaluations on Ray.

    Ray is connected on the first launch (EVONORM_RAY_ADDRESS, else a local Ray), so a service that only
    reads never starts one. Stopping sets the search's state to `stopping`; its controller, wherever it
    runs, notices and ends in `stopped`.
    """

    name = "ray"

    def __init__(
        self,
        store: Store,
        *,
        address: str | None = None,
        settings: RaySettings | None = None,
        poll_interval: float = 0.5,
        join_timeout: float = 30.0,
    ):
        super().__init__(store, poll_interval=poll_interval, join_timeout=join_timeout)
        self.address = address
        self.settings = settings or RaySettings()
        self._connection: RayConnection | None = None

    def make_evaluator(self, search_id: int) -> RayEvaluator:
        config = self._config_of(search_id)
        if self._connection is None:  # called under the launcher's lock
            self._connection = connect(self.address, store=self.store)
        return self._evaluator(config, self._connection)

    def release(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    def _config_of(self, search_id: int) -> SearchConfig:
        with self.store.session(readonly=True) as s:
            stored = get_search(s, search_id).config
        return SearchConfig.from_mapping(stored, origin=f"stored configuration of search {search_id}")

    def _evaluator(self, config: SearchConfig, connection: RayConnection) -> RayEvaluator:
        s = self.settings
        connection.nodes = ray.nodes()  # the cluster as it is now: GPU nodes may have joined since connecting
        return RayEvaluator(
            s.resources_for(config, cluster_gpus=connection.total("GPU")),
            max_calls=s.max_calls_for(config),
            retries=s.retries,
            evaluation_timeout=s.evaluation_timeout,
            heartbeat_interval=s.heartbeat_interval,
            heartbeat_timeout=s.heartbeat_timeout,
            max_in_flight=s.max_in_flight,
        )
