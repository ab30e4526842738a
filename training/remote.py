"""`headshot train --dataset URL.parquet`: a dataset version published elsewhere (s3://, file://,
any fsspec URL, or a local .parquet export), copied into a local cache and trained on from there.

The cache folder is named after the manifest's sha256: the manifest is read on every run (one
small request, so a version republished at the same URL is noticed), the crops only once. Each
crop is checked against the manifest's crop_sha256 before it is kept, and the rows against the
version's content hash, so what trains is what was published or the run does not start. A
killed fetch keeps the crops it had verified; `.complete` is written when every one is there.

Two layouts are read (curation/dataset_export.py and dataset_publish.py write them): a published
version (crop_sha256 column, crops beside the manifest) and the self-contained export whose
`image` column holds each crop's bytes.
"""

from __future__ import annotations

import hashlib
import logging
import posixpath
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from manifests.atomic import decode_metadata, read_metadata, write_bytes_atomic
from manifests.datasets import content_hash
from manifests.records import DatasetRow, from_table
from manifests.storage import CROP_SHA, CROPS_ROOT, StorageError, open_url, redact, safe_relative

log = logging.getLogger("headshot.train")
BATCH = 256  # crops fetched (concurrently, on S3) and held in memory at once
MANIFEST = "manifest.parquet"
COMPLETE = ".complete"
REPUBLISH = "publish it again (headshot dataset export NAME --out URL --format parquet --overwrite)"


class RemoteError(ValueError):
    """A published version that cannot be trained on; training.data raises it as a DataError."""


@dataclass
class Fetched:
    """A version in the local cache: what training.data makes its Source from."""

    name: str
    version: int | None
    content_hash: str
    origin: str  # the URL, credentials taken out
    files: list[Path] = field(default_factory=list)  # train split, in the manifest's order
    val_files: list[Path] = field(default_factory=list)
    attributes: list[tuple[str, ...]] = field(default_factory=list)  # per train file


def is_remote(ref: str) -> bool:
    """A --dataset value that names a published version rather than NAME[@vN] in the workspace."""
    from manifests.storage import is_url

    return is_url(ref) or ref.lower().endswith((".parquet", ".pq"))


def remote_source(cache_root: Path, url: str, storage_options: dict[str, Any] | None = None) -> Fetched:
    """The version at `url`, fetched into cache_root/<manifest sha256>/ once and verified."""
    def say(msg: object) -> str:
        return redact(msg, storage_options)

    try:
        fs, path = open_url(url, storage_options)
    except StorageError as exc:
        raise RemoteError(f"--dataset {exc}") from None
    shown = say(fs.unstrip_protocol(path))
    try:
        data = fs.cat_file(path)
    except (FileNotFoundError, IsADirectoryError):
        raise RemoteError(f"--dataset {shown}: no such file (publish a version there with "
                        "headshot dataset export NAME --out URL --format parquet)") from None
    except Exception as exc:  # the storage's own errors (botocore's are not OSErrors): one line, no secret
        raise RemoteError(f"--dataset {shown}: cannot read it ({type(exc).__name__}: {say(exc)})") from None
    try:
        table = pq.read_table(pa.BufferReader(data))
    except pa.ArrowException as exc:
        raise RemoteError(f"--dataset {shown}: not a Parquet file ({exc})") from None
    folder = cache_root / hashlib.sha256(data).hexdigest()[:32]
    if not (folder / COMPLETE).is_file():
        _fetch(fs, posixpath.dirname(path), shown, table, folder, say)
        write_bytes_atomic(folder / MANIFEST, data, durable=False)
        write_bytes_atomic(folder / COMPLETE, b"", durable=False)
    else:
        log.info("%s: every crop is in the cache %s already", shown, folder)
    return _source(folder, table, shown)


def cached_source(cache_root: Path, name: str, version: int) -> Fetched | None:
    """A version fetched before, by name and number: what `--resume` finds on a machine whose
    workspace never built it."""
    for done in sorted(cache_root.glob(f"*/{COMPLETE}")) if cache_root.is_dir() else []:
        meta = read_metadata(done.parent / MANIFEST)
        if meta.get("headshot.dataset") == name and meta.get("headshot.version") == str(version):
            return _source(done.parent, pq.read_table(done.parent / MANIFEST), str(done.parent / MANIFEST))
    return None


