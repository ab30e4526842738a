"""A small TOML writer for config documents (tomllib only reads).

The values a config holds: str, int, float, bool, lists and tables; dates are written as
strings. Within a table, plain keys come first and sub-tables after them, because in TOML
every key after a table header belongs to that table. Tables inside an array of tables
(`[[sources]]`) are written inline, `settings = { KEY = "value" }`.
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime
from typing import Any, Callable

_BARE = re.compile(r"^[A-Za-z0-9_-]+$")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}

Notes = Callable[[str], list[str]]  # dotted path -> lines written before its key or table header


def string(s: str) -> str:
    out = []
    for ch in s:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def key(k: str) -> str:
    return k if _BARE.match(k) else string(k)


def _float(x: float) -> str:
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return repr(x)  # always has a '.' or an exponent, both TOML floats; parses back to the same float


def format_value(v: Any) -> str:
    """One value as TOML; TypeError for anything a config does not hold."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return _float(v)
    if isinstance(v, str):
        return string(v)
    if isinstance(v, (datetime, date)):
        return string(v.isoformat())
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(format_value(x) for x in v) + "]"
    if isinstance(v, dict):
        if not v:
            return "{}"
        return "{ " + ", ".join(f"{key(str(k))} = {format_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"a config holds no {type(v).__name__} values ({v!r})")


def _is_table_array(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)


def dumps(doc: dict[str, Any], notes: Notes | None = None) -> str:
    """`doc` as TOML text; `notes(path)` may give comment lines to put before each key and table."""
    lines: list[str] = []
    _table(lines, [], doc, notes or (lambda path: []), inline=False)
    return "\n".join(lines) + "\n"


def _table(lines: list[str], path: list[str], d: dict[str, Any], notes: Notes, inline: bool) -> None:
    nested = [] if inline else [k for k, v in d.items() if isinstance(v, dict) or _is_table_array(v)]
    for k, v in d.items():
        if k not in nested:
            lines.extend(notes(".".join(path + [k])))
            lines.append(f"{key(k)} = {format_value(v)}")
    for k in nested:
        v, here = d[k], path + [k]
        header = ".".join(key(p) for p in here)
        if isinstance(v, dict):
            if lines:
                lines.append("")
            lines.extend(notes(".".join(here)))
            lines.append(f"[{header}]")
            _table(lines, here, v, notes, inline=False)
        else:
            for item in v:
                if lines:
                    lines.append("")
                lines.extend(notes(".".join(here)))
                lines.append(f"[[{header}]]")
                _table(lines, here, item, notes, inline=True)


__all__ = ["dumps", "format_value", "key", "string"]
