"""Typed, validated parameters: a frozen dataclass per ranker kind, built from a bench.toml table.

Unknown keys are errors with a did-you-mean; values are checked against the field types
(str, int, float, bool, Literal[...], X | None, tuple[X, ...], dict[str, X]) and against the
field's range where it has one (``ranged``): each error names the key and the bound it broke.
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
        if value != value or value in (float("inf"), float("-inf")):
            raise ConfigError(f"{where}: {key} must be a finite number, found {value!r}")
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


def ranged(default: Any = dataclasses.MISSING, *, ge: float | None = None, gt: float | None = None,
           le: float | None = None, lt: float | None = None, factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field with a range: ``k1: float = ranged(0.9, ge=0)``. The bounds apply to a
    number, to each item of a tuple and to each value of a dict; None passes (an optional field)."""
    bounds = {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if v is not None}
    if factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=factory, metadata={"bounds": bounds})
    return dataclasses.field(default=default, metadata={"bounds": bounds})


_BOUND_TEXT = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}


def range_text(bounds: Mapping[str, float]) -> str:
    lo = [f"{_BOUND_TEXT[k]} {v:g}" for k, v in bounds.items() if k in ("ge", "gt")]
    hi = [f"{_BOUND_TEXT[k]} {v:g}" for k, v in bounds.items() if k in ("le", "lt")]
    return " and ".join(lo + hi)


def check_bounds(value: Any, bounds: Mapping[str, float], where: str, key: str) -> None:
    """A ConfigError naming the key, the value and the bound it broke."""
    if not bounds or value is None:
        return
    if isinstance(value, Mapping):
        for k, v in value.items():
            check_bounds(v, bounds, where, f"{key}.{k}")
        return
    if isinstance(value, (tuple, list)):
        for v in value:
            check_bounds(v, bounds, where, key)
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    broken = [(k, b) for k, b in bounds.items()
              if not {"ge": value >= b, "gt": value > b, "le": value <= b, "lt": value < b}[k]]
    if broken or value != value:
        k, b = broken[0] if broken else next(iter(bounds.items()))
        raise ConfigError(f"{where}: {key} = {value!r} is out of range: it must be {_BOUND_TEXT[k]} {b:g}"
                          + (f" (allowed: {range_text(bounds)})" if len(bounds) > 1 else ""))


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
            check_bounds(kwargs[name], f.metadata.get("bounds", {}), where, name)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}: missing required parameter {name!r}")
    return cls(**kwargs)


def as_dict(params: Any) -> dict:
    return dataclasses.asdict(params) if dataclasses.is_dataclass(params) else {}


RECIPE_PREFIX = "recipe:"


def recipe_of(params: Any) -> str | None:
    """The bench.toml recipe a ranker's model names (``model = "recipe:NAME"``), if any."""
    model = getattr(params, "model", None)
    if isinstance(model, str) and model.startswith(RECIPE_PREFIX):
        return model[len(RECIPE_PREFIX):]
    return None
