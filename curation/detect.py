"""Face detection on artwork: OpenCV cascades, the animeface detector, and an ensemble of both.

Pure and deterministic: a prepared RGB image and a DetectorConfig in, a sorted list of Face
boxes (source pixels of the EXIF-transposed image) out. The config's JSON goes into every
crop id and FaceCrop row, and `detector_version` names the libraries and the cascade bytes,
so a crop records exactly what made it.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from curation import models
from media.decode import bounded, prepare, to_rgb  # noqa: F401  (prepare is part of this module's API)

DETECTORS = ("lbp", "haar", "animeface", "ensemble")
RULES = ("union", "vote")


@dataclass(frozen=True)
class DetectorConfig:
    """One detector setting. DetectorConfig() is the measured best on ../shared/data
    (bench/detect_eval.py); DetectorConfig(detector="lbp", rotations=()) is the anime cascade
    alone at its README's stock settings."""

    detector: str = "ensemble"
    # Ensemble members; their boxes are merged where they overlap.
    members: tuple[str, ...] = ("lbp", "animeface")
    # "union": a box any member finds is kept. "vote": a box is kept when two members agree,
    # or when one member alone is sure (animeface likelihood >= sure_likelihood, or a cascade
    # box with >= sure_neighbors neighbours).
    rule: str = "union"
    merge_iou: float = 0.3
    # Cascade parameters (detectMultiScale); stock values of the anime cascade's README.
    scale_factor: float = 1.1
    min_neighbors: int = 5
    min_size: int = 24
    # equalizeHist costs the anime cascade 5 of 42 finds on ../shared/data/anime: flat-shaded
    # art has no lighting to normalise, and stretching its few grey levels breaks LBP codes.
    equalize: bool = False
    # Images whose short side is below this are enlarged for the cascades (0 = never):
    # faces smaller than min_size cannot be found at all otherwise.
    upscale_below: int = 0
    # Large images are shrunk to this long side before detecting (0 = never): the working
    # size. Unbounded, a 9000 x 9000 flat PNG cost 76 s to process (cascade windows grow with
    # the area, and the rotated passes expand it further); at 1600 it costs 1.6 s, at 2048
    # 2.5 s. On ../shared/data (bench/detect_eval.py) 1600, 2048 and unbounded find the same
    # faces in anime/ (54 images, 53 on a face, 71 boxes) and nothing in no_face; the cascade
    # still finds faces down to 1.5% of a picture's long side.
    max_side: int = 1600
    # animeface returns a likelihood in [0.5, 1]; below this a box is dropped.
    animeface_threshold: float = 0.7
    sure_likelihood: float = 0.99
    sure_neighbors: int = 10
    # Extra passes on the image rotated by these angles (degrees, counter-clockwise): tilted
    # heads. They found the one tilted head of anime/ the upright passes miss (and two in the
    # outliers), with no detection added in no_face, paintings or real_people.
    rotations: tuple[int, ...] = (-30, -15, 15, 30)
    # In an ensemble, only these members run the rotated passes: animeface on rotated art
    # finds faces in clouds and buildings (2 of 10 no_face images), the cascade does not.
    rotate_members: tuple[str, ...] = ("lbp",)
    # "fallback": rotated passes only when the upright ones found no face. Measured against
    # "always" on ../shared/data: the same images gain a face, fewer false boxes are added
    # (a second, rotated "face" beside an upright one was a stuffed toy), at a fraction of
    # the time. "always" also finds tilted second faces in group pictures.
    rotate_when: str = "fallback"
    # An extra pass on the mirrored image (the cascades are not symmetric).
    flip: bool = False

    def __post_init__(self) -> None:
        if self.detector not in DETECTORS:
            raise ValueError(f"detector must be one of {', '.join(DETECTORS)}, not {self.detector!r}")
        bad = [m for m in self.members if m not in DETECTORS[:3]]
        if bad or not self.members:
            raise ValueError(f"ensemble members must be among lbp, haar, animeface; got {self.members!r}")
        if self.rotate_when not in ("fallback", "always"):
            raise ValueError(f"rotate_when must be fallback or always, not {self.rotate_when!r}")
        if self.rule not in RULES:
            raise ValueError(f"rule must be one of {', '.join(RULES)}, not {self.rule!r}")
        if self.scale_factor <= 1.0:
            raise ValueError(f"scale_factor must be above 1.0, got {self.scale_factor!r}")

    def used(self) -> tuple[str, ...]:
        return self.members if self.detector == "ensemble" else (self.detector,)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["members"] = list(self.members)
        d["rotations"] = list(self.rotations)
        d["rotate_members"] = list(self.rotate_members)
        return d

    def params_json(self) -> str:
        """Canonical JSON (sorted keys, no spaces): equal configs give equal strings and crop ids."""
        return json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: dict) -> "DetectorConfig":
        d = dict(d)
        for k in ("members", "rotations", "rotate_members"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)


