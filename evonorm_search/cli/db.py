"""`db upgrade` and `db current`: the Pareto database's schema from the command line."""

from __future__ import annotations

import typer

from ..store import StoreError, open_store, schema_status
from .app import app, console, fail
from .common import DbOption, db_flag

EXIT_STORE = 1  # the database could not be reached, read or upgraded

db_app = typer.Typer(help="The Pareto database: schema migrations.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def upgrade_command(db: DbOption = None) -> None:
    """Create the database if needed and bring its schema to the newest revision."""
    try:
        before = schema_status(db)
        with open_store(db, create=True) as store:
            after = store.schema_revision()
    except StoreError as e:
        raise fail(str(e), EXIT_STORE) from None
    if before.current == after:
        console.print(f"{before.url}: already at the newest schema revision {after}", highlight=False, markup=False)
    else:
        was = "an empty database" if before.current is None else f"revision {before.current}"
        console.print(f"{before.url}: upgraded from {was} to revision {after}", highlight=False, markup=False)


@db_app.command("current")
def current_command(db: DbOption = None) -> None:
    """Show the database's schema revision and whether it is the newest; changes nothing (a missing
    database is an error, exit status 1)."""
    try:
        status = schema_status(db)
    except StoreError as e:
        raise fail(str(e), EXIT_STORE) from None
    upgrade = f"`evonorm-search db upgrade{db_flag(db)}`"
    if not status.exists:
        raise fail(f"no database at {status.url.removeprefix('sqlite:///')}; {upgrade} creates it", EXIT_STORE)
    console.print(f"database: {status.url}", highlight=False, markup=False)
    if status.current is None:
        verdict = f"no evonorm-search schema yet; run {upgrade}"
    elif not status.known:
        verdict = f"revision {status.current}, unknown to this evonorm-search (written by a newer version?)"
    elif status.up_to_date:
        verdict = f"revision {status.current} (the newest)"
    else:
        verdict = f"revision {status.current}; the newest is {status.head}: run {upgrade}"
    console.print(f"schema:   {verdict}", highlight=False, markup=False)
