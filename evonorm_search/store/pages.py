"""Keyset pagination: pages of rows after a cursor, never OFFSET (which rescans every skipped row)."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .errors import InvalidInputError

T = TypeVar("T")
MAX_PAGE = 1000


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None  # pass it back to get the next page; None on the last page


def check_limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise InvalidInputError(f"page size (limit) must be an integer from 1 to {MAX_PAGE}, got {limit!r}")
    return limit


def encode_cursor(ordering: str, key: list[Any]) -> str:
    """An opaque cursor: the ordering it belongs to and the sort key of the last row shown."""
    raw = json.dumps({"o": ordering, "k": key}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, ordering: str, arity: int) -> list[Any]:
    """The sort key inside `cursor`, which must have been made for `ordering`."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        key = data["k"]
        made_for = data["o"]
    except (binascii.Error, ValueError, TypeError, KeyError, UnicodeDecodeError):
        raise InvalidInputError(f"invalid page cursor {cursor!r}; use the next_cursor of the previous page") from None
    if made_for != ordering:
        raise InvalidInputError(
            f"this cursor belongs to a page ordered by {made_for!r}, not {ordering!r}; start again without a cursor"
        )
    if not isinstance(key, list) or len(key) != arity or not all(_is_key_part(k) for k in key):
        raise InvalidInputError(f"invalid page cursor {cursor!r}; use the next_cursor of the previous page")
    return key


def _is_key_part(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
