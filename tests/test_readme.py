"""The README's claims about the library stay true as the library changes."""

from __future__ import annotations

from pathlib import Path

import evonorm_search as es

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def test_readme_table_lists_every_library_layer_with_its_dsl():
    for name in es.library.names():
        text = es.library.get(name).to_text().replace("\n", "; ")
        assert f"| `{name}` | `{text}` |" in README, name


def test_readme_check_example_shows_the_real_hash():
    assert es.canonical_hash(es.library.get("evonorm_s0")) in README
    assert es.latex(es.library.get("evonorm_s0")) in README


def test_readme_search_configuration_is_valid_and_matches_quick_yaml():
    import re

    import yaml

    from evonorm_search.search import SearchConfig

    block = re.search(r"```yaml\n(.*?)```", README, re.S).group(1)
    shown = SearchConfig.from_yaml(block)
    quick = SearchConfig.from_yaml(Path(__file__).resolve().parents[1] / "examples" / "quick.yaml")
    for key in ("budget", "population", "tournament", "mode", "mutations"):
        assert getattr(shown, key) == getattr(quick, key), key
    assert yaml.safe_load(block)["space"]["max_ops"] == quick.space.max_ops
