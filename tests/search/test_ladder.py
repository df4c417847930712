"""The fidelity ladder: promotion order by non-dominated rank, ASHA's quota and cap, target runs stored as
validation evaluations during the search (baselines included), and a crash between a promotion and its
results that loses and repeats nothing."""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import pytest

from evonorm_search.search import InProcessEvaluator, SearchConfig
from evonorm_search.search.config import FidelityConfig
from evonorm_search.search.controller import create_search, run_search
from evonorm_search.search.ladder import Ladder, crowding_distance, promotion_ranking, proxy_examples, target_examples
from evonorm_search.search.validation import validate_search
from evonorm_search.store import (
    Objective,
    baselines_of,
    evaluations_of,
    get_search,
    results_in_commit_order,
    validation_runs,
)

from .conftest import run_to_end
from .test_baselines import small_config

MAX2 = [Objective("a", "max"), Objective("b", "max")]


def test_the_ranking_puts_the_first_front_first_and_its_extremes_before_its_middle():
    points = [(0.5, 0.5), (1.0, 0.0), (0.0, 1.0), (0.4, 0.4), (0.6, 0.45), (0.1, 0.1)]
    order = promotion_ranking(points, MAX2)
    # Front 1: (1, 0), (0, 1) at its ends (infinite crowding), then (0.5, 0.5) and (0.6, 0.45) inside it.
    assert set(order[:2]) == {1, 2} and set(order[2:4]) == {0, 4}
    assert order[4:] == [3, 5]  # then the second front, then the third


def test_crowding_distance_is_infinite_at_the_ends_and_sums_normalised_gaps_inside():
    distance = crowding_distance(np.array([[0.0, 1.0], [0.25, 0.5], [1.0, 0.0]]))
    assert math.isinf(distance[0]) and math.isinf(distance[2])
    assert distance[1] == pytest.approx((1.0 - 0.0) / 1.0 + (1.0 - 0.0) / 1.0)


def test_the_ladder_promotes_the_top_third_as_results_arrive_up_to_its_cap():
    ladder = Ladder(FidelityConfig(eta=3, max_promotions=2, min_results=3), [Objective("a", "max")])
    assert ladder.add_result(10, (0.2,)) == [] and ladder.add_result(11, (0.9,)) == []
    assert ladder.add_result(12, (0.5,)) == [11]  # three results: the top one
    assert ladder.add_result(13, (0.1,)) == [] and ladder.add_result(14, (0.3,)) == []
    assert ladder.add_result(15, (0.95,)) == [15]  # six results: the top two, 11 already up
    assert ladder.add_result(16, (0.99,)) == [] and ladder.promoted == [11, 15]  # the cap holds


def test_by_default_the_ladder_waits_for_the_end_of_the_rung():
    """Without `min_results`, no result promotes: the first results are the random layers a search starts
    from. The end of the rung promotes what the same search's final proxy ranking puts first."""
    ladder = Ladder(FidelityConfig(eta=3, max_promotions=2), [Objective("a", "max")])
    values = [0.2, 0.9, 0.5, 0.1, 0.3, 0.95, 0.4]
    assert all(ladder.add_result(10 + i, (v,)) == [] for i, v in enumerate(values))
    ranking = promotion_ranking([(v,) for v in values], [Objective("a", "max")])
    assert ladder.finish() == [10 + i for i in ranking[:2]] == [15, 11]


def test_a_complete_rung_promotes_its_top_quota_rounded_up_within_the_cap():
    ladder = Ladder(FidelityConfig(eta=4, max_promotions=3, min_results=100), [Objective("a", "max")])
    assert ladder.add_result(10, (0.2,)) == [] and ladder.add_result(11, (0.9,)) == []
    assert ladder.finish() == [11]  # fewer results than min_results: ceil(2 / 4) = 1 goes up at the end
    assert ladder.finish() == []  # nothing new
    for cid, value in ((12, 0.95), (13, 0.1), (14, 0.3), (15, 0.5)):
        assert ladder.add_result(cid, (value,)) == []
    assert ladder.finish() == [12]  # ceil(6 / 4) = 2: 12 and 11, 11 up already
    for cid, value in ((16, 0.99), (17, 0.98), (18, 0.97)):
        ladder.add_result(cid, (value,))
    assert ladder.finish() == [16] and ladder.promoted == [11, 12, 16]  # ceil(9 / 4) = 3, but the cap is 3
    assert Ladder(FidelityConfig(eta=3, max_promotions=2), [Objective("a", "max")]).finish() == []


