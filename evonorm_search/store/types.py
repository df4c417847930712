"""Column types that behave the same on SQLite and PostgreSQL, and JSON-safe values."""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import JSON, DateTime, Dialect, Enum
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator

from .errors import InvalidInputError

# JSON on SQLite (text + the JSON1 functions), JSONB on PostgreSQL. Python None is SQL NULL (not JSON
# 'null'), so `IS NULL` means "absent" on both backends.
JSONValue = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


def utcnow() -> datetime:
    return datetime.now(UTC)


def moment(now: datetime | None) -> datetime:
    """`now` (an aware datetime) in UTC, or the current time; naive datetimes are refused."""
    if now is None:
        return utcnow()
    if not isinstance(now, datetime) or now.tzinfo is None or now.utcoffset() is None:
        raise InvalidInputError(f"timestamp {now!r} has no time zone; pass an aware datetime (UTC)")
    return now.astimezone(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend.

    PostgreSQL stores `timestamptz`. SQLite has no time zones, so values are converted to UTC and stored
    naive (ISO text, which sorts and compares correctly), and read back with UTC attached. Naive datetimes
    are refused on the way in: their meaning depends on the writer's local zone.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise InvalidInputError(f"timestamp {value.isoformat()} has no time zone; pass an aware datetime (UTC)")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def str_enum(enum_class: type[enum.Enum], name: str) -> Enum:
    """A VARCHAR column holding the enum's values, guarded by a named CHECK constraint."""
    return Enum(
        enum_class,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=16,
        validate_strings=True,
        values_callable=lambda members: [m.value for m in members],
    )


# Non-finite floats have no JSON spelling (PostgreSQL rejects NaN in jsonb); they are kept as strings.
_NON_FINITE = {math.inf: "inf", -math.inf: "-inf"}


def json_safe(value: Any, path: str = "value") -> Any:
    """`value` as plain JSON types: numpy scalars unwrapped, tuples as lists, NaN/inf as "nan"/"inf"/"-inf".

    Raises InvalidInputError naming the offending path for anything JSON cannot hold.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.generic):
        return json_safe(value.item(), path)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return _NON_FINITE.get(value, float(value))
    if isinstance(value, enum.Enum):
        return json_safe(value.value, path)
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidInputError(f"{path} has a non-string key {key!r}; JSON objects need string keys")
            out[key] = json_safe(item, f"{path}.{key}")
        return out
    if isinstance(value, (list, tuple)):
        return [json_safe(item, f"{path}[{i}]") for i, item in enumerate(value)]
    raise InvalidInputError(f"{path} holds a {type(value).__name__}, which cannot be stored as JSON")
