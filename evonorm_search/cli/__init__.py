"""The command line: the composition root of the project.

Each command group lives in its own module and registers on `app`; modules that need `workers` or
`service` import them inside the command, so `evonorm-search layers` never pays for Ray or FastAPI.
"""

from __future__ import annotations

from . import (
    candidates,  # noqa: F401  (registers commands)
    data,  # noqa: F401  (registers commands)
    db,  # noqa: F401  (registers commands)
    demo,  # noqa: F401  (registers commands)
    layers,  # noqa: F401  (registers commands)
    report,  # noqa: F401  (registers commands)
    scoring,  # noqa: F401  (registers commands)
    search,  # noqa: F401  (registers commands)
    serve,  # noqa: F401  (registers commands)
)
from .app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
