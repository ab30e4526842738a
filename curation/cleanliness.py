"""How clean a copy of a picture is, for choosing the keeper of a near-duplicate group: marks
drawn over the art (a detector's boxes, landmark dots, a red circle around a face) and how hard
the file was compressed. Two copies of one artwork differ in these far more than in anything
a bigger size buys, so the keeper policy's `clean` criterion asks them first.

Pure functions; the process stage measures only the members of groups with more than one crop.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter

# A marked copy: this share of its face box (at the picture's own resolution) or more is thin
# lines of a pure colour. Measured on every face the default settings find in ../shared/data:
# the 17 faces of anime/lbpcascade_figure_imas.png, boxes drawn over each, are at 1.9-15.6%;
# every clean face is under 0.6% (saturated thin strokes exist, in ribbons and eyes, but rarely
# in a pure primary colour at full strength), 86 of those 88 under 0.1%.
MARKED = 0.01
# A heavily compressed copy: a JPEG whose mean luma quantiser, at the crop's scale, is above this
# (Pillow's tables: 1 at quality 100, 12 at 90, 29 at 75, 45 at about 60, 58 at 50, 96 at 30):
# 8x8 blocks and ringing show in the crop. Lossless files are 0. At the crop's scale: a face
# shrunk by k to its crop size shrinks its artefacts by k too, so a big, somewhat compressed
# copy still beats a small clean one (../shared/data's 1280 x 800 JPEG at quantiser 23, face
# 201 px, over its 480 x 300 PNG, face 77 px).
COMPRESSED = 45.0


def at_crop_scale(quantiser: float, face_side: int, crop_size: int) -> float:
    """A JPEG quantiser as it shows in a crop of `crop_size` px from a face `face_side` px wide."""
    return quantiser / max(1.0, face_side / max(1, crop_size))


def drawn_marks(crop: Image.Image) -> float:
    """The share of the crop's pixels that are thin strokes (at most ~3 px wide) of a pure,
    fully saturated colour: red, green, blue, yellow, cyan or magenta at full strength, as
    tools draw boxes and landmarks."""
    rgb = np.asarray(crop.convert("RGB"), dtype=np.int16)
    hi, lo = rgb.max(axis=2), rgb.min(axis=2)
    # Each channel near 0 or near 255, at least one of each: a pure primary or secondary colour.
    near = (rgb <= 60) | (rgb >= 200)
    pure = near.all(axis=2) & (hi >= 200) & (lo <= 60)
    if not pure.any():
        return 0.0
    mask = Image.fromarray((pure * 255).astype(np.uint8))
    # An opening (erode then dilate) by 5 px keeps solid areas of the colour and loses lines.
    solid = np.asarray(mask.filter(ImageFilter.MinFilter(5)).filter(ImageFilter.MaxFilter(5))) > 0
    return float((pure & ~solid).mean())


def marks_in(picture: Image.Image, box: tuple[int, int, int, int], limit: int = 1024) -> float:
    """drawn_marks of the face box (x, y, w, h) of a picture at its own resolution (a crop's
    resize to 128 px blurs a 3 px line into grey), shrunk by whole pixels past `limit`."""
    x, y, w, h = box
    region = picture.crop((max(0, x), max(0, y), min(picture.width, x + w), min(picture.height, y + h)))
    step = -(-max(region.size) // limit)
    if step > 1:  # every step-th pixel: a mark keeps its pure colour, as an average would not
        region = region.resize((max(1, region.width // step), max(1, region.height // step)), Image.NEAREST)
    return drawn_marks(region)


def compression(data: bytes) -> float:
    """How hard the file was compressed: the mean of a JPEG's luma quantisation table (1 at
    quality 100, 12 at 90, 58 at 50), 0 for a lossless or unknown file. Reads the header only."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            tables = getattr(im, "quantization", None)
            if im.format != "JPEG" or not tables:
                return 0.0
            luma = tables.get(0) or next(iter(tables.values()))
            return float(np.mean(list(luma)))
    except Exception:  # an unreadable header says nothing about compression
        return 0.0


def describe(marks: float, compressed: float) -> str:
    """The facts `clean` compares, in words, for the ledger."""
    parts = [f"drawn-on marks {marks:.1%} of the crop" if marks >= MARKED else "no drawn-on marks"]
    parts.append(f"JPEG quantiser {compressed:.0f}" + (" (heavily compressed)" if compressed > COMPRESSED else "")
                 if compressed else "not lossy-compressed")
    return ", ".join(parts)
