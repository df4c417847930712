"""The score cache serves a score only when training again would compute it: the same settings (defaults
included), data, seeds, package version and training code. Scoring runs in process on a tiny proxy."""

from __future__ import annotations

import json
import multiprocessing

import pytest

from evonorm_search import _version, library
from evonorm_search.proxies.config import DataConfig
from evonorm_search.search import InProcessEvaluator, score_cache
from evonorm_search.search.score_cache import ScoreCache, ScoreCacheError, cached_scores
from evonorm_search.search.scoring import LayerToScore

from .conftest import tiny_config

GN_RELU = LayerToScore(library.get("gn_relu"), "gn_relu")
RELU = LayerToScore(library.get("relu"), "relu")


@pytest.fixture
def evaluator():
    evaluator = InProcessEvaluator()
    yield evaluator
    evaluator.close()


@pytest.fixture
def cache(tmp_path):
    return ScoreCache(tmp_path / "scores.json")


def specs(config=None, seeds=(0,)):
    config = config or tiny_config(training={"steps": 5, "batch_size": 16, "device": "cpu", "threads": 1})
    return [config.proxy_spec(seed) for seed in seeds]


def test_the_same_settings_are_served_from_the_cache(cache, evaluator):
    first = cached_scores(cache, [GN_RELU], specs(), evaluator)
    again = cached_scores(cache, [GN_RELU, RELU], specs(), evaluator)
    assert (first.served, first.trained) == (0, 1)
    assert (again.served, again.trained) == (1, 1)
    assert again.scores[0]["mean"] == first.scores[0]["mean"]
    assert [s["label"] for s in again.scores] == ["gn_relu", "relu"]


def test_a_layer_listed_twice_trains_once(cache, evaluator):
    found = cached_scores(cache, [GN_RELU, GN_RELU], specs(), evaluator)
    assert (found.served, found.trained, len(found.scores)) == (0, 1, 2)
    assert found.scores[0] == found.scores[1]


def test_without_reuse_every_layer_trains_and_joins_the_cache(cache, evaluator):
    cached_scores(cache, [GN_RELU], specs(), evaluator)
    fresh = cached_scores(cache, [GN_RELU], specs(), evaluator, reuse=False)
    assert (fresh.served, fresh.trained) == (0, 1)
    assert len(cache.load()) == 1  # the fresh score replaced the old one under the same key


def test_a_changed_default_misses(cache, evaluator):
    """One configuration leaves `eps` at its default, the other sets it: a dump without defaults would
    give both the same key."""
    default = tiny_config()
    changed = tiny_config(eps=1e-3)
    assert "eps" not in default.model_dump(exclude_defaults=True)
    cache.add(specs(default), [fake_score(GN_RELU)])
    assert cache.lookup(specs(default), [GN_RELU])
    assert not cache.lookup(specs(changed), [GN_RELU])


def test_a_changed_training_code_misses(cache, monkeypatch):
    cache.add(specs(), [fake_score(GN_RELU)])
    monkeypatch.setattr(score_cache, "code_hash", lambda: "0" * 64)
    assert not cache.lookup(specs(), [GN_RELU])


def test_the_code_hash_covers_the_training_code():
    names = {p.relative_to(score_cache._PACKAGE).as_posix() for p in score_cache.training_code_files()}
    assert {"proxies/training.py", "reference.py", "reference_ops.py", "eager.py", "module.py", "ir/ops.py"} <= names
    assert "search/evaluator.py" in names and all(p.is_file() for p in score_cache.training_code_files())
    assert len(score_cache.code_hash()) == 64


def test_a_changed_package_version_misses(cache, monkeypatch):
    cache.add(specs(), [fake_score(GN_RELU)])
    monkeypatch.setattr(_version, "__version__", _version.__version__ + ".post1")
    assert not cache.lookup(specs(), [GN_RELU])


def test_a_changed_data_seed_misses(cache):
    data = tiny_config().data.model_dump(mode="json")
    cache.add(specs(), [fake_score(GN_RELU)])
    assert not cache.lookup(specs(tiny_config(data={**data, "seed": 7})), [GN_RELU])


def test_other_seeds_miss(cache):
    cache.add(specs(seeds=(0, 1)), [fake_score(GN_RELU)])
    assert cache.lookup(specs(seeds=(0, 1)), [GN_RELU])
    assert not cache.lookup(specs(seeds=(0, 2)), [GN_RELU])


