"""Reading and writing config dataclasses as plain TOML values, generically from their fields.

A nested dataclass is a sub-table; a field with FLAT metadata puts its dataclass's keys in the
parent table; a field with EXTRA metadata takes the table's other keys, which the class checks
with its `extra_key(key, value, where)`. Reading collects every problem, one line each, with
the dotted key; the rules of config_rules.py are checked on every scalar.
"""

from __future__ import annotations

import difflib
import math
import tomllib
import types
import typing
from dataclasses import MISSING, fields, is_dataclass
from datetime import date, datetime, time
from typing import Any, Union

from pipelines.config_rules import rule_for
from pipelines.config_toml import format_value

FLAT = {"flat": True}  # this nested config's keys sit in the parent table itself
EXTRA = {"extra": True}  # the table's other keys land in this dict (checked by the class's `extra_key`)
Scalar = Union[str, int, float, bool]
_BAD = object()


class ConfigError(ValueError):
    """Every problem of a config, one line each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class Text(str):
    """A value typed on the command line (`--set KEY=VALUE`): read as the key's type."""


def show(v: Any) -> str:
    try:
        return format_value(v)
    except TypeError:
        return repr(v)


def unknown_key(where: str, key: str, known: list[str]) -> str:
    near = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    base = where[: -len(key)]
    if near:
        return f"{where}: unknown key; did you mean {base}{near[0]}?"
    return f"{where}: unknown key; known here: {', '.join(sorted(known))}"


def _item(hint: Any) -> Any:
    """The element type of tuple[X, ...], else None."""
    return typing.get_args(hint)[0] if typing.get_origin(hint) is tuple else None


def _slots(cls: type) -> dict[str, tuple[str, Any, Any]]:
    """TOML key -> (field name, flat owner or None, type), flattened fields' keys included."""
    hints = typing.get_type_hints(cls)
    out: dict[str, tuple[str, Any, Any]] = {}
    for f in fields(cls):
        if f.metadata.get("flat"):
            sub = hints[f.name]
            sub_hints = typing.get_type_hints(sub)
            for g in fields(sub):
                out[g.name] = (g.name, f.name, sub_hints[g.name])
        elif not f.metadata.get("extra"):
            out[f.name] = (f.name, None, hints[f.name])
    return out


def encode(obj: Any) -> Any:
    if is_dataclass(obj):
        d: dict[str, Any] = {}
        for f in fields(obj):
            v = getattr(obj, f.name)
            if f.metadata.get("flat"):
                d.update(encode(v))
            elif f.metadata.get("extra"):
                d.update({k: encode(x) for k, x in v.items()})
            else:
                d[f.name] = encode(v)
        return d
    if isinstance(obj, (tuple, list)):
        return [encode(x) for x in obj]
    if isinstance(obj, dict):
        return {k: encode(v) for k, v in obj.items()}
    if obj is None:
        return ""
    if isinstance(obj, datetime):
        return obj.isoformat()
    return obj


def decode(cls: type, data: Any, path: str, problems: list[str]) -> Any:
    if not isinstance(data, dict):
        problems.append(f"{path or 'the config'}: expected a table, got {show(data)}")
        return _BAD
    slots = _slots(cls)
    extra = next((f.name for f in fields(cls) if f.metadata.get("extra")), None)
    values: dict[str, Any] = {}
    flat: dict[str, dict[str, Any]] = {f.name: {} for f in fields(cls) if f.metadata.get("flat")}
    more: dict[str, Any] = {}
    before = len(problems)
    for key, raw in data.items():
        where = f"{path}.{key}" if path else key
        if key not in slots:
            if extra:
                value, problem = cls.extra_key(key, raw, where)
                if problem:
                    problems.append(problem)
                else:
                    more[key] = value
            else:
                problems.append(unknown_key(where, key, list(slots)))
            continue
        name, owner, hint = slots[key]
        value = _value(hint, raw, where, problems)
        if value is not _BAD:
            (flat[owner] if owner else values)[name] = value
    for f in fields(cls):
        required = f.default is MISSING and f.default_factory is MISSING
        if required and f.name not in values and not any(p.startswith(f"{path}.{f.name} ") for p in problems[before:]):
            problems.append(f"{path}.{f.name}: missing; " + (f"give {rule_for(path + '.' + f.name).accepts()}"
                                                              if rule_for(path + "." + f.name) else "it is required"))
    if len(problems) > before:
        return _BAD
    hints = typing.get_type_hints(cls)
    for owner, kw in flat.items():
        values[owner] = _construct(hints[owner], kw, path, problems)
    if extra:
        values[extra] = more
    if len(problems) > before:
        return _BAD
    return _construct(cls, values, path, problems)


