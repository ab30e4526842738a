"""Crop embeddings: EfficientNet-Lite0's pooled features (media.features, the very numbers the
training metrics use) of every present crop, cached in the workspace, for the review learner,
its per-tag proposals and "more like these".

The cache is `<home>/cache/embeddings/<FEATURE_VERSION>/part-*.npz` (curation.embedding_store,
re-exported here): shards of up to `shard_rows` crops, each one atomic file (crop ids, float16
vectors as the model gave them, whether the crop could be read). A crop id names the crop's
pixels (curation.crop.crop_id) and the folder names the feature version, so a row is never
stale: a run computes only the crops no shard holds. A killed run loses at most the shard it
was filling; the next run finds the rest missing and computes them. Small shards (one per
incremental run) are merged once there are many; a kill between writing the merged shard and
removing the old ones leaves the same rows twice, which readers drop (the first shard by name
wins).

One run at a time per workspace (a lock file beside the shards): a second run finds it busy and
computes nothing, since the first computes the same crops. Readers need no lock.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from manifests.workspace import Workspace, new_run_id
from media.decode import to_rgb
from media.features import FEATURE_DIM, FEATURE_VERSION

from . import selection
from .embedding_store import (  # noqa: F401  (re-exported: callers import the cache from here)
    SHARD_GLOB, Embeddings, PrincipalAxes, add_embeddings, embeddings_dir, load_embeddings, principal_axes,
    read_shard, write_shard,
)


@dataclass(frozen=True)
class EmbedConfig:
    # Measured on 2 cores at 128 px (bench/embed_speed.py): one worker thread per core, each
    # running the model on a batch of its own with torch's intra-op threads at 1, is the fastest
    # on an idle machine (~230 crops/s against ~180 for one batch at a time on 2 intra-op
    # threads) and degrades to one core's speed (~100/s) when a neighbour takes the other core,
    # where 2 intra-op threads fell to 10-50 crops/s (their barriers wait for a descheduled
    # thread). Batches of 16 beat 32 and 64 either way.
    batch_size: int = 16
    workers: int = 0  # threads running the model side by side; 0: one per core this process may use
    threads: int = 1  # torch intra-op threads while computing (process-wide; restored after)
    shard_rows: int = 1024  # crops per shard: what a killed run can lose
    device: str = "cpu"
    merge_above: int = 16  # small shards (under shard_rows) tolerated before they are merged

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.workers < 0 or self.threads < 1 or self.shard_rows < 1 or self.merge_above < 2:
            raise ValueError("need batch_size >= 1, workers >= 0, threads >= 1, shard_rows >= 1 and merge_above >= 2")


@dataclass(frozen=True)
class EmbedReport:
    crops: int  # crops asked about (default: the present crops)
    cached: int  # of those, already in the cache before this run (failures included)
    computed: int  # embedded by this run
    failed: int  # of those computed, unreadable files (kept as failures, not retried)
    left: int  # still without an embedding (a limit, a stop, or another run holding the lock)
    seconds: float
    busy: bool = False  # another run held the lock: it computes these
    feature_version: str = FEATURE_VERSION

    @property
    def crops_per_s(self) -> float:
        return self.computed / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "crops_per_s": round(self.crops_per_s, 1)}


# --- computing -------------------------------------------------------------------------------------
class _Lock:
    """The one-run-at-a-time lock: flock on a file beside the shards (goes with its process)."""

    def __init__(self, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o644)

    def acquire(self) -> bool:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def close(self) -> None:
        os.close(self.fd)  # releases the lock


def _decode(path: Path) -> np.ndarray:
    """The crop's pixels, H x W x 3 uint8 (transparency on white, as everywhere in curation)."""
    with Image.open(path) as im:
        im.seek(0)
        im.load()
        rgb = np.asarray(to_rgb(im), dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.size == 0:
        raise ValueError(f"unexpected pixel array of shape {rgb.shape}")
    return rgb


def _decode_batch(ws: Workspace, batch: Sequence[tuple[str, str]]) -> list[np.ndarray | None]:
    out: list[np.ndarray | None] = []
    for _, rel in batch:
        try:
            out.append(_decode(ws.crop_file(rel)))
        except Exception:  # missing, unreadable or outside crops/: a failure row, never a crash
            out.append(None)
    return out


def _embed(extractor, pixels: list[np.ndarray | None]) -> tuple[np.ndarray, np.ndarray]:
    """float32 (n, FEATURE_DIM) and ok flags; crops of one size go through the model together
    (a batch of crops made with one size setting is one call)."""
    import torch

    vecs = np.zeros((len(pixels), FEATURE_DIM), np.float32)
    ok = np.array([p is not None for p in pixels], bool)
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for k, p in enumerate(pixels):
        if p is not None:
            by_shape.setdefault(p.shape, []).append(k)
    for rows in by_shape.values():
        x = torch.from_numpy(np.stack([pixels[k] for k in rows])).permute(0, 3, 1, 2)
        vecs[rows] = extractor.features(x)
    return vecs, ok


def present_crops(ws: Workspace) -> list[tuple[str, str]]:
    """(crop id, crop path) of every crop the present settings make (curation.selection)."""
    return [(r["crop_id"], r["crop_path"]) for r in selection.current_crops(ws, columns=["crop_id", "crop_path"])]


def update_embeddings(ws: Workspace, crops: Sequence[tuple[str, str]] | None = None, *,
                      config: EmbedConfig = EmbedConfig(), limit: int | None = None,
                      progress: Callable[[int, int], None] | None = None,
                      stop: threading.Event | None = None) -> EmbedReport:
    """Embed the crops that have no embedding yet, in the order given (default: every present
    crop), at most `limit` of them. `crops`: (crop id, crop path) pairs. `progress(done, todo)`
    after each batch; `stop` ends the run after the batch in hand (what was computed is kept)."""
    started = time.monotonic()
    crops = present_crops(ws) if crops is None else list(crops)
    folder = embeddings_dir(ws)
    lock = _Lock(folder)
    try:
        if not lock.acquire():
            unique = list(dict.fromkeys(c for c, _ in crops))
            left = len(Embeddings(ws).missing(unique))
            return EmbedReport(len(unique), len(unique) - left, 0, 0, left, time.monotonic() - started, busy=True)
        have = Embeddings(ws)
        _clean(folder, have)
        todo: list[tuple[str, str]] = []
        unique: set[str] = set()
        for c, p in crops:
            if c not in unique:  # one crop id is one set of pixels, whichever row names it
                unique.add(c)
                if not have.known(c):
                    todo.append((c, p))
        cached = len(unique) - len(todo)
        if limit is not None:
            todo = todo[:max(0, limit)]
        computed, failed = _compute(ws, folder, todo, config, progress, stop)
        _merge_small(folder, have, config)
        return EmbedReport(len(unique), cached, computed, failed, len(unique) - cached - computed,
                           time.monotonic() - started)
    finally:
        lock.close()


def _clean(folder: Path, have: Embeddings) -> None:
    """What a dead run can leave: under the lock every temp file is one, and a shard that does
    not read whole (this module's writes are atomic: damage from elsewhere) holds nothing usable."""
    for tmp in folder.glob(".tmp-*"):
        tmp.unlink(missing_ok=True)
    for name, rows in have.shard_sizes.items():
        if rows is None:
            (folder / name).unlink(missing_ok=True)


def _compute(ws: Workspace, folder: Path, todo: list[tuple[str, str]], config: EmbedConfig,
             progress: Callable[[int, int], None] | None, stop: threading.Event | None) -> tuple[int, int]:
    if not todo:
        return 0, 0
    import torch

    from media.features import FeatureExtractor

    extractor = FeatureExtractor(config.device, batch_size=config.batch_size)
    _ = extractor.model  # loaded once here, not by the first workers at the same time
    threads_before = torch.get_num_threads()
    workers = config.workers or len(os.sched_getaffinity(0))
    run = new_run_id("embed")
    ids: list[str] = []
    vecs: list[np.ndarray] = []
    oks: list[np.ndarray] = []
    shards = computed = failed = 0

    def flush() -> None:
        nonlocal shards, ids, vecs, oks
        if ids:
            write_shard(folder / f"part-{run}-{shards:05d}.npz", ids, np.concatenate(vecs), np.concatenate(oks))
            shards += 1
            ids, vecs, oks = [], [], []

    def work(batch: list[tuple[str, str]]) -> tuple[np.ndarray, np.ndarray]:
        # decoding and the model's kernels both let go of the GIL: the workers run side by side
        return _embed(extractor, _decode_batch(ws, batch))

    batches = deque(todo[i:i + config.batch_size] for i in range(0, len(todo), config.batch_size))
    torch.set_num_threads(config.threads)
    pool = ThreadPoolExecutor(workers, thread_name_prefix="headshot-embed")
    running: deque = deque()  # (batch, future) in order; a few ahead, so a stop wastes little
    try:
        while batches or running:
            while batches and len(running) < 2 * workers:
                batch = batches.popleft()
                running.append((batch, pool.submit(work, batch)))
            batch, fut = running.popleft()
            v, ok = fut.result()
            ids += [c for c, _ in batch]
            vecs.append(v)
            oks.append(ok)
            computed += len(batch)
            failed += int((~ok).sum())
            if len(ids) >= config.shard_rows:
                flush()
            if progress is not None:
                progress(computed, len(todo))
            if stop is not None and stop.is_set():
                break
        flush()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        torch.set_num_threads(threads_before)
    return computed, failed


def _merge_small(folder: Path, have: Embeddings, config: EmbedConfig) -> None:
    """Merge the small shards into full ones once there are more than `merge_above`. The new
    shards are written before the old ones go, so a kill in between only duplicates rows.
    `have`: the shards as this run found them (its own new shards are read here)."""
    have.refresh()
    names = sorted(n for n, rows in have.shard_sizes.items() if rows is not None and rows < config.shard_rows)
    if len(names) <= config.merge_above:
        return
    small = [(folder / n, shard) for n in names if (shard := read_shard(folder / n)) is not None]
    seen: set[str] = set()
    ids: list[str] = []
    vecs: list[np.ndarray] = []
    oks: list[bool] = []
    for _, (sids, svecs, sok) in small:
        for k, c in enumerate(sids):
            if c not in seen:
                seen.add(c)
                ids.append(c)
                vecs.append(svecs[k])
                oks.append(bool(sok[k]))
    run = new_run_id("merge")
    step = config.shard_rows
    for n, start in enumerate(range(0, len(ids), step)):
        write_shard(folder / f"part-{run}-{n:05d}.npz", ids[start:start + step], np.stack(vecs[start:start + step]),
                     np.array(oks[start:start + step]))
    for p, _ in small:
        p.unlink(missing_ok=True)
