"""The typed records every stage reads and writes, each with an explicit pyarrow schema.

One record type per stage; stages are joined by content hash. A failure is a record with a
`status` and a `reason`, never a log line only. Each class names its table and the columns
that identify a row (`KEY`): when a table holds several rows with the same key, the one
written last wins, which is what makes killed runs resumable without duplicates.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

import pyarrow as pa

SCHEMA_VERSION = 1

_TS = pa.timestamp("us", tz="UTC")
_TAGS = pa.list_(pa.string())


def _schema(*fields: tuple[str, pa.DataType, bool]) -> pa.Schema:
    return pa.schema([pa.field(n, t, nullable=nullable) for n, t, nullable in fields])


class Record:
    """Shared behaviour of the record dataclasses (schema lives on each subclass)."""

    TABLE: ClassVar[str]
    SCHEMA: ClassVar[pa.Schema]
    KEY: ClassVar[tuple[str, ...]]
    STATUSES: ClassVar[frozenset[str]] = frozenset()

    def __post_init__(self) -> None:
        status = getattr(self, "status", None)
        if self.STATUSES and status not in self.STATUSES:
            raise ValueError(f"{type(self).__name__}.status {status!r} is not one of {sorted(self.STATUSES)}")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, row: dict[str, Any]):
        # A column that files written before it existed lack reads as None: its default then.
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in row.items()
                      if k in fields and not (v is None and fields[k].default == ())})


@dataclass(frozen=True)
class ScrapedImage(Record):
    """One input: an item found by a spider, a local file or a URL from a list."""

    source: str  # getchu | myanimelist | deviantart | local | url
    source_id: str
    image_url: str
    status: str
    reason: str = ""
    page_url: str = ""
    title: str = ""
    artist: str = ""
    character: str = ""
    tags: tuple[str, ...] = ()
    rating: str = ""
    license: str = ""
    published_at: datetime | None = None
    fetched_at: datetime | None = None
    crawl_run_id: str = ""
    opted_out: bool = False
    image_sha256: str = ""  # empty when no bytes were obtained
    extra: str = "{}"  # JSON: the site's own fields (getchu's reading and voice actor, ...)

    TABLE: ClassVar[str] = "scraped"
    KEY: ClassVar[tuple[str, ...]] = ("source", "source_id", "image_url")
    STATUSES: ClassVar[frozenset[str]] = frozenset({
        "ok", "http_error", "opted_out", "robots_disallowed", "too_large", "unreadable", "invalid",
        "special_file",  # a FIFO, device or socket met in a folder: never opened for reading
        "filtered",  # left out by a crawl setting (e.g. DeviantArt's adult rating), not fetched
        # pages, keyed "page:<url>": "page" when parsed (extra lists its images), else what it was
        "page", "blocked", "age_gate", "unavailable", "truncated", "not_found", "page_error", "offsite",
    })
    SCHEMA: ClassVar[pa.Schema] = _schema(
        ("source", pa.string(), False),
        ("source_id", pa.string(), False),
        ("image_url", pa.string(), False),
        ("status", pa.string(), False),
        ("reason", pa.string(), False),
        ("page_url", pa.string(), False),
        ("title", pa.string(), False),
        ("artist", pa.string(), False),
        ("character", pa.string(), False),
        ("tags", _TAGS, False),
        ("rating", pa.string(), False),
        ("license", pa.string(), False),
        ("published_at", _TS, True),
        ("fetched_at", _TS, True),
        ("crawl_run_id", pa.string(), False),
        ("opted_out", pa.bool_(), False),
        ("image_sha256", pa.string(), False),
        ("extra", pa.string(), False),
    )


@dataclass(frozen=True)
class StoredImage(Record):
    """One distinct content (by sha256 of the bytes), decoded once and validated."""

    image_sha256: str
    status: str
    reason: str = ""
    blob_path: str = ""  # relative to the workspace; empty when the bytes were not kept
    bytes: int = 0
    format: str = ""  # from the bytes, never from the suffix
    width: int = 0  # after EXIF orientation
    height: int = 0
    mode: str = ""
    frames: int = 0
    transparent: bool = False  # real transparency, not merely an alpha channel
    ingested_at: datetime | None = None

    TABLE: ClassVar[str] = "stored"
    KEY: ClassVar[tuple[str, ...]] = ("image_sha256",)
    STATUSES: ClassVar[frozenset[str]] = frozenset(
        {"ok", "empty", "corrupt", "not_image", "too_large", "too_small", "unsupported", "opted_out", "http_error"}
    )
    SCHEMA: ClassVar[pa.Schema] = _schema(
        ("image_sha256", pa.string(), False),
        ("status", pa.string(), False),
        ("reason", pa.string(), False),
        ("blob_path", pa.string(), False),
        ("bytes", pa.int64(), False),
        ("format", pa.string(), False),
        ("width", pa.int32(), False),
        ("height", pa.int32(), False),
        ("mode", pa.string(), False),
        ("frames", pa.int32(), False),
        ("transparent", pa.bool_(), False),
        ("ingested_at", _TS, True),
    )


@dataclass(frozen=True)
class FaceCrop(Record):
    """One detected face; the box is in source pixels so a crop can be redone without detecting."""

    crop_id: str  # from image_sha256 + box + detector params
    image_sha256: str
    box_x: int
    box_y: int
    box_w: int
    box_h: int
    margin: float
    detector: str
    detector_version: str
    detector_params: str  # JSON
    score: float
    crop_path: str
    size: int
    crop_sha256: str = ""  # of the crop's decoded pixels: exact duplicates across re-encodings
    pad: str = ""  # the border policy (curation.crop.CropConfig.pad); "" in rows written before it was recorded

    TABLE: ClassVar[str] = "crops"
    KEY: ClassVar[tuple[str, ...]] = ("crop_id",)
    SCHEMA: ClassVar[pa.Schema] = _schema(
        ("crop_id", pa.string(), False),
        ("image_sha256", pa.string(), False),
        ("box_x", pa.int32(), False),
        ("box_y", pa.int32(), False),
        ("box_w", pa.int32(), False),
        ("box_h", pa.int32(), False),
        ("margin", pa.float32(), False),
        ("detector", pa.string(), False),
        ("detector_version", pa.string(), False),
        ("detector_params", pa.string(), False),
        ("score", pa.float32(), False),
        ("crop_path", pa.string(), False),
        ("size", pa.int32(), False),
        ("crop_sha256", pa.string(), False),
        ("pad", pa.string(), False),
    )


@dataclass(frozen=True)
class FilterResult(Record):
    """The rejection ledger: every filter's score and verdict, so thresholds can be re-tuned."""

    subject_id: str  # crop_id or image_sha256
    filter: str
    score: float
    threshold: float
    passed: bool
    version: str
    reason: str = ""
    doubtful: bool = False  # the score lies near the threshold, or detectors disagree: a person should look

    TABLE: ClassVar[str] = "filters"
    KEY: ClassVar[tuple[str, ...]] = ("subject_id", "filter")
    SCHEMA: ClassVar[pa.Schema] = _schema(
        ("subject_id", pa.string(), False),
        ("filter", pa.string(), False),
        ("score", pa.float64(), False),
        ("threshold", pa.float64(), False),
        ("passed", pa.bool_(), False),
        ("version", pa.string(), False),
        ("reason", pa.string(), False),
        ("doubtful", pa.bool_(), False),
    )


