"""Hair and eye colour of a face crop, as named colours with a confidence.

A crop of `headshot process` is the face's box with a margin around it (curation.crop: 0.25
of the box per side by default), so the face sits in the middle two thirds, the eyes a little
above its centre, and the hair frames it at the top and the sides. Each pixel of the crop (at
64 px) is named by its colour in CIE L*C*h (lightness, chroma, hue: nearly what a person sees,
unlike RGB); skin is the colour of the cheeks, found in the crop itself. Then:

- hair: the commonest name among the non-skin pixels of a band over the forehead and two
  bands beside the face;
- eyes: the commonest name among the coloured, non-skin pixels of the eye band, each weighed
  by its chroma (irises are the most saturated thing there; lines and pupils are dark, the
  whites light, and both are left out); an eye band with next to no colour says black or grey.

The confidence is the winning name's share of what was counted (0.3 means the region was
mixed). Names: HAIR_NAMES and EYE_NAMES.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

COLOURS_VERSION = "colours-v1"
HAIR_NAMES = ("black", "grey", "white", "brown", "red", "orange", "blonde", "green", "aqua", "blue", "purple", "pink")
EYE_NAMES = ("black", "grey", "brown", "red", "orange", "yellow", "green", "aqua", "blue", "purple", "pink")
_SIDE = 64
_SKIN_DE = 16.0  # a pixel this close (Lab distance) to the cheeks' colour is skin


@dataclass(frozen=True)
class ColourEstimate:
    name: str
    confidence: float  # the winning name's share of the counted pixels, 0-1
    rgb: tuple[int, int, int]  # the median colour of the pixels that had the winning name

    def as_dict(self) -> dict:
        return {"name": self.name, "confidence": round(self.confidence, 3), "rgb": list(self.rgb)}


def _lch(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    lab = cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    L, a, b = lab[..., 0], lab[..., 1], lab[..., 2]
    return lab, L, np.hypot(a, b), np.degrees(np.arctan2(b, a)) % 360.0


def colour_names(L: np.ndarray, C: np.ndarray, h: np.ndarray) -> np.ndarray:
    """One name per pixel (an array of strings): achromatic by lightness, the rest by hue, with
    brown for dark warm hues and pink for light reds."""
    out = np.full(L.shape, "grey", dtype=object)
    grey = (C < 10) | ((C < 14) & (L > 85)) | ((C < 22) & (L > 84)) | (L < 22)
    out[grey & (L < 40)] = "black"
    out[grey & (L > 78)] = "white"
    hue = ~grey
    warm_red = (h >= 345) | (h < 45)
    out[hue & warm_red] = "red"
    out[hue & warm_red & (L > 62) & (C < 50)] = "pink"
    out[hue & (h >= 345) & (L > 55)] = "pink"
    out[hue & (h >= 45) & (h < 72)] = "orange"
    out[hue & (h >= 72) & (h < 110)] = "yellow"
    out[hue & (h >= 25) & (h < 110) & (L < 48) & (C < 55)] = "brown"
    out[hue & (h >= 45) & (h < 72) & (C < 40)] = "brown"
    out[hue & (h >= 110) & (h < 170)] = "green"
    out[hue & (h >= 170) & (h < 235)] = "aqua"
    out[hue & (h >= 235) & (h < 300)] = "blue"
    out[hue & (h >= 300) & (h < 345)] = "purple"
    return out


def _winner(names: np.ndarray, weights: np.ndarray, rgb: np.ndarray) -> ColourEstimate | None:
    if names.size == 0 or float(weights.sum()) <= 0:
        return None
    tally: dict[str, float] = {}
    for n, w in zip(names.tolist(), weights.tolist()):
        tally[n] = tally.get(n, 0.0) + w
    name = max(tally, key=lambda k: (tally[k], k))
    sel = names == name
    med = np.median(rgb[sel].reshape(-1, 3), axis=0)
    return ColourEstimate(name, tally[name] / float(weights.sum()), tuple(int(v) for v in med))


def _skin_face(skin: np.ndarray, cheeks: np.ndarray) -> np.ndarray | None:
    """The face: the connected patch of skin that covers most of the cheeks' window (a light
    background of the same colour is another patch, unless it touches the face), or None when
    there is too little skin to find one."""
    count, labels = cv2.connectedComponents(skin.astype(np.uint8), connectivity=4)
    if count < 2:
        return None
    inside = np.bincount(labels[cheeks & skin], minlength=count)
    inside[0] = 0
    best = int(inside.argmax())
    face = labels == best
    if inside[best] < 0.25 * cheeks.sum() or face.sum() < 0.03 * skin.size:
        return None
    return face


def estimate_colours(image: Image.Image | np.ndarray) -> dict[str, ColourEstimate]:
    """{"hair": ..., "eyes": ...} of a face crop (RGB). A region with nothing to count (a crop
    with no skin to find the face by, say) is left out of the result."""
    arr = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.size == 0:
        raise ValueError(f"expected an RGB picture, got an array of shape {arr.shape}")
    rgb = cv2.resize(arr, (_SIDE, _SIDE), interpolation=cv2.INTER_AREA)
    lab, L, C, h = _lch(rgb)
    names = colour_names(L, C, h)
    n = _SIDE
    ys, xs = np.mgrid[0:n, 0:n] / (n - 1)
    cheeks = (ys > 0.5) & (ys < 0.7) & (xs > 0.35) & (xs < 0.65)
    skin_lab = np.median(lab[cheeks].reshape(-1, 3), axis=0)
    skin = np.linalg.norm(lab - skin_lab, axis=2) < _SKIN_DE
    face = _skin_face(skin, cheeks)
    out: dict[str, ColourEstimate] = {}
    if face is None:
        return out
    rows = np.flatnonzero(face.any(axis=1))
    top, bottom = int(rows[0]), int(rows[-1])
    height = bottom - top + 1

    # Hair: the ring just outside the face, above its lower third (below that: neck, collar).
    ring_px = max(2, round(0.07 * n))
    grown = cv2.dilate(face.astype(np.uint8), np.ones((2 * ring_px + 1, 2 * ring_px + 1), np.uint8)) > 0
    ring = grown & ~skin & (np.arange(n)[:, None] < top + 0.67 * height)
    est = _winner(names[ring], np.ones(int(ring.sum())), rgb[ring])
    if est is not None:
        out["hair"] = ColourEstimate("blonde" if est.name == "yellow" else est.name, est.confidence, est.rgb)

    # Eyes: what the face's skin encloses (eyes, brows, mouth: holes in it) in its upper part.
    contours, _ = cv2.findContours(face.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    filled = np.zeros((n, n), np.uint8)
    cv2.drawContours(filled, contours, -1, 1, thickness=cv2.FILLED)
    r = np.arange(n)[:, None]
    holes = (filled > 0) & ~skin & (r >= top + 0.05 * height) & (r < top + 0.55 * height)
    coloured = holes & (C >= 15) & (L >= 15) & (L <= 82)
    if coloured.sum() < 4:
        # Eyes that touch the hair or the face's edge are no holes: the face's upper rows
        # across its width instead, less whatever has the hair's colour.
        cols = np.flatnonzero(face.any(axis=0))
        c = np.arange(n)[None, :]
        across = (c >= cols[0]) & (c <= cols[-1]) & (r >= top + 0.05 * height) & (r < top + 0.55 * height) & ~skin
        if "hair" in out:
            hair_lab = cv2.cvtColor(np.array([[out["hair"].rgb]], np.float32) / 255.0, cv2.COLOR_RGB2Lab)[0, 0]
            across &= np.linalg.norm(lab - hair_lab, axis=2) > _SKIN_DE
        holes = across
        coloured = holes & (C >= 15) & (L >= 15) & (L <= 82)
    if coloured.sum() >= 4:
        est = _winner(names[coloured], C[coloured] ** 2, rgb[coloured])
    else:
        dark = holes & (L < 60)
        est = _winner(np.where(L[dark] < 30, "black", "grey").astype(object), np.ones(int(dark.sum())), rgb[dark])
    if est is not None:
        out["eyes"] = ColourEstimate("yellow" if est.name == "blonde" else est.name, est.confidence, est.rgb)
    return out
