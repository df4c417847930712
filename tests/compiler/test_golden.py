"""The generated Triton source of every library layer is checked in, so every codegen change shows in review.

Regenerate after an intended change with
    EVONORM_UPDATE_GOLDEN=1 pytest tests/compiler/test_golden.py
and commit the files under tests/compiler/golden/ with the change that caused them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import evonorm_search as es

GOLDEN = Path(__file__).with_name("golden")
UPDATE = os.environ.get("EVONORM_UPDATE_GOLDEN") == "1"


@pytest.mark.parametrize("name", es.library.names())
def test_generated_source_matches_the_golden_file(name):
    source = es.kernel_source(es.library.get(name))
    path = GOLDEN / f"{name}.py"
    if UPDATE:
        path.write_text(source)
    assert path.exists(), f"no golden file for {name}; run EVONORM_UPDATE_GOLDEN=1 pytest {__file__}"
    assert source == path.read_text(), f"generated source of {name} changed; see the module docstring to update"


def test_every_golden_file_belongs_to_a_library_layer():
    assert sorted(p.stem for p in GOLDEN.glob("*.py")) == sorted(es.library.names())


def test_generation_is_deterministic_and_independent_of_the_interpreter(monkeypatch):
    graph = es.library.get("evonorm_b0")
    first = es.kernel_source(graph)
    monkeypatch.delenv("TRITON_INTERPRET")
    assert es.kernel_source(graph) == first
