"""`headshot dataset export NAME --out URL --format parquet` for a URL (s3://, file://, any fsspec
scheme): the version published where another machine trains from it alone.

    URL/NAME-vN.parquet        DatasetRow columns + crop_sha256; crop_path relative to the manifest's folder
    URL/NAME-vN/crops/ab/...   the crop files, byte for byte

(a URL ending .parquet names the manifest itself; its crops go in the folder of its stem). The
crops go up first and the manifest last, written to a temp key and moved into place: a reader
sees the previous manifest or the new one, never one whose crops are still on their way. The
layout's names are in manifests/storage.py, which the reading side (training/remote.py) shares.
"""

from __future__ import annotations

import hashlib
import io
import os
import posixpath
import secrets
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from manifests.datasets import read_version, resolve
from manifests.records import DatasetRow
from manifests.storage import (CROP_SHA, CROPS_ROOT, PUBLISHED, PUBLISHED_SCHEMA, StorageError, is_local, open_url,
                               redact)
from manifests.workspace import Workspace

from .dataset_export import PARQUET_SUFFIXES, ExportError, ExportResult, _sources, _version_meta, class_folder

BATCH = 256  # crops in memory and in flight at once: s3fs sends a batch concurrently


def publish_dataset(ws: Workspace, name: str, version: int | None, url: str, overwrite: bool = False,
                    storage_options: dict[str, Any] | None = None) -> ExportResult:
    """Publish version `version` (None: the latest) of dataset `name` at `url`; an ExportResult
    whose path is the manifest's URL, credentials taken out."""
    def fail(msg: object) -> ExportError:
        return ExportError(redact(msg, storage_options))

    info = resolve(ws, name, version)
    rows = read_version(ws, name, info.version)
    sources = _sources(ws, rows)
    try:
        fs, root = open_url(url, storage_options)
    except StorageError as exc:
        raise fail(exc) from None
    root = root.rstrip("/")
    if posixpath.splitext(root)[1].lower() in PARQUET_SUFFIXES:
        manifest, folder = root, posixpath.dirname(root)
        stem = posixpath.splitext(posixpath.basename(root))[0]
    else:
        folder, stem = root, f"{name}-v{info.version}"
        manifest = f"{folder}/{stem}.parquet"
    shown = fs.unstrip_protocol(manifest)
    try:
        if fs.exists(manifest) and not overwrite:
            raise fail(f"{shown} exists; pass --overwrite to replace it, or choose another --out")
        crops = _put_crops(fs, folder, stem, ws, rows, sources)
        table = _manifest_table(rows, crops).replace_schema_metadata({**_version_meta(info, PUBLISHED),
                                                                      CROPS_ROOT.encode(): stem.encode()})
        _put_manifest(fs, manifest, table, overwrite, fail)
    except ExportError:
        raise
    except FileNotFoundError as exc:
        raise fail(f"cannot write {shown}: {exc} (is the bucket there?)") from None
    except Exception as exc:  # the storage's own errors (botocore's are not OSErrors): one line, no secret
        raise fail(f"cannot write {shown}: {type(exc).__name__}: {exc}") from None
    splits: dict[str, int] = {}
    for r in rows:
        splits[r.split] = splits.get(r.split, 0) + 1
    return ExportResult(redact(shown, storage_options), "parquet", info, len(rows), splits,  # type: ignore[arg-type]
                        sorted({class_folder(r.tags) for r in rows}), copied=len(rows))


def _put_crops(fs, folder: str, stem: str, ws: Workspace, rows: list[DatasetRow], sources) -> list[tuple[str, str]]:
    """Upload every crop under folder/stem/crops/; (crop_path relative to folder, sha256) per row."""
    crops_dir = ws.crops.resolve()
    out: list[tuple[str, str]] = []
    for start in range(0, len(rows), BATCH):
        batch: dict[str, bytes] = {}
        for r, src in zip(rows[start:start + BATCH], sources[start:start + BATCH]):
            try:
                data = src.read_bytes()
            except FileNotFoundError:
                raise ExportError(f"crop {r.crop_id}: file {r.crop_path} vanished during the export; "
                                  "the manifest was not published") from None
            rel = f"{stem}/crops/{src.relative_to(crops_dir).as_posix()}"
            batch[f"{folder}/{rel}"] = data
            out.append((rel, hashlib.sha256(data).hexdigest()))
        if is_local(fs):
            for parent in {posixpath.dirname(k) for k in batch}:
                fs.makedirs(parent, exist_ok=True)
        fs.pipe(batch)
    return out


def _manifest_table(rows: list[DatasetRow], crops: list[tuple[str, str]]) -> pa.Table:
    cols: dict[str, list] = {n: [] for n in PUBLISHED_SCHEMA.names}
    for r, (rel, sha) in zip(rows, crops):
        for n in DatasetRow.SCHEMA.names:
            v = rel if n == "crop_path" else getattr(r, n)
            cols[n].append(list(v) if isinstance(v, tuple) else v)
        cols[CROP_SHA].append(sha)
    return pa.Table.from_pydict(cols, schema=PUBLISHED_SCHEMA)


def _put_manifest(fs, manifest: str, table: pa.Table, overwrite: bool, fail) -> None:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    tmp = f"{posixpath.dirname(manifest)}/.tmp-{posixpath.basename(manifest)}-{os.getpid()}-{secrets.token_hex(4)}"
    if is_local(fs):
        fs.makedirs(posixpath.dirname(manifest), exist_ok=True)
    fs.pipe_file(tmp, buf.getvalue())
    try:
        if not overwrite and fs.exists(manifest):  # another export got there while the crops went up
            raise fail(f"{fs.unstrip_protocol(manifest)} appeared during the export; pass --overwrite to replace it")
        fs.mv(tmp, manifest)  # a rename on a disk; a server-side copy on S3, which shows a whole object or none
    finally:
        try:
            if fs.exists(tmp):
                fs.rm_file(tmp)
        except Exception:  # a stale temp key is harmless: readers only open the manifest's own name
            pass


__all__ = ["publish_dataset"]
