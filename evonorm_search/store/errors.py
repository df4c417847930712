"""The store's errors. Every message says what went wrong and what to do about it.

The kinds map onto what a caller does next: `NotFoundError` (HTTP 404), `InvalidInputError` (the
caller's input is wrong: HTTP 400/422), `ConflictError` (the request is fine but the state of the
database forbids it: HTTP 409). Anything else is a plain `StoreError` (the database itself is
unreachable, read-only, at a foreign schema version, ...).
"""

from __future__ import annotations


class StoreError(Exception):
    """A problem with the Pareto database, with a message that says what to do."""


class NotFoundError(StoreError, LookupError):
    """A search or candidate id that does not exist."""


class InvalidInputError(StoreError, ValueError):
    """An argument the store cannot accept (a bad cursor, an unknown objective, malformed objectives)."""


class ConflictError(StoreError):
    """A state transition the current state forbids, or a controller claim held by another process."""
