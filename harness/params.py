"""Typed, validated parameters: a frozen dataclass per ranker kind, built from a bench.toml table.

Unknown keys are errors with a did-you-mean; values are checked against the field types
(str, int, float, bool, Literal[...], X | None, tuple[X, ...], dict[str, X]).
"""
from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, Mapping

from .errors import ConfigError, did_you_mean, unknown


def _check(value: Any, tp: Any, where: str, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _check(value, a, where, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: {key} has the wrong type")
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            hint = did_you_mean(str(value), [str(a) for a in allowed])
            raise ConfigError(f"{where}: {key} = {value!r} is not one of "
                              + ", ".join(repr(a) for a in allowed) + hint)
        return value
    if origin is dict:
        key_tp, val_tp = typing.get_args(tp)
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: {key} must be a table, found {value!r}")
        return {_check(k, key_tp, where, f"{key} key"): _check(v, val_tp, where, f"{key}.{k}")
                for k, v in value.items()}
    if origin is tuple:
        (inner, *_rest) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: {key} must be a list, found {value!r}")
        return tuple(_check(v, inner, where, key) for v in value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: {key} must be a number, found {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: {key} must be an integer, found {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {key} must be true or false, found {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: {key} must be a string, found {value!r}")
        return value
    raise TypeError(f"unsupported parameter type {tp!r} for {key}")


def build_params(cls: type, values: Mapping[str, Any], where: str) -> Any:
    """An instance of the dataclass ``cls`` from a mapping, validated."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in values:
        if key not in fields:
            raise ConfigError(unknown("parameter", key, fields, where))
    kwargs = {}
    for name, f in fields.items():
        if name in values:
            kwargs[name] = _check(values[name], hints[name], where, name)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}: missing required parameter {name!r}")
    return cls(**kwargs)


def as_dict(params: Any) -> dict:
    return dataclasses.asdict(params) if dataclasses.is_dataclass(params) else {}
