"""The documentation's claims about the library stay true as the library changes: the library table and
the check example (docs/language.md) and the search configuration (docs/search.md)."""

from __future__ import annotations

import re
from pathlib import Path

import evonorm_search as es

REPOSITORY = Path(__file__).resolve().parents[1]
LANGUAGE = (REPOSITORY / "docs" / "language.md").read_text(encoding="utf-8")
SEARCH = (REPOSITORY / "docs" / "search.md").read_text(encoding="utf-8")


def test_library_table_lists_every_library_layer_with_its_dsl():
    for name in es.library.names():
        text = es.library.get(name).to_text().replace("\n", "; ")
        assert f"| `{name}` | `{text}` |" in LANGUAGE, name


def test_check_example_shows_the_real_hash():
    assert es.canonical_hash(es.library.get("evonorm_s0")) in LANGUAGE
    assert es.latex(es.library.get("evonorm_s0")) in LANGUAGE


def shown_within(shown, actual, path="") -> list[str]:
    """Where `shown` (a YAML value written in the docs, maybe abbreviated) differs from `actual`: every
    mapping key it shows must be there with the same value; lists and scalars must be equal."""
    if isinstance(shown, dict) and isinstance(actual, dict):
        return [
            problem
            for key, value in shown.items()
            for problem in (
                shown_within(value, actual[key], f"{path}.{key}")
                if key in actual
                else [f"{path}.{key}: not in the file"]
            )
        ]
    return [] if shown == actual else [f"{path}: {shown!r} shown, {actual!r} in the file"]


def test_search_configuration_is_valid_and_every_value_it_shows_is_quick_yaml_s():
    import yaml

    from evonorm_search.search import SearchConfig

    (block,) = re.findall(r"```yaml\n(.*?)```", SEARCH, re.S)
    shown = SearchConfig.from_yaml(block)
    quick_path = REPOSITORY / "examples" / "quick.yaml"
    quick = SearchConfig.from_yaml(quick_path)
    for key in ("budget", "population", "tournament", "mode", "mutations"):
        assert getattr(shown, key) == getattr(quick, key), key
    assert shown_within(yaml.safe_load(block), yaml.safe_load(quick_path.read_text(encoding="utf-8"))) == []
