"""Persistence of a MultiIndexHash in the workspace: one folder per segment (Parquet ids and
hash words, npz buckets) and an index.json that names the live segments. Writing index.json is
the commit point, so a run killed while saving leaves the previous index whole."""

from __future__ import annotations

import io
import json
import secrets
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from manifests.atomic import write_bytes_atomic, write_parquet_atomic

from .nearindex import FORMAT, MultiIndexHash, _Buckets, _Segment


def save_index(index: MultiIndexHash, folder: str | Path) -> None:
    """Write new segments, then swap index.json (the commit point), then drop segment
    folders the new index.json no longer names (merged away, or left by a crash)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for seg in index._segments:
        if seg.name is None:
            name = f"seg-{seg.start:010d}-{seg.size:010d}-{secrets.token_hex(4)}"
            _write_segment(index, folder / name, seg)
            seg.name = name
    manifest = {
        "format": FORMAT, "bits": index.bits, "radius": index.radius, "chunks": index.chunks,
        "count": len(index), "meta": index.meta,
        "segments": [{"name": s.name, "start": s.start, "size": s.size} for s in index._segments],
    }
    write_bytes_atomic(folder / "index.json", json.dumps(manifest, indent=1, sort_keys=True).encode())
    # Safe only because one process writes a workspace at a time (Workspace.writer_lock).
    live = {s.name for s in index._segments}
    for old in folder.glob("seg-*"):
        if old.name not in live:
            shutil.rmtree(old, ignore_errors=True)
    for temp in folder.glob(".tmp-*"):
        temp.unlink(missing_ok=True)


def _write_segment(index: MultiIndexHash, path: Path, seg: _Segment) -> None:
    columns = {"id": pa.array(index._ids[seg.start:seg.start + seg.size], pa.string())}
    for k in range(index.words):
        columns[f"w{k}"] = pa.array(seg.hashes[:, k], pa.uint64())
    write_parquet_atomic(path / "items.parquet", pa.table(columns), {"format": FORMAT, "bits": index.bits})
    buf = io.BytesIO()
    np.savez(buf, **seg.buckets.arrays())
    write_bytes_atomic(path / "chunks.npz", buf.getvalue())


def load_index(folder: str | Path, expect_meta: dict | None = None) -> MultiIndexHash:
    """Read an index saved by `save_index`. expect_meta: keys that must match (e.g. the hash
    library version: hashes of different versions must never be compared)."""
    folder = Path(folder)
    manifest = json.loads((folder / "index.json").read_text())
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{folder} holds {manifest.get('format')!r}, not {FORMAT}")
    for key, want in (expect_meta or {}).items():
        if manifest["meta"].get(key) != want:
            raise ValueError(f"{folder} was built with {key}={manifest['meta'].get(key)!r}, "
                             f"not {want!r}: rebuild it from the hashes")
    index = MultiIndexHash(manifest["bits"], manifest["radius"], chunks=len(manifest["chunks"]), meta=manifest["meta"])
    for entry in manifest["segments"]:
        path = folder / entry["name"]
        table = pq.read_table(path / "items.parquet")
        words = np.stack([table.column(f"w{k}").to_numpy() for k in range(index.words)], axis=1)
        with np.load(path / "chunks.npz") as z:
            buckets = _Buckets(**{name: z[name] for name in z.files})
        if entry["start"] != len(index._ids) or len(words) != entry["size"]:
            raise ValueError(f"{path} does not match {folder / 'index.json'}")
        index._segments.append(_Segment(entry["start"], np.ascontiguousarray(words, dtype=np.uint64),
                                        buckets, entry["name"]))
        index._ids.extend(table.column("id").to_pylist())
    return index
