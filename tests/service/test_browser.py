"""The dashboard in headless Chromium (Debian's, driven by Playwright): a finished search's Pareto plot is
drawn, a layer opens with its formula, its export downloads; a screenshot is saved as a test artifact."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from evonorm_search import store as st
from service import create_app
from tests.conftest import wait_until

from .conftest import settings_for
from .factories import populate

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
def server(tmp_path) -> Iterator[tuple[str, st.Store, int]]:
    """The app served by uvicorn on a free loopback port, over a database with one finished search."""
    url = f"sqlite:///{tmp_path / 'evonorm.db'}"
    with st.open_store(url) as store:
        search = populate(store, candidates=30)
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
        yield f"http://127.0.0.1:{port}", search.id
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