@dataclass(frozen=True)
class HashRecord(Record):
    """A perceptual or exact hash; never compare values of different library versions."""

    crop_id: str
    algorithm: str
    hash_size: int
    value: str  # hex, any width
    library_version: str

    TABLE: ClassVar[str] = "hashes"
    KEY: ClassVar[tuple[str, ...]] = ("crop_id", "algorithm", "hash_size", "library_version")
    SCHEMA: ClassVar[pa.Schema] = _schema(
        ("crop_id", pa.string(), False),
        ("algorithm", pa.string(), False),
        ("hash_size", pa.int32(), False),
        ("value", pa.string(), False),
        ("library_version", pa.string(), False),
    )


@dataclass(frozen=True)
class DupGroup(Record):
    crop_id: str
    group_id: str
    keeper: bool
    distance: int
    policy: str

    TABLE: ClassVar[str] = "dup_groups"
    KEY: ClassVar[tuple[str, ...]] = ("crop_id",)
    SCHEMA: ClassVar[pa.Schema] = _schema(
        ("crop_id", pa.string(), False),
        ("group_id", pa.string(), False),
        ("keeper", pa.bool_(), False),
        ("distance", pa.int32(), False),
        ("policy", pa.string(), False),
    )


@dataclass(frozen=True)
class Review(Record):
    crop_id: str
    decision: str
    reviewer: str
    at: datetime
    origin: str = "human"
    tags: tuple[str, ...] = ()

    TABLE: ClassVar[str] = "reviews"
    KEY: ClassVar[tuple[str, ...]] = ("crop_id", "reviewer", "at")
    SCHEMA: ClassVar[pa.Schema] = _schema(
        ("crop_id", pa.string(), False),
        ("decision", pa.string(), False),
        ("reviewer", pa.string(), False),
        ("at", _TS, False),
        ("origin", pa.string(), False),
        ("tags", _TAGS, False),
    )

    def __post_init__(self) -> None:
        if self.decision not in {"accept", "reject", "skip"}:
            raise ValueError(f"Review.decision {self.decision!r} is not accept, reject or skip")
        if self.origin not in {"human", "rule", "model"}:
            raise ValueError(f"Review.origin {self.origin!r} is not human, rule or model")


