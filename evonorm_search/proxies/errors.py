"""The error every proxy data problem raises, in a module of its own so the file readers and the data
table share it without importing each other."""

from __future__ import annotations


class DataError(ValueError):
    """Proxy data that cannot be loaded: a missing directory, a malformed file, an empty split."""
