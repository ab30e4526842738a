"""HeadshotConfig: every stage's settings for one project, in one TOML file (`headshot init`).

    home = "workspace"      # relative paths are relative to the file's folder
    [[sources]]             # one table per crawl source: site, query, since, until, limit, settings, args
    [ingest]                # paths, min_side, max_pixels, max_bytes
    [process]               # ProcessConfig, with [process.detector], [process.crop], [process.filters], ...
    [dataset]               # name, require_empty_queue and BuildConfig's keys
    [train]                 # preset, steps, batch_size, size, device, and any other TrainConfig key
    [schedule]              # named cron lines, e.g. build = "0 3 * * *"

The stage parts are the stages' own config classes, and the TOML keys are read off their
dataclass fields, so a setting is named in one place only. A file is checked whole: every
problem is one line of the ConfigError, naming the dotted key (`process.filters.min_sharpness`,
`sources[2].since`, [[sources]] counted from 1), the bad value and what is accepted.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import tomllib
import types
import typing
from dataclasses import MISSING, dataclass, field, fields, is_dataclass, replace
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, Callable, Union

from curation.crop import PADS, SIZES as CROP_SIZES
from curation.dataset_build import BuildConfig
from curation.dedup import parse_policy
from curation.detect import DETECTORS, RULES as ENSEMBLE_RULES
from curation.hashes import ALGORITHMS
from curation.ingest import IngestConfig
from curation.process import ProcessConfig
from manifests.datasets import DatasetError, check_name
from manifests.workspace import DEFAULT_HOME
from media.decode import DecodeConfig
from pipelines.config_toml import dumps, format_value
from spiders.run import SOURCES as SITES
from training.config import DEVICES, PRESETS, SIZES as TRAIN_SIZES, TrainConfig
from training.config import ConfigError as TrainSettingError

DEFAULT_FILE = "headshot.toml"
FLAT = {"flat": True}  # this nested config's keys sit in the parent table itself
EXTRA = {"extra": True}  # the table's other keys land in this dict (checked by the class's `extra_key`)
Scalar = Union[str, int, float, bool]


class ConfigError(ValueError):
    """Every problem of a config, one line each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class Text(str):
    """A value typed on the command line (`--set KEY=VALUE`): read as the key's type."""


# --- the sections --------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    site: str
    query: str = ""
    since: str = ""  # YYYY-MM; "" = no bound
    until: str = ""
    limit: int = 0  # 0 = no limit
    settings: dict[str, Scalar] = field(default_factory=dict)  # Scrapy settings, e.g. GETCHU_BASE_URL
    args: dict[str, Scalar] = field(default_factory=dict)  # spider arguments, e.g. ids, mode

    def __post_init__(self) -> None:
        if self.since and self.until and self.since > self.until:
            raise ValueError(f"since {self.since} is after until {self.until}")

    def spider_args(self) -> dict[str, str]:
        out = {k: _text(v) for k, v in self.args.items()}
        out.update({k: getattr(self, k) for k in ("query", "since", "until") if getattr(self, k)})
        if self.limit:
            out["limit"] = str(self.limit)
        return out

    def scrapy_settings(self) -> dict[str, str]:
        return {k: _text(v) for k, v in self.settings.items()}


@dataclass(frozen=True)
class IngestSection:
    paths: tuple[str, ...] = ()  # what `headshot ingest` reads when given no PATH
    decode: DecodeConfig = field(default_factory=DecodeConfig, metadata=FLAT)

    def stage(self) -> IngestConfig:
        """The ingest stage's config: the byte cap holds for files read and downloads alike."""
        base = IngestConfig()
        return replace(base, decode=self.decode, fetch=replace(base.fetch, max_bytes=self.decode.max_bytes))

    def crawl_settings(self) -> dict[str, str]:
        """The same decode rules for crawled images, as the Scrapy settings the store pipeline
        reads; only those that differ from its defaults."""
        names = {"min_side": "HEADSHOT_MIN_SIDE", "max_pixels": "HEADSHOT_MAX_PIXELS", "max_bytes": "HEADSHOT_MAX_BYTES"}
        default = DecodeConfig()
        return {s: str(getattr(self.decode, k)) for k, s in names.items()
                if getattr(self.decode, k) != getattr(default, k)}


@dataclass(frozen=True)
class DatasetSection:
    name: str = "faces"
    require_empty_queue: bool = False  # refuse to build while doubtful crops wait for a person
    build: BuildConfig = field(default_factory=BuildConfig, metadata=FLAT)


