"""The dashboard in headless Chromium (Debian's, driven by Playwright): a finished search's Pareto plot is
drawn, a layer opens with its formula, its export downloads; a search with a fidelity ladder shows each
front layer's rung and plots its validated front; screenshots are saved as test artifacts. The report of
`evonorm-search report` opens from its file with the network blocked and shows every section, formula
and picture."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvicorn
from typer.testing import CliRunner

import evonorm_search as es
from evonorm_search import store as st
from evonorm_search.cli import app
from evonorm_search.search.report import BEST_LAYERS, SECTION_TITLES
from service import create_app
from tests.conftest import wait_until

from .conftest import settings_for
from .factories import ladder_search_database, populate, run_ladder_search

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(os.environ.get("EVONORM_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"))

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="needs Debian's Chromium at /usr/bin/chromium (apt-get install chromium); CI installs it",
    ),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="needs Playwright's Python package")


@pytest.fixture
def server(tmp_path) -> Iterator[tuple[str, int]]:
    """The app served by uvicorn on a free loopback port, over a database with one finished search."""
    url = f"sqlite:///{tmp_path / 'evonorm.db'}"
    with st.open_store(url) as store:
        search = populate(store, candidates=30)
    with serving(url) as base:
        yield base, search.id


@pytest.fixture
def ladder_server(tmp_path) -> Iterator[tuple[str, int]]:
    """The app over a database with one search that ran with a fidelity ladder (target runs stored)."""
    url = f"sqlite:///{tmp_path / 'evonorm.db'}"
    with st.open_store(url) as store:
        search_id = run_ladder_search(store)
    with serving(url) as base:
        yield base, search_id


@contextmanager
def serving(url: str) -> Iterator[str]:
    """The app over the database at `url`, served by uvicorn on a free loopback port; its base URL."""
    config = uvicorn.Config(create_app(settings_for(url)), host="127.0.0.1", port=0, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()

    def started() -> bool:
        assert thread.is_alive(), "uvicorn exited before it started"
        return server.started

    wait_until(started, limit=30, interval=0.02, what="uvicorn's start")
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def test_dashboard_plots_the_front_opens_a_layer_and_downloads_its_export(server):
    base, search_id = server
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    foreign: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("request", lambda r: None if r.url.startswith((base, "blob:", "data:")) else foreign.append(r.url))
            page.goto(f"{base}/#search={search_id}")

            # The plot: Chart.js drew every front point inside its chart area.
            page.wait_for_selector("#pareto-plot[data-front-points]")  # set once the plot is drawn
            drawn = page.evaluate(
                """() => {
                    const chart = Chart.getChart('pareto-plot');
                    const area = chart.chartArea;
                    const points = chart.getDatasetMeta(0).data;
                    return {
                        count: points.length,
                        inside: points.every(p => p.x >= area.left && p.x <= area.right && p.y >= area.top && p.y <= area.bottom),
                        xTitle: chart.options.scales.x.title.text,
                        yTitle: chart.options.scales.y.title.text,
                    };
                }"""
            )
            front = page.request.get(
                f"{base}/api/v1/searches/{search_id}/pareto?objective={drawn['xTitle']}&objective={drawn['yTitle']}"
            ).json()
            assert drawn["count"] == len(front["points"]) > 0
            assert drawn["inside"]

            # The best layers, with KaTeX-rendered formulas.
            rows = page.locator("#front-table tr.layer-row")
            assert rows.count() > 0
            assert page.locator("#front-table .katex").count() >= rows.count()

            # Open the first layer.
            candidate_id = int(rows.first.get_attribute("data-candidate-id"))
            rows.first.click()
            page.wait_for_selector("#layer-view:not([hidden]) #layer-formula .katex")
            assert f"Layer #{candidate_id}" in page.inner_text("#layer-title")
            assert page.locator("#layer-metrics tr").count() > 1
            assert f"layer={candidate_id}" in page.url

            # Download its export.
            with page.expect_download() as download_info:
                page.click("#download-module")
            download = download_info.value
            assert download.suggested_filename == f"evonorm_candidate_{candidate_id}.py"
            saved = ARTIFACTS / download.suggested_filename
            download.save_as(saved)
            assert f"class EvoNormCandidate{candidate_id}(" in saved.read_text(encoding="utf-8")

            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
        finally:
            browser.close()
    assert problems == []
    assert foreign == [], "the dashboard must not reach other hosts"


def test_dashboard_shows_rungs_and_switches_the_chart_to_the_validated_front(ladder_server):
    base, search_id = ladder_server
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    foreign: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)

            def only_this_server(route) -> None:
                """The network beyond this server is blocked: a request elsewhere fails, and is recorded."""
                if route.request.url.startswith((base, "blob:", "data:")):
                    route.continue_()
                else:
                    foreign.append(route.request.url)
                    route.abort()

            page.route("**/*", only_this_server)
            page.goto(f"{base}/#search={search_id}")
            fronts = page.request.get(f"{base}/api/v1/searches/{search_id}/fronts").json()
            validated = {row["candidate"] for row in fronts["validated"]}
            assert validated and fronts["validated_baselines"]

            # The proxy front: each layer's rung, 1 for those trained on the target task.
            page.wait_for_selector("#pareto-plot[data-rung='proxy']")
            page.wait_for_selector("#front-table tr.layer-row")
            assert not page.locator("#ladder-panel").is_hidden()
            assert page.locator("#ladder tr").count() == 4  # the header and three rungs
            rungs = {
                int(row.get_attribute("data-candidate-id")): row.locator(".rung").inner_text()
                for row in page.locator("#front-table tr.layer-row:not(.baseline-row)").all()
            }
            assert rungs and all(rung.startswith("1" if cid in validated else "0") for cid, rung in rungs.items())

            # The validated front: target accuracy per target network, the baselines as labelled points.
            page.select_option("#front-rung", "validated")
            page.wait_for_selector("#pareto-plot[data-rung='validated']")
            drawn = page.evaluate(CHART_CONTENTS)
            assert drawn["xTitle"] == "target accuracy: mobilenetv2" and drawn["yTitle"] == "target accuracy: resnet"
            assert sorted(drawn["datasets"][0]["ids"]) == sorted(validated)
            assert sorted(drawn["datasets"][1]["tags"]) == sorted(b["label"] for b in fronts["validated_baselines"])
            assert drawn["pointsInside"], "every point inside the chart area"
            labels = {box["text"] for box in drawn["labelBoxes"]}
            assert labels == {f"#{cid}" for cid in validated} | {b["label"] for b in fronts["validated_baselines"]}
            assert drawn["labelsInside"], drawn["labelBoxes"]
            assert not drawn["labelsOverlap"], drawn["labelBoxes"]  # layers of equal scores share a point
            listed = [
                int(r.get_attribute("data-candidate-id")) for r in page.locator("#front-table tr.validated-row").all()
            ]
            assert listed == [row["candidate"] for row in fronts["validated"] + fronts["validated_baselines"]]
            page.screenshot(path=str(ARTIFACTS / "dashboard-validated.png"), full_page=True)

            # The choice is in the URL: a reload (or a shared link) opens the validated front again.
            assert "front=validated" in page.url
            page.reload()
            page.wait_for_selector("#pareto-plot[data-rung='validated']")
            assert page.input_value("#front-rung") == "validated"
            page.wait_for_selector("#front-table tr.validated-row")

            # A validated layer opens with its highest rung.
            page.locator("#front-table tr.validated-row").first.click()
            page.wait_for_selector("#layer-view:not([hidden]) #layer-formula .katex")
            assert "1 (target task)" in page.inner_text("#layer-facts")
            shown = [row.locator(".rung").inner_text() for row in page.locator("#layer-rungs tr.rung-row").all()]
            assert shown == ["0 proxies", "1 target task"]
        finally:
            browser.close()
    assert problems == []
    assert foreign == [], "the dashboard must not reach other hosts"


def test_the_progress_chart_draws_the_best_value_so_far_with_the_baselines_labelled_inside(ladder_server):
    base, search_id = ladder_server
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.goto(f"{base}/#search={search_id}")
            progress = page.request.get(f"{base}/api/v1/searches/{search_id}/progress").json()
            labels = {b["label"] for b in progress["baselines"]}
            assert labels == {"gn_relu", "relu"} and progress["evaluated"] > 0

            for objective in progress["objectives"]:  # each objective in turn, as the reader picks it
                page.select_option("#progress-objective", objective["name"])
                page.wait_for_selector(f"#progress-plot[data-objective='{objective['name']}']")
                drawn = page.evaluate(PROGRESS_CONTENTS)
                steps = [[s["evaluated"], s["value"]] for s in objective["steps"]]
                assert drawn["steps"] == steps and drawn["lastX"] == progress["evaluated"]
                assert drawn["yTitle"] == objective["label"] and drawn["xTitle"] == "evaluated candidates"
                levels = {b["label"]: b["objectives"][objective["name"]] for b in progress["baselines"]}
                assert drawn["lines"] == levels
                assert {box["text"] for box in drawn["labelBoxes"]} == labels
                assert drawn["labelsInside"], drawn

            # Narrow: the chart shrinks, and the labels stay inside it.
            wide = page.evaluate("() => Chart.getChart('progress-plot').chartArea.right")
            page.wait_for_selector("#pareto-plot[data-front-points]")
            wide_front = page.evaluate("() => Chart.getChart('pareto-plot').chartArea.right")
            page.set_viewport_size({"width": 480, "height": 900})
            page.wait_for_function(f"() => Chart.getChart('progress-plot').chartArea.right < {wide} * 0.6")
            narrow = page.evaluate(PROGRESS_CONTENTS)
            assert {box["text"] for box in narrow["labelBoxes"]} == labels
            assert narrow["labelsInside"], narrow
            # The Pareto plot shrinks with it, its baselines' labels inside too.
            page.wait_for_function(f"() => Chart.getChart('pareto-plot').chartArea.right < {wide_front} * 0.6")
            front = page.evaluate(CHART_CONTENTS)
            assert {box["text"] for box in front["labelBoxes"]} == labels
            assert front["labelsInside"], front["labelBoxes"]
            page.screenshot(path=str(ARTIFACTS / "dashboard-progress-narrow.png"), full_page=True)
        finally:
            browser.close()
    assert problems == []


def test_the_progress_chart_follows_the_event_stream_while_a_search_runs(tmp_path):
    url = f"sqlite:///{tmp_path / 'evonorm.db'}"
    with st.open_store(url) as store:
        search = populate(store, candidates=8, final_state=st.SearchState.RUNNING)
    problems: list[str] = []
    with serving(url) as base, sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
            page.goto(f"{base}/#search={search.id}")
            page.wait_for_selector("#progress-plot[data-objective='accuracy_resnet']")
            page.wait_for_selector("#live:not([hidden])")  # the event stream is open
            before = page.evaluate(PROGRESS_CONTENTS)

            # A new best arrives while the page is open, as a controller would store it.
            graph = es.library.get("gn_silu")
            with st.open_store(url) as store, store.session() as s:
                found = st.add_candidate(
                    s, search.id, graph=graph, dsl=graph.to_text(), canonical_hash=es.canonical_hash(graph)
                )
                st.complete_candidate(s, found.id, {"accuracy_resnet": 0.999, "accuracy_mobilenetv2": 0.5, "cost": 3.0})
            page.wait_for_function(
                "() => { const d = Chart.getChart('progress-plot').data.datasets[0].data;"
                " return d[d.length - 1].y === 0.999; }"
            )
            after = page.evaluate(PROGRESS_CONTENTS)
            assert after["steps"] == [*before["steps"], [before["lastX"] + 1, 0.999]]
            assert after["lastX"] == before["lastX"] + 1
        finally:
            browser.close()
    assert problems == []


# The progress chart: its best-value steps (the points that name a candidate), where the line ends, each
# baseline line's level by label, the axis titles, and whether every label box lies inside the chart area.
PROGRESS_CONTENTS = """() => {
    const chart = Chart.getChart('progress-plot');
    const area = chart.chartArea;
    const [best, ...lines] = chart.data.datasets;
    const boxes = chart.$labelBoxes;
    return {
        steps: best.data.filter(p => p.id !== null).map(p => [p.x, p.y]),
        lastX: best.data[best.data.length - 1].x,
        lines: Object.fromEntries(lines.map(d => [d.lineLabel, d.data[0].y])),
        xTitle: chart.options.scales.x.title.text,
        yTitle: chart.options.scales.y.title.text,
        labelBoxes: boxes,
        labelsInside: boxes.every(b => b.left >= area.left && b.right <= area.right && b.top >= area.top && b.bottom <= area.bottom),
    };
}"""

# What the chart holds and where it drew it: per dataset the ids and label tags of its points, whether
# every point and every label lies inside the chart area, whether two labels overlap, the axis titles.
CHART_CONTENTS = """() => {
    const chart = Chart.getChart('pareto-plot');
    const area = chart.chartArea;
    const inside = (x, y) => x >= area.left && x <= area.right && y >= area.top && y <= area.bottom;
    const metas = chart.data.datasets.map((_, i) => chart.getDatasetMeta(i).data);
    return {
        xTitle: chart.options.scales.x.title.text,
        yTitle: chart.options.scales.y.title.text,
        datasets: chart.data.datasets.map(d => ({ids: d.data.map(p => p.id), tags: d.data.map(p => p.tag)})),
        pointsInside: metas.every(points => points.every(p => inside(p.x, p.y))),
        labelBoxes: chart.$labelBoxes,
        labelsInside: chart.$labelBoxes.every(b => inside(b.left, b.top) && inside(b.right, b.bottom)),
        labelsOverlap: chart.$labelBoxes.some((b, i) => chart.$labelBoxes.slice(0, i).some(
            c => b.left < c.right && b.right > c.left && b.top < c.bottom && b.bottom > c.top)),
    };
}"""


def test_the_report_file_shows_every_section_formula_and_picture_with_the_network_blocked(tmp_path):
    url, search_id = ladder_search_database(tmp_path)
    out = tmp_path / "report.html"
    result = CliRunner().invoke(app, ["report", str(search_id), "-o", str(out), "--db", url])
    assert result.exit_code == 0, result.output
    with st.open_store(url) as store, store.session(readonly=True) as s:
        dsl = {c.id: c.dsl.strip() for c in st.list_candidates(s, search_id, limit=100).items}
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    attempted: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)

            def blocked(route) -> None:
                """Every request but the file itself fails, and is recorded: the report must need none."""
                if route.request.url == out.as_uri():
                    route.continue_()
                else:
                    attempted.append(route.request.url)
                    route.abort()

            page.route("**/*", blocked)
            page.goto(out.as_uri())
            page.wait_for_load_state("load")
            headings = [h.inner_text() for h in page.locator("section > h2").all()]
            assert headings == list(SECTION_TITLES)
            best = page.locator("#best-layers")
            named = [int(h.inner_text().split()[1]) for h in best.locator("h3").all()]  # "Candidate ID (...)"
            assert 0 < len(named) <= BEST_LAYERS
            assert all(dsl[cid] in best.inner_text() for cid in named)  # each best layer's formula, as text
            formulas = best.locator("img")
            assert formulas.count() == best.locator("h3").count()  # each best layer's typeset formula
            pictures = page.evaluate(
                "() => [...document.images].map(i => ({alt: i.alt, complete: i.complete, width: i.naturalWidth}))"
            )
            assert len(pictures) >= 3 + formulas.count()  # two objectives' progress, the front, the formulas
            assert all(p["complete"] and p["width"] > 0 for p in pictures), pictures
            page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
        finally:
            browser.close()
    assert problems == []
    assert attempted == [], "the report must load nothing beyond its own file"
