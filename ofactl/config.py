"""Strict YAML over dataclasses.

``load_config(Cls, path)`` reads YAML with ``yaml.safe_load`` (never ``eval``)
and builds ``Cls`` field by field, recursing into nested dataclasses.  An
unknown key is an error that lists the valid ones; a value of the wrong type
is an error that names the key and the expected type.  ``to_plain`` turns a
config back into plain data (for checkpoints and ``config.yaml``).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin, get_type_hints

from ofactl.errors import OfactlError

T = TypeVar("T")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp``; convert lists to tuples and dicts to dataclasses."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        options = get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, where)
            except OfactlError as err:
                errors.append(err)
        raise OfactlError(f"{where}: expected {' or '.join(_type_name(o) for o in options)}, found {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise OfactlError(f"{where}: expected a mapping of {tp.__name__} fields, found {value!r}")
        return from_dict(tp, value, where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise OfactlError(f"{where}: expected a list, found {value!r}")
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise OfactlError(f"{where}: expected {len(args)} items, found {len(value)}")
            return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        inner = args[0] if args else Any
        items = [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise OfactlError(f"{where}: expected a mapping, found {value!r}")
        return dict(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise OfactlError(f"{where}: expected a number, found {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise OfactlError(f"{where}: expected an integer, found {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise OfactlError(f"{where}: expected true or false, found {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise OfactlError(f"{where}: expected a string, found {value!r}")
        return value
    return value


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types are errors."""
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise OfactlError(f"{where}: unknown key(s) {', '.join(unknown)}", hint=f"valid keys: {', '.join(fields)}")
    hints = get_type_hints(cls)
    kwargs = {name: _coerce(value, hints[name], f"{where}.{name}") for name, value in data.items()}
    try:
        return cls(**kwargs)
    except OfactlError:
        raise
    except (TypeError, ValueError) as err:
        raise OfactlError(f"{where}: {err}") from None


def load_config(cls: type[T], path: str | Path) -> T:
    """Read ``path`` (YAML) into dataclass ``cls`` strictly."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise OfactlError(f"config file {path} not found", hint="pass --config with an existing YAML file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise OfactlError(f"{path}:{line} is not valid YAML ({getattr(err, 'problem', err)})") from None
    if not isinstance(data, dict):
        raise OfactlError(f"{path}: expected a mapping at the top level, found {type(data).__name__}")
    return from_dict(cls, data, where=str(path))


def to_plain(obj: Any) -> Any:
    """Dataclasses, tuples and paths to plain dicts, lists and strings."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def save_yaml(obj: Any, path: str | Path) -> None:
    """Write ``to_plain(obj)`` as YAML atomically."""
    import yaml

    from ofactl.atomic import atomic_write_text

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, yaml.safe_dump(to_plain(obj), sort_keys=False))


def parse_assignments(items: list[str], option: str = "--set") -> dict[str, Any]:
    """``["optim.lr=5e-4", "fixed_lambda=1"]`` -> ``{"optim.lr": 0.0005, "fixed_lambda": 1}``.

    Values are read with ``yaml.safe_load`` (numbers, booleans, null, lists),
    never evaluated; the keys are checked later, strictly, by :func:`from_dict`.
    """
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise OfactlError(f"{option} {item!r}: expected KEY=VALUE", hint=f"e.g. {option} optim.lr=5e-4")
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            raise OfactlError(f"{option} {item!r}: the value is not valid YAML", hint="quote strings with spaces") from None
        if isinstance(value, str):
            try:  # YAML 1.1 reads 5e-4 (no dot) as a string; a user means the number
                value = float(value) if value.strip().lower() not in ("nan", "inf", "-inf", "+inf") else value
            except ValueError:
                pass
        out[key] = value
    return out
