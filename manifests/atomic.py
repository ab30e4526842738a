"""Atomic file writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq


NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


def human_bytes(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:,} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n:,.1f} GB"


def free_bytes(folder: Path) -> int | None:
    """Space left to an unprivileged writer on the disk that holds `folder` (None: unknown)."""
    for p in (Path(folder), *Path(folder).parents):
        try:
            st = os.statvfs(p)
            return st.f_bavail * st.f_frsize
        except OSError:
            continue
    return None


class DiskFull(Exception):
    """A write found its disk full (or over quota). Not an OSError on purpose: code that treats
    an unreadable input as one bad row (`except OSError`) must not swallow it, since every
    later write would fail the same way. Picklable, so it crosses from a worker process."""

    def __init__(self, folder: str | os.PathLike[str], needed: int = 0, free: int | None = None) -> None:
        super().__init__(str(folder), int(needed), free)

    folder = property(lambda self: self.args[0])
    needed = property(lambda self: self.args[1])
    free = property(lambda self: self.args[2])

    def needing(self, needed: int) -> "DiskFull":
        """The same error with the stage's estimate of what the rest of its work needs."""
        return DiskFull(self.folder, max(needed, self.needed), self.free)

    def __str__(self) -> str:
        free = f"{human_bytes(self.free)} free" if self.free is not None else "no space left"
        need = f"; about {human_bytes(self.needed)} more are needed" if self.needed else ""
        return (f"the disk is full writing to {self.folder} ({free}{need}). Free some space and run the same "
                "command again: what was written so far is kept")


@contextlib.contextmanager
def space_for(folder: Path, needed: int = 0) -> Iterator[None]:
    """Turn "no space left on device" inside the block into DiskFull naming `folder`."""
    try:
        yield
    except OSError as exc:
        if exc.errno in NO_SPACE:
            raise DiskFull(folder, needed, free_bytes(folder)) from None
        raise


def _temp_beside(path: Path) -> Path:
    return path.with_name(f".tmp-{path.name}-{os.getpid()}-{secrets.token_hex(4)}")


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _create(tmp: Path):
    """Open a new temp file for writing, making its folder only when it is missing (an ingest
    writes thousands of blobs into 256 folders: one mkdir each, not one per blob)."""
    try:
        return open(tmp, "wb")
    except FileNotFoundError:
        tmp.parent.mkdir(parents=True, exist_ok=True)
        return open(tmp, "wb")


def write_bytes_atomic(path: Path, data: bytes, *, exclusive: bool = False, durable: bool = True,
                       mode: int | None = None) -> bool:
    """Write `data` to `path` atomically. With exclusive=True an existing file is never replaced
    (returns False), which is how immutable files (blobs, dataset versions) stay immutable.
    durable=False skips the fsyncs: still atomic against a killed process, not against a power
    cut; for content-addressed files whose name is their checksum, so damage is detectable.
    `mode` sets the file's permission bits (0o444: a file nobody should edit in place)."""
    tmp = _temp_beside(path)
    with space_for(path.parent, len(data)):
        try:
            with _create(tmp) as f:
                if mode is not None:
                    os.fchmod(f.fileno(), mode)
                f.write(data)
                if durable:
                    f.flush()
                    os.fsync(f.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)  # a full disk (or a Ctrl-C) leaves no half file behind
            raise
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
    existing = table.schema.metadata or {}
    table = table.replace_schema_metadata({**existing, **encode_metadata(meta)})
    tmp = _temp_beside(path)
    with space_for(path.parent, table.nbytes):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                pq.write_table(table, f, compression="zstd")
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return _publish(tmp, path, exclusive)


def read_metadata(path: Path) -> dict[str, str]:
    return decode_metadata(pq.read_schema(path).metadata)