@dataclass(frozen=True)
class Face:
    """A face box in source pixels of the EXIF-transposed image.

    score depends on `detector`: for "animeface" the likelihood (0.5 to 1); for "lbp" and
    "haar" the number of neighbouring raw windows merged into the box (detectMultiScale2).
    found_by lists every detector whose box overlapped this one (ensemble); angle is the
    rotation pass that found the kept box (0 = upright).
    """

    x: int
    y: int
    w: int
    h: int
    score: float
    detector: str
    found_by: tuple[str, ...] = ()
    angle: int = 0

    @property
    def box(self) -> tuple[int, int, int, int]:
        return self.x, self.y, self.w, self.h


# ---------------------------------------------------------------- single detectors

_local = threading.local()  # CascadeClassifier objects are not safe to share across threads


def _classifier(path: Path) -> cv2.CascadeClassifier:
    cache = getattr(_local, "cascades", None)
    if cache is None:
        cache = _local.cascades = {}
    key = str(path)
    if key not in cache:
        clf = cv2.CascadeClassifier(key)
        if clf.empty():
            raise models.ModelChecksumError(f"OpenCV could not load the cascade {path}")
        cache[key] = clf
    return cache[key]


def _run_cascade(gray: np.ndarray, name: str, cfg: DetectorConfig, folder: Path | None) -> list[tuple]:
    clf = _classifier(models.cascade_path(folder=folder) if name == "lbp" else models.haar_path())
    if cfg.equalize:
        gray = cv2.equalizeHist(gray)
    rects, neighbours = clf.detectMultiScale2(gray, cfg.scale_factor, cfg.min_neighbors,
                                              minSize=(cfg.min_size, cfg.min_size))
    return [(int(x), int(y), int(w), int(h), float(n)) for (x, y, w, h), n in zip(rects, neighbours)]


def _run_animeface(im: Image.Image, cfg: DetectorConfig) -> list[tuple]:
    import animeface

    out = []
    for f in animeface.detect(im):
        if f.likelihood >= cfg.animeface_threshold:
            p = f.face.pos
            out.append((int(p.x), int(p.y), int(p.width), int(p.height), round(float(f.likelihood), 6)))
    return out


# animeface's box is tighter than the anime cascade's (eyes to mouth against brow to chin).
# Mapped to the cascade's framing so crops of both line up: scale and centre shift measured
# on the faces both detectors found in ../shared/data/anime (bench/detect_eval.py --calibrate).
# On the 50 faces both found: cascade side / animeface side has median 1.31 (deciles 1.17 to
# 1.45), and the centres differ by 1.6 % of the side down and 0.9 % left: scale only.
AF_SCALE = 1.31
AF_SHIFT_Y = 0.016


def _to_cascade_framing(box: tuple) -> tuple:
    x, y, w, h, s = box
    side = max(w, h) * AF_SCALE
    cx, cy = x + w / 2, y + h / 2 + AF_SHIFT_Y * side
    return (round(cx - side / 2), round(cy - side / 2), round(side), round(side), s)


def _rotate(im: Image.Image, angle: int) -> Image.Image:
    white = 255 if im.mode == "L" else (255, 255, 255)  # the corners look like a flattened background
    return im.rotate(angle, resample=Image.BICUBIC, expand=True, fillcolor=white)


def _unrotate(box: tuple, angle: int, size: tuple[int, int], rotated: tuple[int, int]) -> tuple:
    """Map a box found in the rotated image back: its centre exactly, its size unchanged."""
    x, y, w, h, s = box
    cx, cy = x + w / 2 - rotated[0] / 2, y + h / 2 - rotated[1] / 2
    a = math.radians(angle)
    ox = cx * math.cos(a) - cy * math.sin(a) + size[0] / 2
    oy = cx * math.sin(a) + cy * math.cos(a) + size[1] / 2
    return (round(ox - w / 2), round(oy - h / 2), w, h, s)


