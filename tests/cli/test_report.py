"""`evonorm-search report`: a finished search's report as one self-contained HTML file (every section,
the best layers' formulas, the baselines, pictures inline and nothing fetched from a network), or as
Markdown with its PNG files beside it; read-only, and refusing a missing search like the other reads."""

from __future__ import annotations

import base64
import html
import re
import sys

import pytest
from typer.testing import CliRunner

from evonorm_search import store as st
from evonorm_search.cli import app
from evonorm_search.ir import Graph
from evonorm_search.search.controller import create_search
from evonorm_search.search.objectives import mean_accuracy
from evonorm_search.search.report import BEST_LAYERS, NO_PLOTS, SECTION_TITLES, best_so_far
from evonorm_search.symbolic import to_sympy
from tests.search.conftest import tiny_config
from tests.service.factories import ladder_search_database, populate

runner = CliRunner()
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
INLINE_PNG = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[str, int]:
    """A finished search with baselines, a validated front and candidates made from parents."""
    return ladder_search_database(tmp_path_factory.mktemp("report"))


def report(args: list[str]) -> str:
    result = runner.invoke(app, ["report", *args])
    assert result.exit_code == 0, result.output
    return result.output


def best_candidates(url: str, search_id: int) -> list[st.Candidate]:
    """The evaluated layers with the highest mean accuracy, as the report picks them, with their parents."""
    with st.open_store(url) as store, store.session(readonly=True) as s:
        results = st.results_in_commit_order(s, search_id)
        ranked = sorted(results, key=lambda r: (-(mean_accuracy(r[1]) or 0.0), r[0]))[:BEST_LAYERS]
        return [st.get_candidate(s, cid) for cid, _ in ranked]


def ancestors(url: str, candidate_id: int) -> list[int]:
    with st.open_store(url) as store, store.session(readonly=True) as s:
        return [a.id for a in st.candidate_detail(s, candidate_id).lineage]


def sections(page: str) -> dict[str, str]:
    """Each section's HTML by its heading."""
    found = re.findall(r'<section id="[^"]+">\n<h2>([^<]+)</h2>(.*?)</section>', page, flags=re.S)
    return {html.unescape(title): body for title, body in found}


def test_the_html_report_holds_every_section_formula_baseline_and_inline_picture(finished, tmp_path):
    url, search_id = finished
    out = tmp_path / "report.html"
    assert f"wrote {out}" in report([str(search_id), "-o", str(out), "--db", url])
    page = out.read_text(encoding="utf-8")
    parts = sections(page)
    assert list(parts) == list(SECTION_TITLES)

    # Nothing the browser would fetch: no address of any other host, every picture inline PNG data.
    assert "http://" not in page and "https://" not in page
    assert 'src="' not in INLINE_PNG.sub("", page) and "<link" not in page and "<script" not in page
    pictures = INLINE_PNG.findall(page)
    assert all(base64.b64decode(p).startswith(PNG_SIGNATURE) for p in pictures)
    best = best_candidates(url, search_id)
    # best value so far of both objectives, the front, and each best layer's typeset formula
    assert len(pictures) == 2 + 1 + len(best) and len(best) > 1

    assert "name: tiny" in parts["Configuration"] and "fidelities:" in parts["Configuration"]
    assert "rejected at static" in parts["Funnel"] and "duplicate hits" in parts["Funnel"]
    for label in ("gn_relu", "relu"):  # reference lines, front markers, and a difference column each
        for title in ("Best value so far", "Pareto front", "Best layers", "Validated front"):
            assert label in parts[title], (label, title)
    for c in best:
        layer = parts["Best layers"]
        assert f"Candidate {c.id} (birth {c.birth}" in layer
        assert html.escape(c.dsl.strip()) in layer
        assert html.escape(str(to_sympy(Graph.from_dict(c.graph)))) in layer
        assert f"<td>{mean_accuracy(c.objectives):.4f}</td>" in layer
    lineage = parts["Lineage of the best layers"]
    with_parents = [c for c in best if c.parent_id is not None]
    assert with_parents, "the ladder search makes layers from parents"
    for c in with_parents:
        assert all(f"<td>{a}</td>" in lineage for a in ancestors(url, c.id))
        assert c.parent_id is not None and f"ancestor {c.parent_id}" in lineage
    assert "<td>candidate</td>" in parts["Validated front"]  # a layer trained on the target task
    assert "<td>torch</td>" in parts["Machine and versions"] and sys.version.split()[0] in parts["Machine and versions"]


