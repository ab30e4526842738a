"""Manifest tables: typed records in Parquet under `manifests/`.

A table is `manifests/<table>.parquet` (compacted) plus the parts appended since,
`manifests/<table>.part-<time>-<run>.parquet`. Each file is written atomically and stays
whole; a reader concatenates them and keeps the last row per key. So a run killed at any
moment leaves only whole files behind, and the rerun's rows replace, never duplicate, the
earlier ones.
"""

from __future__ import annotations

import collections
import functools
import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .atomic import read_metadata, write_parquet_atomic
from .records import SCHEMA_VERSION, Record, from_table, to_table
from .workspace import Workspace


@functools.cache
def code_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("headshot")
    except PackageNotFoundError:
        v = "0+unknown"
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=Path(__file__).resolve().parent,
            capture_output=True, text=True, timeout=5,
        )
        if out.returncode == 0 and out.stdout.strip():
            v += f"+g{out.stdout.strip()}"
    except (OSError, subprocess.SubprocessError):
        pass
    return v


def file_metadata(table: str, run_id: str, config: Any) -> dict[str, Any]:
    return {
        "headshot.schema_version": str(SCHEMA_VERSION),
        "headshot.table": table,
        "headshot.run_id": run_id,
        "headshot.code_version": code_version(),
        "headshot.config": config if config is not None else {},
    }


def table_files(ws: Workspace, cls: type[Record]) -> list[Path]:
    """The compacted file first, then the parts in the order they were written."""
    base = ws.manifests / f"{cls.TABLE}.parquet"
    parts = sorted(ws.manifests.glob(f"{cls.TABLE}.part-*.parquet"))
    return ([base] if base.exists() else []) + parts


def append(ws: Workspace, cls: type[Record], records: Iterable[Record], run_id: str, config: Any = None) -> Path | None:
    """Write `records` as one new part file (atomically). Returns its path, or None if empty."""
    records = list(records)
    if not records:
        return None
    path = ws.manifests / f"{cls.TABLE}.part-{time.time_ns():020d}-{run_id}.parquet"
    write_parquet_atomic(path, to_table(cls, records), file_metadata(cls.TABLE, run_id, config))
    return path