def _rotated_passes(name: str, cfg: DetectorConfig) -> list[tuple[int, bool]]:
    rotating = cfg.detector != "ensemble" or name in cfg.rotate_members
    return [(a, False) for a in cfg.rotations if a % 360 and rotating]


def _run_passes(im: Image.Image, name: str, cfg: DetectorConfig, folder: Path | None,
                passes: list[tuple[int, bool]]) -> list[tuple]:
    """(x, y, w, h, score, angle) boxes of one detector over `passes` (angle, mirrored), in `im` pixels."""
    out = []
    # Cascades read grey only: rotate and mirror the grey image, a third of the pixels.
    base = im if name == "animeface" else Image.fromarray(cv2.cvtColor(np.asarray(im), cv2.COLOR_RGB2GRAY))
    for angle, mirrored in passes:
        src = base if angle == 0 else _rotate(base, angle)
        if mirrored:
            src = src.transpose(Image.FLIP_LEFT_RIGHT)
        if name == "animeface":
            boxes = [_to_cascade_framing(b) for b in _run_animeface(src, cfg)]
        else:
            gray, k = np.asarray(src), 1.0
            if cfg.upscale_below and min(gray.shape) < cfg.upscale_below:
                k = cfg.upscale_below / min(gray.shape)
                gray = cv2.resize(gray, None, fx=k, fy=k, interpolation=cv2.INTER_CUBIC)
            boxes = [tuple(round(v / k) for v in b[:4]) + (b[4],) for b in _run_cascade(gray, name, cfg, folder)]
        if mirrored:
            boxes = [(src.width - b[0] - b[2],) + b[1:] for b in boxes]
        if angle:
            boxes = [_unrotate(b, angle, im.size, src.size) for b in boxes]
        out += [b + (angle,) for b in boxes]
    return out


# ---------------------------------------------------------------- merging

def _intersection(a, b) -> int:
    ix = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    iy = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return max(0, ix) * max(0, iy)


def iou(a, b) -> float:
    """Intersection over union of two (x, y, w, h, ...) boxes."""
    inter = _intersection(a, b)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union else 0.0


def _sure(name: str, score: float, cfg: DetectorConfig) -> bool:
    return score >= (cfg.sure_likelihood if name == "animeface" else cfg.sure_neighbors)


def _merge(found: dict[str, list[tuple]], cfg: DetectorConfig) -> list[Face]:
    """Greedy clustering by IoU. Candidates are ordered upright before rotated, then by member
    priority (cfg.members order: the first member's framing wins), then by score and position,
    so the result does not depend on the order boxes came back in."""
    rank = {m: i for i, m in enumerate(cfg.members)}
    cands = sorted(((b[5] != 0, rank.get(n, 0), abs(b[5]), -b[4], b[1], b[0], b[2], b[3], n, b)
                    for n, boxes in found.items() for b in boxes))
    clusters: list[tuple[tuple, str, set]] = []
    for *_, name, box in cands:
        for head, _, members in clusters:
            if iou(head, box) >= cfg.merge_iou:
                members.add((name, box[4]))
                break
        else:
            clusters.append((box, name, {(name, box[4])}))
    faces = []
    for box, name, members in clusters:
        by = tuple(sorted({n for n, _ in members}, key=lambda n: rank.get(n, 0)))
        if cfg.detector == "ensemble" and cfg.rule == "vote" and len(by) < 2:
            if not any(_sure(n, s, cfg) for n, s in members):
                continue
        x, y, w, h, s, angle = box
        faces.append(Face(x, y, w, h, float(s), name, by, angle))
    return faces


# Grey levels between a picture's darkest and lightest pixel below which it holds no face: a
# face needs at least eyes darker than skin. Such a picture skips the detectors, and above
# all their rotated passes, which cost 4x the upright ones when nothing is found.
FLAT_RANGE = 8


def _clip(face: Face, width: int, height: int) -> Face | None:
    """Keep boxes inside the image (rotated passes and the framing map can push one out)."""
    x0, y0 = max(face.x, 0), max(face.y, 0)
    x1, y1 = min(face.x + face.w, width), min(face.y + face.h, height)
    if x1 - x0 < 8 or y1 - y0 < 8:
        return None
    return Face(x0, y0, x1 - x0, y1 - y0, face.score, face.detector, face.found_by, face.angle)