@dataclass(frozen=True)
class TrainSection:
    preset: str = TrainConfig.preset
    steps: int = TrainConfig.steps
    batch_size: int = TrainConfig.batch_size
    size: int = TrainConfig.size
    device: str = TrainConfig.device
    more: dict[str, Any] = field(default_factory=dict, metadata=EXTRA)  # any other TrainConfig key

    @staticmethod
    def extra_key(key: str, value: Any, where: str) -> tuple[Any, str | None]:
        known = [f.name for f in fields(TrainConfig)]
        if key not in known:
            return None, _unknown(where, key, known)
        try:
            return getattr(TrainConfig.from_dict({key: value}), key), None
        except TrainSettingError as exc:
            return None, f"{where} = {_show(value)}: {exc}"

    def settings(self) -> dict[str, Any]:
        """What this table changes from the training defaults, for training.config.resolve. An
        untouched table changes nothing, so a resumed run keeps its own steps, device, ..."""
        base = TrainSection()
        out = {f.name: getattr(self, f.name) for f in fields(self)
               if f.name != "more" and getattr(self, f.name) != getattr(base, f.name)}
        out.update(self.more)
        return out


@dataclass(frozen=True)
class HeadshotConfig:
    home: str = DEFAULT_HOME
    sources: tuple[Source, ...] = ()
    ingest: IngestSection = field(default_factory=IngestSection)
    process: ProcessConfig = field(default_factory=ProcessConfig)
    dataset: DatasetSection = field(default_factory=DatasetSection)
    train: TrainSection = field(default_factory=TrainSection)
    schedule: dict[str, str] = field(default_factory=dict)  # name -> cron line

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "HeadshotConfig":
        problems: list[str] = []
        out = _decode(cls, d, "", problems)
        if problems:
            raise ConfigError(problems)
        return out

    def as_dict(self) -> dict[str, Any]:
        """Plain TOML values only (tuples as lists, no date as None: "")."""
        return _encode(self)

    @classmethod
    def from_toml(cls, source: str | os.PathLike[str]) -> "HeadshotConfig":
        """From TOML text, or from a file: a Path, or a one-line string without '=' (a file name)."""
        label = ""
        if isinstance(source, os.PathLike) or _looks_like_path(source):
            path = Path(source)
            label = f"{path}: "
            try:
                source = path.read_text(encoding="utf-8")
            except FileNotFoundError:
                raise ConfigError([f"no such config file: {path}"]) from None
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError([f"cannot read the config file {path}: {exc}"]) from None
        try:
            doc = tomllib.loads(source)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError([f"{label}not valid TOML: {exc}"]) from None
        try:
            return cls.from_dict(doc)
        except ConfigError as exc:
            raise ConfigError([label + p for p in exc.problems]) from None

    def to_toml(self) -> str:
        d = self.as_dict()
        if not d["sources"]:
            del d["sources"]  # an empty array of tables has no TOML spelling but `sources = []`
        return dumps(d)

    def with_changes(self, changes: dict[str, Any]) -> "HeadshotConfig":
        """This config with dotted keys set (`{"process.crop.margin": 0.3}`), checked like a file."""
        d = self.as_dict()
        for dotted, value in changes.items():
            *parents, leaf = dotted.split(".")
            node = d
            for p in parents:
                if not isinstance(node.get(p), dict):
                    node[p] = {}  # an unknown table: from_dict names it
                node = node[p]
            node[leaf] = value
        return HeadshotConfig.from_dict(d)

    def with_sets(self, pairs: list[str], table: str = "", flag: str = "--set") -> "HeadshotConfig":
        """`--set KEY=VALUE` pairs, KEY dotted within `table` (`filters.min_sharpness=0.4`)."""
        changes: dict[str, Any] = {}
        for pair in pairs:
            k, sep, v = pair.partition("=")
            k = k.strip()
            if not sep or not k:
                raise ConfigError([f"bad {flag} {pair!r}: write KEY=VALUE"])
            if table and not k.startswith(table + "."):
                k = f"{table}.{k}"
            changes[k] = Text(v.strip())
        return self.with_changes(changes) if changes else self

    def source(self, site: str) -> Source | None:
        """The first [[sources]] table of `site`."""
        return next((s for s in self.sources if s.site == site), None)


# --- what is accepted where ------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    lo: float | None = None
    hi: float | None = None
    above: bool = False  # lo itself is out
    below: bool = False  # hi itself is out
    choices: tuple = ()
    check: Callable[[Any], str | None] | None = None  # a problem, or None
    says: str = ""  # what `check` accepts

    def accepts(self) -> str:
        if self.choices:
            return "one of " + "|".join(map(str, self.choices))
        if self.says:
            return self.says
        lo = None if self.lo is None else f"{'above' if self.above else 'at least'} {_num(self.lo)}"
        hi = None if self.hi is None else f"{'below' if self.below else 'at most'} {_num(self.hi)}"
        if lo and hi and not self.above and not self.below:
            return f"{_num(self.lo)} to {_num(self.hi)}"
        return " and ".join(x for x in (lo, hi) if x)

    def problem(self, v: Any) -> str | None:
        if self.choices:
            return None if v in self.choices else f"must be {self.accepts()}"
        if self.lo is not None and (v < self.lo or (self.above and v == self.lo)) or \
                self.hi is not None and (v > self.hi or (self.below and v == self.hi)):
            return f"out of range: must be {self.accepts()}"
        return self.check(v) if self.check else None


