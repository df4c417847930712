"""`serve`: the API and dashboard over a Pareto database."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Annotated

import typer

from .app import app, console, fail
from .common import DbOption

EXIT_SETTINGS = 2  # a setting (option or EVONORM_* variable) that cannot be used


def database_url(db: str | None) -> str | None:
    """`--db` as a URL: URLs pass unchanged, a plain path becomes sqlite:///<absolute path>."""
    if db is None or "://" in db:
        return db
    return f"sqlite:///{Path(db).expanduser().resolve()}"


@app.command("serve")
def serve_command(
    host: Annotated[str, typer.Option(help="Interface to listen on (0.0.0.0: every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    db: DbOption = None,
) -> None:
    """Serve the REST API (/api/v1, docs at /docs) and the dashboard (/) over the database.

    Further settings come from EVONORM_* variables: EVONORM_API_KEYS (keys for launching, stopping and resuming searches), EVONORM_READ_REQUIRES_KEY, EVONORM_LAUNCHER (thread, ray, none), and the others listed in docs/architecture.md.
    """
    # FastAPI, uvicorn and the service load only when serving: the other commands never pay for them.
    import uvicorn
    from pydantic import ValidationError

    from service import Settings, create_app

    try:
        settings = Settings() if db is None else Settings(database_url=database_url(db))
    except ValidationError as e:
        raise fail(f"invalid service settings:\n{e}", EXIT_SETTINGS) from None
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104 (a comparison, not a bind)
    console.print(
        f"dashboard: http://{shown_host}:{port}/   API docs: http://{shown_host}:{port}/docs", highlight=False
    )
    if not settings.api_keys:
        console.print("no API keys (EVONORM_API_KEYS): reads only; launching, stopping and resuming are refused")
    application = create_app(settings)
    # The start-up heap (torch, sympy, SQLAlchemy) never becomes garbage: moving it out of the collector's
    # reach keeps full collections, and the p99 pauses they cause, off the request path.
    gc.collect()
    gc.freeze()
    uvicorn.run(application, host=host, port=port, log_level="info")
