"""What a crop is centred on when no face detector is asked, or none found a face: the
picture's subject, found from its foreground.

`headshot process --subject` chooses: `faces` (the face detectors only, the default for anime
sites), `whole` (one square crop per picture, for sources whose pictures are already
headshots: a DeviantArt "furry headshot" search, cartoon avatars) or `auto` (the detectors,
and where they find nothing the whole picture as a doubtful crop, so a picture no anime
detector understands still reaches a person instead of vanishing).

The subject is the foreground: the opaque pixels of a transparent picture; else the pixels
that differ from the colour of the picture's border, when that border is one flat colour (a
sticker, a commission on a plain backdrop); else, on a busy background, where the detail is.
Pure and deterministic: a prepared RGB or RGBA picture in, a Face box in its pixels out.
"""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from .detect import Face

SUBJECTS = ("faces", "whole", "auto")
# Bump on any change to where `find_subject` or `whole_square` put a crop: the version is in
# the whole crops' detector parameters, hence in their ids and in the ledger's "faces" row.
WHOLE_VERSION = "whole-v1"
WHOLE = "whole"  # the detector name of a whole-picture crop
WORK_SIDE = 256  # the subject is found on a copy this size (long side)
BORDER = 0.04  # the border strip whose colour is the backdrop's, as a fraction of each side
FLAT_BORDER = 0.6  # a border this share of one colour is a flat backdrop
DIFFERS = 40  # a pixel this far (largest channel difference) from the backdrop is foreground
TRIM = 0.005  # the subject's box holds the foreground pixels between these quantiles per axis
HEAD_ROOM = 0.05  # a subject taller than its square: the square starts this far above its top
WHOLE_MARGIN = 0.05  # the square's side over the subject's longer side, per side
FALLBACK_FILTER = "subject"  # the ledger row that makes an `auto` fallback crop doubtful
FALLBACK_REASON = ("no face detector found a face: the whole picture, centred on its subject "
                   "(--subject auto), for a person to judge")


def whole_params() -> str:
    """The detector parameters of a `--subject whole` crop (no detector runs)."""
    return json.dumps({"subject": WHOLE, "version": WHOLE_VERSION}, sort_keys=True, separators=(",", ":"))


def fallback_params(detector_params: str) -> str:
    """The detector parameters of an `auto` fallback crop: the detectors that found nothing,
    and the whole-picture rule that stood in."""
    return '{"detector":' + detector_params + ',"fallback":"' + WHOLE_VERSION + '"}'


def _foreground(image: Image.Image) -> tuple[np.ndarray, float, str]:
    """A boolean mask of the subject on the working copy, a confidence and how it was found."""
    rgba = np.asarray(image.convert("RGBA"), dtype=np.int16)
    alpha = rgba[..., 3]
    if (alpha < 128).mean() > 0.02:  # transparent: the opaque part is the subject
        return alpha >= 128, 0.9, "opaque pixels"
    rgb = rgba[..., :3]
    h, w = alpha.shape
    by, bx = max(1, round(h * BORDER)), max(1, round(w * BORDER))
    border = np.concatenate([rgb[:by].reshape(-1, 3), rgb[-by:].reshape(-1, 3),
                             rgb[:, :bx].reshape(-1, 3), rgb[:, -bx:].reshape(-1, 3)])
    backdrop = np.median(border, axis=0)
    flat = (np.abs(border - backdrop).max(axis=1) <= DIFFERS // 2).mean()
    if flat >= FLAT_BORDER:
        mask = np.abs(rgb - backdrop).max(axis=2) > DIFFERS
        if 0.01 <= mask.mean() <= 0.97:
            return mask, 0.8, "differs from the backdrop"
    # A busy background: the subject is where the detail is (drawn lines, eyes, hair): the
    # strongest quarter of the local gradients, and none weaker than a fifth of the strongest
    # (a smooth sky or a blurred backdrop has gradients everywhere, all of them weak).
    grey = rgb.mean(axis=2)
    gy, gx = np.abs(np.diff(grey, axis=0))[:, :-1], np.abs(np.diff(grey, axis=1))[:-1, :]
    energy = np.zeros_like(grey)
    energy[:-1, :-1] = gx + gy
    if energy.max() <= 0:
        return np.ones_like(alpha, dtype=bool), 0.2, "a flat picture"
    q75, q99 = np.quantile(energy, [0.75, 0.99])
    return energy >= max(q75, 0.2 * q99), 0.5, "where the detail is"


def find_subject(image: Image.Image) -> tuple[Face, str]:
    """The subject's box in the picture's pixels (detector `whole`, score its confidence) and
    how it was found."""
    width, height = image.size
    if image.mode not in ("RGB", "RGBA", "L", "LA"):
        image = image.convert("RGBA")
    scale = min(1.0, WORK_SIDE / max(width, height))
    work = image if scale == 1.0 else image.resize((max(1, round(width * scale)), max(1, round(height * scale))),
                                                   Image.BILINEAR)
    mask, confidence, how = _foreground(work)
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return Face(0, 0, width, height, 0.2, WHOLE), "the whole picture"
    x0, x1 = np.quantile(xs, [TRIM, 1 - TRIM])
    y0, y1 = np.quantile(ys, [TRIM, 1 - TRIM])
    # Back to source pixels; a box of at least one working pixel.
    x, y = int(x0 / scale), int(y0 / scale)
    w = max(1, min(width - x, int(round((x1 + 1) / scale)) - x))
    h = max(1, min(height - y, int(round((y1 + 1) / scale)) - y))
    return Face(x, y, w, h, confidence, WHOLE), how


def whole_square(face: Face, width: int, height: int) -> tuple[int, int, int]:
    """(x, y, side) of a whole-picture crop: a square a little larger than the subject, never
    larger than the picture's short side, inside the picture, centred on the subject across
    and, for a subject taller than the square (a bust, a standing figure), starting just above
    its top, where the head is."""
    side = min(width, height, max(1, round(max(face.w, face.h) * (1 + 2 * WHOLE_MARGIN))))
    x = face.x + face.w // 2 - side // 2
    if face.h > side:
        y = face.y - round(side * HEAD_ROOM)
    else:
        y = face.y + face.h // 2 - side // 2
    x = min(max(x, 0), width - side)
    y = min(max(y, 0), height - side)
    return x, y, side


def process_key(cfg) -> str:
    """The version of an image's "faces" ledger row under a ProcessConfig: the detectors' key,
    the same under `faces` and `auto` (auto reuses a faces run's detections and adds the
    fallback crops); under `whole`, the whole-picture rule's (no detector runs, so switching
    between `whole` and the detectors runs the other again; the crops of both are kept)."""
    import hashlib

    from .detect import detection_key

    if cfg.subject == WHOLE:
        return "whole:" + hashlib.sha256(whole_params().encode()).hexdigest()[:16]
    return detection_key(cfg.detector)


def subject_version(cfg) -> str:
    """The FaceCrop rows' detector_version under `whole` (no model bytes are involved)."""
    from importlib.metadata import version

    return f"{WHOLE_VERSION};pillow={version('pillow')};numpy={np.__version__}"