@dataclass(frozen=True)
class DatasetRow(Record):
    """One crop in a dataset version, with its lineage back to where the artwork came from."""

    crop_id: str
    crop_path: str
    split: str
    tags: tuple[str, ...] = ()
    image_sha256: str = ""
    source: str = ""
    page_url: str = ""
    image_url: str = ""
    artist: str = ""
    title: str = ""
    # "name=value" per attribute (curation.attributes): hair=blue, eyes=red, character=..., and
    # tag=... for the tags scraped with the picture (a person's own tags are in `tags`)
    attributes: tuple[str, ...] = ()

    TABLE: ClassVar[str] = "dataset"
    KEY: ClassVar[tuple[str, ...]] = ("crop_id",)
    SCHEMA: ClassVar[pa.Schema] = _schema(
        ("crop_id", pa.string(), False),
        ("crop_path", pa.string(), False),
        ("split", pa.string(), False),
        ("tags", _TAGS, False),
        ("image_sha256", pa.string(), False),
        ("source", pa.string(), False),
        ("page_url", pa.string(), False),
        ("image_url", pa.string(), False),
        ("artist", pa.string(), False),
        ("title", pa.string(), False),
        ("attributes", _TAGS, False),
    )


@dataclass(frozen=True)
class Attribute(Record):
    """One attribute of a crop and where it came from: a colour estimated from its pixels
    (name "hair" or "eyes", origin "estimated", `version` the estimator's), or a tag or the
    character name from the page it was scraped from (name "tag" or "character", origin
    "scraped"). The review queue's own tags live in review.sqlite, where a person changes
    them; readers put them beside these (curation.attributes)."""

    crop_id: str
    name: str
    value: str
    origin: str
    confidence: float = 1.0
    version: str = ""

    TABLE: ClassVar[str] = "attributes"
    KEY: ClassVar[tuple[str, ...]] = ("crop_id", "name", "value", "origin", "version")
    ORIGINS: ClassVar[frozenset[str]] = frozenset({"estimated", "scraped"})
    SCHEMA: ClassVar[pa.Schema] = _schema(
        ("crop_id", pa.string(), False),
        ("name", pa.string(), False),
        ("value", pa.string(), False),
        ("origin", pa.string(), False),
        ("confidence", pa.float32(), False),
        ("version", pa.string(), False),
    )

    def __post_init__(self) -> None:
        if self.origin not in self.ORIGINS:
            raise ValueError(f"Attribute.origin {self.origin!r} is not one of {', '.join(sorted(self.ORIGINS))}")


ALL_RECORDS: tuple[type[Record], ...] = (
    ScrapedImage, StoredImage, FaceCrop, FilterResult, HashRecord, DupGroup, Review, DatasetRow, Attribute,
)
PIPELINE_TABLES: tuple[type[Record], ...] = (ScrapedImage, StoredImage, FaceCrop, FilterResult, HashRecord, DupGroup)


def escape_text(s: str) -> str:
    """`s` as valid UTF-8: lone surrogates (a file name that was not UTF-8, decoded by Python with
    surrogateescape) become backslash escapes of their bytes, `bad\\xff.jpg`. Parquet strings
    must be UTF-8, and one odd name must not stop a whole run from being written."""
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        return s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _escaped(v: Any) -> Any:
    if isinstance(v, str):
        return escape_text(v)
    if isinstance(v, list):
        return [_escaped(x) for x in v]
    return v


def to_table(cls: type[Record], records: list[Record]) -> pa.Table:
    """Records -> a pyarrow Table with exactly the class's schema."""
    columns: dict[str, list[Any]] = {name: [] for name in cls.SCHEMA.names}
    for r in records:
        if type(r) is not cls:
            raise TypeError(f"expected {cls.__name__}, got {type(r).__name__}")
        for name in columns:
            v = getattr(r, name)
            columns[name].append(list(v) if isinstance(v, tuple) else v)
    try:
        return pa.Table.from_pydict(columns, schema=cls.SCHEMA)
    except UnicodeEncodeError:  # rare: only then pay for checking every string
        return pa.Table.from_pydict({k: [_escaped(v) for v in col] for k, col in columns.items()}, schema=cls.SCHEMA)


def from_table(cls: type[Record], table: pa.Table) -> list[Record]:
    out = []
    for row in table.to_pylist():
        for k, v in row.items():
            if isinstance(v, list):
                row[k] = tuple(v)
        out.append(cls.from_dict(row))
    return out


__all__ = [
    "SCHEMA_VERSION", "Record", "ScrapedImage", "StoredImage", "FaceCrop", "FilterResult",
    "HashRecord", "DupGroup", "Review", "DatasetRow", "Attribute", "ALL_RECORDS", "PIPELINE_TABLES",
    "to_table", "from_table", "escape_text",
]