def test_a_small_search_promotes_at_its_end(store):
    """Fewer results than `eta` never promote as they arrive; the end of the search promotes the best."""
    config = ladder_config(budget=2, baselines=[], space={"seed_layers": ["gn_relu", "evonorm_s0"]})
    search_id, final = run_to_end(store, config)
    assert final.state == "completed"
    with store.session(readonly=True) as s:
        results = results_in_commit_order(s, search_id)
    assert len(results) == 2
    stored = target_seeds(store, [cid for cid, _ in results])
    assert sorted(len(seeds) for seeds in stored.values()) == [0, len(config.ladder_seeds())]


def test_a_minimised_objective_ranks_low_values_first():
    ladder = Ladder(FidelityConfig(eta=2, max_promotions=5, min_results=2), [Objective("cost", "min")])
    ladder.add_result(1, (5.0,))
    assert ladder.add_result(2, (1.0,)) == [2]


def ladder_config(**overrides):
    settings = {"budget": 9, "fidelities": {"eta": 3, "max_promotions": 2, "min_results": 3}}
    settings.update(overrides)
    return small_config(**settings)


def target_seeds(store, candidate_ids):
    with store.session(readonly=True) as s:
        return {cid: sorted(r.seed for r in runs) for cid, runs in validation_runs(s, candidate_ids).items()}


def test_a_search_with_a_ladder_trains_its_promoted_candidates_and_baselines_on_the_target(store):
    config = ladder_config()
    search_id, final = run_to_end(store, config)
    assert final.state == "completed"
    with store.session(readonly=True) as s:
        results = results_in_commit_order(s, search_id)
        baselines = [b.id for b in baselines_of(s, search_id)]
    replayed = Ladder(config.fidelities, [Objective(n, "max") for n in results[0][1]])
    replayed.replay((cid, tuple(v.values())) for cid, v in results)
    assert 1 <= len(replayed.promoted) <= 2
    seeds = config.ladder_seeds()
    stored = target_seeds(store, replayed.promoted + baselines)
    assert all(stored[cid] == seeds for cid in replayed.promoted + baselines), stored
    others = [cid for cid, _ in results if cid not in replayed.promoted]
    assert all(not runs for runs in target_seeds(store, others).values())  # nobody else reached the last rung

    # `validate` finds the promoted candidates' and baselines' target runs in the store: nothing to train.
    class Refuses(InProcessEvaluator):
        def submit(self, task):
            raise AssertionError(f"validate trained task {task.candidate_id} again")

    refusing = Refuses()
    try:
        validated = validate_search(store, search_id, refusing, top=1, poll_interval=0.01)
    finally:
        refusing.close()
    assert all(len(v.reused_seeds) == len(seeds) for v in validated if v.candidate_id in replayed.promoted)


class CrashesOnTargetResult(InProcessEvaluator):
    """Dies (an exception nothing handles) when the first target-task result comes back: after its
    candidate was promoted and its task sent, before anything of it was stored."""

    class Death(BaseException):
        pass

    def poll(self, timeout):
        found = super().poll(timeout)
        if any(o.candidate_id < 0 for o in found):
            raise self.Death()
        return found


class CountsTargetTasks(InProcessEvaluator):
    def __init__(self):
        super().__init__()
        self.target_tasks = []

    def submit(self, task):
        if task.candidate_id < 0:
            self.target_tasks.append(task.spec.seed)
        super().submit(task)


def resume_to_end(store, search_id: int):
    """A new controller takes over a search whose controller died and drives it to completion; returns the
    evaluator, which counted the target tasks it was sent."""
    counting = CountsTargetTasks()
    try:
        final = run_search(store, search_id, counting, poll_interval=0.01, stale_after=timedelta(0))
    finally:
        counting.close()
    assert final.state == "completed"
    return counting


def test_a_crash_between_a_promotion_and_its_results_loses_and_repeats_nothing(store):
    config = ladder_config(baselines=[])
    search_id = create_search(store, config)
    crashing = CrashesOnTargetResult()
    with pytest.raises(CrashesOnTargetResult.Death):
        run_search(store, search_id, crashing, poll_interval=0.01)
    crashing.close()
    with store.session(readonly=True) as s:
        before = results_in_commit_order(s, search_id)
    assert len(before) >= 3  # a promotion happened: its target task was running

    counting = resume_to_end(store, search_id)
    with store.session(readonly=True) as s:
        results = results_in_commit_order(s, search_id)
    objectives = [Objective(n, "max") for n in results[0][1]]
    ladder = Ladder(config.fidelities, objectives)
    ladder.replay((cid, tuple(v.values())) for cid, v in results)
    seeds = config.ladder_seeds()
    stored = target_seeds(store, ladder.promoted)
    assert all(stored[cid] == seeds for cid in ladder.promoted), stored
    # Every target seed trained once: the resumed run trained exactly what the crash left unstored.
    assert len(counting.target_tasks) == len(ladder.promoted) * len(seeds)


