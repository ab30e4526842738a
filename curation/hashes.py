"""Perceptual and exact hashes of crops, as plain Python ints.

A perceptual hash is only comparable with another made by the same algorithm, size and
library version (imagehash 4.0 changed stored values once), so every stored value carries
HASH_LIBRARY_VERSION and the HashConfig that made it.

Why the default is pHash, 64 bits, radius 8. Measured on ../shared/data (anime, outliers and
paintings: 116 images), each hashed whole and with its longer side resized to 64, 128 and
256 px, every pair of sizes compared (`python tests/curation/test_dedup.py --table`):

    config      known near-duplicate pairs (max)   closest other pair (min)
    dHash  64    0                                   4   (look-alike 3D renders, tha3_*)
    pHash  64    2                                  12
    dHash 256   12                                  33
    pHash 256    4                                  70

pHash-64 leaves 10 bits between the two sides while a hash stays one machine word, which
keeps the index small and fast; radius 8 sits in that gap (review margin 2: 6..10 goes to a
person). pHash-256 separates more on this set but swings up to 84 bits between sizes of a
288x36 strip, and its radius (~38) makes the index slow: all pairs among 100k random hashes
took 11.6 s at 256 bits / radius 38 against 1.7 s at 64 bits / radius 10.
One known pair is a transparent sprite and its JPEG, which lost the alpha onto black: hashed
on white only, it sits at 26 / 38 / 70 / 94 bits (same row order), beyond any usable radius.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

import imagehash
import numpy as np
from PIL import Image

from manifests.records import HashRecord

HASH_LIBRARY_VERSION: str = imagehash.__version__

ALGORITHMS = ("dhash", "phash")
# A transparent sprite reposted as JPEG loses its alpha channel and usually shows up on black
# (the colour most exporters leave under transparent pixels) rather than on white.
# Transparent crops are hashed on both. Compositing on black, rather than showing whatever
# colour hides under the transparent pixels, keeps the variant stable under resizing and
# blind to junk hidden there: with the hidden colours instead, the sprite pair spread to
# 0-20 bits across sizes (pHash-256) and two different tha3 renders came to 8 (pHash-64).
ON_BLACK = "+on_black"
_TRANSPARENT_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


@dataclass(frozen=True)
class HashConfig:
    """How crops are hashed and how close two hashes must be to count as duplicates.

    radius: the largest Hamming distance grouped as a near-duplicate.
    review_margin: pairs within radius +- margin go to the review queue as borderline.
    alpha_variants: also hash really transparent images composited on black.
    """

    algorithm: str = "phash"
    bits: int = 64
    radius: int = 8
    review_margin: int = 2
    alpha_variants: bool = True

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"HashConfig.algorithm {self.algorithm!r} is not one of {ALGORITHMS}")
        _side(self.bits)
        if not 0 <= self.radius < self.bits or self.review_margin < 0:
            raise ValueError(f"HashConfig radius {self.radius} / margin {self.review_margin} out of range")

    @property
    def search_radius(self) -> int:
        """How far the index must search to see every grouped and borderline pair."""
        return self.radius + self.review_margin

    def as_dict(self) -> dict:
        """What goes into every output's metadata, with the version the values came from."""
        return {**asdict(self), "library_version": HASH_LIBRARY_VERSION}


def _side(bits: int) -> int:
    side = int(round(bits**0.5))
    if side * side != bits or side < 2 or bits % 64:
        raise ValueError(f"bits must be a square multiple of 64 (64, 256, 1024), got {bits}")
    return side