def _default_array(f: pa.Field, n: int) -> pa.Array:
    if f.nullable:
        return pa.nulls(n, f.type)
    if pa.types.is_string(f.type):
        return pa.array(["{}" if f.name == "extra" else ""] * n, f.type)
    if pa.types.is_boolean(f.type):
        return pa.array([False] * n, f.type)
    if pa.types.is_list(f.type):
        return pa.array([[]] * n, f.type)
    return pa.array([0] * n, f.type)


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Bring a file written by an older schema version to the current one."""
    cols = []
    for f in schema:
        if f.name in table.column_names:
            cols.append(table.column(f.name).cast(f.type))
        else:
            cols.append(_default_array(f, table.num_rows))
    return pa.Table.from_arrays(cols, schema=schema)


def latest_per_key(table: pa.Table, key: tuple[str, ...]) -> pa.Table:
    if table.num_rows == 0:
        return table
    numbered = table.append_column("__row", pa.array(range(table.num_rows), pa.int64()))
    last = numbered.group_by(list(key), use_threads=False).aggregate([("__row", "max")])
    keep = pc.sort_indices(last.column("__row_max"))
    return table.take(pc.take(last.column("__row_max"), keep))


def read_table(ws: Workspace, cls: type[Record], columns: list[str] | None = None) -> pa.Table:
    """The table as it stands: every file, one row per key (the last written)."""
    for attempt in range(50):
        files = table_files(ws, cls)
        if not files:
            return cls.SCHEMA.empty_table() if columns is None else cls.SCHEMA.empty_table().select(columns)
        try:
            table = _merged(cls, files)
            break
        except FileNotFoundError:
            # Another process compacted the table after the listing: its merged file holds the
            # parts that went, so a fresh listing reads the same rows.
            time.sleep(0.01 * attempt)
    else:
        raise RuntimeError(f"{cls.TABLE}: the table kept changing while it was read")
    return table if columns is None else table.select(columns)


# Manifest files never change once written (a compaction writes a new file under the old name,
# which is another inode), so a file's rows are read from disk once per process, and a table's
# merged rows once per set of files: a stage that asks for a table ten times reads it once.
_FILES: "collections.OrderedDict[tuple, pa.Table]" = collections.OrderedDict()
_MERGED: "collections.OrderedDict[tuple, pa.Table]" = collections.OrderedDict()
_CACHE_FILES, _CACHE_TABLES = 256, 16
_CACHE_LOCK = threading.Lock()  # the review server reads from several threads


def _signature(path: Path) -> tuple:
    st = path.stat()  # FileNotFoundError when a compaction took it: the caller lists again
    return (str(path), st.st_ino, st.st_mtime_ns, st.st_size)


def _read_file(cls: type[Record], path: Path, sig: tuple) -> pa.Table:
    key = (cls.TABLE, sig)
    with _CACHE_LOCK:
        table = _FILES.get(key)
        if table is not None:
            _FILES.move_to_end(key)
            return table
    table = conform(pq.read_table(path), cls.SCHEMA)
    with _CACHE_LOCK:
        _FILES[key] = table
        while len(_FILES) > _CACHE_FILES:
            _FILES.popitem(last=False)
    return table


def _merged(cls: type[Record], files: list[Path]) -> pa.Table:
    sigs = tuple(_signature(p) for p in files)
    key = (cls.TABLE, sigs)
    with _CACHE_LOCK:
        table = _MERGED.get(key)
        if table is not None:
            _MERGED.move_to_end(key)
            return table
    parts = [_read_file(cls, p, sig) for p, sig in zip(files, sigs)]
    table = latest_per_key(pa.concat_tables(parts), cls.KEY)
    with _CACHE_LOCK:
        _MERGED[key] = table
        while len(_MERGED) > _CACHE_TABLES:
            _MERGED.popitem(last=False)
    return table


# What makes a row one already written: its key, plus these columns where a newer row with the
# same key means new work (a filter run again under other settings, an input read anew).
SAME_AS = {"filters": ("version", "threshold", "passed", "doubtful"),
           "scraped": ("image_sha256", "status", "reason", "opted_out")}


def new_rows(ws: Workspace, cls: type[Record], records: Iterable[Record]) -> list[Record]:
    """The records not already in the table: content-addressed work that another run wrote
    while this one computed (two runs at once, or a rerun) is not written twice."""
    records = list(records)
    if not records:
        return []
    cols = list(dict.fromkeys((*cls.KEY, *SAME_AS.get(cls.TABLE, ()))))
    present = {tuple(r[c] for c in cols) for r in read_table(ws, cls, cols).to_pylist()}
    out, seen = [], set()
    for rec in reversed(records):  # the last of the same key wins within a batch too
        ident = tuple(getattr(rec, c) for c in cols)
        key = ident[:len(cls.KEY)]
        if ident in present or key in seen:
            continue
        seen.add(key)
        out.append(rec)
    return out[::-1]


def read_records(ws: Workspace, cls: type[Record]) -> list[Record]:
    return from_table(cls, read_table(ws, cls))


def compact(ws: Workspace, cls: type[Record], run_id: str) -> Path | None:
    """Merge the parts into the one table file. Call with the workspace's writer lock held."""
    files = table_files(ws, cls)
    base = ws.manifests / f"{cls.TABLE}.parquet"
    if not files or files == [base]:
        return base if files else None
    runs: dict[str, Any] = {}
    for p in files:
        meta = read_metadata(p)
        if "headshot.runs" in meta:
            runs.update(json.loads(meta["headshot.runs"]))
        elif "headshot.run_id" in meta:
            runs[meta["headshot.run_id"]] = {
                "code_version": meta.get("headshot.code_version", ""),
                "config": json.loads(meta.get("headshot.config", "{}") or "{}"),
            }
    merged = read_table(ws, cls)
    meta = file_metadata(cls.TABLE, run_id, None)
    meta["headshot.runs"] = runs
    write_parquet_atomic(base, merged, meta)
    # The merged file already holds every part's rows: a kill before these unlinks leaves
    # parts whose rows equal the merged ones, which the next read collapses.
    for p in files:
        if p != base:
            p.unlink(missing_ok=True)
    return base


def count_by(ws: Workspace, cls: type[Record], column: str) -> dict[str, int]:
    table = read_table(ws, cls, columns=[column])
    if table.num_rows == 0:
        return {}
    counts = pc.value_counts(table.column(column)).to_pylist()
    return {str(c["values"]): int(c["counts"]) for c in sorted(counts, key=lambda c: str(c["values"]))}
