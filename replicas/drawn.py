"""Artwork and bad inputs made in code, for the demo, the tests and the benchmarks.

No artwork is committed: the faces here are drawn with Pillow from a fixed recipe (a face
that the animeface detector finds with likelihood 1.0 at 512 px, per ../shared/STACK.md),
varied by a seed so that every image is distinct content.
"""

from __future__ import annotations

import io
import random
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

HAIR = [(120, 70, 40), (30, 30, 40), (230, 200, 120), (200, 60, 90), (80, 120, 200), (240, 240, 245), (90, 160, 90)]
IRIS = [(60, 90, 200), (40, 140, 60), (170, 40, 60), (120, 60, 160), (200, 140, 30)]
SKIN = [(255, 228, 210), (250, 215, 190), (240, 200, 175)]
# What a person would call HAIR's and IRIS's colours (curation.colours' names).
HAIR_NAMES = ["brown", "black", "blonde", "red", "blue", "white", "green"]
IRIS_NAMES = ["blue", "green", "red", "purple", "yellow"]


def face_colours(seed: int) -> tuple[str, str]:
    """(hair, eyes) named, of `draw_face(seed)` (and of `draw_character(seed)`)."""
    rng = random.Random(seed)
    for _ in range(3):  # the background's three channels come first
        rng.randint(200, 255)
    hair, iris = rng.choice(range(len(HAIR))), rng.choice(range(len(IRIS)))
    return HAIR_NAMES[hair], IRIS_NAMES[iris]


def draw_face(seed: int = 0, size: int = 512) -> Image.Image:
    """One anime-style head, RGB, `size` px square; `seed` picks colours, position and scale."""
    rng = random.Random(seed)
    bg = tuple(rng.randint(200, 255) for _ in range(3))
    hair, iris, skin = rng.choice(HAIR), rng.choice(IRIS), rng.choice(SKIN)
    face = Image.new("RGB", (512, 512), bg)
    d = ImageDraw.Draw(face)
    d.ellipse((40, 20, 472, 470), fill=hair)
    d.polygon([(130, 160), (256, 470), (382, 160)], fill=skin)
    d.ellipse((120, 80, 392, 420), fill=skin)
    d.polygon([(100, 60), (412, 60), (400, 200), (330, 150), (256, 200), (180, 150), (112, 210)], fill=hair)
    for x in (165, 280):
        d.ellipse((x, 215, x + 70, 310), fill=(255, 255, 255), outline=(40, 30, 30), width=4)
        d.ellipse((x + 10, 225, x + 60, 305), fill=iris)
        d.ellipse((x + 22, 240, x + 48, 290), fill=(20, 20, 30))
        d.ellipse((x + 15, 235, x + 30, 250), fill=(255, 255, 255))
        d.line([(x - 5, 205), (x + 75, 200)], fill=(60, 40, 30), width=6)
    d.arc((235, 360, 277, 385), 0, 180, fill=(150, 50, 50), width=4)
    # Place the head on a larger canvas at a seeded scale and offset: distinct bytes and hashes.
    scale = rng.uniform(0.7, 0.95)
    head = face.resize((int(size * scale), int(size * scale)), Image.LANCZOS)
    canvas = Image.new("RGB", (size, size), bg)
    room = size - head.width
    canvas.paste(head, (rng.randint(0, room), rng.randint(0, room)))
    return canvas


def draw_character(seed: int = 0, size: int = 512) -> Image.Image:
    """`draw_face` in front of a seeded scene (shapes in the background), so that different
    seeds are different pictures to a perceptual hash too, not one drawing recoloured."""
    rng = random.Random(seed * 7919 + 1)
    face = draw_face(seed, size)
    scene = Image.new("RGB", (size, size), tuple(rng.randint(150, 255) for _ in range(3)))
    d = ImageDraw.Draw(scene)
    for _ in range(rng.randint(4, 8)):
        x0, y0 = rng.randint(-size // 4, size), rng.randint(-size // 4, size)
        w, h = rng.randint(size // 8, size // 2), rng.randint(size // 8, size // 2)
        colour = tuple(rng.randint(0, 255) for _ in range(3))
        (d.ellipse if rng.random() < 0.5 else d.rectangle)((x0, y0, x0 + w, y0 + h), fill=colour)
    # The head goes in front of the scene; the face picture's flat background does not.
    pixels = np.asarray(face)
    keep = Image.fromarray(((pixels != pixels[0, 0]).any(axis=2) * 255).astype(np.uint8))
    scene.paste(face, (0, 0), keep)
    return scene


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def write_faces(folder: Path, count: int, size: int = 256, start: int = 0) -> list[Path]:
    """`count` distinct faces as PNG, JPEG and WebP in turn."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(start, start + count):
        fmt, ext = [("PNG", "png"), ("JPEG", "jpg"), ("WEBP", "webp")][i % 3]
        p = folder / f"face_{i:05d}.{ext}"
        p.write_bytes(encode(draw_character(i, size), fmt, **({"quality": 90} if fmt != "PNG" else {})))
        out.append(p)
    return out


def png_claiming_size(width: int, height: int) -> bytes:
    """A tiny, valid-looking PNG whose header claims width x height: a decompression bomb's shape."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def bad_inputs() -> dict[str, tuple[bytes, str]]:
    """file name -> (bytes, the status headshot must give them)."""
    jpeg = encode(draw_face(7, 256), "JPEG", quality=90)
    return {
        "empty.jpg": (b"", "empty"),
        "truncated.jpg": (jpeg[: len(jpeg) // 2], "corrupt"),
        "login_page.jpg": (b"<!DOCTYPE html><html><head><title>Log in</title></head><body>Sign in</body></html>", "not_image"),
        "noise.png": (random.Random(3).randbytes(4096), "not_image"),
        "bomb.png": (png_claiming_size(30_000, 30_000), "too_large"),
        "tiny.png": (encode(draw_face(8, 24), "PNG"), "too_small"),
    }


def write_bad_inputs(folder: Path) -> dict[Path, str]:
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, (data, status) in bad_inputs().items():
        p = folder / name
        p.write_bytes(data)
        out[p] = status
    return out
