"""Atomic file writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq


def _temp_beside(path: Path) -> Path:
    return path.with_name(f".tmp-{path.name}-{os.getpid()}-{secrets.token_hex(4)}")


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes_atomic(path: Path, data: bytes, *, exclusive: bool = False, durable: bool = True) -> bool:
    """Write `data` to `path` atomically. With exclusive=True an existing file is never replaced
    (returns False), which is how immutable files (blobs, dataset versions) stay immutable.
    durable=False skips the fsyncs: still atomic against a killed process, not against a power
    cut; for content-addressed files whose name is their checksum, so damage is detectable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_beside(path)
    with open(tmp, "wb") as f:
        f.write(data)
        if durable:
            f.flush()
            os.fsync(f.fileno())
    return _publish(tmp, path, exclusive, durable)


def _publish(tmp: Path, path: Path, exclusive: bool, durable: bool = True) -> bool:
    try:
        if exclusive:
            try:
                os.link(tmp, path)  # fails if path exists: no overwrite, even in a race
            except FileExistsError:
                return False
        else:
            os.replace(tmp, path)
        if durable:
            _fsync_dir(path.parent)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def encode_metadata(meta: dict[str, Any]) -> dict[bytes, bytes]:
    out = {}
    for k, v in meta.items():
        out[k.encode()] = (v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)).encode()
    return out


def decode_metadata(raw: dict[bytes, bytes] | None) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in (raw or {}).items() if not k.startswith(b"ARROW")}


def write_parquet_atomic(path: Path, table: pa.Table, meta: dict[str, Any], *, exclusive: bool = False) -> bool:
    """Write a Parquet file with headshot's key-value metadata, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    existing = table.schema.metadata or {}
    table = table.replace_schema_metadata({**existing, **encode_metadata(meta)})
    tmp = _temp_beside(path)
    with open(tmp, "wb") as f:
        pq.write_table(table, f, compression="zstd")
        f.flush()
        os.fsync(f.fileno())
    return _publish(tmp, path, exclusive)


def read_metadata(path: Path) -> dict[str, str]:
    return decode_metadata(pq.read_schema(path).metadata)
