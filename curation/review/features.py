"""What the active learner sees of a crop: its ledger (how each filter scored it, its
duplicate group), where it sits in its picture (a whole-picture crop or a face, the picture's
shape, the box's share of it), a few cheap pixel numbers (colour, greyness, detail, a tiny
thumbnail) and, where the crop has one, its embedding's first principal components
(curation.embeddings).

Ledger features come from the Item at no cost. Pixel features need the crop decoded (about a
millisecond each), so `FeatureCache` keeps them in the workspace, keyed by crop id (the id is
derived from everything that determines the crop's pixels), and computes only what is missing,
in chunks, so a background thread can fill it while the queue is in use.
"""

from __future__ import annotations

import io
import math
import threading
import warnings
from pathlib import Path
from typing import Callable, Iterable, Sequence

import cv2
import numpy as np
from PIL import Image, ImageOps

from curation import filters
from curation.embeddings import Embeddings, PrincipalAxes
from curation.process_dedup import DUPLICATE
from curation.subject import WHOLE
from manifests.atomic import write_bytes_atomic
from manifests.workspace import Workspace
from media.decode import to_rgb

from .items import Item

# Bump when any pixel feature changes meaning: the cache file carries the version in its name,
# so features measured by other code are never mixed with these.
FEATURE_VERSION = "1"

_PIXEL_SIDE = 256  # crops are 64-256 px; a larger file is shrunk before measuring
_COLOUR_SIDE = 64  # colour statistics are taken at this size (image_stats does the same)
_GREY_CHROMA = 16  # max - min of R, G, B (0-255) at or under which a pixel counts as grey
_HUE_BINS = 8

_ITEM_NAMES = ("detector_score", "keeper", "distance", "log_group_size")
# Where the crop sits in its picture: whether it is a whole-picture crop (the learner fits such
# crops their own weights beside the shared ones: see learner.WHOLE), the picture's shape (a
# banner, a page, a square avatar), how much of it the box covers (a head that fills the frame
# or a figure in a scene) and the box's own shape.
_GEOMETRY_NAMES = ("whole", "picture_log_aspect", "picture_abs_log_aspect", "box_share", "box_log_aspect",
                   "log_picture_side")
PIXEL_NAMES: tuple[str, ...] = (
    ("hue_x", "hue_y", "hue_spread", "sat_mean", "sat_std", "val_mean", "val_std",
     "colourfulness", "grey_fraction", "log_laplacian_var")
    + tuple(f"hue_hist_{i}" for i in range(_HUE_BINS))
    + tuple(f"thumb_{r}{c}" for r in range(4) for c in range(4))
    + ("unreadable",)
)
N_PIXEL = len(PIXEL_NAMES)


# --- ledger ----------------------------------------------------------------------------------------
def _duplicate_features(score: float, threshold: float, passed: bool) -> tuple[float, ...]:
    return (filters.log_ratio(score, threshold), float(passed))


Slot = tuple[str, tuple[str, ...], Callable[[float, float, bool], tuple[float, ...]]]


def ledger_slots() -> list[Slot]:
    """(verdict name, feature parts, features of one ledger row) per ledger verdict the learner
    reads: every registered filter, in run order, then dedup's verdict (not a filter: see
    curation.filters). Each has a fixed slot; a verdict missing on a crop gives present 0."""
    return [(f.name, f.features, f.learner_features) for f in filters.registered()] + [
        (DUPLICATE, ("ratio", "passed"), _duplicate_features)]


def ledger_names(slots: Sequence[Slot] | None = None) -> tuple[str, ...]:
    return tuple(f"{name}.{part}" for name, parts, _ in (slots or ledger_slots()) for part in (*parts, "present")
                 ) + _ITEM_NAMES + _GEOMETRY_NAMES


def feature_names() -> tuple[str, ...]:
    return ledger_names() + PIXEL_NAMES