def test_markdown_writes_its_pictures_beside_it(finished, tmp_path):
    url, search_id = finished
    out = tmp_path / "notes" / "search.md"
    out.parent.mkdir()
    report([str(search_id), "-o", str(out), "--format", "md", "--db", url])
    text = out.read_text(encoding="utf-8")
    assert [line[3:] for line in text.splitlines() if line.startswith("## ")] == list(SECTION_TITLES)
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert linked and all(name.startswith("search-") and name.endswith(".png") for name in linked)
    assert sorted(p.name for p in out.parent.glob("*.png")) == sorted(linked)
    assert all((out.parent / name).read_bytes().startswith(PNG_SIGNATURE) for name in linked)
    assert "http://" not in text and "https://" not in text


def test_the_default_file_is_named_after_the_search_and_md_follows_the_suffix(finished, tmp_path, monkeypatch):
    url, search_id = finished
    monkeypatch.chdir(tmp_path)
    report([str(search_id), "--db", url])
    assert (tmp_path / f"report-{search_id}.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    report([str(search_id), "-o", "short.md", "--db", url])
    assert (tmp_path / "short.md").read_text(encoding="utf-8").startswith(f"# Search {search_id} ")


def test_without_matplotlib_the_report_keeps_its_tables_and_says_why_there_are_no_pictures(
    finished, tmp_path, monkeypatch
):
    url, search_id = finished
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # `from matplotlib.figure import` fails
    out = tmp_path / "plain.html"
    report([str(search_id), "-o", str(out), "--db", url])
    page = out.read_text(encoding="utf-8")
    assert "<img" not in page
    assert html.escape(NO_PLOTS) in page
    parts = sections(page)
    assert list(parts) == list(SECTION_TITLES)
    assert "<table>" in parts["Best value so far"] and "<table>" in parts["Pareto front"]
    assert all(html.escape(c.dsl.strip()) in parts["Best layers"] for c in best_candidates(url, search_id))


def test_a_missing_search_or_database_is_refused_and_nothing_is_written(finished, tmp_path):
    url, _ = finished
    out = tmp_path / "missing.html"
    result = runner.invoke(app, ["report", "99", "-o", str(out), "--db", url])
    assert result.exit_code == 1 and "no search with id 99" in result.output
    missing = tmp_path / "no" / "such.db"
    result = runner.invoke(app, ["report", "1", "-o", str(out), "--db", f"sqlite:///{missing}"])
    assert result.exit_code == 1 and f"no database at {missing}" in result.output
    assert not out.exists() and not (tmp_path / "no").exists()


def test_best_so_far_follows_each_objectives_direction():
    assert best_so_far([0.2, 0.1, 0.5, 0.4], maximise=True) == [0.2, 0.2, 0.5, 0.5]
    assert best_so_far([3.0, 4.0, 1.0, 2.0], maximise=False) == [3.0, 3.0, 1.0, 1.0]
    assert best_so_far([], maximise=True) == []


def test_a_search_with_a_minimised_objective_and_one_with_no_candidates_yet(tmp_path):
    url = f"sqlite:///{tmp_path / 'evonorm.db'}"
    with st.open_store(url) as store:
        populated = populate(store, candidates=30)  # accuracies (max) and cost (min): three objectives
        empty = create_search(store, tiny_config())  # created, nothing proposed yet
    report([str(populated.id), "-o", str(tmp_path / "populated.html"), "--db", url])
    page = (tmp_path / "populated.html").read_text(encoding="utf-8")
    parts = sections(page)
    assert list(parts) == list(SECTION_TITLES)
    assert "The picture shows the first two of the 3 objectives; the table all." in parts["Pareto front"]
    costs = [float(v) for v in re.findall(r"<tr><td>cost</td><td>\d+</td><td>\d+</td><td>([0-9.]+)</td></tr>", page)]
    assert costs and costs == sorted(costs, reverse=True)  # each improvement of a minimised cost is lower

    report([str(empty), "-o", str(tmp_path / "empty.html"), "--db", url])
    parts = sections((tmp_path / "empty.html").read_text(encoding="utf-8"))
    assert list(parts) == list(SECTION_TITLES)
    assert "No candidate has been evaluated yet." in parts["Best value so far"]
    assert "<img" not in "".join(parts.values())
