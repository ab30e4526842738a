"""Square face crops from detected boxes, with a stated policy at image borders, and stable ids.

Pure: a prepared RGB image and a Face in, a `size` x `size` RGB image out. The square box is
kept in source pixels (FaceCrop rows store it) so a crop can be redone at another size or
margin without detecting again.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from curation.detect import Face, to_rgb

SIZES = (64, 128, 256)
PADS = ("shift", "replicate", "white")


@dataclass(frozen=True)
class CropConfig:
    # Fraction of the face side added on each side. The anime cascade's box runs from the brow
    # to the chin (animeface boxes are mapped to that framing in detect.py), so 0.25 per side
    # (a square 1.5x the box) takes in the fringe, the ears and the chin line, keeps the face
    # about two thirds of the crop, and needs no padding: of the default detector's 71 faces
    # in ../shared/data/anime, 67 squares fit as they are and 4 are shifted inside, while at
    # 0.4 four would need padding (bench/detect_eval.py --crops).
    margin: float = 0.25
    size: int = 128
    # "shift" by default: a square that crosses a border is moved inside the image, so a crop
    # holds only real pixels and the face stays whole (the move is at most the margin). Padding
    # invents pixels, and a generator trained on padded crops learns to draw flat bars or
    # smeared edges. Where the square cannot fit (the image is narrower than the square),
    # "shift" pads what is left with replicated edge pixels: streaks are low-contrast, whereas
    # a white bar is a hard edge on every dark-background crop.
    pad: str = "shift"

    def __post_init__(self) -> None:
        if self.size not in SIZES:
            raise ValueError(f"crop size must be one of {', '.join(map(str, SIZES))} px, not {self.size!r}")
        if self.pad not in PADS:
            raise ValueError(f"pad must be one of {', '.join(PADS)}, not {self.pad!r}")
        if not 0 <= self.margin <= 2:
            raise ValueError(f"margin is a fraction of the face side per side, 0 to 2; got {self.margin!r}")

    def as_dict(self) -> dict:
        return asdict(self)


def square_box(face: Face, width: int, height: int, cfg: CropConfig = CropConfig()) -> tuple[int, int, int]:
    """(x, y, side) of the crop square in source pixels; it may cross the image's borders
    (the pad policy then decides what fills the outside)."""
    side = max(1, round(max(face.w, face.h) * (1 + 2 * cfg.margin)))
    # Integer centre arithmetic: the same face gives the same square on every platform.
    x = face.x + face.w // 2 - side // 2
    y = face.y + face.h // 2 - side // 2
    if cfg.pad == "shift":
        # Per axis, so a square wider than a narrow image still gets moved vertically.
        if side <= width:
            x = min(max(x, 0), width - side)
        if side <= height:
            y = min(max(y, 0), height - side)
    return x, y, side


def make_crop(image: Image.Image, box: tuple[int, int, int], cfg: CropConfig = CropConfig()) -> Image.Image:
    """The square `box` of `image`, padded per `cfg.pad` where it leaves the image, resized to
    cfg.size (Lanczos: antialiased when shrinking, sharp when enlarging small faces)."""
    image = to_rgb(image)
    x, y, side = box
    if side <= 0:
        raise ValueError(f"the crop square must have a positive side, got {box!r}")
    W, H = image.size
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + side, W), min(y + side, H)
    if x0 >= x1 or y0 >= y1:
        raise ValueError(f"the crop square {box!r} lies outside the {W}x{H} image")
    inside = (x0, y0, x1, y1) == (x, y, x + side, y + side)
    if inside:
        square = image.crop((x0, y0, x1, y1))
    else:
        part = np.asarray(image.crop((x0, y0, x1, y1)))
        pads = ((y0 - y, y + side - y1), (x0 - x, x + side - x1), (0, 0))
        if cfg.pad == "white":
            arr = np.pad(part, pads, mode="constant", constant_values=255)
        else:  # replicate, and what "shift" could not move inside
            arr = np.pad(part, pads, mode="edge")
        square = Image.fromarray(arr)  # uint8 H x W x 3: RGB
    if square.size != (cfg.size, cfg.size):
        square = square.resize((cfg.size, cfg.size), Image.LANCZOS)
    return square


def crop_id(image_sha256: str, box, detector_params_json: str, margin: float, size: int, *, pad: str = "shift") -> str:
    """Stable id of a crop from what determines its pixels: the source content, the face box,
    the detector parameters, the margin, the size and the border policy."""
    coords = ",".join(str(int(v)) for v in box)
    # A fixed number of decimals: the margin is stored as float32 in Parquet, and an id
    # recomputed from a row must not change with the float's last bits.
    canonical = f"headshot-crop-v1|{image_sha256}|{coords}|{detector_params_json}|{float(margin):.4f}|{int(size)}|{pad}"
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:24]