def test_compute_is_counted_in_training_examples():
    config = ladder_config()
    assert proxy_examples(config) == len(config.architectures) * config.training.steps * config.training.batch_size
    target = config.validation
    assert target_examples(config) == len(target.architectures) * target.training.steps * target.training.batch_size


def test_the_validated_front_leads_pareto_in_text_and_json(tmp_path):
    import json

    from typer.testing import CliRunner

    from evonorm_search.cli import app
    from evonorm_search.store import open_store

    url = f"sqlite:///{tmp_path / 'ladder.db'}"
    store = open_store(url)
    try:
        search_id, _ = run_to_end(store, ladder_config())
    finally:
        store.close()
    runner = CliRunner()
    shown = runner.invoke(app, ["pareto", str(search_id), "--db", url, "--json"])
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.stdout)
    assert (
        data["validated"] and data["proxy"] and {b["label"] for b in data["validated_baselines"]} == {"gn_relu", "relu"}
    )
    for row in data["validated"]:
        assert row["rung"] == 1 and set(row) >= {"candidate", "layer", "mean", "std", "per_architecture"}
        assert row["seeds"] == [1000, 1001]
        relu = next(b for b in data["validated_baselines"] if b["label"] == "relu")
        assert row["vs_baselines"]["relu"] == pytest.approx(row["mean"] - relu["mean"])
    assert all(row["rung"] == 0 for row in data["proxy"])
    means = [row["mean"] for row in data["validated"]]
    assert means == sorted(means, reverse=True)
    text = runner.invoke(app, ["pareto", str(search_id), "--db", url], env={"COLUMNS": "80"})
    assert text.exit_code == 0, text.output
    assert text.output.index("validated front of search") < text.output.index("Pareto front of search")
    status = runner.invoke(app, ["status", str(search_id), "--db", url, "--json"])
    rungs = json.loads(status.stdout)["ladder"]
    assert [r["name"] for r in rungs] == ["proxies", "target task", "baselines on the target task"]
    assert rungs[0]["promoted"] == len(data["validated"]) == rungs[1]["evaluated"] and rungs[1]["pending"] == 0
    assert rungs[2]["evaluated"] == 2 and all(r["examples"] > 0 for r in rungs)


def test_a_ladder_that_promotes_at_the_end_of_the_rung_does_not_change_what_the_search_proposes(tmp_path):
    """By default promotions come when rung 0 ends, after the last proposal, so no target score reaches
    selection: with one evaluator slot, a search proposes the same layers in the same order with and without
    its ladder (benchmarks/ladder.py reads its arms without the ladder from the searches with it on this
    ground, and has no `--min-results`)."""
    from evonorm_search.store import list_candidates, open_store

    at_the_end = {"eta": 3, "max_promotions": 2}
    proposed = {}
    for label, config in {
        "with": ladder_config(budget=12, fidelities=at_the_end),
        "without": ladder_config(budget=12, fidelities=None),
    }.items():
        with open_store(f"sqlite:///{tmp_path / f'{label}.db'}") as store:
            search_id, _ = run_to_end(store, config)
            with store.session(readonly=True) as s:
                rows = list_candidates(s, search_id, limit=100).items
            proposed[label] = sorted((c.birth, c.dsl, c.status.value) for c in rows)
    assert len(proposed["with"]) == 12
    assert proposed["with"] == proposed["without"]


def test_a_compute_budget_ends_the_search_once_its_examples_are_spent(store):
    """Rung 0 and the promoted candidates' target runs count; the baselines' target runs are overhead. With
    one evaluator slot the search ends past its compute budget by at most one candidate's run and the
    target seeds of what that last result promoted."""
    from evonorm_search.search.ladder import ladder_status, own_examples
    from evonorm_search.store import get_search, search_summary

    probe = ladder_config(budget=1000)
    limit = 6 * proxy_examples(probe) + target_examples(probe)
    config = ladder_config(budget=1000, compute_budget=limit)
    search_id, final = run_to_end(store, config)
    assert final.state == "completed" and final.proposed < 1000
    with store.session(readonly=True) as s:
        summary = search_summary(s, search_id)
        spent = own_examples(s, summary, config)
        rungs = ladder_status(s, summary, config, get_search(s, search_id).objective_specs)
    seeds = len(config.ladder_seeds())
    assert limit <= spent <= limit + proxy_examples(config) + seeds * target_examples(config)
    candidates, target, baselines = rungs
    assert spent == candidates.examples + target.examples  # the baselines' rung is not the search's compute
    assert baselines.examples > 0


