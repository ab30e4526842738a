"""Perceptual and exact hashes: stable values (golden file), consistent preparation of every
image mode, and the hex / int round trip.

The golden file pins hashes of images drawn here and of a few ../shared/data images. After a
deliberate change (or a Pillow / imagehash bump that moved them: stored hashes of the old
version must then be recomputed, never compared) rewrite it with
    .venv/bin/python tests/curation/test_hashes.py --regen
and read the diff before committing it.
"""

from __future__ import annotations

import io
import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageOps

if __name__ == "__main__":  # run as a script for --regen: tests/ is imported from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from curation.hashes import (  # noqa: E402
    HASH_LIBRARY_VERSION, ON_BLACK, HashConfig, comparable, from_hex, hamming, hash_records, image_hash, image_hashes,
    is_transparent, sha256_of_image_pixels, to_hex,
)
from tests.conftest import shared_path  # noqa: E402

SHARED_DATA = shared_path("data")
GOLDEN = Path(__file__).resolve().parent / "golden" / "hashes.json"
SHARED_SAMPLES = [
    "anime/style2paints_ref_32.png",  # RGBA with an opaque alpha channel
    "outliers/near_duplicate/style2paints_v1_test21.jpg",
    "outliers/odd_format/danbooru_test-rotation-90cw.jpg",  # EXIF orientation 6
    "outliers/odd_format/danbooru_test-cmyk-no-profile.jpg",
    "outliers/tiny/danbooru_countergirl.png",  # really transparent
    "outliers/monochrome/danbooru_test.gif",  # palette
]
CONFIGS = [("dhash", 64), ("phash", 64), ("dhash", 256), ("phash", 256)]


def drawn_face(size: int = 256) -> Image.Image:
    """A simple cartoon face, drawn so the hash sees large shapes and strong edges."""
    im = Image.new("RGB", (size, size), (235, 240, 255))
    d = ImageDraw.Draw(im)
    s = size / 512
    d.ellipse([int(v * s) for v in (40, 20, 472, 470)], fill=(120, 70, 40))
    d.ellipse([int(v * s) for v in (120, 80, 392, 420)], fill=(255, 228, 210))
    for x in (165, 280):
        d.ellipse([int(v * s) for v in (x, 215, x + 70, 310)], fill="white", outline=(30, 30, 30), width=3)
        d.ellipse([int(v * s) for v in (x + 10, 225, x + 60, 305)], fill=(60, 90, 200))
    d.arc([int(v * s) for v in (235, 360, 277, 385)], 0, 180, fill=(120, 40, 40), width=3)
    return im


def gradient(size: int = 128) -> Image.Image:
    return Image.frombytes("RGB", (size, size), bytes(
        v for y in range(size) for x in range(size) for v in ((x * 2) % 256, (y * 2) % 256, ((x + y) * 3) % 256)))


def sprite() -> Image.Image:
    """A transparent sprite whose hidden colour (under alpha 0) is black, as exported files often are."""
    im = Image.new("RGBA", (90, 200), (0, 0, 0, 0))
    d = ImageDraw.Draw(im)
    d.ellipse((10, 10, 80, 80), fill=(250, 210, 190, 255))
    d.rectangle((20, 80, 70, 190), fill=(200, 40, 60, 255))
    return im


BUILT = {"drawn_face": drawn_face, "gradient": gradient, "sprite": sprite,
         "face_small_L": lambda: drawn_face(64).convert("L"), "face_P": lambda: drawn_face(128).convert("P")}


def open_shared(rel: str) -> Image.Image:
    """First frame, upright (EXIF), alpha kept: image_hash does the flattening."""
    with Image.open(SHARED_DATA / rel) as im:
        im.seek(0)
        return ImageOps.exif_transpose(im)


def all_hashes(image: Image.Image) -> dict[str, str]:
    out = {}
    for algorithm, bits in CONFIGS:
        for name, value in image_hashes(image, HashConfig(algorithm, bits, radius=1)).items():
            out[f"{name}/{bits}"] = to_hex(value, bits)
    return out


def compute_golden(include_shared: bool) -> dict:
    golden = {"library_version": HASH_LIBRARY_VERSION, "built": {k: all_hashes(f()) for k, f in BUILT.items()}}
    if include_shared:
        golden["shared"] = {rel: all_hashes(open_shared(rel)) for rel in SHARED_SAMPLES}
    return golden


def load_golden() -> dict:
    assert GOLDEN.exists(), f"no golden file {GOLDEN}: run this module with --regen"
    golden = json.loads(GOLDEN.read_text())
    assert golden["library_version"] == HASH_LIBRARY_VERSION, (
        f"imagehash is {HASH_LIBRARY_VERSION}, the golden hashes are from {golden['library_version']}: "
        "stored hashes and indexes must be recomputed; then rerun with --regen")
    return golden


def test_golden_built_images() -> None:
    assert compute_golden(include_shared=False)["built"] == load_golden()["built"]


def test_golden_shared_images() -> None:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"../shared/data is absent ({SHARED_DATA})")
    golden = load_golden()["shared"]
    for rel in SHARED_SAMPLES:
        assert all_hashes(open_shared(rel)) == golden[rel], rel


