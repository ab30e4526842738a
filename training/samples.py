"""Pictures out of a generator: grids, separate files, the progress GIF and latent walks."""

from __future__ import annotations

import io
import math
from pathlib import Path

import torch
from PIL import Image

from manifests.atomic import write_bytes_atomic


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """uint8 N x 3 x H x W -> RGB pictures."""
    arr = images.permute(0, 2, 3, 1).contiguous().numpy()
    return [Image.fromarray(a) for a in arr]  # H x W x 3 uint8 is RGB


def grid(images: torch.Tensor, nrow: int = 8, pad: int = 2) -> Image.Image:
    """Pictures in rows of `nrow` on a dark background, `pad` px apart."""
    return pil_grid(to_pil(images), nrow, pad)


def pil_grid(images: list[Image.Image], nrow: int = 8, pad: int = 2) -> Image.Image:
    """As grid, for pictures of one size already as PIL images."""
    n = len(images)
    w, h = images[0].size
    cols = min(nrow, n)
    rows = math.ceil(n / cols)
    out = Image.new("RGB", (cols * (w + pad) + pad, rows * (h + pad) + pad), (16, 16, 16))
    for i, im in enumerate(images):
        out.paste(im, (pad + (i % cols) * (w + pad), pad + (i // cols) * (h + pad)))
    return out


def png_bytes(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def save_png(im: Image.Image, path: Path) -> None:
    write_bytes_atomic(path, png_bytes(im))


def gif_bytes(frames: list[Image.Image], ms: int = 120, last_ms: int = 1500) -> bytes:
    buf = io.BytesIO()
    durations = [ms] * (len(frames) - 1) + [last_ms]
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=durations, loop=0, optimize=False)
    return buf.getvalue()


def progress_gif(sample_dir: Path, out: Path, max_frames: int = 120) -> int:
    """The run's grids, in step order, as one looping GIF; returns the number of frames."""
    files = sorted(sample_dir.glob("step-*.png"))
    if not files:
        return 0
    if len(files) > max_frames:  # evenly spread, always with the last one
        idx = sorted({round(i * (len(files) - 1) / (max_frames - 1)) for i in range(max_frames)})
        files = [files[i] for i in idx]
    frames = []
    for f in files:
        with Image.open(f) as im:
            frames.append(im.convert("RGB"))
    write_bytes_atomic(out, gif_bytes(frames))
    return len(frames)


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation: Gaussian latents keep their typical norm along the way, which a
    straight line between two of them does not (its middle is shorter than either end)."""
    an, bn = a / a.norm(dim=-1, keepdim=True), b / b.norm(dim=-1, keepdim=True)
    omega = torch.acos((an * bn).sum(-1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7))
    so = torch.sin(omega)
    return (torch.sin((1 - t) * omega) / so) * a + (torch.sin(t * omega) / so) * b


def latent_walk(keys: torch.Tensor, steps_between: int) -> torch.Tensor:
    """A closed walk through `keys` (K x nz): steps_between points from each key to the next."""
    out = []
    for i in range(keys.shape[0]):
        a, b = keys[i], keys[(i + 1) % keys.shape[0]]
        for s in range(steps_between):
            out.append(slerp(a, b, s / steps_between))
    return torch.stack(out)
