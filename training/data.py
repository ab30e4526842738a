"""From a dataset version (or a folder of pictures) to batches on the device.

A small set lives on the device as one uint8 tensor (64 x 64 x 3 bytes a picture: 10,000 faces
are 123 MB), and a batch is an index draw into it: no DataLoader, no worker processes taking
cores from the model, nothing decoded twice. A set beyond `max_memory_mb` is streamed in
shards of `shard_images` pictures, each decoded once per pass.

Training never reads anything upstream of a dataset version: its rows name the crop files.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .config import TrainConfig

log = logging.getLogger("headshot.train")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
MAX_MISSING = 0.1  # more than this share of a version's crop files gone: the run refuses to start


class DataError(ValueError):
    """The data cannot be trained on; the message says why and what to do."""


@dataclass
class Source:
    """Where the pictures come from, for config.json and the checkpoint."""

    kind: str  # dataset | folder
    name: str  # dataset name or folder path
    version: int | None = None
    content_hash: str = ""
    files: list[Path] = field(default_factory=list)  # train pictures, in a fixed order
    val_files: list[Path] = field(default_factory=list)
    skipped: int = 0  # missing or unreadable files left out
    origin: str = ""  # the URL a published version was fetched from (training/remote.py), credentials taken out
    # "name=value" attributes of each train picture (DatasetRow.attributes), aligned with `files`;
    # empty for a folder of pictures
    attributes: list[tuple[str, ...]] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "version": self.version, "content_hash": self.content_hash,
                "train_images": len(self.files), "val_images": len(self.val_files), "skipped": self.skipped,
                **({"origin": self.origin} if self.origin else {})}


def load_picture(path: Path, size: int) -> np.ndarray:
    """RGB uint8, size x size: the centre square, resized with Lanczos (crops are square already)."""
    with Image.open(path) as im:
        im.seek(0)
        rgb = im.convert("RGB")
    w, h = rgb.size
    if w != h:
        s = min(w, h)
        rgb = rgb.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.LANCZOS)
    return np.asarray(rgb, dtype=np.uint8)


def load_pictures(paths: list[Path], size: int, on_bad: Callable[[Path, str], None] | None = None,
                  progress: bool = False, kept: list[int] | None = None) -> torch.Tensor:
    """N x 3 x size x size uint8; unreadable files are left out and reported to `on_bad`.
    `kept`, when given, receives the index in `paths` of every picture returned, in order."""
    from tqdm import tqdm

    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    n = 0
    for i, p in enumerate(tqdm(paths, desc="loading", unit="img", disable=None if progress else True, leave=False)):
        try:
            out[n] = load_picture(p, size)
            n += 1
            if kept is not None:
                kept.append(i)
        except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
            if on_bad:
                on_bad(p, f"{type(exc).__name__}: {exc}")
    return torch.from_numpy(out[:n]).permute(0, 3, 1, 2).contiguous()


def dataset_source(ws, ref: str, storage_options: dict[str, Any] | None = None) -> Source:
    """The train and val crop files of dataset version `ref` (NAME or NAME@vN), or of the version
    published at `ref` (a URL or path ending .parquet: fetched into the workspace's cache)."""
    from manifests.datasets import DatasetError, list_datasets, parse_ref, read_version, resolve

    from .remote import is_remote

    if is_remote(ref):
        return _published(lambda remote: remote.remote_source(ws.cache / "datasets", ref, storage_options))
    name, version = ref, None
    try:
        name, version = parse_ref(ref)
        info = resolve(ws, name, version)
    except DatasetError as exc:
        # --resume of a run on a published version this workspace never built: the copy fetched then
        fetched = _published(lambda remote: remote.cached_source(ws.cache / "datasets", name, version)) if version \
            else None
        if fetched is not None:
            return fetched
        there = list_datasets(ws)
        listing = "; ".join(f"{n} ({', '.join(f'v{v.version}' for v in vs)})" for n, vs in there.items())
        raise DataError(f"{exc}. Datasets in {ws.home}: {listing or 'none yet (headshot dataset build NAME)'}") from None
    rows = read_version(ws, name, info.version)
    src = Source("dataset", name, info.version, info.content_hash)
    missing = []
    for r in rows:
        try:
            p = ws.crop_file(r.crop_path)
        except ValueError:
            missing.append(r.crop_path)
            continue
        if not p.is_file():
            missing.append(r.crop_path)
            continue
        if r.split == "val":
            src.val_files.append(p)
        else:
            src.files.append(p)
            src.attributes.append(tuple(r.attributes))
    src.skipped = len(missing)
    _check_missing(len(missing), len(rows), f"{name} v{info.version}", missing)
    if not src.files:
        raise DataError(f"dataset {name} v{info.version} has no train pictures "
                        f"({len(rows)} rows, {len(src.val_files)} in val): build it with more accepted crops")
    return src


def _published(get: Callable[[Any], Any]) -> Source | None:
    """What training/remote.py fetched, as a Source; its errors as DataError."""
    from . import remote

    try:
        got = get(remote)
    except remote.RemoteError as exc:
        raise DataError(str(exc)) from None
    return None if got is None else Source("dataset", got.name, got.version, got.content_hash, got.files,
                                           got.val_files, origin=got.origin, attributes=list(got.attributes))


def _check_missing(gone: int, total: int, what: str, examples: list[str], crops: bool = True) -> None:
    if not gone:
        return
    if crops:
        msg = (f"{gone} of {total} crop files of {what} are missing or unreadable (e.g. {examples[0]}); "
               "rerun `headshot process` to crop them again")
    else:
        msg = f"{gone} of {total} pictures in {what} cannot be read (e.g. {examples[0]})"
    if gone > MAX_MISSING * total:
        raise DataError(msg + f": more than {MAX_MISSING:.0%} gone, so the run does not start")
    log.warning(msg + ": training on the rest")


def folder_source(folder: str | os.PathLike[str]) -> Source:
    """Every picture under `folder` (recursive), for a quick experiment without a dataset."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise DataError(f"--images {root}: no such folder")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    others = sum(1 for p in root.rglob("*") if p.is_file() and p.suffix.lower() not in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"--images {root}: no pictures in it ({others} other files)")
    if others:
        log.warning("%s: %d files that are not pictures are left out", root, others)
    src = Source("folder", str(root.resolve()), files=files)
    src.content_hash = _folder_hash(files)
    src.skipped = others
    return src


def _folder_hash(files: list[Path]) -> str:
    import hashlib

    h = hashlib.sha256()
    for p in files:
        st = p.stat()
        h.update(f"{p.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def vocabulary(src: Source, names: tuple[str, ...]) -> dict[str, list[str]]:
    """The values of each attribute `names` among the train pictures, sorted: the classes a
    conditional run learns. DataError when the data carries none of one of them."""
    if src.kind != "dataset":
        raise DataError(f"a conditional run needs a dataset version whose rows carry attributes ({', '.join(names)}); "
                        f"{src.name} is a folder of pictures")
    seen: dict[str, set[str]] = {n: set() for n in names}
    for attrs in src.attributes:
        for a in attrs:
            k, _, v = a.partition("=")
            if k in seen and v:
                seen[k].add(v)
    empty = [n for n, vs in seen.items() if len(vs) < 2]
    if empty:
        raise DataError(f"dataset {src.name} v{src.version}: its train rows carry fewer than two values of "
                        f"{', '.join(empty)}: run `headshot attributes`, then build a new version "
                        "(`headshot dataset build`), and train on that")
    return {n: sorted(seen[n]) for n in names}


def label_matrix(src: Source, vocab: dict[str, list[str]]) -> torch.Tensor:
    """len(files) x len(vocab) class indices (-1: the picture's value is not known)."""
    index = {n: {v: i for i, v in enumerate(vs)} for n, vs in vocab.items()}
    names = list(vocab)
    out = torch.full((len(src.files), len(names)), -1, dtype=torch.long)
    for row, attrs in enumerate(src.attributes):
        for a in attrs:
            k, _, v = a.partition("=")
            if k in index and v in index[k]:
                out[row, names.index(k)] = index[k][v]
    return out


class Batches:
    """Random batches of real pictures in [-1, 1] on the device, epoch by epoch (a permutation
    per pass), from memory or from shards. state_dict()/load_state_dict() make a resumed run
    draw exactly the batches the uninterrupted one would have. With `labels` (label_matrix, one
    row per file), next_with_labels() gives each batch's rows too."""

    def __init__(self, src: Source, cfg: TrainConfig, device: torch.device, progress: bool = False,
                 bake: Callable[[torch.Tensor], torch.Tensor] | None = None, share: tuple[int, int] = (0, 1),
                 labels: torch.Tensor | None = None):
        self.src, self.cfg, self.device = src, cfg, device
        self.all_labels = labels
        self.labels: torch.Tensor | None = None  # the rows of the pictures in memory
        # (rank, processes): every rank draws the same whole batch and keeps its share of it.
        self.share = share
        self.bake = bake
        self.gen = torch.Generator().manual_seed(cfg.seed + 1)  # on the CPU: the same draws on every device
        per_image = 3 * cfg.size * cfg.size
        self.sharded = len(src.files) * per_image > cfg.max_memory_mb * 2**20
        self.shard_order: list[int] = []
        self.shard_pos = 0
        self.perm: torch.Tensor | None = None
        self.pos = 0
        self.images: torch.Tensor | None = None
        self._progress = progress
        self.unreadable = 0
        self._bad: list[str] = []
        if not self.sharded:
            self.images = self._load(src.files, 0)
            _check_missing(self.unreadable, len(src.files), src.name, self._bad[:1] or [""], src.kind == "dataset")
        if self.sharded:
            self.n = len(src.files)
        else:
            self.n = self.images.shape[0]
        if self.n < cfg.batch_size:
            raise DataError(f"{self.n} train pictures is fewer than the batch size {cfg.batch_size}: "
                            f"lower --batch-size (e.g. --batch-size {max(1, self.n // 2)}) or add pictures")

    def _load(self, files: list[Path], offset: int) -> torch.Tensor:
        def bad(p: Path, why: str) -> None:
            self.unreadable += 1
            self._bad.append(str(p))
            log.warning("left out %s: %s", p, why)

        kept: list[int] = []
        images = load_pictures(files, self.cfg.size, bad, progress=self._progress, kept=kept)
        if self.all_labels is not None:
            self.labels = self.all_labels[torch.tensor([offset + i for i in kept], dtype=torch.long)].to(self.device)
        if self.bake is not None:
            images = self.bake(images)
        return images.to(self.device)

    def _next_shard(self) -> None:
        n_shards = -(-len(self.src.files) // self.cfg.shard_images)
        if self.shard_pos >= len(self.shard_order):
            self.shard_order = torch.randperm(n_shards, generator=self.gen).tolist()
            self.shard_pos = 0
        k = self.shard_order[self.shard_pos]
        self.shard_pos += 1
        self.images = self._load(self.src.files[k * self.cfg.shard_images:(k + 1) * self.cfg.shard_images],
                                 k * self.cfg.shard_images)
        self.perm, self.pos = None, 0

    def next(self) -> torch.Tensor:
        return self.next_with_labels()[0]

    def next_with_labels(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        b = self.cfg.batch_size
        if self.images is None or (self.sharded and self.perm is not None and self.pos + b > len(self.perm)):
            self._next_shard()
        if self.perm is None or self.pos + b > len(self.perm):
            self.perm, self.pos = torch.randperm(self.images.shape[0], generator=self.gen), 0
        idx = self.perm[self.pos:self.pos + b]
        self.pos += b
        rank, world = self.share
        if world > 1:
            idx = idx.view(world, -1)[rank]  # distributed.check_share: b is a multiple of world
        batch = self.images[idx.to(self.images.device)]
        labels = self.labels[idx.to(self.labels.device)] if self.labels is not None else None
        return batch.float().div_(127.5).sub_(1.0), labels

    def state_dict(self) -> dict[str, Any]:
        return {"gen": self.gen.get_state(), "perm": self.perm, "pos": self.pos,
                "shard_order": self.shard_order, "shard_pos": self.shard_pos}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.gen.set_state(state["gen"])
        self.shard_order, self.shard_pos = list(state["shard_order"]), int(state["shard_pos"])
        if self.sharded and self.shard_order:
            # The shard the run was in: loaded again, its permutation restored below.
            k = self.shard_order[self.shard_pos - 1]
            self.images = self._load(self.src.files[k * self.cfg.shard_images:(k + 1) * self.cfg.shard_images],
                                     k * self.cfg.shard_images)
        self.perm, self.pos = state["perm"], int(state["pos"])


def val_images(src: Source, size: int, limit: int) -> torch.Tensor | None:
    """The val split's pictures (up to `limit`), for evaluation; None when there are none."""
    if not src.val_files:
        return None
    return load_pictures(src.val_files[:limit], size)
