"""A quality run: `headshot train` on drawn faces for N minutes, then how good it got.

The set: `--images` characters drawn in code (replicas/drawn.py), 64 px, with `--val`
more held out in their own folder. The run evaluates every `--eval-every` steps against
training pictures (an `--images` run has no val split) and is stopped with Ctrl-C (SIGINT)
when its time is up, which writes its checkpoint. Then, on the EMA generator of the last
checkpoint: KID x1e3 and the rest against the held-out val pictures, the copy rate against
the training pictures and their mirrors, the final grid and the progress GIF (copied to
`--show`, to be shown in BENCHMARKS.md), and `headshot encode` on 10 val pictures with its
reconstruction error beside the nearest training picture's.

    .venv/bin/python -m bench.train_quality [--minutes 25] [--show docs/bench]
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _headshot() -> list[str]:
    exe = REPO / ".venv" / "bin" / "headshot"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "pipelines.cli"]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=25.0)
    ap.add_argument("--images", type=int, default=3000)
    ap.add_argument("--val", type=int, default=250)
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--show", help="copy the final grid and progress.gif here")
    ap.add_argument("--keep", help="work in this folder and keep it")
    args = ap.parse_args(argv)

    from replicas.drawn import write_faces
    from training.data import load_pictures
    from training.evaluate import evaluate_sets, format_report
    from training.runs import generate, latents, load_generator
    from training.run import RunFolder

    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="headshot-bench-quality-"))
    try:
        train_dir, val_dir = root / "train", root / "val"
        write_faces(train_dir, args.images, size=64)
        write_faces(val_dir, args.val, size=64, start=args.images)
        home = root / "ws"
        cmd = [*_headshot(), "--home", str(home), "train", "--images", str(train_dir), "--name", "quality",
               "--steps", "1000000", "--no-progress", "--set", f"eval_every={args.eval_every}",
               "--set", "sample_every=250", "--set", "checkpoint_every=500"]
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            proc.wait(timeout=args.minutes * 60)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)  # Ctrl-C: a checkpoint, then a clean stop
        out, err = proc.communicate(timeout=600)
        trained_s = time.perf_counter() - started
        if proc.returncode not in (0, 130):
            raise SystemExit(f"training failed ({proc.returncode}): {err[-2000:]}")
        rf = RunFolder(home / "runs" / "quality")
        rows = [json.loads(line) for line in rf.metrics.read_text().splitlines() if line.strip()]
        kid_rows = [r for r in rows if "eval/kid_x1e3" in r]
        speed = [r["images_per_s"] for r in rows if "images_per_s" in r]

        g, cfg, state = load_generator(rf, "last")
        step = int(state["step"])
        train_set = load_pictures(sorted(train_dir.iterdir())[:2000], 64)
        val_set = load_pictures(sorted(val_dir.iterdir()), 64)
        fake = generate(g, latents(500, cfg.nz, 123))
        final = evaluate_sets(val_set, fake, train=train_set)
        val_self = evaluate_sets(val_set[: len(val_set) // 2], val_set[len(val_set) // 2:])  # the floor
        shown = {}
        if args.show:
            show = Path(args.show)
            show.mkdir(parents=True, exist_ok=True)
            grids = sorted(rf.samples.glob("step-*.png"))
            if grids:
                shutil.copyfile(grids[-1], show / "quality-final-grid.png")
                shown["grid"] = str(show / "quality-final-grid.png")
            if rf.gif.is_file():
                shutil.copyfile(rf.gif, show / "quality-progress.gif")
                shown["gif"] = str(show / "quality-progress.gif")
        enc = subprocess.run([*_headshot(), "--home", str(home), "encode", *map(str, sorted(val_dir.iterdir())[:10]),
                              "--run", "quality", "--checkpoint", "last", "--out", str(root / "encoded"), "--json",
                              "--no-progress"], capture_output=True, text=True, timeout=1800)
        encoded = json.loads(enc.stdout) if enc.returncode == 0 else {"error": enc.stderr[-500:]}
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    print("## training quality\n")
    print(f"{args.images} drawn characters at 64 px ({args.val} more held out), `headshot train --images` with its "
          f"defaults, stopped by Ctrl-C after {trained_s / 60:.1f} min at step {step} "
          f"({sum(speed) / max(1, len(speed)):.0f} img/s on average).\n")
    print("| step | KID x1e3 (vs training pictures) | precision | recall | copy rate |\n|---|---|---|---|---|")
    for r in kid_rows:
        print(f"| {r['step']} | {r['eval/kid_x1e3']:.1f} ± {r['eval/kid_x1e3_std']:.1f} | {r['eval/precision']:.2f} | "
              f"{r['eval/recall']:.2f} | {r.get('eval/copy_rate', float('nan')):.3f} |")
    print(f"\nAt step {step}, 500 samples against the {args.val} held-out pictures:\n")
    print(format_report(final))
    print(f"\nThe floor (half the held-out pictures against the other half): KID x1e3 {val_self['kid_x1e3']:.1f}, "
          f"precision {val_self['precision']:.2f}, recall {val_self['recall']:.2f}, "
          f"classifier {val_self['c2st_accuracy']:.2f}.")
    if "pictures" in encoded:
        pics = encoded["pictures"]
        key = pics[0]["judged_by"] if pics else "pixel_mse"
        rec = sum(p["reconstruction"][key] for p in pics) / len(pics)
        near = sum(p["nearest"][key] for p in pics) / len(pics)
        rec_px = sum(p["reconstruction"]["pixel_mse"] for p in pics) / len(pics)
        near_px = sum(p["nearest"]["pixel_mse"] for p in pics) / len(pics)
        wins = sum(p["encoder_closer"] for p in pics)
        print(f"\n`headshot encode` on {len(pics)} held-out pictures: mean {key.replace('_', ' ')} {rec:.3f} "
              f"(nearest training picture {near:.3f}); pixel MSE {rec_px:.4f} (nearest {near_px:.4f}); the "
              f"encoder is closer for {wins} of {len(pics)}.")
    else:
        print(f"\n`headshot encode` failed: {encoded}")
    print(json.dumps({"step": step, "final": final, "shown": shown, "kid_over_steps":
                      [(r["step"], r["eval/kid_x1e3"]) for r in kid_rows]}, default=str))
    return final


if __name__ == "__main__":
    main()
