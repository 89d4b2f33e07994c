"""The shapes bench.toml's tables share: plain names, known keys, lists of names, and
``extends = "OTHER"``. Used by the config and by the recipe schema, which sit above it."""
from __future__ import annotations

import re
from typing import Any, Mapping

from .errors import ConfigError, unknown

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _name(name: str, where: str) -> str:
    """Names become file names (results/<suite>/<ranker>__<dataset>.json): keep them plain."""
    if not _NAME.match(name) or "__" in name:
        raise ConfigError(f"{where}: name {name!r} may use letters, digits, '-', '_' and '.', "
                          f"must start with a letter or digit, and may not contain '__'")
    return name


def _keys(table: Mapping, allowed: set[str], where: str) -> None:
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where}: must be a table, found {table!r}")
    for key in table:
        if key not in allowed:
            raise ConfigError(unknown("key", key, allowed, where))


def _str_list(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: must be a list of strings, found {value!r}")
    if len(set(value)) != len(value):
        raise ConfigError(f"{where}: lists a name twice")
    return tuple(value)


def resolve_extends(tables: Mapping, section: str, where: str):
    """``extends = "OTHER"`` for the tables of one section: a table is its parent's keys (all but
    the description) overlaid with its own. Returns resolve(name) -> the merged table."""
    resolved: dict[str, dict] = {}

    def resolve(name: str, seen: tuple[str, ...] = ()) -> dict:
        if name in resolved:
            return resolved[name]
        w = f"{where} [{section}.{name}]"
        if name in seen:
            raise ConfigError(f"{w}: extends forms a cycle: {' -> '.join(seen + (name,))}")
        if not isinstance(tables[name], Mapping):
            raise ConfigError(f"{w}: must be a table")
        table = dict(tables[name])
        parent = table.pop("extends", None)
        if parent is not None:
            if parent not in tables:
                raise ConfigError(unknown(f"{section[:-1]} to extend", str(parent), tables, w))
            base = dict(resolve(parent, seen + (name,)))
            base.pop("description", None)
            table = {**base, **table}
        resolved[name] = table
        return table

    return resolve
