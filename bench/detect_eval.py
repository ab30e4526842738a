"""Face detection on ../shared/data: images with a face found and crops made, per folder and
per detector config, with CPU time per image. Prints markdown for BENCHMARKS.md.

    HEADSHOT_CASCADE_DIR=../shared/data/cascades .venv/bin/python -m bench.detect_eval
    .venv/bin/python -m bench.detect_eval --configs default,lbp --misses
    .venv/bin/python -m bench.detect_eval --calibrate     # animeface -> cascade box framing
    .venv/bin/python -m bench.detect_eval --crops         # how crop squares meet the borders

Recall on anime/ and detections on outliers/no_face are the numbers the default is chosen by;
paintings/ and real_people/ show what else the detectors fire on. Whether a box in anime/ is
on a face comes from boxes checked by eye (tests/curation/golden/anime_faces.json); a face no
explored config found cannot be in that file, so a new config's "false boxes" need a look.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import cv2

from curation.crop import CropConfig, square_box
from curation.detect import AF_SCALE, DetectorConfig, detect_faces, iou, prepare

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CHECKED_FACES = Path(__file__).resolve().parents[1] / "tests" / "curation" / "golden" / "anime_faces.json"
ROT = (-30, -15, 15, 30)

# Every config tried while choosing the default, in the order of the report. Single
# detectors run at their stock settings (no rotated passes) unless the name says "rot".
STOCK = {"rotations": ()}
CONFIGS: dict[str, DetectorConfig] = {
    "lbp-eq": DetectorConfig(detector="lbp", equalize=True, **STOCK),  # the README baseline setup
    "lbp": DetectorConfig(detector="lbp", **STOCK),
    "lbp-mn3": DetectorConfig(detector="lbp", min_neighbors=3, **STOCK),
    "lbp-sf1.05-mn3": DetectorConfig(detector="lbp", scale_factor=1.05, min_neighbors=3, **STOCK),
    "lbp-up512": DetectorConfig(detector="lbp", upscale_below=512, **STOCK),
    "lbp-flip": DetectorConfig(detector="lbp", flip=True, **STOCK),
    "lbp-rot-always": DetectorConfig(detector="lbp", rotations=ROT, rotate_when="always"),
    "lbp-rot-fallback": DetectorConfig(detector="lbp", rotations=ROT, rotate_when="fallback"),
    "haar-eq": DetectorConfig(detector="haar", equalize=True, **STOCK),
    "animeface-0.5": DetectorConfig(detector="animeface", animeface_threshold=0.5, **STOCK),
    "animeface-0.7": DetectorConfig(detector="animeface", animeface_threshold=0.7, **STOCK),
    "animeface-rot-fallback": DetectorConfig(detector="animeface", rotations=ROT, rotate_when="fallback"),
    "union": DetectorConfig(**STOCK),
    "union-mn3": DetectorConfig(min_neighbors=3, **STOCK),
    "vote-mn3": DetectorConfig(min_neighbors=3, rule="vote", animeface_threshold=0.5, **STOCK),
    "union-rot15-always": DetectorConfig(rotations=(-15, 15), rotate_when="always"),
    "union-rot-always": DetectorConfig(rotations=ROT, rotate_when="always"),
    "union-rot-both-always": DetectorConfig(rotations=ROT, rotate_members=("lbp", "animeface"), rotate_when="always"),
    "union-rot-fallback": DetectorConfig(rotations=ROT, rotate_when="fallback"),
    "union-rot-fallback-max1024": DetectorConfig(rotations=ROT, rotate_when="fallback", max_side=1024),
    "unbounded": DetectorConfig(max_side=0),  # the default before the working size
    "max2048": DetectorConfig(max_side=2048),
    "default": DetectorConfig(),
}


def folders(root: Path) -> list[Path]:
    out = [root / "anime", root / "paintings"]
    out += sorted(p for p in (root / "outliers").iterdir() if p.is_dir())
    return [p for p in out if p.is_dir()]


def load(root: Path) -> dict[str, list[tuple[str, object]]]:
    """Prepared images per folder, decoded once so the timings below are detection only."""
    return {str(f.relative_to(root)): [(p.name, prepare(p.read_bytes())) for p in sorted(f.iterdir()) if p.is_file()]
            for f in folders(root)}


def run(cfg: DetectorConfig, images: dict, cascade_dir: Path | None, checked: dict) -> dict:
    found, crops, misses, times, times512 = {}, {}, [], [], []
    on_face = false_boxes = 0
    for folder, items in images.items():
        n = c = 0
        for name, im in items:
            t = time.process_time()
            faces = detect_faces(im, cfg, cascade_dir)
            dt = time.process_time() - t
            times.append(dt)
            if im.size == (512, 512):
                times512.append(dt)
            n += bool(faces)
            c += len(faces)
            if folder == "anime" and not faces:
                misses.append(name)
            if folder == "anime" and name in checked:
                good = [f for f in faces if any(iou(f.box, b) > 0.3 for b in checked[name])]
                on_face += bool(good)
                false_boxes += len(faces) - len(good)
        found[folder], crops[folder] = n, c
    return {"found": found, "crops": crops, "misses": misses, "on_face": on_face, "false_boxes": false_boxes,
            "ms_median": 1000 * statistics.median(times), "ms_512": 1000 * statistics.median(times512 or [0]),
            "ms_max": 1000 * max(times)}


def table(results: dict[str, dict], images: dict) -> str:
    cols = list(images)
    head = ("| config | anime: on a face / false boxes | " + " | ".join(f"{c} ({len(images[c])})" for c in cols)
            + " | ms median / 512px / max |")
    lines = [head, "|" + "---|" * (len(cols) + 3)]
    for name, r in results.items():
        cells = [f"{r['found'][c]} ({r['crops'][c]})" for c in cols]
        lines.append(f"| {name} | {r['on_face']} / {r['false_boxes']} | " + " | ".join(cells)
                     + f" | {r['ms_median']:.0f} / {r['ms_512']:.0f} / {r['ms_max']:.0f} |")
    return "\n".join(lines)


def calibrate(images: dict, cascade_dir: Path | None) -> str:
    """Median cascade side / animeface side and centre offsets on faces both detectors find."""
    lbp_cfg, af_cfg = CONFIGS["lbp"], CONFIGS["animeface-0.7"]
    ratio, dy, dx = [], [], []
    for _, im in images["anime"]:
        lbp = detect_faces(im, lbp_cfg, cascade_dir)
        for a in detect_faces(im, af_cfg, cascade_dir):
            side = a.w / AF_SCALE  # undo the mapping to recover animeface's own box
            for b in lbp:
                if iou(a.box, b.box) > 0.3:
                    ratio.append(b.w / side)
                    dy.append((b.y + b.h / 2 - (a.y + a.h / 2)) / b.w)
                    dx.append((b.x + b.w / 2 - (a.x + a.w / 2)) / b.w)
    if not ratio:
        return "no face found by both detectors"
    return (f"{len(ratio)} faces found by both: cascade side / animeface side median "
            f"{statistics.median(ratio):.3f}; centre offset left after AF_SHIFT_Y (of the cascade side) y "
            f"{statistics.median(dy):+.3f}, x {statistics.median(dx):+.3f}")


def crop_fit(images: dict, cascade_dir: Path | None) -> str:
    """How often the crop square fits inside the image, per margin, on the default's faces."""
    faces = [(im.size, f) for _, im in images["anime"] for f in detect_faces(im, DetectorConfig(), cascade_dir)]
    lines = ["| margin | faces | square inside the image | shifted inside | still padded after shift |",
             "|---|---|---|---|---|"]
    for margin in (0.1, 0.25, 0.4, 0.5):
        inside = shifted = padded = 0
        for (W, H), f in faces:
            x, y, s = square_box(f, W, H, CropConfig(margin=margin, pad="white"))
            if x >= 0 and y >= 0 and x + s <= W and y + s <= H:
                inside += 1
                continue
            x, y, s = square_box(f, W, H, CropConfig(margin=margin, pad="shift"))
            if x >= 0 and y >= 0 and x + s <= W and y + s <= H:
                shifted += 1
            else:
                padded += 1
        lines.append(f"| {margin} | {len(faces)} | {inside} | {shifted} | {padded} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Face detection recall and false detections on ../shared/data. "
                                 "Example: python -m bench.detect_eval --configs default,lbp")
    ap.add_argument("--data", type=Path, default=SHARED_DATA)
    ap.add_argument("--configs", default="", help=f"comma-separated names (default: all): {', '.join(CONFIGS)}")
    ap.add_argument("--misses", action="store_true", help="list the anime/ images each config finds no face in")
    ap.add_argument("--calibrate", action="store_true", help="only measure animeface vs cascade box framing")
    ap.add_argument("--crops", action="store_true", help="only measure crop squares against image borders")
    args = ap.parse_args(argv)
    if not (args.data / "anime").is_dir():
        print(f"no shared data at {args.data}", file=sys.stderr)
        return 2
    cascade_dir = None if os.environ.get("HEADSHOT_CASCADE_DIR") else args.data / "cascades"
    cv2.setNumThreads(1)  # timings are per core, as the design budget is
    images = load(args.data)
    if args.calibrate:
        print(calibrate(images, cascade_dir))
        return 0
    if args.crops:
        print(crop_fit(images, cascade_dir))
        return 0
    names = [n for n in args.configs.split(",") if n] or list(CONFIGS)
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        ap.error(f"unknown config(s) {', '.join(unknown)}; known: {', '.join(CONFIGS)}")
    checked = json.loads(CHECKED_FACES.read_text())["faces"] if CHECKED_FACES.is_file() else {}
    results = {}
    for name in names:
        results[name] = run(CONFIGS[name], images, cascade_dir, checked)
        print(f"{name}: done", file=sys.stderr, flush=True)
    print("Cells: images with >= 1 face (crops). \"On a face\": anime/ images with a box on a face "
          "checked by eye (tests/curation/golden/anime_faces.json); false boxes: the other boxes in anime/. "
          "Time: CPU ms per image on one core (median over all images / median over the 512x512 ones / slowest).\n")
    print(table(results, images))
    print("\nConfigs:\n")
    for name in names:
        print(f"- {name}: `{CONFIGS[name].params_json()}`")
    if args.misses:
        print()
        for name in names:
            print(f"- {name} misses in anime/: {', '.join(results[name]['misses']) or 'none'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
