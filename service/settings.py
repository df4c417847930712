"""The service's settings, from arguments or from EVONORM_* environment variables (pydantic-settings).

`Settings()` reads the environment when it is built, never at import time: `create_app()` builds one
when it is given none. API keys are `SecretStr`s, so they never appear in a repr, a log line or an error.
"""

from __future__ import annotations

import os
import re
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MIN_KEY_LENGTH = 16
_KEY_SEPARATORS = re.compile(r"[,\s]+")
_MODULE_PREFIX = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")

LauncherName = Literal["auto", "thread", "ray", "none"]


class Settings(BaseSettings):
    """Everything the service can be told. Environment variables carry the EVONORM_ prefix."""

    # hide_input_in_errors: a rejected setting (a short key, a URL with a password) is never echoed.
    model_config = SettingsConfigDict(env_prefix="EVONORM_", extra="ignore", frozen=True, hide_input_in_errors=True)

    database_url: str | None = Field(
        default=None,
        description="The Pareto database (sqlite:///PATH or postgresql+psycopg://...); None: the embedded default.",
    )
    api_keys: Annotated[tuple[SecretStr, ...], NoDecode] = Field(
        default=(),
        description="Keys accepted in `Authorization: Bearer <key>`, separated by commas or spaces. "
        "Without any, the service refuses every change (launch, stop, resume).",
    )
    read_requires_key: bool = Field(default=False, description="Whether reads need an API key too.")
    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576, description="Largest request body.")
    max_layer_chars: int = Field(
        default=65_536, ge=64, le=1_000_000, description="Longest DSL text /layers/check takes."
    )
    max_formula_size: int = Field(
        default=4096,
        ge=16,
        le=1_000_000,
        description="Largest formula (operations once shared subexpressions are written out) given a symbolic "
        "form and LaTeX; beyond it sympy's time and the formula's length explode.",
    )
    formula_workers: int = Field(
        default=2,
        ge=1,
        le=64,
        description="Processes that compute symbolic forms and LaTeX (sympy), apart from the server's own, "
        "so costly layers never stall other requests; also the most such jobs in flight at once.",
    )
    formula_seconds: float = Field(
        default=5.0,
        gt=0.0,
        le=600.0,
        description="Longest a request waits for a symbolic form (a free worker and its result); past it "
        "/layers/check answers 422 (or 503 when the workers were busy) and pages show no formula.",
    )
    formula_rate_per_minute: int = Field(
        default=120,
        ge=0,
        le=1_000_000,
        description="Requests a minute one client (by address) may make to /layers/check and candidate "
        "pages, which render formulas; beyond it 429 with Retry-After. 0: no limit.",
    )
    formula_burst: int = Field(
        default=30, ge=1, le=1_000_000, description="Requests one client may make at once before the rate applies."
    )
    max_event_streams: int = Field(
        default=64,
        ge=1,
        le=100_000,
        description="Event streams (SSE) open at once; beyond it 503 with Retry-After.",
    )
    launcher: LauncherName = Field(
        default="auto",
        description="How searches run: 'thread' (in this process), 'ray' (workers.cluster), 'none' (never "
        "launch: searches are created and driven elsewhere, e.g. `evonorm-search resume ID`), "
        "'auto' (Ray when workers.cluster is installed, else a thread).",
    )
    events_interval: float = Field(default=1.0, gt=0.0, le=60.0, description="Seconds between progress checks (SSE).")
    events_max_seconds: float = Field(
        default=3600.0, gt=0.0, description="An event stream ends after this long; browsers reconnect on their own."
    )
    database_threads: int = Field(
        default=2,
        ge=1,
        le=256,
        description="Threads of this process that read the database at once; more reads wait their turn. Few "
        "is faster: reads are mostly Python, which runs one thread at a time (service/threads.py).",
    )
    read_cache_seconds: float = Field(
        default=1.0,
        ge=0.0,
        le=60.0,
        description="How long a search's status and Pareto fronts may be served from memory: many clients of one "
        "search cost one database read per interval (0: always read the database). Changes made through this "
        "server show at once; changes made elsewhere within the interval.",
    )

    data_roots: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="Folders (absolute, separated by commas) under which a search launched through the API may "
        "read data files (data.path, data.root); empty: no file-based data through the API (digits, mnist1d, "
        "recall and synthetic need no files).",
    )
    allowed_factories: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="Module prefixes (separated by commas or spaces) whose `module:function` factories a search "
        "launched through the API may name (data or architecture `factory`); `mylab` allows mylab and "
        "mylab.data, not mylabx. Empty: no factory runs through the API.",
    )

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(k for k in _KEY_SEPARATORS.split(value) if k)
        return value

    @field_validator("data_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: object) -> object:
        if isinstance(value, str):  # commas only: a folder's name may hold spaces
            return tuple(root.strip() for root in value.split(",") if root.strip())
        return value

    @field_validator("allowed_factories", mode="before")
    @classmethod
    def _split_prefixes(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(p for p in _KEY_SEPARATORS.split(value) if p)
        return value

    @field_validator("data_roots")
    @classmethod
    def _absolute_roots(cls, roots: tuple[str, ...]) -> tuple[str, ...]:
        if relative := [root for root in roots if not os.path.isabs(root)]:
            raise ValueError(f"data roots must be absolute folders, got {relative}")
        return roots

    @field_validator("allowed_factories")
    @classmethod
    def _module_prefixes(cls, prefixes: tuple[str, ...]) -> tuple[str, ...]:
        if bad := [p for p in prefixes if not _MODULE_PREFIX.fullmatch(p)]:
            raise ValueError(f"factory prefixes must be dotted module names (mylab, mylab.data), got {bad}")
        return prefixes

    @field_validator("api_keys")
    @classmethod
    def _strong_keys(cls, keys: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
        for position, key in enumerate(keys, start=1):
            # The message names the key's position, never the key.
            if len(key.get_secret_value()) < MIN_KEY_LENGTH:
                raise ValueError(
                    f"API key #{position} is shorter than {MIN_KEY_LENGTH} characters; use a long random key"
                )
        return keys
