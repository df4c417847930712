"""The layer library: well-known normalization-activation layers written in the DSL.

Each layer lives in `layers/<name>.dsl`, a comment saying what it is followed by its program, so the
files double as examples of the language. Adding a layer is adding a file.
"""

from __future__ import annotations

from functools import cache, lru_cache
from importlib import resources

from ..ir import Graph, parse

_SUFFIX = ".dsl"


@lru_cache(maxsize=1)
def _sources() -> dict[str, str]:
    folder = resources.files(__package__).joinpath("layers")
    found = {
        entry.name.removesuffix(_SUFFIX): entry.read_text(encoding="utf-8")
        for entry in folder.iterdir()
        if entry.name.endswith(_SUFFIX)
    }
    return dict(sorted(found.items()))


def names() -> list[str]:
    """Names of the library layers, sorted."""
    return list(_sources())


def source(name: str) -> str:
    """The DSL source of a library layer, comments included."""
    try:
        return _sources()[name]
    except KeyError:
        raise KeyError(f"no library layer named {name!r}; known: {', '.join(names())}") from None


def description(name: str) -> str:
    """The layer's leading comment, as one line."""
    lines = [ln.lstrip("# ").strip() for ln in source(name).splitlines() if ln.startswith("#")]
    return " ".join(lines)


@cache
def get(name: str) -> Graph:
    """The parsed graph of a library layer."""
    return parse(source(name))


def find(graph: Graph) -> str | None:
    """The name of the library layer structurally equal to `graph`, if any."""
    for name in names():
        if get(name) == graph:
            return name
    return None