def _month(v: str) -> str | None:
    if v == "" or re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", v):
        return None
    return 'not a month: write YYYY-MM (e.g. 2015-05), or "" for none'


def _dataset_name(v: str) -> str | None:
    try:
        check_name(v)
    except DatasetError as exc:
        return str(exc)
    return None


def _policy(v: str) -> str | None:
    try:
        parse_policy(v)
    except ValueError as exc:
        return str(exc)
    return None


CRON_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12),
               ("day of week", 0, 7))
_CRON_NAMES = {3: "jan feb mar apr may jun jul aug sep oct nov dec".split(), 4: "sun mon tue wed thu fri sat".split()}


def cron_problem(line: str) -> str | None:
    """None for a 5-field cron line with every field in range; else what is wrong, for a person."""
    parts = line.split()
    if len(parts) != 5:
        return f"a cron line has 5 fields (minute hour day-of-month month day-of-week), this one {len(parts)}"
    for i, (part, (name, lo, hi)) in enumerate(zip(parts, CRON_FIELDS)):
        first = 1 if i == 3 else 0
        names = {n: j + first for j, n in enumerate(_CRON_NAMES.get(i, []))}
        for item in part.split(","):
            span, slash, step = item.partition("/")
            if slash and not (step.isdigit() and int(step) >= 1):
                return f"{name} field {part!r}: the step after '/' must be a whole number of 1 or more"
            if span == "*":
                continue
            a, dash, b = span.partition("-")
            ends = [names.get(x.lower(), int(x) if x.isdigit() else None) for x in ((a, b) if dash else (a,))]
            if None in ends:
                return f"{name} field {part!r}: write *, a number, a range a-b, a step */n, or a list of them"
            if any(not lo <= e <= hi for e in ends) or (dash and ends[0] > ends[1]):
                return f"{name} field {part!r} is out of range {lo}-{hi}"
    return None


_HASH_RULES = {"algorithm": Rule(choices=ALGORITHMS), "radius": Rule(lo=0), "review_margin": Rule(lo=0)}
RULES: dict[str, Rule] = {
    "home": Rule(check=lambda v: None if v.strip() else "must not be empty", says="a folder or fsspec URL"),
    "sources.site": Rule(choices=SITES),
    "sources.since": Rule(check=_month, says='YYYY-MM, or "" for none'),
    "sources.until": Rule(check=_month, says='YYYY-MM, or "" for none'),
    "sources.limit": Rule(lo=0),
    "ingest.min_side": Rule(lo=1),
    "ingest.max_pixels": Rule(lo=1),
    "ingest.max_bytes": Rule(lo=1),
    "process.dedup_policy": Rule(check=_policy, says="comma-separated criteria, e.g. largest,lossless,original,earliest"),
    "process.workers": Rule(lo=0),
    "process.part_rows": Rule(lo=1),
    "process.part_seconds": Rule(lo=0, above=True),
    "process.detector.detector": Rule(choices=DETECTORS),
    "process.detector.members": Rule(choices=DETECTORS[:-1]),
    "process.detector.rule": Rule(choices=ENSEMBLE_RULES),
    "process.detector.merge_iou": Rule(lo=0, hi=1),
    "process.detector.scale_factor": Rule(lo=1, above=True, hi=4),
    "process.detector.min_neighbors": Rule(lo=0),
    "process.detector.min_size": Rule(lo=1),
    "process.detector.upscale_below": Rule(lo=0),
    "process.detector.max_side": Rule(lo=0),
    "process.detector.animeface_threshold": Rule(lo=0, hi=1),
    "process.detector.sure_likelihood": Rule(lo=0, hi=1),
    "process.detector.sure_neighbors": Rule(lo=0),
    "process.detector.rotations": Rule(lo=-180, hi=180),
    "process.detector.rotate_members": Rule(choices=DETECTORS[:-1]),
    "process.detector.rotate_when": Rule(choices=("fallback", "always")),
    "process.crop.margin": Rule(lo=0, hi=2),
    "process.crop.size": Rule(choices=CROP_SIZES),
    "process.crop.pad": Rule(choices=PADS),
    "process.filters.min_colour": Rule(lo=0),
    "process.filters.max_tint_share": Rule(lo=0, hi=1),
    "process.filters.min_sharpness": Rule(lo=0),
    "process.filters.min_face_side": Rule(lo=0),
    "process.filters.min_face_share": Rule(lo=0, hi=1),
    "process.filters.doubtful_margin": Rule(lo=0, hi=1),
    "process.filters.doubtful_days": Rule(lo=0),
    **{f"process.{t}.{k}": r for t in ("hashing", "image_hashing") for k, r in _HASH_RULES.items()},
    "dataset.name": Rule(check=_dataset_name, says="letters, digits, _ - or ., starting with a letter or digit"),
    "dataset.min_accepted": Rule(lo=0),
    "dataset.val_fraction": Rule(lo=0, hi=1, below=True),
    "train.preset": Rule(choices=tuple(PRESETS)),
    "train.steps": Rule(lo=1),
    "train.batch_size": Rule(lo=1),
    "train.size": Rule(choices=TRAIN_SIZES),
    "train.device": Rule(choices=DEVICES),
    "schedule.*": Rule(check=cron_problem, says="a cron line, minute hour day-of-month month day-of-week"),
}


