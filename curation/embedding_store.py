"""The crop embeddings' cache on disk and in memory: float16 shards under
`<home>/cache/embeddings/<FEATURE_VERSION>/`, `Embeddings` (every cached row, L2-normalised, by
crop id), `load_embeddings`, and principal axes over them. Numpy only: reading needs no torch.
curation.embeddings computes the rows and re-exports all of this.
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from manifests.atomic import write_bytes_atomic
from manifests.workspace import Workspace, new_run_id
from media.features import FEATURE_DIM, FEATURE_MODEL, FEATURE_VERSION

SHARD_GLOB = "part-*.npz"


def embeddings_dir(ws: Workspace) -> Path:
    return ws.cache / "embeddings" / FEATURE_VERSION


# --- the shards ------------------------------------------------------------------------------------
def read_shard(path: Path) -> tuple[list[str], np.ndarray, np.ndarray] | None:
    """(ids, float16 vectors, ok flags), or None for a file that is not a whole shard of ours."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["feature_version"]) != FEATURE_VERSION:
                return None
            ids = [str(c) for c in z["ids"]]
            vecs = np.asarray(z["vectors"], np.float16)
            ok = np.asarray(z["ok"], bool)
    except Exception:  # truncated, foreign or unreadable: its crops count as missing
        return None
    if vecs.shape != (len(ids), FEATURE_DIM) or ok.shape != (len(ids),):
        return None
    return ids, vecs, ok


def write_shard(path: Path, ids: Sequence[str], vecs: np.ndarray, ok: np.ndarray) -> None:
    buf = io.BytesIO()
    np.savez(buf, ids=np.array(list(ids), dtype=str), vectors=np.asarray(vecs, np.float16),
             ok=np.asarray(ok, bool), feature_version=np.array(FEATURE_VERSION), model=np.array(FEATURE_MODEL))
    # not fsynced: a power cut costs a recomputation, nothing more (a kill still leaves whole files)
    write_bytes_atomic(path, buf.getvalue(), durable=False)