def _construct(cls: type, kw: dict[str, Any], path: str, problems: list[str]) -> Any:
    try:
        return cls(**kw)
    except (ValueError, TypeError) as exc:
        problems.append(f"{path or 'the config'}: {exc}")
        return _BAD


def _value(hint: Any, raw: Any, where: str, problems: list[str]) -> Any:
    if is_dataclass(hint):
        return decode(hint, raw, where, problems)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType) and type(None) in args:
        if raw == "" or raw is None:
            return None
        return _value(next(a for a in args if a is not type(None)), raw, where, problems)
    if origin is tuple:
        item = args[0]
        if isinstance(raw, Text) and not is_dataclass(item):
            raw = [Text(p.strip()) for p in raw.split(",") if p.strip()]
        if not isinstance(raw, list):
            what = "one [[" + where + "]] table per item" if is_dataclass(item) else "a list, e.g. [1, 2]"
            problems.append(f"{where} = {show(raw)}: expected {what}")
            return _BAD
        out = [_value(item, x, f"{where}[{i}]", problems) for i, x in enumerate(raw, 1)]
        return _BAD if any(x is _BAD for x in out) else tuple(out)
    if origin is dict:
        if not isinstance(raw, dict):
            problems.append(f"{where} = {show(raw)}: expected a table, e.g. {{ KEY = \"value\" }}")
            return _BAD
        out = {k: _value(args[1], v, f"{where}.{k}", problems) for k, v in raw.items()}
        return _BAD if any(x is _BAD for x in out.values()) else out
    value, expected = _scalar(hint, raw)
    if expected:
        problems.append(f"{where} = {show(raw)}: expected {expected}")
        return _BAD
    rule = rule_for(where)
    problem = rule.problem(value) if rule else None
    if problem:  # the value as it was written: a typed one as typed, the file's in TOML
        problems.append(f"{where} = {raw if isinstance(raw, Text) else show(raw)}: {problem}")
        return _BAD
    return value


_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def _scalar(hint: Any, raw: Any) -> tuple[Any, str | None]:
    """(value, None), or (None, what was expected)."""
    if isinstance(raw, Text):
        raw = _from_text(hint, str(raw))
    if hint is bool:
        return (raw, None) if isinstance(raw, bool) else (None, "true or false")
    if hint is int:
        ok = isinstance(raw, int) and not isinstance(raw, bool)
        return (raw, None) if ok else (None, "a whole number")
    if hint is float:
        ok = isinstance(raw, (int, float)) and not isinstance(raw, bool) and math.isfinite(raw)
        return (float(raw), None) if ok else (None, "a number")
    if hint is str:
        return (raw, None) if isinstance(raw, str) else (None, 'text (in quotes, "...")')
    if hint is datetime:
        if isinstance(raw, datetime):
            return raw, None
        if isinstance(raw, date):
            return datetime.combine(raw, time()), None
        try:
            return datetime.fromisoformat(raw), None
        except (TypeError, ValueError):
            return None, 'a date, "YYYY-MM-DD" (or a date and time)'
    if hint == Scalar:
        ok = isinstance(raw, (str, int, float, bool))
        return (raw, None) if ok else (None, "text, a number or true/false")
    if hint is Any:
        return raw, None
    raise TypeError(f"the config cannot read values of type {hint}")  # a new field type: teach _scalar


def _from_text(hint: Any, s: str) -> Any:
    """A command-line value as `hint`; left as text where it does not read as one."""
    if hint is bool and s.lower() in _TRUE + _FALSE:
        return s.lower() in _TRUE
    if hint in (int, float, Scalar):
        try:
            v = tomllib.loads(f"v = {s}")["v"]
        except tomllib.TOMLDecodeError:
            return s
        return v if hint is Scalar or isinstance(v, (int, float)) else s
    return s


def schema_of(cls: type, prefix: str = "") -> dict[str, Any]:
    """Every key of the file, dotted, with its type; sub-tables and arrays of tables included."""
    out: dict[str, Any] = {}
    for name, _owner, hint in _slots(cls).values():
        where = f"{prefix}{name}"
        out[where] = hint
        inner = _item(hint)
        if is_dataclass(hint) or is_dataclass(inner):
            out.update(schema_of(hint if is_dataclass(hint) else inner, where + "."))
    return out


__all__ = ["EXTRA", "FLAT", "ConfigError", "Scalar", "Text", "decode", "encode", "schema_of", "show", "unknown_key"]
