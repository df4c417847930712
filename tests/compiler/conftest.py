"""Kernel tests run the generated Triton kernels on the CPU interpreter (TRITON_INTERPRET=1).

The variable is set for each test of this area only, before the test body generates any kernel, and
monkeypatch restores it afterwards: the compiler decides between interpreted and compiled kernels
when it generates a layer, and keys its cache by that decision, so nothing leaks into other areas.
"""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def triton_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRITON_INTERPRET", "1")