@pytest.mark.parametrize("min_results", [None, 3])
def test_a_compute_budget_keeps_the_promotions_their_target_runs(store, min_results):
    """The budget holds the ladder's promotions whenever they come: by default they come when rung 0 ends,
    after the last proposal, so the search stops proposing while the target runs of every promotion still
    fit. Own compute ends within one rung-0 run of the budget, not a promotion's target runs past it."""
    from evonorm_search.search.ladder import own_examples
    from evonorm_search.store import search_summary

    fidelities = {"eta": 3, "max_promotions": 2, "min_results": min_results}
    probe = ladder_config(fidelities=fidelities)
    limit = 6 * proxy_examples(probe) + 2 * len(probe.ladder_seeds()) * target_examples(probe)
    config = ladder_config(budget=1000, baselines=[], compute_budget=limit, fidelities=fidelities)
    search_id, final = run_to_end(store, config)
    assert final.state == "completed"
    with store.session(readonly=True) as s:
        spent = own_examples(s, search_summary(s, search_id), config)
        promoted = [
            cid
            for cid, runs in validation_runs(s, [c for c, _ in results_in_commit_order(s, search_id)]).items()
            if runs
        ]
    assert len(promoted) == 2
    assert limit - proxy_examples(config) <= spent <= limit + proxy_examples(config)


def test_a_resumed_search_counts_the_compute_it_spent_before(store):
    config = ladder_config(
        budget=1000, compute_budget=8 * proxy_examples(ladder_config()), fidelities=None, baselines=[]
    )
    search_id = create_search(store, config)

    class DiesAtFifthResult(InProcessEvaluator):
        """The controller's process dies (an exception nothing handles) at its fifth result: four are stored."""

        class Death(BaseException):
            pass

        def __init__(self):
            super().__init__()
            self.results = 0

        def poll(self, timeout):
            found = super().poll(timeout)
            self.results += len(found)
            if self.results >= 5:
                raise self.Death()
            return found

    first = DiesAtFifthResult()
    with pytest.raises(DiesAtFifthResult.Death):
        run_search(store, search_id, first, poll_interval=0.01)
    first.close()
    resume_to_end(store, search_id)
    from evonorm_search.search.ladder import own_examples
    from evonorm_search.store import search_summary

    with store.session(readonly=True) as s:
        spent = own_examples(s, search_summary(s, search_id), config)
        evaluated = len(results_in_commit_order(s, search_id))
    assert first.results == 5 and evaluated >= 4
    # A resume that forgot the first run's compute would have spent the whole budget again on top of it.
    assert config.compute_budget <= spent <= config.compute_budget + proxy_examples(config)


