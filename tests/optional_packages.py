"""torchvision and timm for tests, or a skip that says why they could not be imported.

PyPI's Linux torchvision wheels are CUDA builds: beside a CPU-only torch their C++ ops do not load, and
importing then fails on two fake-kernel registrations (torchvision::nms, qnms) that torchvision does not
guard. The models need none of those ops, so the two schemas are declared (only in that case) and the
import retried; a test of a torchvision or timm model is skipped only when even that import fails.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

import pytest
import torch

_TORCHVISION_OPS: list[torch.library.Library] = []  # kept alive: a dropped Library removes its definitions


def torchvision() -> ModuleType:
    """torchvision, or a skip."""
    if importlib.util.find_spec("torchvision") is None:
        pytest.skip("torchvision is not installed (the dev extra installs it)")
    try:
        import torchvision
    except RuntimeError as e:
        if "torchvision::nms" not in str(e):
            pytest.skip(f"torchvision could not be imported: {type(e).__name__}: {e}")
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
        _declare_torchvision_ops()
        try:
            import torchvision
        except Exception as again:
            pytest.skip(f"torchvision could not be imported: {type(again).__name__}: {again}")
    return torchvision


def _declare_torchvision_ops() -> None:
    library = torch.library.Library("torchvision", "DEF")
    for op in ("nms", "qnms"):
        library.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _TORCHVISION_OPS.append(library)


def timm() -> ModuleType:
    """timm, or a skip (timm imports torchvision)."""
    torchvision()
    return pytest.importorskip("timm", reason="timm is not installed (the dev extra installs it)")


def package(name: str) -> ModuleType:
    """The optional package an architecture row names, or a skip."""
    return {"torchvision": torchvision, "timm": timm}[name]()