def rule_for(path: str) -> Rule | None:
    """The rule of a dotted key; indices ([2]) and schedule names do not matter."""
    path = re.sub(r"\[\d+\]", "", path)
    if path.startswith("schedule."):
        path = "schedule.*"
    return RULES.get(path)


def schema(cls: type = HeadshotConfig, prefix: str = "") -> dict[str, Any]:
    """Every key of the file, dotted, with its type; sub-tables and arrays of tables included."""
    out: dict[str, Any] = {}
    for name, f, hint in _slots(cls).values():
        where = f"{prefix}{name}"
        out[where] = hint
        inner = _item(hint)
        if is_dataclass(hint) or is_dataclass(inner):
            out.update(schema(hint if is_dataclass(hint) else inner, where + "."))
    return out


# --- the codec -------------------------------------------------------------------------------

_BAD = object()


def _text(v: Scalar) -> str:
    return ("True" if v else "False") if isinstance(v, bool) else str(v)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


def _show(v: Any) -> str:
    try:
        return format_value(v)
    except TypeError:
        return repr(v)


def _looks_like_path(s: str) -> bool:
    return bool(s.strip()) and "\n" not in s and "=" not in s and not s.lstrip().startswith(("[", "#"))


def _unknown(where: str, key: str, known: list[str]) -> str:
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


def _encode(obj: Any) -> Any:
    if is_dataclass(obj):
        d: dict[str, Any] = {}
        for f in fields(obj):
            v = getattr(obj, f.name)
            if f.metadata.get("flat"):
                d.update(_encode(v))
            elif f.metadata.get("extra"):
                d.update({k: _encode(x) for k, x in v.items()})
            else:
                d[f.name] = _encode(v)
        return d
    if isinstance(obj, (tuple, list)):
        return [_encode(x) for x in obj]
    if isinstance(obj, dict):
        return {k: _encode(v) for k, v in obj.items()}
    if obj is None:
        return ""
    if isinstance(obj, datetime):
        return obj.isoformat()
    return obj


def _decode(cls: type, data: Any, path: str, problems: list[str]) -> Any:
    if not isinstance(data, dict):
        problems.append(f"{path or 'the config'}: expected a table, got {_show(data)}")
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
                problems.append(_unknown(where, key, list(slots)))
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
        return _decode(hint, raw, where, problems)
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
            problems.append(f"{where} = {_show(raw)}: expected {what}")
            return _BAD
        out = [_value(item, x, f"{where}[{i}]", problems) for i, x in enumerate(raw, 1)]
        return _BAD if any(x is _BAD for x in out) else tuple(out)
    if origin is dict:
        if not isinstance(raw, dict):
            problems.append(f"{where} = {_show(raw)}: expected a table, e.g. {{ KEY = \"value\" }}")
            return _BAD
        out = {k: _value(args[1], v, f"{where}.{k}", problems) for k, v in raw.items()}
        return _BAD if any(x is _BAD for x in out.values()) else out
    value, expected = _scalar(hint, raw)
    if expected:
        problems.append(f"{where} = {_show(raw)}: expected {expected}")
        return _BAD
    rule = rule_for(where)
    problem = rule.problem(value) if rule else None
    if problem:  # the value as it was written: a typed one as typed, the file's in TOML
        problems.append(f"{where} = {raw if isinstance(raw, Text) else _show(raw)}: {problem}")
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


__all__ = ["CRON_FIELDS", "ConfigError", "DEFAULT_FILE", "DatasetSection", "HeadshotConfig", "IngestSection",
           "RULES", "Rule", "SITES", "Source", "Text", "TrainSection", "cron_problem", "rule_for", "schema"]
