"""Override layers: reading, merging and typing the settings that change a run spec.

A layer is a nested mapping (``{"train": {"lr": 0.01}}``) from a YAML file (``--config``), a
``--set a.b=c`` assignment, a suite's dotted keys or a method's own overrides. Layers merge
in order (:func:`deep_merge`), and :func:`build_dataclass` turns the merged mapping into the
frozen dataclasses of :mod:`dhcbench.benchmark.spec`, coercing each value to its field's
type. Unknown keys and values of the wrong type fail at once, naming the setting and, for an
unknown key, the closest valid one (or all of them).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from dhcbench.errors import UserError

# -- layers -----------------------------------------------------------------------------------


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any], _where: str = ""
               ) -> dict[str, Any]:
    """Merge two layers recursively; ``override`` wins.

    Nested mappings merge key by key at every depth, the free-form ones (``method.kwargs``,
    ``data.options``) too; any other value of ``override`` replaces that of ``base``. A
    mapping never meets a scalar: a section such as ``train`` that is a mapping in one
    layer and a scalar in the other is a UserError naming it (else the scalar would drop
    the other layer's settings without a word). Neither argument is modified.
    """
    out = dict(base)
    for key, value in override.items():
        where = f"{_where}.{key}" if _where else str(key)
        old = out.get(key)
        if isinstance(value, Mapping) and isinstance(old, Mapping):
            out[key] = deep_merge(old, value, where)
        elif key in out and (isinstance(value, Mapping) != isinstance(old, Mapping)
                             and old is not None and value is not None):
            scalar = old if isinstance(value, Mapping) else value
            raise UserError(f"{where}: expected a mapping of settings, got {scalar!r}")
        else:
            out[key] = value
    return out


def dotted_layer(key: str, value: Any, where: str) -> dict[str, Any]:
    """Nest a value under a dotted key: ``"a.b.c", value`` -> ``{"a": {"b": {"c": value}}}``.

    Empty parts of the key are dropped (``"a..b"`` is ``"a.b"``); a key with no part left
    raises a UserError that starts with ``where``, the name of the key's source.
    """
    parts = [p for p in str(key).strip().split(".") if p]
    if not parts:
        raise UserError(f"{where}: empty setting key")
    out: dict[str, Any] = {parts[-1]: value}
    for part in reversed(parts[:-1]):
        out = {part: out}
    return out


def parse_assignment(text: str) -> dict[str, Any]:
    """Read one ``--set`` argument: ``a.b.c=value`` -> ``{"a": {"b": {"c": value}}}``.

    The value is read as YAML (``50`` an int, ``null`` None, ``[16,32,32]`` a list); an empty
    value is the empty string. Text without ``=`` or with invalid YAML is a UserError.
    """
    if "=" not in text:
        raise UserError(f"--set {text!r}: expected KEY=VALUE, e.g. train.epochs=50")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise UserError(f"--set {text!r}: value is not valid YAML ({exc})") from exc
    return dotted_layer(key, value, f"--set {text!r}")


def load_config_file(path: Path) -> dict[str, Any]:
    """Read a YAML run-spec override file (the format :func:`write_config_file` writes).

    An empty file is an empty layer. An unreadable file, invalid YAML or a top level that is
    not a mapping is a UserError naming the file.
    """
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from exc
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise UserError(f"{path}: expected a mapping of settings at the top level")
    return dict(data)


def write_config_file(path: Path, overrides: Mapping[str, Any]) -> None:
    """Write a layer as YAML that ``--config`` accepts.

    Keys keep their order (tuning writes its best parameters this way, for a later run to
    read back with ``--config``).
    """
    Path(path).write_text(yaml.safe_dump(dict(overrides), sort_keys=False))


# -- typing the merged layers -----------------------------------------------------------------


def build_dataclass(cls: type, data: Mapping[str, Any], where: str) -> Any:
    """Build the dataclass ``cls`` from a mapping of its fields, coercing every value.

    Fields that are dataclasses themselves are built recursively from a nested mapping;
    fields missing from ``data`` keep their defaults. ``where`` is the dotted path of
    ``data`` in the whole spec ("" at the top), used in the messages: an unknown key fails
    with the valid ones, a value that cannot take its field's type fails naming the setting.
    """
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise UserError(_unknown_setting(cls, where, unknown[0], data[unknown[0]]))
    kwargs: dict[str, Any] = {}
    for name in names:
        if name not in data:
            continue
        hint = hints[name]
        sub = f"{where}.{name}" if where else name
        if dataclasses.is_dataclass(hint):
            value = data[name]
            if not isinstance(value, Mapping):
                raise UserError(f"{sub}: expected a mapping of settings")
            kwargs[name] = build_dataclass(hint, value, sub)
        else:
            kwargs[name] = _coerce(data[name], hint, sub)
    return cls(**kwargs)


def _unknown_setting(cls: type, where: str, key: str, value: Any) -> str:
    """The message for ``key``, not a field of the dataclass ``cls``: the closest setting.

    ``unknown setting train.lrr; did you mean train.lr?`` — the closest field name by
    :func:`difflib.get_close_matches`; for a misspelt section holding one setting (``trian:
    {lr: …}``) the message names the whole path (``trian.lr``, ``train.lr``) when the
    setting exists in the section suggested. Without a close name, the valid ones.
    """
    prefix = f"{where}." if where else ""
    names = [f.name for f in dataclasses.fields(cls)]
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    if not close:
        return f"unknown setting {prefix}{key} (valid: {', '.join(names)})"
    bad, good = key, close[0]
    section = typing.get_type_hints(cls)[good]
    if isinstance(value, Mapping) and len(value) == 1 and dataclasses.is_dataclass(section):
        (leaf,) = value
        if leaf in {f.name for f in dataclasses.fields(section)}:
            bad, good = f"{key}.{leaf}", f"{good}.{leaf}"
    return f"unknown setting {prefix}{bad}; did you mean {prefix}{good}?"


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """``value`` converted to the field type ``hint``; a UserError naming ``where`` if not.

    Optional types admit None; tuples also take text such as ``16x32x32`` or ``16,32,32``
    (the error then shows the text's parts); types without a converter (``Any``) pass the
    value through unchanged.
    """
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return _coerce_union(value, typing.get_args(hint), where)
    if origin is tuple and isinstance(value, str):
        value = [v for v in value.replace("x", ",").split(",") if v.strip()]
    try:
        scalar = _SCALARS.get(hint)
        if scalar is not None:
            return scalar(value)
        if origin is tuple:
            return _coerce_tuple(value, typing.get_args(hint), where)
        if origin is dict or hint is dict:
            return _to_dict(value)
    except (TypeError, ValueError) as exc:
        raise UserError(f"{where}: cannot use {value!r} here ({exc})") from exc
    return value


def _coerce_union(value: Any, args: tuple[Any, ...], where: str) -> Any:
    """None where the union admits it, else the value coerced to its first other member."""
    if value is None and type(None) in args:
        return None
    non_none = [a for a in args if a is not type(None)]
    return _coerce(value, non_none[0], where)


def _coerce_tuple(value: Any, args: tuple[Any, ...], where: str) -> tuple[Any, ...]:
    """A tuple from an iterable, every item coerced to its member type.

    ``tuple[T, ...]`` takes any number of items, a fixed ``tuple[A, B, C]`` exactly as many
    as it has members.
    """
    items = list(value)
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_coerce(v, args[0], where) for v in items)
    if len(items) != len(args):
        raise ValueError(f"needs {len(args)} values")
    return tuple(_coerce(v, a, where) for v, a in zip(items, args, strict=True))


def _to_bool(value: Any) -> bool:
    """A bool, an int (0 is False) or a word: true/1/yes/on or false/0/no/off, any case."""
    if isinstance(value, str):
        low = value.strip().lower()
        if low in ("true", "1", "yes", "on"):
            return True
        if low in ("false", "0", "no", "off"):
            return False
        raise ValueError(value)
    if isinstance(value, bool | int):
        return bool(value)
    raise ValueError(value)


def _to_int(value: Any) -> int:
    """An int from an int, a whole float or numeric text; never from a bool."""
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError(value)
    return int(value)


def _to_float(value: Any) -> float:
    """A float from a number or numeric text; never from a bool."""
    if isinstance(value, bool):
        raise ValueError(value)
    return float(value)


def _to_str(value: Any) -> str:
    """Text as it is, or a number written as text; any other type is refused."""
    if not isinstance(value, str | int | float):
        raise ValueError(value)
    return str(value)


def _to_dict(value: Any) -> dict[Any, Any]:
    """A plain dict copy of a mapping; anything else is refused."""
    if not isinstance(value, Mapping):
        raise ValueError(value)
    return dict(value)


#: The converter of each scalar field type.
_SCALARS: dict[Any, Any] = {bool: _to_bool, int: _to_int, float: _to_float, str: _to_str}
