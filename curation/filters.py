"""The filters of `headshot process`: pure functions that score a picture or a face crop.

Each filter returns a `Verdict`: a score, the threshold it was held to, passed, a reason
written for a person, whether the score is close enough to the threshold to deserve a human
look (`doubtful`, shown first in the review queue), and the version of the scoring code. The
stage writes every verdict to the rejection ledger (`Verdict.record` -> FilterResult), so a
threshold can be re-tuned later from stored scores without decoding anything again.

Every score is "higher passes": passed == (score >= threshold). Scores depend on the code
version only, never on a threshold (one exception, documented in `monochrome`). Thresholds
live in `FilterConfig`; each default was measured on ../shared/data with bench/filter_eval.py.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import date, datetime, timezone

import cv2
import numpy as np
from PIL import Image

from manifests.records import FilterResult

# Bump a filter's version whenever its score changes meaning, so ledger rows measured by
# different code are never compared. FILTERS_VERSION follows from them, so it cannot be
# forgotten when one of them moves.
VERSIONS: dict[str, str] = {"monochrome": "1", "sharpness": "1", "face_size": "1", "face_share": "1",
                            "published_after": "1"}
FILTERS_VERSION = ",".join(f"{name}={v}" for name, v in sorted(VERSIONS.items()))

# Measurement constants: they define what a score means, so they belong to the version, not
# to the config (changing one would silently make old ledger rows incomparable).
_MONO_SIDE = 64  # colour statistics need no detail, and averaging pixels quiets JPEG colour noise
_MONO_BINS = 32  # lightness bins for "colour explained by lightness"
_TINT_CHROMA = 60.0  # a "strong" hue: orange print paper measures ~100, light skin tones 40-57
_TINT_HALF_WIDTH = 30.0  # degrees either side of the dominant hue that still count as that hue
_SHARP_SIDE = 512  # whole pictures are judged at <= 512 px, face crops at their own size
_SHARP_MIN_SIDE = 16  # below this there is nothing to measure
_DETAIL_CAP = 2.0  # sharp pictures measure 0.8-15; the cap keeps a few crisp strokes on an empty
# page (1-px lines score ~12) from making up for how little is drawn
_EDGE_SIDE = 128  # edge cover is measured at a fixed scale so it means the same at any size
_EDGE_STEP = 12.0  # grey levels per pixel that count as a visible edge
_EDGE_FULL_COVER = 0.05  # anime pictures have edges on >= 8.7% of their area, generated faces 5.7%
_REPEAT_WINDOW = 4  # rows either side that define "the largest change nearby"
_REPEAT_FRACTION = 0.25  # below this share of it, a row counts as a repeat of its neighbour


@dataclass(frozen=True)
class FilterConfig:
    """Thresholds of the filters. Defaults and the measurements behind them: bench/filter_eval.py."""

    # Colour at equal lightness (`colour_stats`), in chroma units of the 0-255 RGB scale.
    # One-ink pictures (line art, manga, their face boxes) measure <= 0.83, colour art >= 1.36
    # (a pink one-hue painting; the rest >= 2.5, generated faces >= 3.3).
    min_colour: float = 1.05
    # Share of the light tones painted in one strong hue at which a picture counts as printed on
    # tinted paper (a duotone): an orange/navy manga print measures >= 0.89, colour art <= 0.74.
    max_tint_share: float = 0.81
    # Fine-to-coarse detail x distinct pixels x edge cover. Sharp art (stored size, 128 px crops,
    # flat-shaded cartoons at 64-512 px) measures >= 0.8; a Gaussian blur of radius 3 at 256 px
    # <= 0.21, a 3x soft upscale <= 0.39, a 4x nearest-neighbour upscale <= 0.13.
    min_sharpness: float = 0.5
    # Shorter side of the face box in source pixels: the default model trains at 64 x 64
    # (DCGAN-64), so a smaller face would be upscaled, inventing detail it never had.
    min_face_side: int = 64
    # Face box area / picture area. Full-body pictures in ../shared measure 1.4-2.6%,
    # portraits and upper bodies >= 3.6%.
    min_face_share: float = 0.03
    # Keep items published on or after this instant (None: no date filter). Naive = UTC.
    min_published: datetime | None = None
    keep_undated: bool = True  # an item with no known date passes, with the reason "no date"
    # A score within this fraction of its threshold is doubtful and goes to review first.
    doubtful_margin: float = 0.25
    doubtful_days: float = 31.0  # the same for dates, in days

    def as_dict(self) -> dict:
        d = asdict(self)
        if self.min_published is not None:
            d["min_published"] = _utc(self.min_published).isoformat()
        return d


@dataclass(frozen=True)
class Verdict:
    filter: str
    score: float
    threshold: float
    passed: bool
    reason: str
    doubtful: bool
    version: str

    def record(self, subject_id: str) -> FilterResult:
        """This verdict as a row of the rejection ledger."""
        return FilterResult(subject_id=subject_id, filter=self.filter, score=float(self.score),
                            threshold=float(self.threshold), passed=bool(self.passed),
                            version=self.version, reason=self.reason, doubtful=bool(self.doubtful))


def _verdict(name: str, score: float, threshold: float, reason: str, cfg: FilterConfig,
             passed: bool | None = None, doubtful: bool | None = None) -> Verdict:
    if passed is None:
        passed = score >= threshold
    if doubtful is None:
        doubtful = abs(score - threshold) <= cfg.doubtful_margin * abs(threshold)
    return Verdict(name, float(score), float(threshold), bool(passed), reason, bool(doubtful), VERSIONS[name])


# --- pixels --------------------------------------------------------------------------------------
def _prepared(image: Image.Image, side: int) -> Image.Image:
    """Any Pillow mode as RGB, L, RGBA or LA (palette and grey transparency become alpha),
    area-averaged so the longer side is <= side."""
    im = image
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        a = np.asarray(im, dtype=np.float32)
        top = 65535.0 if im.mode.startswith("I;16") or a.max() > 255 else 255.0
        im = Image.fromarray(np.clip(a * (255.0 / top), 0, 255).astype(np.uint8))
    if im.mode == "RGBA" and im.getchannel("A").getextrema()[0] == 255:
        im = im.convert("RGB")  # an opaque alpha channel is common and only costs time
    elif im.mode not in ("RGB", "L", "RGBA", "LA") or "transparency" in im.info:
        im = im.convert("RGBA")  # palette, a transparent colour (tRNS), CMYK, YCbCr, ...
    w, h = im.size
    if max(w, h) > side:
        k = side / max(w, h)
        # Pillow premultiplies RGBA and LA while resampling, so hidden colour does not bleed.
        im = im.resize((max(1, round(w * k)), max(1, round(h * k))), Image.BOX, reducing_gap=2.0)
    return im


def _colour_pixels(image: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """(N x 3 RGB float, N alpha weights) at <= 64 px, with transparent pixels weighing nothing."""
    a = np.asarray(_prepared(image, _MONO_SIDE).convert("RGBA"), dtype=np.float32)
    alpha = a[..., 3:] / 255.0
    pre = np.concatenate([a[..., :3] * alpha, alpha], axis=2)  # premultiplied for the average
    # JPEG stores colour at half resolution, so at an edge the colour bleeds past the grey
    # levels: a 3x3 average brings both to the same resolution (one-ink pictures measured 2.3
    # without it, above the faintest colour picture, 1.8; 0.83 with it).
    pre = cv2.blur(pre, (3, 3), borderType=cv2.BORDER_REFLECT)
    w = pre[..., 3].reshape(-1)
    rgb = pre[..., :3].reshape(-1, 3) / np.maximum(w, 1e-6)[:, None]
    keep = w > 1e-3
    return rgb[keep], w[keep]


def _chroma_plane(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(u, v, lightness): u, v span the plane orthogonal to grey, so grey is exactly (0, 0)
    and atan2(v, u) is the usual hue angle (red 0, yellow 60, green 120, blue 240)."""
    r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    return r - (g + b) / 2, (math.sqrt(3) / 2) * (g - b), (r + g + b) / 3


