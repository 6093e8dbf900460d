"""Strict construction of typed dataclasses from plain dicts (YAML/JSON).

Unknown keys and wrong types fail with the dotted key path (``optim.lr: expected a number``), so a
typo in a run file never silently falls back to a default. Defaults live only in the dataclasses.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

T = TypeVar("T")


class ConfigError(ValueError):
    """A config value or key is invalid; the message names the key path."""


def from_dict(cls: type[T], data: Any, where: str = "") -> T:
    """Build dataclass ``cls`` from ``data``, rejecting unknown keys and wrong types."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where or '<root>'}: expected a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(f"unknown key {prefix}{unknown[0]!r}; allowed keys here: {', '.join(sorted(fields))}")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _convert(hints[name], value, f"{where}.{name}" if where else name)
    missing = [
        name
        for name, f in fields.items()
        if name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{where or '<root>'}: missing required key {missing[0]!r}")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as error:
        if isinstance(error, ConfigError):
            raise
        raise ConfigError(f"{where or '<root>'}: {error}") from None


def check_partial(cls: type, data: Any, where: str) -> None:
    """Check the keys and types of a partial ``cls`` mapping (one level of overrides merged later).

    Unknown keys and wrong types fail naming the dotted key; nothing is filled in and no cross-field
    check runs (those run on the merged result with :func:`from_dict`).
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - fields)
    if unknown:
        raise ConfigError(f"unknown key {where}.{unknown[0]!r}; allowed keys here: {', '.join(sorted(fields))}")
    for name, value in data.items():
        section = dataclass_option(hints[name])
        if section is not None and isinstance(value, dict):
            check_partial(section, value, f"{where}.{name}")
        else:
            _convert(hints[name], value, f"{where}.{name}")


def dataclass_option(tp: Any) -> type | None:
    """The dataclass in a field type (``X`` or ``X | None``), or None when the field holds plain values."""
    options = get_args(tp) if get_origin(tp) in (Union, types.UnionType) else (tp,)
    return next((option for option in options if dataclasses.is_dataclass(option)), None)


def to_dict(obj: Any) -> Any:
    """Inverse of :func:`from_dict` (plain dicts/lists/scalars, safe for YAML)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def check_finite(value: Any, where: str = "") -> None:
    """Reject NaN and infinity anywhere in ``value`` (YAML's ``.nan``/``.inf``), naming the dotted key."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where or '<root>'}: {value!r} is not a finite number")
    if isinstance(value, dict):
        for key, item in value.items():
            check_finite(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            check_finite(item, f"{where}[{index}]")


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        check_finite(value, where)
        return value
    if origin in (Union, types.UnionType):
        options = get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(option, value, where)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: invalid value {value!r}")
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{where}: {value!r} is not one of {list(allowed)}")
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin in (list, tuple, typing.Sequence):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        (item_type, *_) = get_args(tp) or (Any,)
        return [_convert(item_type, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        key_type, value_type = get_args(tp) or (Any, Any)
        return {_convert(key_type, k, f"{where}"): _convert(value_type, v, f"{where}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            hint = " (write 1.0e-5, not 1e-5: YAML reads the latter as a string)" if isinstance(value, str) else ""
            raise ConfigError(f"{where}: expected a number, got {value!r}{hint}")
        check_finite(value, where)
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value
