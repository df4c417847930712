"""A score cache that cannot serve a stale score: trained layers' scores on disk, keyed on everything
that decides them.

Training a layer on the target task takes minutes, so scripts that score the same layers again (the
fidelity and search benchmarks) keep the scores on disk. A cached score is only worth serving when
training again would compute it, so an entry's key covers:

- every setting of the evaluation, defaults included (`EvaluationSpec.model_dump(mode="json")`): a
  default that changes, or a field added later, changes the key;
- the data set's identity: its configuration, and where the examples come from (a generator's
  parameters and seed, scikit-learn's version for its bundled digits, the files of a CIFAR-10 folder);
- the seeds, the package version, and a hash of the code that trains and computes layers;
- the layer (its DSL text).

A changed setting, version or code gives a new key, so an old entry is never found: stale scores are
never served, they are only left behind. Scores are not bit-identical across machines, so each entry
records the machine and library builds that computed it.

The file is JSON (`{"format": FORMAT, "entries": {key: entry}}`) written whole through a rename, so
two scripts sharing it never read half a file.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import functools
import hashlib
import json
import os
import platform
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import _version
from ..proxies.config import DataConfig
from ..proxies.data import data_identity_source
from .config import EvaluationSpec
from .evaluator import Evaluator
from .scoring import LayerToScore, SeedRun, score_layers

FORMAT = 1  # the file's layout; a file of another layout is refused, not read as empty and overwritten

_PACKAGE = Path(__file__).resolve().parents[1]  # evonorm_search/
# The code that trains networks and computes layers: a change to any of it may change a score.
TRAINING_CODE = (
    "proxies",
    "reference.py",
    "reference_ops.py",  # the PyTorch form of every op and axis the reference runs
    "eager.py",
    "module.py",
    "ir/ops.py",
    "search/evaluator.py",
)


class ScoreCacheError(ValueError):
    """A cache file that cannot be read as one; it says which file and what to do."""


# --------------------------------------------------------------------------------------------------
# What a score depends on
# --------------------------------------------------------------------------------------------------


def training_code_files() -> list[Path]:
    """The source files of TRAINING_CODE, in a fixed order."""
    files: list[Path] = []
    for entry in TRAINING_CODE:
        path = _PACKAGE / entry
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return files


@functools.cache
def code_hash() -> str:
    """SHA-256 over the training code's paths and contents, computed once per process."""
    digest = hashlib.sha256()
    for path in training_code_files():
        digest.update(path.relative_to(_PACKAGE).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def data_identity(data: DataConfig) -> dict[str, Any]:
    """Where a data set's examples come from (its row of `proxies.data.DATASETS` says: the generator and
    its parameters, the library's version, the files by name and size, the factory), beside its
    configuration (all fields, defaults included)."""
    return {"config": data.model_dump(mode="json"), "source": data_identity_source(data)}


def settings_identity(specs: Sequence[EvaluationSpec]) -> dict[str, Any]:
    """Everything a layer's scores under `specs` (one per seed) depend on, except the layer."""
    return {
        "specs": [spec.model_dump(mode="json") for spec in specs],
        "data": [data_identity(spec.data) for spec in specs],
        "seeds": [spec.seed for spec in specs],
        "version": _version.__version__,
        "code": code_hash(),
    }


def settings_key(specs: Sequence[EvaluationSpec]) -> str:
    return digest(settings_identity(specs))


def entry_key(settings: str, layer: str) -> str:
    """One layer's key under one settings key."""
    return digest({"settings": settings, "layer": layer})


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


# --------------------------------------------------------------------------------------------------
# Who computed a score
# --------------------------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


@functools.cache
def machine_record() -> dict[str, Any]:
    """The machine and library builds computing scores in this process."""
    import numpy
    import torch

    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
    }


def describe_machine(record: dict[str, Any]) -> str:
    return (
        f"{record['cpu']}, {record['cores']} cores, Python {record['python']}, torch {record['torch']}, "
        f"numpy {record['numpy']}"
    )


# --------------------------------------------------------------------------------------------------
# The file
# --------------------------------------------------------------------------------------------------

REQUIRED_FIELDS = ("settings", "layer", "score", "computed_by", "computed_at")


