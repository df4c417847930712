"""API keys: `Authorization: Bearer <key>` checked against EVONORM_API_KEYS.

Changes (launch, stop, resume) always need a key; reads need one when EVONORM_READ_REQUIRES_KEY is set.
Keys are compared as SHA-256 digests with `hmac.compare_digest` against every configured key, so the
time taken says nothing about how much of a key matched, nor which key. No key is ever logged or
echoed: errors say only that a key is missing or wrong.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from .errors import ApiError
from .settings import Settings

bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="APIKey",
    description="An API key from EVONORM_API_KEYS, sent as `Authorization: Bearer <key>`.",
)

_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def key_matches(presented: str, keys: Iterable[SecretStr]) -> bool:
    """Whether `presented` equals one of `keys`, in time independent of where they differ."""
    digest = _digest(presented)
    matched = False
    for key in keys:
        # `|` rather than `or`: every key is compared, whichever matches.
        matched |= hmac.compare_digest(digest, _digest(key.get_secret_value()))
    return matched


def check_key(settings: Settings, credentials: HTTPAuthorizationCredentials | None, action: str) -> None:
    """Raise 401/403 unless the request carries a configured key."""
    if not settings.api_keys:
        raise ApiError(
            403,
            "forbidden",
            f"this server has no API keys configured, so {action} is disabled: set EVONORM_API_KEYS and restart it",
        )
    if credentials is None:
        raise ApiError(
            401, "unauthorized", f"{action} needs an API key: send `Authorization: Bearer <key>`", headers=_CHALLENGE
        )
    if not key_matches(credentials.credentials, settings.api_keys):
        raise ApiError(401, "unauthorized", "the API key is not valid", headers=_CHALLENGE)