def _wmean(x: np.ndarray, w: np.ndarray) -> float:
    return float((x * w).sum() / w.sum())


# --- monochrome ----------------------------------------------------------------------------------
_HUES = [(15, "red"), (50, "orange"), (75, "yellow"), (150, "green"), (195, "cyan"), (255, "blue"),
         (285, "violet"), (335, "magenta"), (360, "red")]  # upper limits, in degrees


def colour_stats(image: Image.Image) -> dict[str, float]:
    """The numbers `monochrome` decides on (the benchmark prints them too).

    A picture made of one ink on paper (grey, sepia, duotone, line art, screentone) has one
    colour per lightness. What is left once each lightness level's mean colour is taken away
    is what a one-ink print cannot do, split along the picture's main hue axis:
    across: another hue at the same lightness (blue eyes next to orange skin, skin on grey);
    along: more or less of the main hue (pink blush hatched in the brown ink of a sketch).
    colour = sqrt(across^2 + (along / 3)^2): a change of hue is the stronger evidence of
    colour, so a change of shade counts a third (measured: one-ink pictures <= 0.83, colour
    art >= 1.36; counting shade fully, they overlap).
    ink: RMS chroma that lightness does explain (how strong the one ink is).
    tint_share: share of the lighter half of the picture in one strong hue (the paper's colour).
    """
    rgb, w = _colour_pixels(image)
    if w.sum() <= 0:
        return dict.fromkeys(("colour", "across", "along", "ink", "tint_share", "hue", "visible"), 0.0)
    u, v, light = _chroma_plane(rgb)
    bins = np.minimum((light * (_MONO_BINS / 256.0)).astype(int), _MONO_BINS - 1)
    n = np.bincount(bins, w, _MONO_BINS)
    mu = np.bincount(bins, u * w, _MONO_BINS) / np.maximum(n, 1e-9)
    mv = np.bincount(bins, v * w, _MONO_BINS) / np.maximum(n, 1e-9)
    ru, rv = u - mu[bins], v - mv[bins]
    # The main hue axis: a line through grey, so a hue and its complement share it (the orange
    # and navy of a duotone print are one axis).
    m = np.array([[_wmean(u * u, w), _wmean(u * v, w)], [_wmean(u * v, w), _wmean(v * v, w)]])
    axis = np.linalg.eigh(m)[1][:, 1]
    along = math.sqrt(_wmean((ru * axis[0] + rv * axis[1]) ** 2, w))
    across = math.sqrt(_wmean((rv * axis[0] - ru * axis[1]) ** 2, w))
    ink = math.sqrt(_wmean(mu[bins] ** 2 + mv[bins] ** 2, w))

    chroma = np.hypot(u, v)
    hue = np.degrees(np.arctan2(v, u)) % 360
    hist = np.bincount((hue // 10).astype(int) % 36, chroma * w, 36)
    smooth = sum(np.roll(hist, k) for k in (-2, -1, 0, 1, 2))  # +-20 degrees
    peak = np.argmax(smooth) * 10 + 5.0
    # the chroma-weighted mean hue around the peak (a vector mean: hues wrap at 360)
    hw = chroma * w * (np.abs((hue - peak + 180) % 360 - 180) <= 25)
    dominant = float(np.degrees(np.arctan2((np.sin(np.radians(hue)) * hw).sum(),
                                           (np.cos(np.radians(hue)) * hw).sum())) % 360)
    off = np.abs((hue - dominant + 180) % 360 - 180)
    order = np.argsort(light, kind="stable")
    lighter = np.zeros(len(light), bool)
    lighter[order[np.cumsum(w[order]) >= w.sum() / 2]] = True
    strong = (chroma >= _TINT_CHROMA) & (off <= _TINT_HALF_WIDTH)
    share = float((w * (strong & lighter)).sum() / max((w * lighter).sum(), 1e-9))
    return {"colour": math.hypot(across, along / 3), "across": across, "along": along, "ink": ink,
            "tint_share": share, "hue": dominant, "visible": 1.0}


def monochrome(image: Image.Image, cfg: FilterConfig = FilterConfig()) -> Verdict:
    """Fails grey, sepia, duotone, screentone and line-art pictures, whatever their mode.

    The score is `colour` from `colour_stats`. One kind of monochrome has plenty of it: a
    two-ink print on tinted paper (orange paper, orange dots, navy lines), whose light tones
    are nearly all one strong hue. Once that share reaches `max_tint_share`, the score is
    capped in proportion to the untinted share left, which puts such a picture below the
    threshold; only this cap depends on the config, and the reason keeps both raw numbers.
    A saturated one-hue painting on white paper is kept: there the colour is a choice.
    """
    s = colour_stats(image)
    # What the colour counts for, given how much of the paper is left untinted: equal to the
    # threshold at max_tint_share, falling to 0 when all of the light tones are tinted.
    cap = cfg.min_colour * (1 - s["tint_share"]) / max(1 - cfg.max_tint_share, 1e-9)
    tinted = s["tint_share"] >= cfg.max_tint_share
    score = min(s["colour"], cap) if tinted else s["colour"]
    # Doubtful when either number is near its threshold (the cap is above it when not tinted).
    doubtful = abs(min(s["colour"], cap) - cfg.min_colour) <= cfg.doubtful_margin * cfg.min_colour
    raw = (f"colour at equal lightness {s['colour']:.2f} (across hues {s['across']:.2f}, within the "
           f"main hue {s['along']:.2f}, counted a third), threshold {cfg.min_colour:g}; ink strength "
           f"{s['ink']:.1f}; light tones in one strong hue {s['tint_share']:.0%} "
           f"(tinted paper from {cfg.max_tint_share:.0%})")
    if not s["visible"]:
        why = "nothing visible (fully transparent)"
    elif tinted:
        why = (f"tinted paper: {s['tint_share']:.0%} of the light tones are one strong "
               f"{next(n for top, n in _HUES if s['hue'] < top)} (a duotone print), scored {score:.2f}")
    elif score < cfg.min_colour:
        why = "one colour per lightness: grey, sepia, one-ink drawing, line art or screentone"
    else:
        why = "colour picture"
    return _verdict("monochrome", score, cfg.min_colour, f"{why}; {raw}", cfg, doubtful=doubtful)


# --- sharpness -----------------------------------------------------------------------------------
def _grey(image: Image.Image) -> np.ndarray:
    """Luminance at <= 512 px, transparent areas flattened onto mid grey (a cut-out keeps its
    silhouette as an edge)."""
    im = _prepared(image, _SHARP_SIDE)
    if im.mode in ("RGBA", "LA"):
        flat = Image.new("RGBA", im.size, (128, 128, 128, 255))
        flat.alpha_composite(im.convert("RGBA"))
        im = flat
    return np.asarray(im.convert("L"), dtype=np.float32)


def _repeat(g: np.ndarray, axis: int) -> float:
    """How many rows (axis 0) or columns (axis 1) go by, typically, before the picture changes.

    1 for any drawn or photographed picture; k for a nearest-neighbour enlargement by k, which
    repeats each row k times and so keeps its edges crisp (blur measures miss it). A row
    "changes" when it differs from the next by at least a quarter of the largest change
    nearby: JPEG noise on repeated rows stays below that. The median spacing between changing
    rows is 1 even in flat-shaded art, where changing rows come in runs along every outline.
    """
    d = (cv2.absdiff(g[1:], g[:-1]).max(axis=1) if axis == 0 else
         cv2.absdiff(g[:, 1:], g[:, :-1]).max(axis=0))
    near = np.lib.stride_tricks.sliding_window_view(np.pad(d, _REPEAT_WINDOW, mode="edge"),
                                                    2 * _REPEAT_WINDOW + 1).max(axis=1)
    changes = np.flatnonzero((near >= 2.0) & (d >= _REPEAT_FRACTION * near) & (d > 1.0))
    return float(np.median(np.diff(changes))) if len(changes) >= 5 else 1.0


def sharpness_stats(image: Image.Image) -> dict[str, float]:
    """The numbers `sharpness` decides on.

    detail: energy of the finest band (picture minus a sigma-1 blur) over the next band
    (sigma-1 minus sigma-2 blur). Flat colour contributes to neither band, so flat-shaded art
    with crisp outlines scores like any sharp picture, while blur and soft upscaling empty the
    finest band first. rows, cols: see `_repeat`; distinct = 1 / (rows x cols), the share of
    pixels a nearest-neighbour enlargement did not copy.
    cover: share of the picture (at 128 px) on a visible edge; a near-blank page has none.
    """
    g = _grey(image)
    if min(g.shape) < _SHARP_MIN_SIDE:
        return {"detail": 0.0, "distinct": 1.0, "rows": 1.0, "cols": 1.0, "cover": 0.0, "small": 1.0}
    b1 = cv2.GaussianBlur(g, (0, 0), 1.0, borderType=cv2.BORDER_REFLECT)
    b2 = cv2.GaussianBlur(g, (0, 0), 2.0, borderType=cv2.BORDER_REFLECT)
    fine, coarse = cv2.norm(g, b1, cv2.NORM_L2SQR), cv2.norm(b1, b2, cv2.NORM_L2SQR)
    detail = fine / coarse if coarse > 1e-6 else 0.0
    rows, cols = _repeat(g, 0), _repeat(g, 1)
    distinct = 1.0 / (rows * cols)
    k = _EDGE_SIDE / max(g.shape)
    s = g if k >= 1 else cv2.resize(g, (max(2, round(g.shape[1] * k)), max(2, round(g.shape[0] * k))),
                                    interpolation=cv2.INTER_AREA)
    grad = np.hypot(np.diff(s, axis=1)[:-1, :], np.diff(s, axis=0)[:, :-1])
    cover = float((grad > _EDGE_STEP).mean()) if grad.size else 0.0
    return {"detail": detail, "distinct": distinct, "rows": rows, "cols": cols, "cover": cover, "small": 0.0}


def sharpness(image: Image.Image, cfg: FilterConfig = FilterConfig()) -> Verdict:
    """Fails blurred, softly or blockily upscaled, and near-blank pictures; keeps flat-shaded art."""
    s = sharpness_stats(image)
    cover_factor = min(1.0, s["cover"] / _EDGE_FULL_COVER)
    score = min(s["detail"], _DETAIL_CAP) * s["distinct"] * cover_factor
    raw = (f"fine/coarse detail {s['detail']:.2f} (capped at {_DETAIL_CAP:g}) x distinct pixels "
           f"{s['distinct']:.2f} (rows repeat every {s['rows']:g}, columns every {s['cols']:g}) x edge "
           f"cover {cover_factor:.2f} (edges on {s['cover']:.1%} of the picture, full credit from "
           f"{_EDGE_FULL_COVER:.0%}) = {score:.2f}, threshold {cfg.min_sharpness:g}")
    if s["small"]:
        why = f"too small to judge (under {_SHARP_MIN_SIDE} px)"
    elif score >= cfg.min_sharpness:
        why = "sharp"
    elif cover_factor < 0.5:
        why = "near-blank: almost nothing is drawn"
    elif s["distinct"] < 0.5:
        why = "blocky: rows and columns repeat (a nearest-neighbour upscale)"
    else:
        why = "soft: blurred, or upscaled from a smaller picture"
    return _verdict("sharpness", score, cfg.min_sharpness, f"{why}; {raw}", cfg)


# --- face geometry -------------------------------------------------------------------------------
def face_size(face_w: int, face_h: int, cfg: FilterConfig = FilterConfig()) -> Verdict:
    side = min(face_w, face_h)
    ok = side >= cfg.min_face_side
    reason = (f"face box {face_w} x {face_h} px in the source: shorter side {side} px "
              f"{'>=' if ok else '<'} the {cfg.min_face_side} px minimum")
    return _verdict("face_size", side, cfg.min_face_side, reason, cfg)


def face_share(face_w: int, face_h: int, image_w: int, image_h: int,
               cfg: FilterConfig = FilterConfig()) -> Verdict:
    area = image_w * image_h
    share = (face_w * face_h) / area if area > 0 else 0.0
    ok = share >= cfg.min_face_share
    reason = (f"face box {face_w} x {face_h} covers {share:.2%} of the {image_w} x {image_h} picture "
              f"({'>=' if ok else '<'} {cfg.min_face_share:.2%})"
              + ("" if ok else ": a small face in a full-body picture or a scene, not a headshot"))
    return _verdict("face_share", share, cfg.min_face_share, reason, cfg)


# --- dates ---------------------------------------------------------------------------------------
def _utc(t: datetime | date) -> datetime:
    if not isinstance(t, datetime):
        t = datetime(t.year, t.month, t.day)
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t.astimezone(timezone.utc)


def _decimal_year(t: datetime) -> float:
    """2015-07-02 -> 2015.5: monotonic in time, and readable in the ledger."""
    start = datetime(t.year, 1, 1, tzinfo=timezone.utc)
    end = datetime(t.year + 1, 1, 1, tzinfo=timezone.utc)
    return t.year + (t - start) / (end - start)


def published_after(published_at: datetime | None, cfg: FilterConfig = FilterConfig()) -> Verdict:
    """Keeps items published on or after `cfg.min_published` (score and threshold in decimal years)."""
    when = _utc(published_at) if published_at is not None else None
    cutoff = _utc(cfg.min_published) if cfg.min_published is not None else None
    score = _decimal_year(when) if when is not None else math.nan
    if cutoff is None:
        return _verdict("published_after", score, -math.inf,
                        "no date filter configured (min_published is unset)", cfg, True, False)
    threshold = _decimal_year(cutoff)
    if when is None:
        keep = cfg.keep_undated
        return _verdict("published_after", score, threshold,
                        f"no date: {'kept' if keep else 'dropped'} (keep_undated={keep}); "
                        f"the cutoff is {cutoff.date().isoformat()}", cfg, keep, False)
    ok = when >= cutoff
    near = abs((when - cutoff).total_seconds()) <= cfg.doubtful_days * 86400
    reason = (f"published {when.date().isoformat()}, {'on or after' if ok else 'before'} the cutoff "
              f"{cutoff.date().isoformat()}")
    return _verdict("published_after", score, threshold, reason, cfg, ok, near)


# --- which filter runs where ---------------------------------------------------------------------
def run_image_filters(image: Image.Image, cfg: FilterConfig = FilterConfig()) -> list[Verdict]:
    """On the whole decoded picture, before detection: colour is a property of the artwork,
    and rejecting a manga page here saves detecting faces on it. Sharpness is judged on the
    crops instead, at the scale they are used (a soft 2000 px picture can give sharp crops)."""
    return [monochrome(image, cfg)]


def run_face_filters(face_w: int, face_h: int, image_w: int, image_h: int, crop: Image.Image,
                     published_at: datetime | None, cfg: FilterConfig = FilterConfig()) -> list[Verdict]:
    """On one face: its box (source pixels), the picture's size, the crop as it will be used,
    and the item's publication date. Monochrome runs again on the crop: a colour page can hold
    a grey panel or a thought bubble drawn in one ink."""
    return [
        face_size(face_w, face_h, cfg),
        face_share(face_w, face_h, image_w, image_h, cfg),
        sharpness(crop, cfg),
        monochrome(crop, cfg),
        published_after(published_at, cfg),
    ]


__all__ = ["FILTERS_VERSION", "VERSIONS", "FilterConfig", "Verdict", "colour_stats", "sharpness_stats", "monochrome",
           "sharpness", "face_size", "face_share", "published_after", "run_image_filters", "run_face_filters"]