def test_status_shows_the_compute_spent_against_the_compute_budget(tmp_path):
    import json

    from typer.testing import CliRunner

    from evonorm_search.cli import app
    from evonorm_search.search.ladder import own_examples
    from evonorm_search.store import open_store, search_summary

    db = f"sqlite:///{tmp_path / 'compute.db'}"
    config = ladder_config(budget=1000, compute_budget=3 * proxy_examples(ladder_config()), fidelities=None)
    with open_store(db) as store:
        search_id, _ = run_to_end(store, config)
        with store.session(readonly=True) as s:
            spent = own_examples(s, search_summary(s, search_id), config)
    runner = CliRunner()
    shown = runner.invoke(app, ["status", str(search_id), "--db", db, "--json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["compute"] == {"spent_examples": spent, "budget_examples": config.compute_budget}
    text = runner.invoke(app, ["status", str(search_id), "--db", db], env={"COLUMNS": "120"})
    assert f"{spent:,} of {config.compute_budget:,} training examples" in text.output

    without = runner.invoke(app, ["status", "--db", db, "--json"])  # the list shows it too, per search
    assert json.loads(without.stdout)["items"][0]["compute"]["spent_examples"] == spent


class RecordsTargetTasks(InProcessEvaluator):
    """Keeps the layer of every target task it is given."""

    def __init__(self):
        super().__init__()
        self.layers = []

    def submit(self, task):
        if task.candidate_id < 0:
            self.layers.append(task.graph)
        super().submit(task)


def _baseline_graphs(store, search_id):
    with store.session(readonly=True) as s:
        return {b.id: b.graph for b in baselines_of(s, search_id)}


def test_baselines_train_on_the_target_once_per_configuration_and_are_reused_across_searches(store):
    config = ladder_config()
    first, _ = run_to_end(store, config)
    again = RecordsTargetTasks()
    second, final = run_to_end(store, config.model_copy(update={"name": "again"}), again)
    assert final.state == "completed"
    baselines = _baseline_graphs(store, second)
    assert not [g for g in again.layers if g in baselines.values()]  # no baseline trained on the target again
    assert again.layers  # the second search's own promotions did train
    with store.session(readonly=True) as s:
        runs = validation_runs(s, list(baselines) + list(_baseline_graphs(store, first)))
        rows = [e for cid in baselines for e in evaluations_of(s, cid)]
    seeds = config.ladder_seeds()
    assert all(sorted(r.seed for r in runs[cid]) == seeds for cid in runs)
    first_ids = set(_baseline_graphs(store, first))
    reused = [e.metrics["reused_from"] for e in rows if e.phase == "validation"]
    assert reused and set(reused) <= first_ids
    # The same accuracies as the runs they came from.
    with store.session(readonly=True) as s:
        first_by_label = {b.label: b.id for b in baselines_of(s, first)}
        pairs = [(b.id, first_by_label[b.label]) for b in baselines_of(s, second)]
    for cid, original in pairs:
        assert [r.accuracies for r in runs[cid]] == [r.accuracies for r in runs[original]]


def test_a_changed_target_setting_trains_the_baselines_again(store):
    config = ladder_config()
    run_to_end(store, config)
    changed = config.model_copy(
        update={
            "name": "changed",
            "validation": config.validation.model_copy(
                update={"training": config.validation.training.model_copy(update={"lr": 0.02})}
            ),
        }
    )
    again = RecordsTargetTasks()
    second, _ = run_to_end(store, SearchConfig.from_mapping(changed.model_dump(mode="json")), again)
    baselines = _baseline_graphs(store, second)
    trained = [g for g in again.layers if g in baselines.values()]
    assert len(trained) == len(baselines) * len(config.ladder_seeds())


def test_selection_reads_the_target_rung_once_a_promoted_member_has_all_its_seeds(store, monkeypatch):
    """With promotions while the search runs (`min_results`), a promoted member's target mean reaches the
    population once every ladder seed is stored, live and after a resume, and equals the stored runs' mean."""
    from evonorm_search.search.controller import Controller
    from evonorm_search.search.ladder import target_mean
    from evonorm_search.search.selection import ParetoTournament

    seen: list[dict[int, float | None]] = []
    select = ParetoTournament.select

    def recording(self, population, rng):
        seen.append({m.candidate_id: m.target for m in population})
        return select(self, population, rng)

    monkeypatch.setattr(ParetoTournament, "select", recording)
    fidelities = {"eta": 2, "max_promotions": 2, "min_results": 2}
    config = ladder_config(budget=16, baselines=[], fidelities=fidelities)
    search_id, final = run_to_end(store, config)
    assert final.state == "completed"
    architectures = [a.label for a in config.validation.architectures]
    with store.session(readonly=True) as s:
        runs = validation_runs(s, [cid for population in seen for cid in population])
    expected = {cid: target_mean(r, config.ladder_seeds(), architectures) for cid, r in runs.items()}
    assert any(v is not None for v in expected.values()), "no promoted member was selected from"
    for population in seen:  # a member shows its target mean or, while seeds are missing, none
        assert all(target in (None, expected[cid]) for cid, target in population.items()), population
    raised = [cid for population in seen for cid, target in population.items() if target is not None]
    assert raised, "no selection saw a target mean"

    # A controller that resumes builds its population from the store with the same target means (read
    # with a population of every candidate, so that the early, promoted ones are in it).
    resumed = Controller(store, search_id, InProcessEvaluator())
    with store.session(readonly=True) as s:
        resumed.config = config.model_copy(update={"population": config.budget})
        resumed.objectives = get_search(s, search_id).objective_specs
        resumed._load_history(s)
        stored = validation_runs(s, [m.candidate_id for m in resumed.members])
    targets = {m.candidate_id: m.target for m in resumed.members}
    assert targets == {cid: target_mean(r, config.ladder_seeds(), architectures) for cid, r in stored.items()}
    assert sum(t is not None for t in targets.values()) == 2  # both promoted members, every seed stored
