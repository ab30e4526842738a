"""The leak of augmenting the real set only: blue skin and off-centre faces in the samples.

A set of faces drawn here whose skin is always warm (red > green > blue) and always in the
middle. Two runs of equal steps: `--augment diff` (the default: translation, colour, cutout and
the green/blue swap at p 0.25, on real and generated batches alike before D) and `--augment
baked` (the seeds' way: a channel-swapped and a translated copy of every picture baked into the
real set). Then 500 samples of each, judged as the data is:

- swapped: the face's skin (its bright, saturated pixels: the background is pale grey, hair
  and eyes darker) has more blue than green. The data: none; the baked set's swapped copies: all.
- off-centre: the skin's centroid is more than 5 px from where the data draws it. The baked
  set's translated copies (shifts up to 8 px): about 70%.

The first run must stay within a few points of the data; the second shows what the users'
augmentation did to their generators.

    .venv/bin/python -m bench.train_leak [--steps 1500] [--images 512]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]
SIZE = 64
HAIR = [(60, 40, 30), (20, 20, 24), (200, 170, 90), (170, 60, 40), (230, 230, 235)]


def draw(seed: int) -> Image.Image:
    """A centred face: hair disc, warm skin ellipse, two eyes, a mouth, on a pale background."""
    rng = random.Random(seed)
    s = 4 * SIZE  # drawn at 4x, shrunk: smooth edges
    v = rng.randint(200, 240)
    bg = tuple(v + rng.randint(-10, 10) for _ in range(3))  # pale and nearly grey: never mistaken for skin
    im = Image.new("RGB", (s, s), bg)
    d = ImageDraw.Draw(im)
    hair = HAIR[rng.randrange(len(HAIR))]
    d.ellipse((s * 0.14, s * 0.10, s * 0.86, s * 0.86), fill=hair)
    skin = (rng.randint(225, 250), rng.randint(180, 205), rng.randint(140, 170))  # always R > G > B
    d.ellipse((s * 0.26, s * 0.28, s * 0.74, s * 0.84), fill=skin)
    eye = tuple(rng.randint(20, 200) for _ in range(3))
    for x in (0.36, 0.56):
        d.ellipse((s * x, s * 0.48, s * (x + 0.09), s * 0.60), fill=(255, 255, 255), outline=(30, 30, 30), width=3)
        d.ellipse((s * (x + 0.02), s * 0.50, s * (x + 0.07), s * 0.59), fill=eye)
    d.arc((s * 0.43, s * 0.66, s * 0.57, s * 0.74), 0, 180, fill=(120, 40, 40), width=4)
    return im.resize((SIZE, SIZE), Image.LANCZOS)


def judge(pictures: np.ndarray) -> dict[str, float]:
    """Shares of swapped and off-centre faces among N x H x W x 3 uint8 pictures."""
    swapped = off = judged = 0
    for a in pictures:
        h, w, _ = a.shape
        yy, xx = np.mgrid[0:h, 0:w]
        f = a.astype(np.float32)
        # The face as a whole: the bright, coloured pixels anywhere (not only the disc), so a
        # face drawn off-centre is still found.
        m = (f.sum(-1) > 480) & (f.max(-1) - f.min(-1) > 40)
        if m.sum() < 20:
            continue
        judged += 1
        g, b = f[..., 1][m].mean(), f[..., 2][m].mean()
        swapped += b > g
        cy, cx = yy[m].mean(), xx[m].mean()
        off += np.hypot(cy - h * 0.56, cx - w * 0.5) > 5
    n = max(judged, 1)
    return {"swapped": swapped / n, "off_centre": off / n, "judged": judged / max(len(pictures), 1)}


def _headshot() -> list[str]:
    exe = REPO / ".venv" / "bin" / "headshot"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "pipelines.cli"]


def _samples(home: Path, run: str, n: int, out: Path) -> np.ndarray:
    subprocess.run([*_headshot(), "--home", str(home), "generate", "--run", run, "-n", str(n), "--seed", "1",
                    "--checkpoint", "last", "--out", str(out) + "/"], check=True, capture_output=True, timeout=600)
    return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in sorted(out.glob("*.png"))])


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--samples", type=int, default=500)
    ap.add_argument("--keep", help="work in this folder and keep it")
    args = ap.parse_args(argv)
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="headshot-bench-leak-"))
    try:
        faces = root / "faces"
        faces.mkdir(parents=True, exist_ok=True)
        pictures = [draw(i) for i in range(args.images)]
        for i, im in enumerate(pictures):
            im.save(faces / f"face{i:05d}.png")
        data = np.stack([np.asarray(p) for p in pictures])
        import torch

        from training.augment import bake
        from training.config import TrainConfig

        baked = bake(torch.from_numpy(data).permute(0, 3, 1, 2), TrainConfig(), seed=0).permute(0, 2, 3, 1).numpy()
        n = len(data)
        rows = {"data": judge(data), "baked set's swapped copies": judge(baked[n:2 * n]),
                "baked set's translated copies": judge(baked[2 * n:]), "the whole baked set": judge(baked)}
        home = root / "ws"
        took = {}
        for mode in ("diff", "baked"):
            t = time.perf_counter()
            out = subprocess.run([*_headshot(), "--home", str(home), "train", "--images", str(faces), "--name", mode,
                                  "--steps", str(args.steps), "--batch-size", str(args.batch_size), "--augment", mode,
                                  "--set", "eval_every=0", "--set", "best_metric=none", "--set", "sample_every=500",
                                  "--no-progress", "--json"], capture_output=True, text=True, timeout=7200)
            if out.returncode:
                raise SystemExit(f"train --augment {mode} failed: {out.stderr[-2000:]}")
            took[mode] = time.perf_counter() - t
            rows[f"samples, --augment {mode}"] = judge(_samples(home, mode, args.samples, root / f"samples-{mode}"))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print("## the leak: augmenting the real set only\n")
    print(f"{args.images} drawn faces (warm skin, centred), {args.steps} steps at batch {args.batch_size}, "
          f"{args.samples} samples per run from the last checkpoint's EMA generator. Training took "
          f"{took['diff']:.0f} s (diff) and {took['baked']:.0f} s (baked).\n")
    print("| pictures | swapped colours (blue skin) | off-centre face | judged |\n|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['swapped']:.1%} | {r['off_centre']:.1%} | {r['judged']:.0%} |")
    print(json.dumps(rows))
    return rows


if __name__ == "__main__":
    main()
