"""HeadshotConfig: every stage's settings for one project, in one TOML file (`headshot init`).

    home = "workspace"      # relative paths are relative to the file's folder
    [[sources]]             # one table per crawl source: site, query, since, until, limit, settings, args
    [ingest]                # paths, min_side, max_pixels, max_bytes
    [process]               # ProcessConfig, with [process.detector], [process.crop], [process.filters], ...
    [dataset]               # name, require_empty_queue and BuildConfig's keys
    [train]                 # preset, steps, batch_size, size, device, and any other TrainConfig key
    [flow]                  # task_runner (threads | dask), dask_address, dask_workers
    [schedule]              # named cron lines, e.g. build = "0 3 * * *"

The stage parts are the stages' own config classes, and the TOML keys are read off their
dataclass fields, so a setting is named in one place only. A file is checked whole: every
problem is one line of the ConfigError, naming the dotted key (`process.filters.min_sharpness`,
`sources[2].since`, [[sources]] counted from 1), the bad value and what is accepted.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from curation.dataset_build import BuildConfig
from curation.ingest import IngestConfig
from curation.process import ProcessConfig
from manifests.workspace import DEFAULT_HOME
from media.decode import DecodeConfig
from pipelines.config_codec import EXTRA, FLAT, ConfigError, Scalar, Text, decode, encode, schema_of, show, unknown_key
from pipelines.config_rules import CRON_FIELDS, RULES, SITES, Rule, cron_problem, rule_for
from pipelines.config_toml import dumps
from training.config import ConfigError as TrainSettingError
from training.config import TrainConfig

DEFAULT_FILE = "headshot.toml"


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
            return None, unknown_key(where, key, known)
        try:
            return getattr(TrainConfig.from_dict({key: value}), key), None
        except TrainSettingError as exc:
            return None, f"{where} = {show(value)}: {exc}"

    def settings(self) -> dict[str, Any]:
        """What this table changes from the training defaults, for training.config.resolve. An
        untouched table changes nothing, so a resumed run keeps its own steps, device, ..."""
        base = TrainSection()
        out = {f.name: getattr(self, f.name) for f in fields(self)
               if f.name != "more" and getattr(self, f.name) != getattr(base, f.name)}
        out.update(self.more)
        return out


@dataclass(frozen=True)
class FlowSection:
    """How the flows (`headshot flow build|train|serve`) run a stage's items."""

    task_runner: str = "threads"  # threads: in the flow's process; dask: on a Dask cluster
    dask_address: str = ""  # a running scheduler (tcp://host:8786); "" = a local cluster of our own
    dask_workers: int = 2  # the local cluster's worker processes, one thread each


@dataclass(frozen=True)
class HeadshotConfig:
    home: str = DEFAULT_HOME
    sources: tuple[Source, ...] = ()
    ingest: IngestSection = field(default_factory=IngestSection)
    process: ProcessConfig = field(default_factory=ProcessConfig)
    dataset: DatasetSection = field(default_factory=DatasetSection)
    train: TrainSection = field(default_factory=TrainSection)
    flow: FlowSection = field(default_factory=FlowSection)
    schedule: dict[str, str] = field(default_factory=dict)  # name -> cron line

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "HeadshotConfig":
        problems: list[str] = []
        out = decode(cls, d, "", problems)
        if problems:
            raise ConfigError(problems)
        return out

    def as_dict(self) -> dict[str, Any]:
        """Plain TOML values only (tuples as lists, no date as None: "")."""
        return encode(self)

    @classmethod
    def of(cls, value: "HeadshotConfig | dict[str, Any] | None") -> "HeadshotConfig":
        """A flow's `config` parameter: a HeadshotConfig, None for the defaults, or its as_dict()
        (what a deployment's JSON parameters bring back), checked like a file."""
        if value is None:
            return cls()
        return cls.from_dict(value) if isinstance(value, dict) else value

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


def schema(cls: type | None = None) -> dict[str, Any]:
    """Every key of the file, dotted, with its type; sub-tables and arrays of tables included."""
    return schema_of(cls or HeadshotConfig)


def _text(v: Scalar) -> str:
    return ("True" if v else "False") if isinstance(v, bool) else str(v)


def _looks_like_path(s: str) -> bool:
    return bool(s.strip()) and "\n" not in s and "=" not in s and not s.lstrip().startswith(("[", "#"))


__all__ = ["CRON_FIELDS", "ConfigError", "DEFAULT_FILE", "DatasetSection", "FlowSection", "HeadshotConfig",
           "IngestSection", "RULES", "Rule", "SITES", "Scalar", "Source", "Text", "TrainSection", "cron_problem",
           "rule_for", "schema"]