def test_hex_round_trip_and_width() -> None:
    for bits in (64, 256):
        for value in (0, 1, (1 << bits) - 1, 0xF0 << (bits - 8)):
            text = to_hex(value, bits)
            assert len(text) == bits // 4 and from_hex(text) == value
    with pytest.raises(ValueError):
        to_hex(1 << 64, 64)
    with pytest.raises(ValueError):
        to_hex(-1, 64)
    assert hamming(0b1011, 0b0110) == 3 and hamming(7, 7) == 0


def test_hash_is_an_int_of_the_requested_width() -> None:
    face = drawn_face()
    for algorithm, bits in CONFIGS:
        value = image_hash(face, algorithm, bits)
        assert isinstance(value, int) and 0 <= value < 1 << bits
    with pytest.raises(ValueError):
        image_hash(face, "whash", 64)
    with pytest.raises(ValueError):
        image_hash(face, "dhash", 100)


def test_every_mode_is_prepared_the_same_way() -> None:
    face = drawn_face()
    rgba_opaque = face.convert("RGBA")
    on_transparent = Image.new("RGBA", face.size, (0, 0, 0, 0))
    on_transparent.paste(face.crop((40, 40, 216, 216)), (40, 40))
    on_white = Image.new("RGB", face.size, "white")
    on_white.paste(face.crop((40, 40, 216, 216)), (40, 40))
    cmyk = face.convert("CMYK")
    for algorithm, bits in CONFIGS:
        h = image_hash(face, algorithm, bits)
        assert image_hash(rgba_opaque, algorithm, bits) == h
        assert hamming(image_hash(cmyk, algorithm, bits), h) <= bits // 32  # colour conversion rounding
        # transparency is composited on white, whatever colour hides under it
        assert image_hash(on_transparent, algorithm, bits) == image_hash(on_white, algorithm, bits)


def test_on_black_variant_only_for_real_transparency() -> None:
    cfg = HashConfig()
    assert list(image_hashes(drawn_face(), cfg)) == ["phash"]
    assert list(image_hashes(drawn_face().convert("RGBA"), cfg)) == ["phash"]  # opaque alpha is no alpha
    variants = image_hashes(sprite(), cfg)
    assert list(variants) == ["phash", "phash" + ON_BLACK]
    assert is_transparent(sprite()) and not is_transparent(drawn_face().convert("RGBA"))
    # the variant is what a re-encoder that drops alpha (black hidden under it) produces
    as_jpeg = io.BytesIO()
    sprite().convert("RGB").save(as_jpeg, "JPEG", quality=90)
    jpeg_hash = image_hash(Image.open(as_jpeg))
    assert hamming(variants["phash" + ON_BLACK], jpeg_hash) <= 2 < hamming(variants["phash"], jpeg_hash)
    assert list(image_hashes(sprite(), HashConfig(alpha_variants=False))) == ["phash"]


def test_hash_records_carry_the_library_version() -> None:
    rows = hash_records("crop-1", sprite(), HashConfig("dhash", 256, radius=20))
    assert [r.algorithm for r in rows] == ["dhash", "dhash" + ON_BLACK]
    assert all(r.hash_size == 256 and len(r.value) == 64 and r.library_version == HASH_LIBRARY_VERSION for r in rows)
    assert HashConfig().as_dict()["library_version"] == HASH_LIBRARY_VERSION
    assert comparable(rows[0], rows[1])  # a variant compares with its base algorithm
    assert not comparable(rows[0], replace(rows[0], library_version="4.0"))
    assert not comparable(rows[0], replace(rows[0], algorithm="phash"))


def _reencode(image: Image.Image, fmt: str, **kw) -> Image.Image:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return Image.open(io.BytesIO(buf.getvalue()))


def test_pixel_sha256_matches_lossless_reencodings_only() -> None:
    face = drawn_face(128)
    key = sha256_of_image_pixels(face)
    assert sha256_of_image_pixels(_reencode(face, "PNG")) == key
    assert sha256_of_image_pixels(_reencode(face, "WEBP", lossless=True)) == key
    assert sha256_of_image_pixels(_reencode(face, "BMP")) == key
    assert sha256_of_image_pixels(face.convert("RGBA")) == key
    assert sha256_of_image_pixels(_reencode(face, "JPEG", quality=95)) != key
    # the same bytes in another shape are other pixels
    flat = Image.frombytes("RGB", (4, 16), face.tobytes()[: 4 * 16 * 3])
    tall = Image.frombytes("RGB", (16, 4), face.tobytes()[: 4 * 16 * 3])
    assert sha256_of_image_pixels(flat) != sha256_of_image_pixels(tall)


def regen() -> None:
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    golden = compute_golden(include_shared=SHARED_DATA.is_dir())
    if "shared" not in golden and GOLDEN.exists():  # keep the shared part when the data is absent here
        golden["shared"] = json.loads(GOLDEN.read_text()).get("shared", {})
    GOLDEN.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")


if __name__ == "__main__":
    if sys.argv[1:] != ["--regen"]:
        sys.exit(f"usage: {sys.argv[0]} --regen")
    regen()
