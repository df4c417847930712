"""What a search launched through the API may read and run on this server.

A search config can name files (`data.path`, `data.root`: any field of a data set typed `DataPath`) and
code (`factory: "module:function"`, of a `python` data set or architecture). Through the API both are
refused unless the operator allowed them: data only under the folders of EVONORM_DATA_ROOTS, factories
only from the module prefixes of EVONORM_ALLOWED_FACTORIES (both empty by default). The check reads the
request's mapping before it is validated, so nothing it names is read or imported first; a refusal is a
422 whose problems name each field and the rule it breaks.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from evonorm_search.proxies.config import DATA_CONFIGS
from evonorm_search.proxies.data import path_fields

from .errors import ApiError
from .schemas.common import Problem
from .settings import Settings

FACTORY_KEY = "factory"
CODE_KEY = "code"
# The sections of a search config that hold architectures and data, as paths of keys.
ARCHITECTURE_SECTIONS = (("architectures",), ("validation", "architectures"))
DATA_SECTIONS = (("data",), ("validation", "data"))


def _section(mapping: Any, keys: tuple[str, ...]) -> Any:
    for key in keys:
        mapping = mapping.get(key) if isinstance(mapping, dict) else None
    return mapping


def _factories(node: Any, where: str) -> Iterator[tuple[str, Any]]:
    """Every (dotted location, value) of a `factory` key anywhere under `node`."""
    if isinstance(node, dict):
        for key, value in node.items():
            location = f"{where}.{key}"
            if key == FACTORY_KEY:
                yield location, value
            yield from _factories(value, location)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _factories(value, f"{where}.{index}")


def _data_paths(data: Any, where: str) -> Iterator[tuple[str, Any]]:
    """Every (dotted location, value) of a path field of the named data set."""
    name = data.get("name") if isinstance(data, dict) else None
    model = DATA_CONFIGS.get(name) if isinstance(name, str) else None  # anything else: validation refuses it
    for field in path_fields(model) if model is not None else ():
        if field in data:
            yield f"{where}.{field}", data[field]


def factory_problem(value: Any, prefixes: tuple[str, ...]) -> str | None:
    """Why a factory may not run here (None: it may): its module must be a prefix or lie under one."""
    module = value.partition(":")[0] if isinstance(value, str) else ""
    if any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes):
        return None
    if not prefixes:
        return (
            f"factory {value!r} would run code on this server; EVONORM_ALLOWED_FACTORIES (module prefixes a "
            "search launched through the API may name factories from) is empty"
        )
    return f"factory {value!r} is not from a module prefix in EVONORM_ALLOWED_FACTORIES ({', '.join(prefixes)})"


def path_problem(value: Any, roots: tuple[str, ...]) -> str | None:
    """Why a data path may not be read here (None: it may): absolute, and under a root once links resolve."""
    if not roots:
        return (
            f"data path {value!r}: EVONORM_DATA_ROOTS (folders a search launched through the API may read data "
            "from) is empty, so no file-based data is read through the API"
        )
    if not isinstance(value, str) or not os.path.isabs(value):
        return f"data path {value!r} must be absolute and lie under EVONORM_DATA_ROOTS ({', '.join(roots)})"
    real = os.path.realpath(value)  # `..` and links resolved: a path cannot climb out of a root
    if any(os.path.commonpath([real, os.path.realpath(root)]) == os.path.realpath(root) for root in roots):
        return None
    return f"data path {value!r} is not under EVONORM_DATA_ROOTS ({', '.join(roots)})"


def source_problems(mapping: Any, settings: Settings) -> list[Problem]:
    """The factories and data paths of a search config that this server's allow-lists refuse, and any
    `code:` folder: it would ship a folder of this server to the workers (the operator deploys the code
    the cluster imports, and names it in EVONORM_ALLOWED_FACTORIES)."""
    problems = []
    if isinstance(mapping, dict) and mapping.get(CODE_KEY) is not None:
        problems.append(
            Problem(
                field=CODE_KEY,
                message="code: would ship a folder of this server to the Ray workers; a search launched through "
                "the API imports only code the cluster already has (allowed by EVONORM_ALLOWED_FACTORIES)",
            )
        )
    for keys in ARCHITECTURE_SECTIONS + DATA_SECTIONS:
        for field, value in _factories(_section(mapping, keys), ".".join(keys)):
            if (why := factory_problem(value, settings.allowed_factories)) is not None:
                problems.append(Problem(field=field, message=why))
    for keys in DATA_SECTIONS:
        for field, value in _data_paths(_section(mapping, keys), ".".join(keys)):
            if (why := path_problem(value, settings.data_roots)) is not None:
                problems.append(Problem(field=field, message=why))
    return problems


def check_sources(mapping: Any, settings: Settings) -> None:
    """Raise a 422 naming every field whose file or code the allow-lists refuse."""
    if problems := source_problems(mapping, settings):
        message = "; ".join(f"{p.field}: {p.message}" for p in problems)
        raise ApiError(422, "forbidden_source", message, problems=problems)
