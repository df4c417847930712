"""Launchers: what starts a search's controller when the API is asked to launch or resume it.

The service speaks to one small interface (`Launcher`); which one runs is a setting:

- `ThreadLauncher` drives each search in a background thread of the API process with the in-process
  evaluator: no cluster needed, right for one machine, tests and demos (training then competes with
  the API for this process's CPU time);
- the Ray launcher of `workers.cluster` (production: evaluations on a Ray cluster);
- `NoLauncher` never launches: searches are created here and driven elsewhere (`evonorm-search run`).

Stopping is the same for all: the search row's state becomes `stopping` and its controller, wherever
it runs, notices and ends in `stopped`.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from evonorm_search.search.background import BackgroundLauncher
from evonorm_search.search.evaluator import Evaluator, InProcessEvaluator

from . import repository as repo
from .settings import Settings


@runtime_checkable
class Launcher(Protocol):
    """Starts and stops search controllers. The service has checked the search's state before calling."""

    name: str
    launches: bool  # False: start/resume refuse, searches are driven elsewhere

    def start(self, search_id: int) -> None:
        """Begin driving a search that was just created."""

    def resume(self, search_id: int) -> None:
        """Drive a stopped, failed or abandoned search again, from what the store holds."""

    def stop(self, search_id: int) -> None:
        """Ask the search's controller to stop (it ends in `stopped`)."""

    def close(self) -> None:
        """Stop what this launcher started and release its resources (the service is shutting down)."""


class ThreadLauncher(BackgroundLauncher):
    """Runs `run_search` with an in-process evaluator (or `evaluator_factory()`) in one daemon thread per search."""

    def __init__(self, store: repo.Store, *, evaluator_factory: Callable[[], Evaluator] = InProcessEvaluator, **kwargs):
        super().__init__(store, **kwargs)
        self.evaluator_factory = evaluator_factory

    def make_evaluator(self, search_id: int) -> Evaluator:
        return self.evaluator_factory()


class NoLauncher:
    """For a service that only reads and stops: searches it creates wait for `evonorm-search resume ID`."""

    name = "none"
    launches = False

    def __init__(self, store: repo.Store) -> None:
        self.store = store

    def start(self, search_id: int) -> None:
        raise repo.ConflictError(
            f"this server launches no searches (EVONORM_LAUNCHER=none); drive search {search_id} with "
            f"`evonorm-search resume {search_id}`"
        )

    resume = start

    def stop(self, search_id: int) -> None:
        repo.request_stop(self.store, search_id)

    def close(self) -> None:
        pass


RAY_LAUNCHER_MODULE = "workers.cluster"


def ray_launcher_available() -> bool:
    try:
        return importlib.util.find_spec(RAY_LAUNCHER_MODULE) is not None
    except ModuleNotFoundError:  # no `workers` package at all
        return False


def make_launcher(settings: Settings, store: repo.Store) -> Launcher:
    """The launcher the settings ask for ('auto': Ray when `workers.cluster` is installed, else a thread)."""
    choice = settings.launcher
    if choice == "auto":
        choice = "ray" if ray_launcher_available() else "thread"
    if choice == "thread":
        return ThreadLauncher(store)
    if choice == "none":
        return NoLauncher(store)
    return _ray_launcher(store)


def _ray_launcher(store: repo.Store) -> Launcher:
    # A plain import, so the layering test sees the service's one dependency on `workers`; inside the
    # function, so Ray loads only for a service that launches on it.
    try:
        from workers.cluster import RayLauncher as launcher_class
    except ImportError as e:
        raise RuntimeError(
            f"EVONORM_LAUNCHER=ray needs {RAY_LAUNCHER_MODULE}.RayLauncher, which this installation lacks ({e}); "
            "use EVONORM_LAUNCHER=thread to run searches inside the API process"
        ) from None
    launcher = launcher_class(store)
    if not isinstance(launcher, Launcher):
        raise RuntimeError(f"{RAY_LAUNCHER_MODULE}.RayLauncher does not offer start/resume/stop/close")
    return launcher
