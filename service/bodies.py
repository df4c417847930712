"""Request bodies the routes read themselves: a search configuration as JSON or YAML, DSL as JSON or text.

Every way a body can be wrong becomes an ApiError (415 for a content type we do not read, 422 for
text that is not UTF-8, JSON that does not parse, or a value of the wrong shape).
"""

from __future__ import annotations

import json
import os
from typing import Any

from evonorm_search.proxies.config import PythonArchitecture
from evonorm_search.search.config import ConfigError, SearchConfig

from .errors import ApiError

JSON_TYPES = ("application/json",)
YAML_TYPES = ("application/yaml", "text/yaml", "application/x-yaml", "text/x-yaml")
TEXT_TYPES = ("text/plain",)
# Module prefixes whose `kind: python` factories a search launched through the API may name.
ALLOWED_FACTORIES_VARIABLE = "EVONORM_ALLOWED_FACTORIES"


def media_type(content_type: str | None) -> str:
    """`application/json; charset=utf-8` -> `application/json`; a missing header means JSON."""
    if not content_type:
        return "application/json"
    return content_type.split(";", 1)[0].strip().lower()


def unsupported(kind: str, accepted: tuple[str, ...]) -> ApiError:
    return ApiError(415, "unsupported_media_type", f"send {kind} as {' or '.join(accepted)}")


def decode_text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ApiError(422, "invalid_request", f"the body is not UTF-8 text (byte {e.start})") from None


def parse_json(body: bytes) -> Any:
    text = decode_text(body)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ApiError(
            422,
            "invalid_request",
            f"the body is not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})",
            line=e.lineno,
            column=e.colno,
        ) from None
    except RecursionError:
        raise ApiError(422, "invalid_request", "the body's JSON nests too deeply") from None
    except ValueError as e:  # e.g. an integer with more digits than Python converts
        raise ApiError(422, "invalid_request", f"the body's JSON cannot be read: {e}") from None


def search_config(body: bytes, content_type: str | None) -> SearchConfig:
    """A SearchConfig from a JSON or YAML body. ConfigError (422, each field's problem) when invalid, or
    when it names a Python factory the server does not allow."""
    kind = media_type(content_type)
    if kind in JSON_TYPES:
        return only_allowed_factories(SearchConfig.from_mapping(parse_json(body), origin="search configuration"))
    if kind in YAML_TYPES:
        return only_allowed_factories(_search_config_from_yaml(decode_text(body)))
    raise unsupported("a search configuration", JSON_TYPES + YAML_TYPES)


def allowed_factory_prefixes() -> list[str]:
    """The module prefixes of EVONORM_ALLOWED_FACTORIES (comma-separated; unset or empty: none)."""
    return [p.strip() for p in os.environ.get(ALLOWED_FACTORIES_VARIABLE, "").split(",") if p.strip()]


def only_allowed_factories(config: SearchConfig) -> SearchConfig:
    """`config`, unless it names a `kind: python` factory outside the allowed module prefixes: a factory is
    code the workers import and run, so a request may name only modules the operator chose."""
    prefixes = allowed_factory_prefixes()
    problems = []
    for field, architectures in (
        ("architectures", config.architectures),
        ("validation.architectures", config.validation.architectures),
    ):
        for index, arch in enumerate(architectures):
            if isinstance(arch, PythonArchitecture) and not _allowed(arch.factory, prefixes):
                allowed = ", ".join(prefixes) or "none: it is empty or unset"
                problems.append(
                    (
                        f"{field}.{index}.factory",
                        f"factory {arch.factory!r} is not allowed through the API: its module must be under a "
                        f"prefix of {ALLOWED_FACTORIES_VARIABLE} ({allowed})",
                    )
                )
    if problems:
        raise ConfigError(problems, "search configuration")
    return config


def _allowed(factory: str, prefixes: list[str]) -> bool:
    module = factory.partition(":")[0]
    return any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes)


def _search_config_from_yaml(text: str) -> SearchConfig:
    try:
        return SearchConfig.from_yaml(text)  # a str is always YAML text, never a file on this server
    except ConfigError:
        raise
    except RecursionError:
        raise ApiError(422, "invalid_request", "the body's YAML nests too deeply") from None
    except ValueError as e:  # a value YAML's own constructors cannot build (e.g. an enormous integer)
        raise ApiError(422, "invalid_request", f"the body's YAML cannot be read: {e}") from None


def layer_text(body: bytes, content_type: str | None, max_chars: int) -> str:
    """The DSL text of a /layers/check body: JSON `{"dsl": "..."}` or the text itself (text/plain)."""
    kind = media_type(content_type)
    if kind in JSON_TYPES:
        data = parse_json(body)
        if not isinstance(data, dict) or not isinstance(data.get("dsl"), str) or set(data) != {"dsl"}:
            raise ApiError(422, "invalid_request", 'send a JSON object {"dsl": "<layer text>"} and nothing else')
        text = data["dsl"]
    elif kind in TEXT_TYPES:
        text = decode_text(body)
    else:
        raise unsupported("a layer", JSON_TYPES + TEXT_TYPES)
    if len(text) > max_chars:
        raise ApiError(
            422, "invalid_request", f"the layer is {len(text)} characters long; the limit is {max_chars} characters"
        )
    return text
