"""Augmentation on the batch, on the device.

Differentiable augmentation (Zhao et al. 2020, "DiffAugment"): the same random transformations
are applied to real AND generated batches just before D, in a way gradients flow through, so D
sees more variety while G is never rewarded for drawing the transformations themselves. The
seeds' way bakes translated and channel-swapped copies into the real set only; G then learns
to draw off-centre faces and blue skin (the leak bench/train_leak.py measures).

The green/blue swap is one of the transformations, at p below 0.5 (config.py says why). Every
random draw comes from the generator passed in, so a run resumes with the same draws.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .config import TrainConfig


def _uniform(n: int, lo: float, hi: float, like: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(n, 1, 1, 1, generator=gen, device=like.device, dtype=like.dtype) * (hi - lo) + lo


def colour(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Brightness, saturation and contrast, each by a random amount per picture (x in [-1, 1])."""
    n = x.shape[0]
    x = x + _uniform(n, -0.5, 0.5, x, gen)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * _uniform(n, 0.0, 2.0, x, gen) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * _uniform(n, 0.5, 1.5, x, gen) + mean


def swap_green_blue(x: torch.Tensor, gen: torch.Generator, p: float) -> torch.Tensor:
    """Green and blue exchanged in a share p of the pictures."""
    pick = torch.rand(x.shape[0], 1, 1, 1, generator=gen, device=x.device) < p
    return torch.where(pick, x[:, [0, 2, 1]], x)


def translate(x: torch.Tensor, gen: torch.Generator, ratio: float) -> torch.Tensor:
    """Shifted by up to ratio x side pixels on each axis, whole pixels, the uncovered part zero
    (mid-grey). Nearest-neighbour sampling at whole-pixel offsets is an exact copy of the moved
    pixels, and its gradient flows back to them."""
    n, _, h, w = x.shape
    sx, sy = int(w * ratio + 0.5), int(h * ratio + 0.5)
    if not sx and not sy:
        return x
    dx = torch.randint(-sx, sx + 1, (n,), generator=gen, device=x.device).to(x.dtype)
    dy = torch.randint(-sy, sy + 1, (n,), generator=gen, device=x.device).to(x.dtype)
    theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, 0, 2] = -2.0 * dx / w  # grid units: the image spans [-1, 1]
    theta[:, 1, 2] = -2.0 * dy / h
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def cutout(x: torch.Tensor, gen: torch.Generator, ratio: float) -> torch.Tensor:
    """One square of side ratio x side set to zero, at a random place in each picture."""
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    if not ch or not cw:
        return x
    cy = torch.randint(0, h + 1 - ch % 2, (n, 1, 1), generator=gen, device=x.device)
    cx = torch.randint(0, w + 1 - cw % 2, (n, 1, 1), generator=gen, device=x.device)
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    inside = ((ys - cy).abs() < ch / 2) & ((xs - cx).abs() < cw / 2)
    return x * (~inside).unsqueeze(1).to(x.dtype)


def diff_augment(x: torch.Tensor, cfg: TrainConfig, gen: torch.Generator) -> torch.Tensor:
    """cfg.diff_policy's transformations, in a fixed order, on a batch in [-1, 1]."""
    if cfg.augment != "diff":
        return x
    policy = set(cfg.diff_policy)
    if "color" in policy:
        x = colour(x, gen)
    if "swap" in policy and cfg.swap_p > 0:
        x = swap_green_blue(x, gen, cfg.swap_p)
    if "translation" in policy and cfg.translation > 0:
        x = translate(x, gen, cfg.translation)
    if "cutout" in policy and cfg.cutout > 0:
        x = cutout(x, gen, cfg.cutout)
    return x


def mirror(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Half the pictures flipped left to right: the real set's own augmentation (a mirrored
    face is still a face of the set, so nothing leaks into G)."""
    flip = torch.rand(x.shape[0], 1, 1, 1, generator=gen, device=x.device) < 0.5
    return torch.where(flip, x.flip(3), x)


def bake(images: torch.Tensor, cfg: TrainConfig, seed: int) -> torch.Tensor:
    """The seeds' augmentation (--augment baked): the uint8 real set plus a channel-swapped copy
    and a translated copy of every picture, stored as if they were real pictures."""
    gen = torch.Generator(device=images.device).manual_seed(seed)
    swapped = images[:, [0, 2, 1]]
    x = images.float() / 127.5 - 1.0
    moved = ((translate(x, gen, cfg.translation) + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return torch.cat([images, swapped, moved])