def detect_faces(image: Image.Image, cfg: DetectorConfig = DetectorConfig(),
                 cascade_dir: Path | None = None, source_size: tuple[int, int] | None = None) -> list[Face]:
    """Faces in `image` (use prepare() on raw bytes), sorted by y then x. The same image and
    config always give the same list. `source_size`: `image` is already the working copy
    (bounded(picture, cfg.max_side)) of a picture of that size, and boxes are in its pixels."""
    im = to_rgb(image)
    W, H = source_size or im.size
    im = bounded(im, cfg.max_side)
    k = im.width / W
    lo, hi = im.convert("L").getextrema()
    if hi - lo < FLAT_RANGE:
        return []  # one colour (a blank placeholder, a flat filler): no detector finds a face there
    upright = [(0, False), (0, True)][:1 + cfg.flip]
    found = {name: _run_passes(im, name, cfg, cascade_dir, upright) for name in cfg.used()}
    rotated = {name: _rotated_passes(name, cfg) for name in cfg.used()}
    if any(rotated.values()) and (cfg.rotate_when == "always" or not _merge(found, cfg)):
        for name, passes in rotated.items():
            found[name] += _run_passes(im, name, cfg, cascade_dir, passes)
    if k != 1.0:
        found = {n: [tuple(round(v / k) for v in b[:4]) + b[4:] for b in boxes] for n, boxes in found.items()}
    faces = [f for f in (_clip(f, W, H) for f in _merge(found, cfg)) if f is not None]
    return sorted(faces, key=lambda f: (f.y, f.x, f.w, f.h, f.detector))


# ---------------------------------------------------------------- provenance and review

def detector_version(cfg: DetectorConfig = DetectorConfig(), cascade_dir: Path | None = None) -> str:
    """Which code and model bytes a detection depends on, e.g.
    "opencv=4.14.0;lbp=9376d30ac38d;animeface=2.0.3;pillow=11.3.0"."""
    from importlib.metadata import version

    parts = []
    used = cfg.used()
    if "lbp" in used or "haar" in used:
        parts.append(f"opencv={cv2.__version__}")
    if "lbp" in used:
        models.cascade_path(folder=cascade_dir)  # verified: the prefix below is the file's
        parts.append(f"lbp={models.ANIME_CASCADE.sha256[:12]}")
    if "haar" in used:
        parts.append(f"haar={hashlib.sha256(models.haar_path().read_bytes()).hexdigest()[:12]}")
    if "animeface" in used:
        parts.append(f"animeface={version('animeface')}")
    # Pillow decodes, rotates and resizes; animeface reads its internal struct (12.x broke it).
    parts.append(f"pillow={Image.__version__}")
    return ";".join(parts)


def detection_key(cfg: DetectorConfig, cascade_dir: Path | None = None) -> str:
    """What a detection result depends on: the settings and the exact code and model bytes."""
    text = cfg.params_json() + "|" + detector_version(cfg, cascade_dir)
    return "faces:" + hashlib.sha256(text.encode()).hexdigest()[:16]


def disagreement(faces: list[Face], cfg: DetectorConfig | None = None) -> list[str]:
    """Reasons to send an image to human review; empty when the detectors agree."""
    reasons = []
    members = set(cfg.used()) if cfg is not None else {n for f in faces for n in (f.found_by or (f.detector,))}
    for f in faces:
        by = set(f.found_by or (f.detector,))
        where = f"face at ({f.x},{f.y},{f.w},{f.h})"
        if len(members) > 1 and by != members:
            reasons.append(f"{where} found only by {', '.join(sorted(by))}, not by {', '.join(sorted(members - by))}")
        if f.angle:
            reasons.append(f"{where} found only on a {f.angle:+d} degree rotated pass")
        if f.detector == "animeface" and f.score < 0.9:
            reasons.append(f"{where} has a low animeface likelihood {f.score:.2f}")
    for i, a in enumerate(faces):
        for b in faces[i + 1:]:
            # Mostly inside each other: a face box within a face box is rarely two faces.
            if _intersection(a.box, b.box) > 0.5 * min(a.w * a.h, b.w * b.h):
                reasons.append(f"faces at ({a.x},{a.y}) and ({b.x},{b.y}) overlap: one may be a false box")
    return reasons