def _flatten(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """RGB pixels as a person sees them: alpha composited on `background`."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        # 16-bit and float greyscale: scale to 8 bits rather than let convert() clip at 255.
        a = np.asarray(image, dtype=np.float64)
        top = 65535.0 if a.max(initial=0) > 255 else 255.0
        image = Image.fromarray(np.clip(a * (255.0 / top), 0, 255).astype(np.uint8), "L")
    if image.mode == "P" or (image.mode in ("L", "RGB") and "transparency" in image.info):
        image = image.convert("RGBA")
    if image.mode not in _TRANSPARENT_MODES:
        return image.convert("RGB")
    rgba = image.convert("RGBA")
    canvas = Image.new("RGB", rgba.size, background)
    canvas.paste(rgba, mask=rgba.getchannel("A"))
    return canvas


def is_transparent(image: Image.Image) -> bool:
    """Real transparency: an alpha channel that is fully opaque does not count."""
    if not image.has_transparency_data:
        return False
    alpha = image.getchannel("A") if image.mode in _TRANSPARENT_MODES else image.convert("RGBA").getchannel("A")
    return alpha.getextrema()[0] < 255


def _bits_to_int(bools: np.ndarray) -> int:
    # Row-major, first bit most significant: the same order as imagehash's hex strings.
    return int.from_bytes(np.packbits(bools.ravel()).tobytes(), "big")


def _hash_grey(grey: Image.Image, algorithm: str, bits: int) -> int:
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown hash algorithm {algorithm!r}; use one of {ALGORITHMS}")
    fn = imagehash.dhash if algorithm == "dhash" else imagehash.phash
    return _bits_to_int(fn(grey, hash_size=_side(bits)).hash)


def image_hash(image: Image.Image, algorithm: str = "phash", bits: int = 64) -> int:
    """The perceptual hash of `image` as an int of `bits` bits. Alpha is flattened on white
    first, then RGB -> L, so every mode (P, LA, CMYK, 16-bit) is prepared the same way.
    Orientation is the caller's: pass the image after ImageOps.exif_transpose."""
    return _hash_grey(_flatten(image, (255, 255, 255)).convert("L"), algorithm, bits)


def image_hashes(image: Image.Image, cfg: HashConfig = HashConfig()) -> dict[str, int]:
    """Every hash a crop is indexed under: {algorithm name: value}. Really transparent images
    get a second value, composited on black, named `<algorithm>+on_black`."""
    out = {cfg.algorithm: image_hash(image, cfg.algorithm, cfg.bits)}
    if cfg.alpha_variants and is_transparent(image):
        grey = _flatten(image, (0, 0, 0)).convert("L")
        out[cfg.algorithm + ON_BLACK] = _hash_grey(grey, cfg.algorithm, cfg.bits)
    return out


def hash_records(crop_id: str, image: Image.Image, cfg: HashConfig = HashConfig()) -> list[HashRecord]:
    """HashRecord rows for one crop, one per variant."""
    return [
        HashRecord(crop_id=crop_id, algorithm=name, hash_size=cfg.bits, value=to_hex(value, cfg.bits),
                   library_version=HASH_LIBRARY_VERSION)
        for name, value in image_hashes(image, cfg).items()
    ]


def comparable(a: HashRecord, b: HashRecord) -> bool:
    """Same base algorithm, size and library version: the only hashes worth comparing."""
    return (a.algorithm.split("+")[0] == b.algorithm.split("+")[0] and a.hash_size == b.hash_size
            and a.library_version == b.library_version)


def to_hex(value: int, bits: int) -> str:
    """Fixed-width lower-case hex, so equal hashes are equal strings."""
    if value < 0 or value >> bits:
        raise ValueError(f"{value:#x} does not fit in {bits} bits")
    return f"{value:0{bits // 4}x}"


def from_hex(text: str) -> int:
    return int(text, 16)


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def sha256_of_image_pixels(image: Image.Image) -> str:
    """Exact-duplicate key: the decoded pixels (alpha flattened on white) and the size, so a
    PNG and a lossless WebP of the same pixels match while the file bytes differ."""
    rgb = _flatten(image, (255, 255, 255))
    digest = hashlib.sha256(f"{rgb.width}x{rgb.height}:".encode())
    digest.update(rgb.tobytes())
    return digest.hexdigest()


__all__ = [
    "HASH_LIBRARY_VERSION", "ALGORITHMS", "ON_BLACK", "HashConfig", "image_hash", "image_hashes",
    "hash_records", "comparable", "is_transparent", "to_hex", "from_hex", "hamming", "sha256_of_image_pixels",
]