def __getattr__(name: str):
    # FILTERS, LEDGER_NAMES and FEATURE_NAMES follow the filter registry, so they are computed
    # when asked for, not frozen when this module was first imported.
    if name == "FILTERS":
        return tuple(n for n, _, _ in ledger_slots())
    if name == "LEDGER_NAMES":
        return ledger_names()
    if name == "FEATURE_NAMES":
        return feature_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def ledger_features(item: Item, slots: Sequence[Slot] | None = None) -> list[float]:
    """One value per LEDGER_NAMES entry. A filter that ran twice on a crop (monochrome runs on
    the picture and on the crop) counts with the lower of each value: its worst ratio, and
    passed only if both passed. `slots`: ledger_slots(), when the caller has it at hand."""
    slots = ledger_slots() if slots is None else slots
    of = {name: fn for name, _, fn in slots}
    got: dict[str, list[float]] = {}
    for r in item.reasons:
        name = r.get("filter")
        fn = of.get(name)
        if fn is None:
            continue
        score = float(r["score"]) if r.get("score") is not None else math.nan
        threshold = float(r["threshold"]) if r.get("threshold") is not None else math.nan
        values = [*fn(score, threshold, bool(r.get("passed"))), 1.0]
        old = got.get(name)
        got[name] = values if old is None else [min(a, b) for a, b in zip(old, values)]
    out: list[float] = []
    for name, parts, _ in slots:
        out.extend(got.get(name, (0.0,) * (len(parts) + 1)))
    det = float(item.detector_score) if math.isfinite(item.detector_score) else 0.0
    out += [math.log1p(max(det, 0.0)), float(bool(item.keeper)), float(item.distance),
            math.log(max(int(item.group_size), 1))]
    return out + geometry_features(item)


def geometry_features(item: Item) -> list[float]:
    """_GEOMETRY_NAMES' values; a picture or box of unknown size gives 0s (a square that fills
    the frame) beside `whole`."""
    whole = float(item.detector == WHOLE)
    w, h, bw, bh = item.image_width, item.image_height, item.box_w, item.box_h
    if w <= 0 or h <= 0 or bw <= 0 or bh <= 0:
        return [whole, 0.0, 0.0, 1.0, 0.0, 0.0]
    aspect = math.log(w / h)
    return [whole, aspect, abs(aspect), min(1.0, bw * bh / (w * h)), math.log(bw / bh), math.log(max(w, h))]


def ledger_matrix(items: Sequence[Item]) -> np.ndarray:
    slots = ledger_slots()
    return np.array([ledger_features(it, slots) for it in items],
                    dtype=np.float32).reshape(len(items), len(ledger_names(slots)))


