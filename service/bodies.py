"""Request bodies the routes read themselves: a search configuration as JSON or YAML, DSL as JSON or text.

Every way a body can be wrong becomes an ApiError (415 for a content type we do not read, 422 for
text that is not UTF-8, JSON that does not parse, or a value of the wrong shape).
"""

from __future__ import annotations

import json
from typing import Any

from evonorm_search.search.config import ConfigError, SearchConfig, parse_config_yaml

from .errors import ApiError
from .settings import Settings
from .sources import check_sources

JSON_TYPES = ("application/json",)
YAML_TYPES = ("application/yaml", "text/yaml", "application/x-yaml", "text/x-yaml")
TEXT_TYPES = ("text/plain",)


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


def search_config(body: bytes, content_type: str | None, settings: Settings) -> SearchConfig:
    """A SearchConfig from a JSON or YAML body. ConfigError (422, each field's problem) when invalid; a
    422 naming the rule when it names data or code the server's allow-lists refuse (`sources`), checked
    before the config is validated, so nothing it names is read or imported first."""
    kind = media_type(content_type)
    if kind in JSON_TYPES:
        mapping = parse_json(body)
    elif kind in YAML_TYPES:
        mapping = _yaml_mapping(decode_text(body))
    else:
        raise unsupported("a search configuration", JSON_TYPES + YAML_TYPES)
    check_sources(mapping, settings)
    return SearchConfig.from_mapping(mapping, origin="search configuration")


def _yaml_mapping(text: str) -> Any:
    try:
        return parse_config_yaml(text)  # a str is always YAML text, never a file on this server
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