@dataclass(frozen=True)
class ScoreCache:
    """Scores on disk at `path` (LayerScore.to_json per layer and settings)."""

    path: Path

    def load(self) -> dict[str, dict[str, Any]]:
        """The entries by key, {} when there is no file yet. A file that is not a cache of this format
        is a ScoreCacheError, never an empty cache: saving over it would lose hours of training."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        try:
            content = json.loads(text)
        except json.JSONDecodeError as e:
            raise self._refused(f"it is not JSON ({e})") from None
        if not isinstance(content, dict) or content.get("format") != FORMAT:
            found = content.get("format") if isinstance(content, dict) else type(content).__name__
            raise self._refused(f"it is not a score cache of format {FORMAT} (format: {found})")
        entries = content.get("entries")
        if not isinstance(entries, dict):
            raise self._refused("its 'entries' is not an object")
        for key, entry in entries.items():
            missing = [f for f in REQUIRED_FIELDS if not isinstance(entry, dict) or f not in entry]
            if missing:
                raise self._refused(f"entry {key[:12]} lacks {', '.join(missing)}")
        return entries

    def _refused(self, reason: str) -> ScoreCacheError:
        return ScoreCacheError(
            f"score cache {self.path} cannot be read: {reason}. Move it aside to keep it (scores are then "
            "trained again), or delete it"
        )

    def save(self, entries: dict[str, dict[str, Any]]) -> None:
        """Write whole or not at all (a temporary file renamed over the cache)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(f".{os.getpid()}.tmp")
        content = {"format": FORMAT, "entries": entries}
        temporary.write_text(json.dumps(content, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(temporary, self.path)

    def lookup(self, specs: Sequence[EvaluationSpec], layers: Sequence[LayerToScore]) -> dict[str, dict[str, Any]]:
        """The entries of `layers` under `specs` that the file holds, by layer DSL."""
        entries = self.load()
        settings = settings_key(specs)
        keys = {layer.dsl: entry_key(settings, layer.dsl) for layer in layers}
        return {dsl: entries[key] for dsl, key in keys.items() if key in entries}

    def add(self, specs: Sequence[EvaluationSpec], scores: Sequence[dict[str, Any]]) -> None:
        """Record fresh scores (LayerScore.to_json) under `specs`, computed by this machine now. The file
        is read again first: another script may have added entries since this one read it."""
        settings = settings_key(specs)
        stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        with self._writer():
            entries = self.load()
            for score in scores:
                entries[entry_key(settings, score["layer"])] = {
                    "settings": settings,
                    "layer": score["layer"],
                    "score": score,
                    "computed_by": machine_record(),
                    "computed_at": stamp,
                }
            self.save(entries)

    @contextlib.contextmanager
    def _writer(self) -> Iterator[None]:
        """One writer at a time across processes (an exclusive lock on a file beside the cache): two
        scripts that read, add and save at once would otherwise each save without the other's entries."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.with_suffix(".lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


# --------------------------------------------------------------------------------------------------
# Scoring through the cache
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CachedScores:
    """Scores per layer (LayerScore.to_json, in the layers' order), how many of them the cache served
    and the machines that computed those, how many distinct layers trained in this run (a layer listed
    twice trains once) and the seconds they took."""

    scores: list[dict[str, Any]]
    served: int
    served_by: list[dict[str, Any]]
    trained: int
    seconds: float


def cached_scores(
    cache: ScoreCache,
    layers: Sequence[LayerToScore],
    specs: Sequence[EvaluationSpec],
    evaluator: Evaluator,
    *,
    reuse: bool = True,
    on_run: Callable[[LayerToScore, SeedRun], None] | None = None,
) -> CachedScores:
    """Scores of `layers` under `specs` (one per seed), trained only for layers the cache lacks (all of
    them without `reuse`); fresh scores join the cache either way."""
    # Read even without `reuse`: a file that cannot be read is refused before anything trains.
    stored = cache.lookup(specs, layers)
    found = stored if reuse else {}
    missing = list({layer.dsl: layer for layer in layers if layer.dsl not in found}.values())
    started = time.perf_counter()
    fresh = [s.to_json() for s in score_layers(missing, specs, evaluator, on_run=on_run)] if missing else []
    seconds = time.perf_counter() - started
    if fresh:
        cache.add(specs, fresh)
    by_dsl = {dsl: entry["score"] for dsl, entry in found.items()} | {s["layer"]: s for s in fresh}
    # A served score keeps the layer's label in this run, not the one of the run that computed it.
    scores = [{**by_dsl[layer.dsl], "label": layer.label} for layer in layers]
    served = [layer for layer in layers if layer.dsl in found]
    machines = [found[layer.dsl]["computed_by"] for layer in served]
    return CachedScores(scores, len(served), machines, len(missing), seconds)