class Embeddings:
    """The cached embeddings of a workspace, in memory: L2-normalised float16 rows by crop id.

    `refresh()` reads shards written since (by this process or another); a shard that went
    away (merged) makes it read them all again. Thread-safe. 50,000 crops hold ~130 MB; what
    is derived from them (principal axes, every row's coordinates along them) is computed once
    per `version`, and nothing here makes a float32 copy of every row."""

    CHUNK = 8192  # rows converted to float32 at a time

    def __init__(self, ws: Workspace):
        self.ws = ws
        self.folder = embeddings_dir(ws)
        self._lock = threading.RLock()
        self._seen: set[str] = set()
        self.shard_sizes: dict[str, int | None] = {}  # shard file name -> rows (None: not a whole shard)
        self._index: dict[str, int] = {}  # crop id -> row, readable crops only
        self._failed: set[str] = set()
        self._ids: list[str] = []
        self._buf = np.zeros((0, FEATURE_DIM), np.float16)  # rows, with room to grow: len(self._ids) used
        self.version = 0  # moves when rows are added: derived data (axes, coordinates) is keyed on it
        self._derived: dict[tuple, object] = {}
        self.refresh()

    def refresh(self) -> bool:
        """Read new shards; True when rows were added (or dropped)."""
        with self._lock:  # the listing too: two threads must not each think the other's shards went away
            try:
                names = {p.name for p in self.folder.glob(SHARD_GLOB)}
            except OSError:
                names = set()
            if names == self._seen:
                return False
            if self._seen - names:  # merged away: start over (the merged shard holds the rows)
                self._seen, self._index, self._failed, self._ids = set(), {}, set(), []
                self.shard_sizes = {}
            for name in sorted(names - self._seen):
                shard = read_shard(self.folder / name)
                self._seen.add(name)
                self.shard_sizes[name] = None if shard is None else len(shard[0])
                if shard is not None:
                    self._add(*shard)
            self.version += 1
            self._derived = {}
            return True

    def _add(self, ids: list[str], vecs: np.ndarray, ok: np.ndarray) -> None:
        keep = []
        for k, c in enumerate(ids):
            if c in self._index or c in self._failed:
                continue  # the same row twice (a merge was cut short): the first stays
            if ok[k]:
                self._index[c] = len(self._ids)
                self._ids.append(c)
                keep.append(k)
            else:
                self._failed.add(c)
        if not keep:
            return
        n = len(self._ids)
        if n > len(self._buf):  # doubling: filling 50,000 rows a slice at a time copies each row ~twice
            grown = np.zeros((max(n, 2 * len(self._buf), 1024), FEATURE_DIM), np.float16)
            grown[:n - len(keep)] = self._buf[:n - len(keep)]
            self._buf = grown
        self._buf[n - len(keep):n] = _normalise(vecs[keep].astype(np.float32)).astype(np.float16)

    @property
    def _rows(self) -> np.ndarray:
        return self._buf[:len(self._ids)]

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, crop_id: str) -> bool:
        return crop_id in self._index

    def known(self, crop_id: str) -> bool:
        """Embedded, or found unreadable: nothing left to compute for it."""
        return crop_id in self._index or crop_id in self._failed

    def missing(self, crop_ids: Iterable[str]) -> list[str]:
        with self._lock:
            return [c for c in crop_ids if c not in self._index and c not in self._failed]

    def _locate(self, crop_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(rows, positions in crop_ids) of the crops that have an embedding; call under the lock."""
        pos = [(i, self._index[c]) for i, c in enumerate(crop_ids) if c in self._index]
        return np.array([r for _, r in pos], np.int64), np.array([i for i, _ in pos], np.int64)

    def matrix(self, crop_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(float32 L2-normalised rows, positions in `crop_ids` they belong to) for the crops
        that have an embedding."""
        with self._lock:
            rows, have = self._locate(crop_ids)
            return self._rows[rows].astype(np.float32), have

    def similarity(self, query: np.ndarray, crop_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(cosine of each embedded crop's row to the unit vector `query`, positions in `crop_ids`)."""
        q = np.asarray(query, np.float32)
        with self._lock:
            rows, have = self._locate(crop_ids)
            out = np.empty(len(rows), np.float32)
            for i in range(0, len(rows), self.CHUNK):
                out[i:i + self.CHUNK] = self._rows[rows[i:i + self.CHUNK]].astype(np.float32) @ q
            return out, have

    def ids(self) -> list[str]:
        with self._lock:
            return list(self._ids)

    def axes(self, k: int, seed: int = 0) -> "PrincipalAxes | None":
        """The top `k` principal axes of every cached embedding (None with fewer than 2k rows),
        fitted once per `version`: no label shapes them, so a learner may use them on every crop."""
        with self._lock:
            key = ("axes", k, seed)
            if key not in self._derived:
                self._derived[key] = principal_axes(self._rows, k, seed) if len(self._ids) >= 2 * k else None
            return self._derived[key]  # type: ignore[return-value]

    def coordinates(self, crop_ids: Sequence[str], axes: "PrincipalAxes") -> tuple[np.ndarray, np.ndarray]:
        """(coordinates along `axes`, positions in `crop_ids`) of the embedded crops. For the
        present axes (from axes()) every row is projected once per version (50,000 x 64 floats:
        13 MB); axes of an older version (a caller's snapshot) project just the rows asked for."""
        with self._lock:
            rows, have = self._locate(crop_ids)
            current = any(v is axes for v in self._derived.values())
            key = ("coordinates", id(axes))  # the value holds the axes: the id cannot be reused meanwhile
            hit = self._derived.get(key)
            if hit is None and current:
                Z = np.empty((len(self._ids), axes.k), np.float32)
                for i in range(0, len(self._ids), self.CHUNK):
                    Z[i:i + self.CHUNK] = axes.transform(self._rows[i:i + self.CHUNK])
                hit = self._derived[key] = (axes, Z)
            if hit is not None:
                return hit[1][rows], have  # type: ignore[index]
            out = np.empty((len(rows), axes.k), np.float32)
            for i in range(0, len(rows), self.CHUNK):
                out[i:i + self.CHUNK] = axes.transform(self._rows[rows[i:i + self.CHUNK]])
            return out, have


@dataclass(frozen=True)
class PrincipalAxes:
    """`k` orthonormal directions of most variance and the mean they are measured from."""

    mean: np.ndarray  # (FEATURE_DIM,)
    axes: np.ndarray  # (k, FEATURE_DIM)

    @property
    def k(self) -> int:
        return len(self.axes)

    def transform(self, X: np.ndarray) -> np.ndarray:
        return ((np.asarray(X, np.float32) - self.mean) @ self.axes.T).astype(np.float32)


def principal_axes(X: np.ndarray, k: int, seed: int = 0, sample: int = 4096, power: int = 4) -> PrincipalAxes:
    """Randomised PCA (a seeded range finder with `power` subspace iterations) of up to `sample`
    rows of X: ~50 ms for 4096 x 1280 where a full SVD takes seconds, and the same axes for the
    same rows every time (each axis's sign is fixed by its largest entry)."""
    rng = np.random.default_rng(seed)
    if len(X) > sample:
        X = X[np.sort(rng.choice(len(X), sample, replace=False))]
    A = np.asarray(X, np.float64)
    mean = A.mean(axis=0)
    A = A - mean
    k = max(1, min(k, A.shape[0] - 1, A.shape[1]))
    p = min(k + 10, *A.shape)
    Q = np.linalg.qr(A @ rng.standard_normal((A.shape[1], p)))[0]
    for _ in range(power):
        Q = np.linalg.qr(A @ np.linalg.qr(A.T @ Q)[0])[0]
    _, _, vt = np.linalg.svd(Q.T @ A, full_matrices=False)
    axes = vt[:k]
    axes *= np.sign(axes[np.arange(k), np.abs(axes).argmax(axis=1)])[:, None]
    return PrincipalAxes(mean.astype(np.float32), axes.astype(np.float32))


def _normalise(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


def load_embeddings(ws: Workspace, crop_ids: Sequence[str] | None = None) -> tuple[list[str], np.ndarray]:
    """(ids, float32 L2-normalised vectors, one row per id) of the cached crops among `crop_ids`
    (default: every cached crop), in the order given; crops without an embedding are left out."""
    emb = Embeddings(ws)
    ids = emb.ids() if crop_ids is None else list(dict.fromkeys(crop_ids))
    X, have = emb.matrix(ids)
    return [ids[i] for i in have], X


def add_embeddings(ws: Workspace, crop_ids: Sequence[str], vectors: np.ndarray) -> None:
    """Store vectors computed elsewhere (the model's raw features, one row per id) as one
    shard: for benchmarks on pictures that are no workspace's crops, and for tests."""
    vectors = np.asarray(vectors, np.float32)
    if vectors.shape != (len(crop_ids), FEATURE_DIM):
        raise ValueError(f"need {len(crop_ids)} x {FEATURE_DIM} vectors, got {vectors.shape}")
    folder = embeddings_dir(ws)
    folder.mkdir(parents=True, exist_ok=True)
    write_shard(folder / f"part-{new_run_id('add')}-00000.npz", crop_ids, vectors, np.ones(len(crop_ids), bool))
