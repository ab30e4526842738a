"""photo: fails photographs (someone's dog, a real person) among drawn art, by how crisp its edges are."""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from ..image_stats import _prepared
from .base import IMAGE, Filter, Score, Subject, Verdict, register
from .config import FilterConfig

# Measurement constants (they define what the score means: changing one is a new version).
_BASE_SIDE = 512  # one copy at this size first, each scale from it (box-averaged: no ringing)
_PHOTO_SIDES = (256, 224, 192, 160, 128)  # scales the crispness is averaged over (see `edge_crispness`)
_EDGE_WINDOW = 5  # px: an edge is judged over this many pixels across it
_EDGE_CONTRAST = 80.0  # grey levels (0-255) a window must span to count as a strong edge
_EDGE_QUANTILE = 25  # percentile of the strong edges' crispness that is kept: the softer ones
_MIN_EDGES = 50  # fewer strong edges than this (all scales together): nothing to judge by
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def _crispness(grey: np.ndarray, axis: int) -> np.ndarray:
    """For every window of `_EDGE_WINDOW` pixels along `axis` that spans a strong edge: its
    largest one-pixel step over the contrast it spans (1 = all of it in one pixel)."""
    g = grey if axis == 1 else np.ascontiguousarray(grey.T)
    if g.shape[1] < _EDGE_WINDOW + 1:
        return np.empty(0, np.float32)
    line = np.ones((1, _EDGE_WINDOW), np.uint8)
    span = (cv2.dilate(g, line) - cv2.erode(g, line))[:, :-1]
    step = cv2.dilate(np.abs(np.diff(g, axis=1)), np.ones((1, _EDGE_WINDOW - 1), np.uint8))
    strong = span >= _EDGE_CONTRAST
    return step[strong] / span[strong]


def edge_crispness(image: Image.Image) -> dict[str, float]:
    """How much of a strong edge's contrast is taken in its steepest pixel, at <= 256 px.

    A drawn outline or a flat colour boundary changes in one pixel at any scale a picture is
    shown at; a photograph's edges are spread by the lens, focus, motion and the subject itself
    (fur, hair, skin), so even shrunk to 128-256 px its strongest edges take two pixels or more.
    Per scale, the lower quartile over the strong edges (a drawing's softest edges are still
    crisper than most of a photo's); averaged over five scales from 256 to 128 px so that no
    one resampling grid decides. Measured on ../shared/data (bench/filter_eval.py): photos
    0.41-0.52, drawn art 0.46 (The Scream) and 0.50 up (a painting, an anime painting, 3D-film
    frames), flat-shaded art 0.6 up.
    """
    im = _prepared(image, _BASE_SIDE)
    if im.mode in ("RGBA", "LA"):
        flat = Image.new("RGBA", im.size, (255, 255, 255, 255))
        flat.alpha_composite(im.convert("RGBA"))
        im = flat
    grey = Image.fromarray(np.asarray(im.convert("RGB"), dtype=np.float32) @ _LUMA)  # mode "F": no rounding
    per_scale, edges = [], 0
    for side in _PHOTO_SIDES:
        k = side / max(grey.size)
        small = grey if k >= 1 else grey.resize((max(2, round(grey.width * k)), max(2, round(grey.height * k))),
                                                Image.BOX)
        g = np.asarray(small, dtype=np.float32)
        r = np.concatenate([_crispness(g, 1), _crispness(g, 0)])
        edges += len(r)
        if len(r):
            per_scale.append(float(np.percentile(r, _EDGE_QUANTILE)))
        if k >= 1:
            break  # a small picture is measured once, at its own size
    if edges < _MIN_EDGES:
        return {"crispness": 1.0, "edges": float(edges), "scales": float(len(per_scale)), "judged": 0.0}
    return {"crispness": float(np.mean(per_scale)), "edges": float(edges), "scales": float(len(per_scale)),
            "judged": 1.0}


@register
class Photo(Filter):
    """Higher passes: the crispness of the picture's edges (`edge_crispness`). A photograph
    fails; a picture with too few strong edges to judge passes, saying so.

    It judges the whole picture, before detection: whether a picture was photographed or
    drawn is a property of the picture, and a face crop is too small to tell. Paintings with
    loose brushwork and frames of 3D films lie close to photos: the doubt band sends those
    within `photo_doubt` of the threshold to review first.
    """

    name = "photo"
    version = "1"
    reads = ("min_edge_crispness", "photo_doubt")
    judges = (IMAGE,)
    order = 50

    def score(self, subject: Subject) -> Score:
        s = edge_crispness(subject.pixels)
        return Score(s["crispness"], s)

    def judge(self, score: Score, cfg: FilterConfig) -> Verdict:
        s, t = score.facts, cfg.min_edge_crispness
        passed = score.value >= t
        doubtful = bool(s["judged"]) and abs(score.value - t) <= cfg.photo_doubt
        raw = (f"edge crispness {score.value:.3f} (share of a strong edge's contrast in its steepest pixel, "
               f"lower quartile of {s['edges']:.0f} edges over {s['scales']:.0f} scales), "
               f"threshold {t:g}, doubtful within {cfg.photo_doubt:g}")
        if not s["judged"]:
            why = f"too few strong edges to judge ({s['edges']:.0f} < {_MIN_EDGES})"
        elif passed:
            why = "drawn: crisp edges"
        else:
            why = "a photograph: soft edges, as a lens draws them"
        return self.verdict(score.value, t, passed, f"{why}; {raw}", doubtful)


def photo(image: Image.Image, cfg: FilterConfig = FilterConfig()) -> Verdict:
    return Photo()(Subject.of_image(image), cfg)
