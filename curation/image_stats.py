"""What the filters measure in pixels: colour at equal lightness (`colour_stats`) and detail,
distinct rows and edge cover (`sharpness_stats`). The constants here define what a score
means, so changing one is a change of a filter's version, never of its config; the verdicts
built on these numbers are in filters.py."""

from __future__ import annotations

import math

import cv2
import numpy as np
from PIL import Image

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