# --- pixels ----------------------------------------------------------------------------------------
def _decode(path: Path) -> np.ndarray:
    """RGB uint8, upright, transparency on white, longer side <= 256 px."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Image.open(path) as im:
            im.seek(0)
            if im.format == "JPEG":
                im.draft(im.mode, (_PIXEL_SIDE, _PIXEL_SIDE))
            im.load()
            im = ImageOps.exif_transpose(im)
    if max(im.size) > _PIXEL_SIDE:
        im.thumbnail((_PIXEL_SIDE, _PIXEL_SIDE), Image.BOX)
    rgb = np.asarray(to_rgb(im), dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.size == 0:
        raise ValueError(f"unexpected pixel array of shape {rgb.shape}")
    return rgb


def _measure(rgb: np.ndarray) -> np.ndarray:
    # Colour needs no detail: measured at <= 64 px (4-16x fewer pixels, and averaging quiets
    # JPEG colour noise); detail is measured on the crop as stored.
    h, w = rgb.shape[:2]
    k = _COLOUR_SIDE / max(h, w)
    small = rgb if k >= 1 else cv2.resize(rgb, (max(1, round(w * k)), max(1, round(h * k))), interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV_FULL).reshape(-1, 3)  # hue over 0-255: 8 bins 32 wide
    hue = hsv[:, 0].astype(np.int32)
    sat = hsv[:, 1].astype(np.float32) / 255.0
    val = hsv[:, 2].astype(np.float32) / 255.0
    # Hue is an angle and means nothing where there is no saturation: the saturation-weighted
    # mean direction, whose length (1 - spread) says how much one hue dominates.
    ang = hue * (2 * math.pi / 256.0)
    wsum = float(sat.sum())
    hx = float(sat @ np.cos(ang) / wsum) if wsum > 1e-6 else 0.0
    hy = float(sat @ np.sin(ang) / wsum) if wsum > 1e-6 else 0.0
    f = small.reshape(-1, 3).astype(np.float32)
    rg = f[:, 0] - f[:, 1]
    yb = 0.5 * (f[:, 0] + f[:, 1]) - f[:, 2]
    # Hasler and Suesstrunk's colourfulness, in units of 100
    colourful = (math.hypot(float(rg.std()), float(yb.std())) + 0.3 * math.hypot(float(rg.mean()), float(yb.mean()))) / 100.0
    spread_rgb = small.max(axis=2).astype(np.int16) - small.min(axis=2)
    grey = float((spread_rgb <= _GREY_CHROMA).mean())
    lap = math.log1p(float(cv2.Laplacian(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), cv2.CV_32F).var()))
    hist = np.bincount(hue // (256 // _HUE_BINS), sat, _HUE_BINS) / len(sat)  # sums to the mean saturation
    thumb = cv2.resize(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY), (4, 4), interpolation=cv2.INTER_AREA)
    head = [hx, hy, 1.0 - math.hypot(hx, hy), float(sat.mean()), float(sat.std()), float(val.mean()),
            float(val.std()), colourful, grey, lap]
    return np.concatenate([np.array(head, np.float32), hist.astype(np.float32),
                           thumb.astype(np.float32).ravel() / 255.0, np.zeros(1, np.float32)])


def pixel_features(path: str | Path) -> np.ndarray:
    """N_PIXEL float32 values (PIXEL_NAMES). A missing, unreadable or odd file gives zeros with
    `unreadable` = 1: one bad crop must not stop the queue."""
    try:
        return _measure(_decode(Path(path)))
    except Exception:  # any decoder or shape failure is the same to the learner: no pixels
        out = np.zeros(N_PIXEL, np.float32)
        out[-1] = 1.0
        return out


# --- embeddings ------------------------------------------------------------------------------------
def embedding_names(k: int) -> tuple[str, ...]:
    return tuple(f"embed_pc{i}" for i in range(k)) + ("embed_present",)


class EmbeddingColumns:
    """The embeddings as the learner reads them in one training: a crop's first `k` principal
    components (axes fitted without labels on every cached embedding) and whether it has an
    embedding at all; a crop without one gets 0s, the embeddings' mean. 1280 numbers would make
    the Newton fit ~400x slower for little more than these tell."""

    def __init__(self, embeddings: Embeddings, axes: PrincipalAxes):
        # the axes are this training's snapshot: scoring reads the same ones even if more
        # embeddings arrive meanwhile
        self.embeddings, self.axes = embeddings, axes
        self.names = embedding_names(axes.k)

    @classmethod
    def of(cls, embeddings: Embeddings | None, k: int) -> "EmbeddingColumns | None":
        """None (the learner reads ledger and pixels only) without embeddings or with too few."""
        if embeddings is None or k < 1:
            return None
        embeddings.refresh()
        axes = embeddings.axes(k)
        return None if axes is None else cls(embeddings, axes)

    def columns(self, crop_ids: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(crop_ids), self.axes.k + 1), np.float32)
        Z, have = self.embeddings.coordinates(crop_ids, self.axes)
        if len(have):
            out[have, :-1] = Z
            out[have, -1] = 1.0
        return out


# --- the cache -------------------------------------------------------------------------------------
class FeatureCache:
    """Pixel features of crops by crop id, in `<home>/cache/review-features-<FEATURE_VERSION>.npz`.

    Thread-safe: a background thread may `ensure` while others call `matrix`. A damaged or
    foreign cache file is ignored and rebuilt (it holds nothing that cannot be recomputed).
    """

    def __init__(self, ws: Workspace, compute: Callable[[Path], np.ndarray] = pixel_features):
        self.home = ws.home
        self.path = ws.cache / f"review-features-{FEATURE_VERSION}.npz"
        self._compute = compute
        self._lock = threading.Lock()
        self._save_lock = threading.Lock()
        self._index: dict[str, int] = {}
        self._ids: list[str] = []
        self._data = np.zeros((1024, N_PIXEL), np.float32)
        self._dirty = False
        # Ledger rows are cheap one at a time but cost ~1 s for 50,000 crops, so they are kept
        # per Item object: the same object (Items are not changed once loaded) reuses its row; a
        # reloaded queue brings new objects, and their rows are computed afresh.
        self._ledger_lock = threading.Lock()
        self._ledger_of: dict[str, tuple[Item, int]] = {}
        self._ledger = np.zeros((1024, len(ledger_names())), np.float32)
        self._n_ledger = 0
        self._load()

    def _load(self) -> None:
        try:
            with np.load(self.path, allow_pickle=False) as z:
                names = [str(n) for n in z["names"]]
                ids = [bytes(i).decode("utf-8") for i in z["ids"]]
                data = np.asarray(z["data"], np.float32)
        except Exception:  # missing, half-written by an older build, or not ours: start afresh
            return
        if names != list(PIXEL_NAMES) or data.shape != (len(ids), N_PIXEL):
            return
        self._ids = ids
        self._index = {c: i for i, c in enumerate(ids)}
        self._data = np.concatenate([data, np.zeros((max(1024, len(ids)), N_PIXEL), np.float32)])

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, crop_id: str) -> bool:
        return crop_id in self._index

    def missing(self, items: Iterable[Item]) -> list[Item]:
        """The items without pixel features yet, in the order given."""
        with self._lock:
            return [it for it in items if it.crop_id not in self._index]

    def _add(self, crop_id: str, row: np.ndarray) -> None:
        with self._lock:
            if crop_id in self._index:
                return
            n = len(self._ids)
            if n == len(self._data):
                self._data = np.concatenate([self._data, np.zeros_like(self._data)])
            self._data[n] = row
            self._ids.append(crop_id)
            self._index[crop_id] = n
            self._dirty = True

    def ensure(self, items: Iterable[Item], limit: int | None = None, save_every: int = 5000,
               stop: threading.Event | None = None) -> int:
        """Compute what is missing for `items`, in their order (pass the queue order to have the
        next crops first), at most `limit` of them; save every `save_every` and at the end.
        `stop` lets a background thread be told to finish early. Returns how many were computed."""
        todo = self.missing(items)
        if limit is not None:
            todo = todo[:max(0, limit)]
        done = 0
        for it in todo:
            if stop is not None and stop.is_set():
                break
            self._add(it.crop_id, np.asarray(self._compute(self.home / it.crop_path), np.float32).reshape(N_PIXEL))
            done += 1
            if done % save_every == 0:
                self.save()
        if done:
            self.save()
        return done

    def save(self) -> None:
        """Write the cache atomically (a killed process leaves the old file or the new one)."""
        with self._save_lock:
            with self._lock:
                if not self._dirty:
                    return
                ids = np.array([c.encode("utf-8") for c in self._ids], dtype=bytes) if self._ids else np.zeros(0, "S1")
                data = self._data[:len(self._ids)].copy()
                self._dirty = False
            buf = io.BytesIO()
            np.savez(buf, names=np.array(PIXEL_NAMES), ids=ids, data=data)
            # not fsynced: losing the cache to a power cut costs a recomputation, nothing more
            write_bytes_atomic(self.path, buf.getvalue(), durable=False)

    def pixels(self, items: Sequence[Item]) -> tuple[np.ndarray, np.ndarray]:
        """(pixel rows, positions in `items` they belong to) for the items the cache has."""
        with self._lock:
            pos = [(i, self._index[it.crop_id]) for i, it in enumerate(items) if it.crop_id in self._index]
            rows = np.array([p for _, p in pos], dtype=np.int64)
            return self._data[rows], np.array([i for i, _ in pos], dtype=np.int64)

    def ledger(self, items: Sequence[Item]) -> np.ndarray:
        """ledger_matrix(items), remembered per Item object."""
        slots = ledger_slots()
        width = len(ledger_names(slots))
        with self._ledger_lock:
            if self._ledger.shape[1] != width:  # the filter registry changed: every row is stale
                self._ledger_of, self._ledger, self._n_ledger = {}, np.zeros((1024, width), np.float32), 0
            if self._n_ledger > 2 * len(self._ledger_of) + 4096:  # mostly rows of replaced Items
                live = sorted(self._ledger_of.items(), key=lambda kv: kv[1][1])
                self._ledger = self._ledger[[n for _, (_, n) in live]]
                self._ledger_of = {c: (it, k) for k, (c, (it, _)) in enumerate(live)}
                self._n_ledger = len(live)
            idx = np.empty(len(items), np.int64)
            for k, it in enumerate(items):
                hit = self._ledger_of.get(it.crop_id)
                if hit is None or hit[0] is not it:
                    if self._n_ledger == len(self._ledger):
                        self._ledger = np.concatenate([self._ledger, np.zeros_like(self._ledger)])
                    self._ledger[self._n_ledger] = ledger_features(it, slots)
                    hit = self._ledger_of[it.crop_id] = (it, self._n_ledger)
                    self._n_ledger += 1
                idx[k] = hit[1]
            return self._ledger[idx]

    def matrix(self, items: Sequence[Item], embedded: EmbeddingColumns | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(X, have): X is float32 with FEATURE_NAMES columns (then `embedded.names`, when given),
        one row per item the cache has pixel features for; `have` holds those items' positions in
        `items` (X[k] is items[have[k]]). Call `ensure` first to have them all."""
        pix, have = self.pixels(items)
        led = self.ledger([items[i] for i in have])
        parts = [led, pix]
        if embedded is not None:
            parts.append(embedded.columns([items[i].crop_id for i in have]))
        return np.hstack(parts).astype(np.float32, copy=False), have
