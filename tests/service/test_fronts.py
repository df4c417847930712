"""The fidelity ladder through the API: a search's fronts at each rung (the same JSON as `pareto --json`),
each candidate's highest rung and its scores at every rung, the ladder's rungs in the search's status."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from typer.testing import CliRunner

from evonorm_search import store as st
from evonorm_search.cli import app

from .conftest import client_for, settings_for
from .factories import OBJECTIVES, TWO_TARGET_NETWORKS, ladder_search_config, populate, run_ladder_search

API = "/api/v1"
TARGET_ARCHITECTURES = {"resnet", "mobilenetv2"}
assert len(TWO_TARGET_NETWORKS) == len(TARGET_ARCHITECTURES)


@dataclass
class LadderApp:
    url: str
    client: object
    search_id: int  # a completed search with a ladder
    plain_id: int  # a search without one


@pytest.fixture(scope="module")
def ladder_app(tmp_path_factory) -> Iterator[LadderApp]:
    url = f"sqlite:///{tmp_path_factory.mktemp('ladder') / 'evonorm.db'}"
    with st.open_store(url) as store:
        search_id = run_ladder_search(store)
        plain_id = populate(store, candidates=8, name="no-ladder").id
    with client_for(settings_for(url)) as client:
        yield LadderApp(url, client, search_id, plain_id)


def cli_json(*args: str) -> dict:
    shown = CliRunner().invoke(app, list(args))
    assert shown.exit_code == 0, shown.output
    return json.loads(shown.stdout)


def test_the_fronts_route_serves_what_pareto_json_prints(ladder_app: LadderApp):
    response = ladder_app.client.get(f"{API}/searches/{ladder_app.search_id}/fronts")
    assert response.status_code == 200
    fronts = response.json()
    assert fronts == cli_json("pareto", str(ladder_app.search_id), "--db", ladder_app.url, "--json")
    seeds = ladder_search_config().ladder_seeds()
    assert fronts["validated"] and fronts["proxy"]
    assert {b["label"] for b in fronts["validated_baselines"]} == {"gn_relu", "relu"}
    for row in fronts["validated"] + fronts["validated_baselines"]:
        assert row["rung"] == 1 and row["seeds"] == seeds
        assert set(row["per_architecture"]) == TARGET_ARCHITECTURES
        assert row["mean"] == pytest.approx(sum(row["per_architecture"].values()) / len(TARGET_ARCHITECTURES))
    relu = next(b for b in fronts["validated_baselines"] if b["label"] == "relu")
    for row in fronts["validated"]:
        assert row["label"] is None and row["vs_baselines"]["relu"] == pytest.approx(row["mean"] - relu["mean"])
    assert all(row["rung"] == 0 and row["std"] is None for row in fronts["proxy"])
    means = [row["mean"] for row in fronts["validated"]]
    assert means == sorted(means, reverse=True)
    status = ladder_app.client.get(f"{API}/searches/{ladder_app.search_id}").json()
    assert status["links"]["fronts"] == f"{API}/searches/{ladder_app.search_id}/fronts"


def test_a_search_without_target_runs_has_an_empty_validated_front(ladder_app: LadderApp):
    fronts = ladder_app.client.get(f"{API}/searches/{ladder_app.plain_id}/fronts").json()
    assert fronts["validated"] == fronts["validated_baselines"] == []
    assert {row["candidate"] for row in fronts["proxy"]} == {
        p["candidate_id"]
        for p in ladder_app.client.get(f"{API}/searches/{ladder_app.plain_id}/pareto").json()["points"]
    }


def test_a_validated_candidate_has_its_scores_at_both_rungs(ladder_app: LadderApp):
    fronts = ladder_app.client.get(f"{API}/searches/{ladder_app.search_id}/fronts").json()
    for row in fronts["validated"] + fronts["validated_baselines"]:
        detail = ladder_app.client.get(f"{API}/candidates/{row['candidate']}").json()
        assert detail["rung"] == 1
        proxies, target = detail["rungs"]
        assert (proxies["rung"], proxies["name"], target["rung"], target["name"]) == (0, "proxies", 1, "target task")
        assert proxies["objectives"] == detail["objectives"] and proxies["mean"] == detail["mean_accuracy"]
        assert proxies["std"] is None and proxies["seeds"] == []
        # Rung 1 is the front's row: one computation of the target score, whichever way it is read.
        assert {k: target[k] for k in ("mean", "std", "per_architecture", "seeds")} == {
            k: row[k] for k in ("mean", "std", "per_architecture", "seeds")
        }
        assert target["objectives"] is None


def test_a_candidate_only_on_the_proxies_is_at_rung_0_and_a_rejected_one_at_none(ladder_app: LadderApp):
    fronts = ladder_app.client.get(f"{API}/searches/{ladder_app.search_id}/fronts").json()
    validated = {row["candidate"] for row in fronts["validated"]}
    evaluated = ladder_app.client.get(
        f"{API}/searches/{ladder_app.search_id}/candidates", params={"status": "evaluated", "limit": 500}
    ).json()["items"]
    proxy_only = next(c for c in evaluated if c["id"] not in validated)  # not promoted: the ladder took 2 of 9
    detail = ladder_app.client.get(f"{API}/candidates/{proxy_only['id']}").json()
    assert detail["rung"] == 0 and [r["rung"] for r in detail["rungs"]] == [0]
    assert detail["rungs"][0]["objectives"] == proxy_only["objectives"]
    assert set(detail["rungs"][0]["per_architecture"]) == {"resnet", "mobilenetv2"}  # the proxies
    plain = ladder_app.client.get(
        f"{API}/searches/{ladder_app.plain_id}/candidates", params={"status": ["rejected", "failed"], "limit": 1}
    ).json()["items"][0]
    unscored = ladder_app.client.get(f"{API}/candidates/{plain['id']}").json()
    assert unscored["rung"] is None and unscored["rungs"] == []


def test_the_status_lists_the_ladders_rungs_as_status_json_does(ladder_app: LadderApp):
    status = ladder_app.client.get(f"{API}/searches/{ladder_app.search_id}").json()
    rungs = status["ladder"]
    assert rungs == cli_json("status", str(ladder_app.search_id), "--db", ladder_app.url, "--json")["ladder"]
    assert [r["name"] for r in rungs] == ["proxies", "target task", "baselines on the target task"]
    fronts = ladder_app.client.get(f"{API}/searches/{ladder_app.search_id}/fronts").json()
    assert rungs[0]["promoted"] == rungs[1]["evaluated"] == len(fronts["validated"])
    assert rungs[2]["evaluated"] == len(fronts["validated_baselines"]) == 2
    assert ladder_app.client.get(f"{API}/searches/{ladder_app.plain_id}").json()["ladder"] == []


@pytest.mark.parametrize(("path", "status", "code"), [("999999", 404, "not_found"), ("0", 422, "invalid_request")])
def test_fronts_of_no_such_search_is_a_client_error(ladder_app: LadderApp, path: str, status: int, code: str):
    response = ladder_app.client.get(f"{API}/searches/{path}/fronts")
    assert response.status_code == status
    assert response.json()["code"] == code and response.json()["message"]


def test_fronts_of_a_search_whose_stored_config_this_version_cannot_read_is_a_conflict(ladder_app: LadderApp):
    with st.open_store(ladder_app.url) as store, store.session() as s:
        unreadable = st.create_search(
            s, name="from the future", config={"name": "from the future", "warp": 9}, objectives=OBJECTIVES
        ).id
    response = ladder_app.client.get(f"{API}/searches/{unreadable}/fronts")
    assert response.status_code == 409
    assert response.json()["code"] == "conflict" and "warp" in response.json()["message"]