def _rows(table: pa.Table, shown: str) -> list[DatasetRow]:
    missing = [n for n in ("crop_id", "crop_path", "split") if n not in table.column_names]
    if missing or (CROP_SHA not in table.column_names and "image" not in table.column_names):
        raise RemoteError(f"--dataset {shown}: not a headshot dataset export (it has no "
                        f"{', '.join(missing) or 'crop_sha256 or image'} column)")
    for f in DatasetRow.SCHEMA:  # a column newer than the export (attributes): empty in every row
        if f.name not in table.column_names and f.name not in ("crop_id", "crop_path", "split"):
            empty = [] if pa.types.is_list(f.type) else ""
            table = table.append_column(f.name, pa.array([empty] * table.num_rows, type=f.type))
    try:
        return from_table(DatasetRow, table.select(DatasetRow.SCHEMA.names).cast(DatasetRow.SCHEMA))  # type: ignore[return-value]
    except (KeyError, pa.ArrowException, TypeError, ValueError) as exc:
        raise RemoteError(f"--dataset {shown}: its rows do not read as a dataset version ({exc})") from None


def _check(table: pa.Table, rows: list[DatasetRow], shown: str) -> None:
    """Every crop_path stays inside the manifest's folder, and the rows are the version's."""
    meta = decode_metadata(table.schema.metadata)
    bad = next((r for r in rows if not safe_relative(r.crop_path)), None)
    if bad is not None:
        raise RemoteError(f"--dataset {shown}: crop {bad.crop_id} has the path {bad.crop_path!r}, "
                        "which leaves the manifest's folder; nothing was fetched")
    root = meta.get(CROPS_ROOT, "")
    as_built = [replace(r, crop_path=r.crop_path[len(root) + 1:]) if root and r.crop_path.startswith(root + "/") else r
                for r in rows]
    want = meta.get("headshot.content_hash", "")
    if want and content_hash(as_built) != want:
        raise RemoteError(f"--dataset {shown}: its rows do not match the version's content hash {want[:12]} "
                        f"(the manifest was edited or damaged): {REPUBLISH}")


def _fetch(fs, base: str, shown: str, table: pa.Table, folder: Path, say) -> None:
    rows = _rows(table, shown)
    _check(table, rows, shown)
    if "image" in table.column_names:  # the self-contained export: the bytes are in the manifest
        for r, image in zip(rows, table.column("image").to_pylist()):
            if not (folder / r.crop_path).is_file():
                write_bytes_atomic(folder / r.crop_path, image, durable=False)
        return
    shas = table.column(CROP_SHA).to_pylist()
    todo = [(r, sha) for r, sha in zip(rows, shas) if not (folder / r.crop_path).is_file()]
    if todo:
        log.info("%s: fetching %d of %d crops into %s", shown, len(todo), len(rows), folder)
    # s3fs asks each object's size first (a HEAD) to split big ones across connections; a crop is small.
    one_get = {"max_concurrency": 1} if "s3" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)) else {}
    for start in range(0, len(todo), BATCH):
        batch = todo[start:start + BATCH]
        keys = [f"{base}/{r.crop_path}" if base else r.crop_path for r, _ in batch]
        got = fs.cat_ranges(keys, [None] * len(keys), [None] * len(keys), on_error="return", **one_get)
        for (r, sha), key, data in zip(batch, keys, got):
            where = say(fs.unstrip_protocol(key))
            if isinstance(data, FileNotFoundError):
                raise RemoteError(f"crop {r.crop_id}: {where} is missing from the published version: {REPUBLISH}")
            if isinstance(data, BaseException):
                raise RemoteError(f"crop {r.crop_id}: cannot read {where} ({type(data).__name__}: {say(data)})")
            found = hashlib.sha256(data).hexdigest()
            if found != sha:
                raise RemoteError(f"crop {r.crop_id}: {where} is damaged (its sha256 is {found[:12]}, the manifest "
                                f"says {sha[:12]}): {REPUBLISH}")
            write_bytes_atomic(folder / r.crop_path, data, durable=False)


def _source(folder: Path, table: pa.Table, shown: str) -> Fetched:
    meta = decode_metadata(table.schema.metadata)
    rows = _rows(table, shown)
    version = meta.get("headshot.version", "")
    src = Fetched(meta.get("headshot.dataset") or Path(shown).stem, int(version) if version.isdigit() else None,
                  meta.get("headshot.content_hash", ""), shown)
    for r in rows:
        if r.split == "val":
            src.val_files.append(folder / r.crop_path)
        else:
            src.files.append(folder / r.crop_path)
            src.attributes.append(tuple(r.attributes))
    if not src.files:
        raise RemoteError(f"{shown} has no train pictures ({len(rows)} rows, {len(src.val_files)} in val)")
    return src


__all__ = ["Fetched", "RemoteError", "cached_source", "is_remote", "remote_source"]