def test_an_entry_records_the_machine_that_computed_it(cache, evaluator):
    cached_scores(cache, [GN_RELU], specs(), evaluator)
    (entry,) = cache.load().values()
    machine = entry["computed_by"]
    assert {"cpu", "cores", "python", "torch", "numpy"} <= set(machine)
    assert machine["cores"] >= 1 and machine["cpu"] and machine["torch"] and machine["numpy"]
    served = cached_scores(cache, [GN_RELU], specs(), evaluator)
    assert served.served_by == [machine]


@pytest.mark.parametrize(
    "content",
    [
        '{"format": 1, "entries": {"ab',  # cut short while written by something else
        "[1, 2]",
        json.dumps({"0123abcd": {"layer": "y = x"}}),  # the older layout, keyed without defaults
        json.dumps({"format": 1, "entries": {"k": {"layer": "y = x"}}}),
    ],
)
def test_a_corrupt_file_is_a_clear_error(cache, content):
    cache.path.write_text(content, encoding="utf-8")
    with pytest.raises(ScoreCacheError, match=f"score cache {cache.path} cannot be read: .*Move it aside"):
        cache.lookup(specs(), [GN_RELU])
    assert cache.path.read_text(encoding="utf-8") == content  # never saved over


class RecordingEvaluator(InProcessEvaluator):
    """Trains in process and remembers what it was given."""

    def __init__(self):
        super().__init__()
        self.submitted: list[int] = []

    def submit(self, task):
        self.submitted.append(task.candidate_id)
        super().submit(task)


def test_a_corrupt_file_is_refused_before_anything_trains(cache):
    cache.path.write_text("not json", encoding="utf-8")
    evaluator = RecordingEvaluator()
    try:
        with pytest.raises(ScoreCacheError, match="it is not JSON"):
            cached_scores(cache, [GN_RELU], specs(), evaluator, reuse=False)
    finally:
        evaluator.close()
    assert evaluator.submitted == [] and cache.path.read_text(encoding="utf-8") == "not json"


def test_no_file_is_an_empty_cache(cache):
    assert cache.load() == {}
    assert cache.lookup(specs(), [GN_RELU]) == {}


def fake_score(layer: LayerToScore) -> dict:
    """A score as LayerScore.to_json writes it, without training (the key tests need no figures)."""
    return {"layer": layer.dsl, "label": layer.label, "mean": 0.5, "std": 0.0, "per_architecture": {},
            "seeds": [0], "runs": []}  # fmt: skip


def test_a_changed_data_folder_changes_the_data_identity(tmp_path):
    """A CIFAR-10 folder is known by its files: another copy of a batch gives another identity."""
    (tmp_path / "data_batch_1").write_bytes(b"a" * 10)
    data = DataConfig(name="cifar10", path=str(tmp_path))
    before = score_cache.data_identity(data)
    (tmp_path / "data_batch_1").write_bytes(b"a" * 11)
    assert score_cache.data_identity(data) != before
    assert before["source"]["files"] == {"data_batch_1": 10}


@pytest.mark.parametrize(
    ("name", "field", "value"),
    [("mnist1d", "seed", 3), ("mnist1d", "test_samples", 500), ("recall", "recall_pairs", 4),
     ("synthetic", "synthetic_classes", 3)],
)  # fmt: skip
def test_a_changed_generator_parameter_changes_the_data_identity(name, field, value):
    data = DataConfig(name=name)
    changed = data.model_copy(update={field: value})
    assert score_cache.data_identity(changed)["source"] != score_cache.data_identity(data)["source"]


def _add_one_by_one(path, writer: int, count: int, barrier) -> None:
    cache, settings = ScoreCache(path), specs()
    barrier.wait()
    for i in range(count):
        cache.add(settings, [{"layer": f"x * {writer * 1000 + i + 1}", "mean": 0.5}])


def test_two_processes_adding_at_once_lose_no_entry(cache):
    """Each add reads the file, adds and saves: two writers at once would each save without the other's
    entries, were they not one at a time."""
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(2)
    writers = [context.Process(target=_add_one_by_one, args=(cache.path, w, 40, barrier)) for w in (1, 2)]
    for process in writers:
        process.start()
    for process in writers:
        process.join(120)
        assert process.exitcode == 0
    layers = {entry["layer"] for entry in cache.load().values()}
    assert layers == {f"x * {w * 1000 + i + 1}" for w in (1, 2) for i in range(40)}
