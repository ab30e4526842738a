"""Dataset versions: immutable `datasets/<name>/v<N>.parquet` files, and diffs between them."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from .atomic import read_metadata, write_parquet_atomic
from .records import DatasetRow, from_table, to_table
from .tables import file_metadata
from .workspace import Workspace, utcnow

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_VERSION_FILE = re.compile(r"^v(\d+)\.parquet$")


class DatasetError(ValueError):
    pass


def check_name(name: str) -> str:
    if not _NAME.match(name) or ".." in name:
        raise DatasetError(
            f"bad dataset name {name!r}: use letters, digits, '_', '-' or '.', starting with a letter or digit"
        )
    return name


def content_hash(rows: list[DatasetRow]) -> str:
    """Hash of what a version holds, independent of row order: equal content, equal hash."""
    h = hashlib.sha256()
    for r in sorted(rows, key=lambda r: r.crop_id):
        h.update(json.dumps(r.to_dict(), sort_keys=True, default=list).encode())
        h.update(b"\n")
    return h.hexdigest()


@dataclass(frozen=True)
class VersionInfo:
    name: str
    version: int
    path: Path
    rows: int
    content_hash: str
    created_at: str


def versions(ws: Workspace, name: str) -> list[VersionInfo]:
    folder = ws.datasets / check_name(name)
    out = []
    for p in folder.glob("v*.parquet") if folder.is_dir() else []:
        m = _VERSION_FILE.match(p.name)
        if not m:
            continue
        meta = read_metadata(p)
        out.append(VersionInfo(
            name=name, version=int(m.group(1)), path=p,
            rows=pq.ParquetFile(p).metadata.num_rows,
            content_hash=meta.get("headshot.content_hash", ""),
            created_at=meta.get("headshot.created_at", ""),
        ))
    return sorted(out, key=lambda v: v.version)


def list_datasets(ws: Workspace) -> dict[str, list[VersionInfo]]:
    if not ws.datasets.is_dir():
        return {}
    return {d.name: vs for d in sorted(ws.datasets.iterdir()) if d.is_dir() and (vs := versions(ws, d.name))}


def parse_ref(ref: str) -> tuple[str, int | None]:
    """`name`, `name@v3` or `name@3` -> (name, version or None for the latest)."""
    name, _, v = ref.partition("@")
    if not v:
        return check_name(name), None
    v = v[1:] if v.lower().startswith("v") else v
    if not v.isdigit():
        raise DatasetError(f"bad version in {ref!r}: write NAME@vN, for example faces@v2")
    return check_name(name), int(v)


def resolve(ws: Workspace, name: str, version: int | None = None) -> VersionInfo:
    vs = versions(ws, name)
    if not vs:
        raise DatasetError(f"no dataset named {name!r} in {ws.home} (headshot dataset list shows what there is)")
    if version is None:
        return vs[-1]
    for v in vs:
        if v.version == version:
            return v
    raise DatasetError(f"dataset {name!r} has no version v{version} (it has {', '.join(f'v{v.version}' for v in vs)})")


def read_version(ws: Workspace, name: str, version: int | None = None) -> list[DatasetRow]:
    info = resolve(ws, name, version)
    return from_table(DatasetRow, pq.read_table(info.path, schema=DatasetRow.SCHEMA))  # type: ignore[return-value]


def write_version(ws: Workspace, name: str, rows: list[DatasetRow], run_id: str, config: Any = None) -> VersionInfo | None:
    """Write the next version, or return None when it would hold exactly the latest one's content."""
    check_name(name)
    ids = [r.crop_id for r in rows]
    if len(set(ids)) != len(ids):
        raise DatasetError("a dataset version cannot hold the same crop twice")
    digest = content_hash(rows)
    existing = versions(ws, name)
    if existing and existing[-1].content_hash == digest:
        return None
    rows = sorted(rows, key=lambda r: r.crop_id)
    number = existing[-1].version + 1 if existing else 1
    meta = file_metadata(DatasetRow.TABLE, run_id, config)
    meta.update({"headshot.dataset": name, "headshot.version": str(number),
                 "headshot.content_hash": digest, "headshot.created_at": utcnow().isoformat()})
    while True:
        path = ws.datasets / name / f"v{number}.parquet"
        if write_parquet_atomic(path, to_table(DatasetRow, rows), meta, exclusive=True):
            return VersionInfo(name, number, path, len(rows), digest, meta["headshot.created_at"])
        number += 1  # another writer took this number first; versions are never overwritten
        meta["headshot.version"] = str(number)


@dataclass(frozen=True)
class DatasetDiff:
    added: list[DatasetRow]
    removed: list[DatasetRow]
    relabelled: list[tuple[DatasetRow, DatasetRow]]  # (before, after): tags or split changed

    def summary(self) -> dict[str, int]:
        return {"added": len(self.added), "removed": len(self.removed), "relabelled": len(self.relabelled)}


def diff(ws: Workspace, name: str, a: int | None, b: int | None) -> DatasetDiff:
    before = {r.crop_id: r for r in read_version(ws, name, a)}
    after = {r.crop_id: r for r in read_version(ws, name, b)}
    added = [after[k] for k in sorted(after.keys() - before.keys())]
    removed = [before[k] for k in sorted(before.keys() - after.keys())]
    relabelled = [
        (before[k], after[k]) for k in sorted(before.keys() & after.keys())
        if sorted(before[k].tags) != sorted(after[k].tags) or before[k].split != after[k].split
    ]
    return DatasetDiff(added, removed, relabelled)
