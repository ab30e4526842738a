"""Style transfer speed: `headshot style` at its defaults (256 px, 300 steps, EfficientNet-Lite0)
on a crop of ../shared/data/anime with a painting of ../shared/data/paintings, against the work
no implementation can skip: 301 forward and 300 backward passes of the same backbone at 256 px
on one picture (a plain loop, the same torch threads, in this process). The ratio says how
close the command (process start, imports, decoding and writing included) comes to that floor.

    python -m bench style_speed
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def plain_loop(steps: int = 300, size: int = 256) -> float:
    import torch

    from media.features import _load_model

    m = _load_model("cpu")
    x = torch.rand(1, 3, size, size, requires_grad=True)
    t = time.perf_counter()
    for step in range(steps + 1):
        h = m._swish(m._bn0(m._conv_stem(x * 2 - 1)))
        for idx, block in enumerate(m._blocks):
            h = block(h)
            if idx >= 10:
                break
        loss = h.square().mean()
        if step < steps:
            loss.backward()
    return time.perf_counter() - t


def main(argv: list[str] | None = None, repeats: int = 2) -> dict:
    content, painting = SHARED / "anime" / "style2paints_ref_01.png", SHARED / "paintings" / "starry_night.jpg"
    if not content.is_file() or not painting.is_file():
        print("## style speed: skipped (no ../shared/data)")
        return {}
    exe = Path(sys.executable).with_name("headshot")
    ours, plain = [], []
    with tempfile.TemporaryDirectory(prefix="headshot-bench-style-") as tmp:
        for _ in range(repeats):
            t = time.perf_counter()
            done = subprocess.run([str(exe), "style", "--content", str(content), "--style", str(painting), "--out",
                                   str(Path(tmp) / "p.png"), "--no-progress"], capture_output=True, text=True)
            ours.append(time.perf_counter() - t)
            if done.returncode != 0:
                raise SystemExit(done.stderr)
            plain.append(plain_loop())
            line = done.stdout.strip().splitlines()[-1]
    o, p = min(ours), min(plain)
    print("## Style transfer speed")
    print(f"| | seconds (best of {repeats}) |\n|---|---|")
    print(f"| `headshot style` (256 px, 300 steps, whole process) | {o:.1f} |")
    print(f"| plain loop: 301 forward + 300 backward passes at 256 px | {p:.1f} |")
    print(f"| ratio plain / headshot | {p / o:.2f}x |")
    print(f"\nthe command said: {line}")
    return {"headshot_s": o, "plain_s": p, "ratio": p / o}


if __name__ == "__main__":
    main()
