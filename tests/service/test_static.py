"""The dashboard page, the API docs and every asset they name are served by the app itself."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from service.routes.dashboard import STATIC

from .conftest import client_for, settings_for


class _AssetLinks(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value and not value.startswith(("#", "data:")):
                self.links.append(value)


def asset_links(html: str) -> list[str]:
    parser = _AssetLinks()
    parser.feed(html)
    return parser.links


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with client_for(settings_for(f"sqlite:///{tmp_path_factory.mktemp('static') / 'evonorm.db'}")) as client:
        yield client


def test_the_dashboard_and_every_asset_it_names_are_served_here(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
    links = asset_links(page.text)
    assert {
        "/static/dashboard.js",
        "/static/vendor/katex/katex.min.js",
        "/static/vendor/chartjs/chart.umd.min.js",
    } <= set(links)
    for link in links:
        if link.startswith("/static/"):
            assert client.get(link).status_code == 200, link
        else:
            assert link.startswith("/"), f"{link} is not on this server"


def test_the_api_docs_load_swagger_ui_from_this_server(client):
    docs = client.get("/docs")
    assert docs.status_code == 200
    scripts = re.findall(r"""(?:src|href)=["']?([^"' >]+)""", docs.text) + re.findall(r"url: '([^']+)'", docs.text)
    assert scripts, "the docs page names its assets"
    for link in scripts:
        assert link.startswith("/"), f"{link} is not on this server"
        assert client.get(link).status_code == 200, link


def test_katex_fonts_named_by_its_stylesheet_are_vendored(client):
    css = client.get("/static/vendor/katex/katex.min.css").text
    fonts = set(re.findall(r"url\((fonts/[^)]+\.woff2)\)", css))
    assert len(fonts) > 10
    for font in fonts:
        assert client.get(f"/static/vendor/katex/{font}").status_code == 200, font


@pytest.mark.parametrize("name", ["index.html", "dashboard.js", "dashboard.css"])
def test_our_own_assets_name_no_other_host(name: str):
    text = (Path(STATIC) / name).read_text(encoding="utf-8")
    assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.IGNORECASE), name
