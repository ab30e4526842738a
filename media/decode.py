"""Decode and validate bytes: what format they really are, and whether they are usable art;
and decode them once more, upright and flattened, for the pixel stages (`prepare`).

Pure: bytes in, an `Inspection` out. Nothing here trusts a file name or a content type.
Every failure becomes a status the user can act on and a reason written for a person.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageCms, ImageFile, ImageOps, UnidentifiedImageError

# Formats a dataset can use. Pillow identifies more (PSD, EPS, ...) and those are reported as
# unsupported rather than half-decoded.
SUPPORTED = {
    "JPEG": "jpg", "MPO": "jpg", "PNG": "png", "APNG": "png", "GIF": "gif", "WEBP": "webp",
    "AVIF": "avif", "BMP": "bmp", "TIFF": "tif", "JPEG2000": "jp2", "TGA": "tga", "PPM": "ppm",
}
_ORIENTATION = 0x0112
_SWAPS_AXES = {5, 6, 7, 8}


@dataclass(frozen=True)
class DecodeConfig:
    min_side: int = 40  # px after orientation: a 24 px face (the detectors' minimum) plus a margin
    max_pixels: int = 100_000_000  # width x height; past it, a decompression bomb or unusable
    max_bytes: int = 64 * 1024 * 1024

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Inspection:
    status: str
    reason: str = ""
    format: str = ""
    ext: str = ""
    width: int = 0
    height: int = 0
    mode: str = ""
    frames: int = 0
    transparent: bool = False

    @property
    def keep_bytes(self) -> bool:
        """Keep originals that decode, even too small ones: a later, looser setting may use them."""
        return self.status in ("ok", "too_small")


def describe_non_image(data: bytes) -> tuple[str, str]:
    """(status, reason) for bytes that no image decoder recognised."""
    head = data[:2048]
    low = head.lstrip().lower()
    if low.startswith(b"<!doctype html") or b"<html" in low[:1024] or b"<head" in low[:1024]:
        return "not_image", "an HTML page, not an image (a web page saved under an image name, or an error/login page)"
    if b"<svg" in low:
        return "unsupported", "an SVG vector drawing; only raster images are supported"
    if low.startswith(b"<?xml"):
        return "not_image", "an XML document, not an image"
    if head.startswith(b"%PDF"):
        return "not_image", "a PDF document, not an image"
    if head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"mif1", b"msf1", b"hevc"):
        return "unsupported", "a HEIC/HEIF image; convert it to JPEG, PNG, WebP or AVIF first"
    if head.startswith(b"\xff\x0a") or head.startswith(b"\x00\x00\x00\x0cJXL "):
        return "unsupported", "a JPEG XL image; convert it to JPEG, PNG, WebP or AVIF first"
    if low[:1] in (b"{", b"["):
        return "not_image", "a JSON document, not an image"
    try:
        text = head.decode("utf-8")
        if sum(c.isprintable() or c.isspace() for c in text) >= 0.95 * len(text):
            return "not_image", "a text file, not an image"
    except UnicodeDecodeError:
        pass
    return "not_image", f"not any known image format (first bytes: {head[:8].hex(' ')})"


def _really_transparent(im: Image.Image) -> bool:
    """RGBA alone does not mean transparent: many PNGs carry a fully opaque alpha channel."""
    if not im.has_transparency_data:
        return False
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        alpha = im.getchannel("A")
    else:
        alpha = im.convert("RGBA").getchannel("A")
    return alpha.getextrema()[0] < 255


def inspect_image(data: bytes, cfg: DecodeConfig = DecodeConfig()) -> Inspection:
    """Decode `data` once and say what it is. Never raises for bad input."""
    if len(data) == 0:
        return Inspection("empty", "the file is empty (0 bytes)")
    if len(data) > cfg.max_bytes:
        return Inspection("too_large", f"{len(data):,} bytes is over the {cfg.max_bytes:,}-byte cap")
    try:
        return _inspect(data, cfg)
    except Exception as exc:  # a decoder bug must cost one row, not the run
        return Inspection("corrupt", f"the decoder failed: {type(exc).__name__}: {exc}")


def _inspect(data: bytes, cfg: DecodeConfig) -> Inspection:
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the cap below decides
        try:
            im = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as exc:
            return Inspection("too_large", f"decompression bomb: {exc}")
        except UnidentifiedImageError:
            status, reason = describe_non_image(data)
            return Inspection(status, reason)
        except (OSError, SyntaxError, ValueError) as exc:
            return Inspection("corrupt", f"the header cannot be read: {exc}")
    with im:
        fmt = im.format or ""
        frames = int(getattr(im, "n_frames", 1) or 1)
        if fmt == "PNG" and frames > 1:
            fmt = "APNG"
        width, height = im.size
        if fmt not in SUPPORTED:
            return Inspection("unsupported", f"{fmt or 'this'} images are not supported "
                              f"(supported: JPEG, PNG, GIF, WebP, AVIF, BMP, TIFF)", format=fmt,
                              width=width, height=height, mode=im.mode, frames=frames)
        pixels = width * height
        if pixels > cfg.max_pixels:
            return Inspection("too_large", f"{width} x {height} = {pixels:,} pixels is over the cap of "
                              f"{cfg.max_pixels:,} (a decompression bomb, or far larger than a face crop needs)",
                              format=fmt, ext=SUPPORTED[fmt], width=width, height=height, mode=im.mode, frames=frames)
        mode = im.mode
        try:
            if fmt == "JPEG":
                # Validation needs the whole stream parsed, not full-size pixels: DCT scaling
                # reads every byte (truncation still fails) at a fraction of the IDCT work.
                im.draft(mode, (max(1, width // 8), max(1, height // 8)))
            im.load()
            transparent = _really_transparent(im)
            orientation = im.getexif().get(_ORIENTATION, 1)
            if frames > 1:
                im.seek(frames - 1)  # a truncated animation fails on its last frame, not its first
                im.load()
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            msg = str(exc)
            what = "the image data is truncated" if "truncat" in msg.lower() else "the image data is damaged"
            return Inspection("corrupt", f"{what} ({msg})", format=fmt, ext=SUPPORTED[fmt],
                              width=width, height=height, mode=mode, frames=frames)
    if orientation in _SWAPS_AXES:
        width, height = height, width
    common = dict(format=fmt, ext=SUPPORTED[fmt], width=width, height=height, mode=mode,
                  frames=frames, transparent=transparent)
    if min(width, height) < cfg.min_side:
        return Inspection("too_small", f"{width} x {height} is smaller than the {cfg.min_side} px "
                          "minimum side a face crop needs", **common)
    return Inspection("ok", "", **common)


# --- decoding for the pixel stages (detection, crops, filters, hashes) ---------------------------

_SRGB = None


def _to_srgb(im: Image.Image) -> Image.Image:
    """Apply an embedded ICC profile (ProPhoto art looks washed out without it); a profile
    littlecms cannot use is ignored rather than failing the image."""
    global _SRGB
    icc = im.info.get("icc_profile")
    if not icc or im.mode not in ("RGB", "RGBA", "CMYK", "L", "LA"):
        return im
    try:
        if _SRGB is None:
            _SRGB = ImageCms.createProfile("sRGB")
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        out_mode = "RGBA" if "A" in im.mode else "RGB"
        return ImageCms.profileToProfile(im, src, _SRGB, outputMode=out_mode)
    except Exception:  # a broken or exotic profile: the pixels as stored beat no image
        return im


def to_rgb(im: Image.Image) -> Image.Image:
    """RGB with any transparency (alpha or palette) flattened onto white."""
    if im.mode == "RGB":
        return im
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # convert("L") clips 16-bit values at 255 instead of scaling them.
        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or arr.max() > 255 else 255.0
        im = Image.fromarray(np.clip(arr * (255.0 / top), 0, 255).astype(np.uint8))  # 2-D uint8: L
    if im.has_transparency_data:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")


_ORIENTATION = 0x0112  # the EXIF tag


def decode_upright(data: bytes) -> Image.Image:
    """The picture as stored, decoded once: first frame, upright (EXIF), its mode, alpha and
    ICC profile kept. prepare_from() and with_alpha() derive what each stage reads from it."""
    # Not `with`: closing would free the pixels. The bytes are in memory, so nothing leaks.
    im = Image.open(io.BytesIO(data))
    im.seek(0)
    im.load()
    if im.getexif().get(_ORIENTATION, 1) in (1, None) or not 1 <= im.getexif().get(_ORIENTATION, 1) <= 8:
        return im  # already upright: no copy (a 9000 x 9000 copy alone costs 0.8 s)
    upright = ImageOps.exif_transpose(im)
    upright.info.setdefault("icc_profile", im.info.get("icc_profile"))
    return upright


def prepare_from(upright: Image.Image) -> Image.Image:
    """What every detector and crop sees: sRGB, transparency flattened onto white, RGB."""
    return to_rgb(_to_srgb(upright))


def prepare(data: bytes) -> Image.Image:
    """Decode bytes the way every detector and crop sees them: first frame, upright (EXIF),
    sRGB, transparency flattened onto white, RGB."""
    return prepare_from(decode_upright(data))


def with_alpha(upright: Image.Image) -> Image.Image:
    """RGB, or RGBA where there is transparency data (hashes see a sprite on white and on black)."""
    if upright.has_transparency_data:
        return upright if upright.mode == "RGBA" else upright.convert("RGBA")
    return upright if upright.mode == "RGB" else upright.convert("RGB")


def bounded(im: Image.Image, side: int) -> Image.Image:
    """`im` itself when its longer side is <= `side`, else a copy shrunk to it. Judging a picture
    at a bounded working size keeps a 9000 x 9000 one from costing what a hundred do."""
    w, h = im.size
    if not side or max(w, h) <= side:
        return im
    if im.mode in ("1", "P"):
        im = with_alpha(im)  # palette pixels would be resized by nearest neighbour
    k = side / max(w, h)
    # reducing_gap 1: a fast integer box reduction first, Lanczos only over what is left.
    return im.resize((max(1, round(w * k)), max(1, round(h * k))), Image.LANCZOS, reducing_gap=1.0)
