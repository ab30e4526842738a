"""Filter evaluation: every filter's scores and verdicts per folder of ../shared/data, plus the
derived cases the defaults were tuned on (blurred, upscaled and blank copies, generated faces)
and the time each filter takes. Prints markdown; the defaults in curation.filters.FilterConfig
quote these numbers.

    python -m bench.filter_eval            # the tables
    python -m bench.filter_eval --detail   # also one line per picture, lowest colour first
    python -m bench.filter_eval --new-art  # only the new-art table: every folder as the stage decodes it
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from pathlib import Path

from PIL import Image, ImageFilter, ImageOps

from curation import filters as F
from curation.filters.monochrome import Monochrome
from replicas.drawn import draw_face

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CASCADE = SHARED_DATA / "cascades" / "lbpcascade_animeface.xml"


def load(path: Path) -> Image.Image:
    with Image.open(path) as im:
        im.seek(0)  # first frame of an animation
        im = ImageOps.exif_transpose(im)
        im.load()
        return im


def centre_crop(im: Image.Image, side: int = 128) -> Image.Image:
    """The centre square scaled to `side` px: what a face crop of that size looks like."""
    w, h = im.size
    s = min(w, h)
    box = ((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)
    return im.convert("RGBA").resize((side, side), Image.LANCZOS, box=box)


def native_crop(im: Image.Image, side: int = 128) -> Image.Image:
    """The centre `side` px of the stored picture, unscaled (a patch, often not a face)."""
    w, h = im.size
    x, y = max(0, (w - side) // 2), max(0, (h - side) // 2)
    return im.crop((x, y, x + min(side, w), y + min(side, h)))


def jpeg(im: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    im.convert("RGB").save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue()))


def shrunk(im: Image.Image, side: int, up) -> Image.Image:
    return centre_crop(im, 256).convert("RGB").resize((side, side), Image.LANCZOS).resize((256, 256), up)


DERIVED = {
    "Gaussian blur r=3 at 256 px": lambda im: centre_crop(im, 256).filter(ImageFilter.GaussianBlur(3)),
    "Gaussian blur r=2 at 256 px": lambda im: centre_crop(im, 256).filter(ImageFilter.GaussianBlur(2)),
    "Gaussian blur r=1 at 256 px": lambda im: centre_crop(im, 256).filter(ImageFilter.GaussianBlur(1)),
    "64 -> 256 nearest (4x blocky)": lambda im: shrunk(im, 64, Image.NEAREST),
    "64 -> 256 nearest, JPEG q85": lambda im: jpeg(shrunk(im, 64, Image.NEAREST), 85),
    "128 -> 256 nearest (2x blocky)": lambda im: shrunk(im, 128, Image.NEAREST),
    "64 -> 256 bicubic (4x soft)": lambda im: shrunk(im, 64, Image.BICUBIC),
    "85 -> 256 lanczos (3x soft)": lambda im: shrunk(im, 85, Image.LANCZOS),
    "128 -> 256 bicubic (2x soft)": lambda im: shrunk(im, 128, Image.BICUBIC),
    "sharp 256 px, JPEG q50": lambda im: jpeg(centre_crop(im, 256), 50),
}


def faces(im: Image.Image) -> list[tuple[int, int, int, int]]:
    """Boxes from the anime cascade with the README's parameters (detection is tested elsewhere)."""
    import cv2
    import numpy as np

    flat = Image.new("RGBA", im.size, (255, 255, 255, 255))
    flat.alpha_composite(im.convert("RGBA"))
    grey = cv2.equalizeHist(np.asarray(flat.convert("L")))
    found = cv2.CascadeClassifier(str(CASCADE)).detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5,
                                                                 minSize=(24, 24))
    return [tuple(int(v) for v in b) for b in found] if len(found) else []


def span(verdicts: list[F.Verdict]) -> str:
    if not verdicts:
        return "–"
    scores = [v.score for v in verdicts]
    failed, doubt = sum(not v.passed for v in verdicts), sum(v.doubtful for v in verdicts)
    return f"{min(scores):.3g}–{max(scores):.3g} ({failed} fail, {doubt} doubtful)"


def rng(values: list[float], fmt: str = ".3g") -> str:
    return f"{min(values):{fmt}}–{max(values):{fmt}}" if values else "–"


def folders() -> list[Path]:
    """Every folder of pictures: the top ones, furry/<kind> and outliers/<kind>."""
    top = [p for p in sorted(SHARED_DATA.iterdir()) if p.is_dir() and p.name not in ("html", "cascades", "outliers")]
    out = []
    for p in top:
        kinds = sorted(q for q in p.iterdir() if q.is_dir())
        out += kinds if kinds and not any(q.is_file() for q in p.iterdir()) else [p]
    return out + sorted(p for p in (SHARED_DATA / "outliers").iterdir() if p.is_dir())


def folder_label(folder: Path) -> str:
    return folder.relative_to(SHARED_DATA).as_posix()


def monochrome_v1(image: Image.Image, min_colour: float = 1.05, max_tint_share: float = 0.81) -> bool:
    """Whether monochrome 1 (before the new-art rules) passed a picture, at its defaults: the
    colour at equal lightness, capped once the light tones were >= 81% one strong hue."""
    s = F.colour_stats(image)
    cap = min_colour * (1 - s["tint_share"]) / (1 - max_tint_share)
    return (min(s["colour"], cap) if s["tint_share"] >= max_tint_share else s["colour"]) >= min_colour


def new_art(cfg: F.FilterConfig) -> None:
    """Per folder, the whole pictures as `headshot process` judges them (media.decode.prepare:
    first frame, upright, sRGB, transparency on white): monochrome now and before, photo."""
    from media.decode import prepare

    print(f"\n### Filters on new art: whole pictures as the stage decodes them ({F.FILTERS_VERSION})\n")
    print("| folder | n | flagged monochrome (before → after) | flagged photo | newly flagged monochrome | "
          "no longer flagged monochrome | flagged photo: which |")
    print("|---|---|---|---|---|---|---|")
    times: dict[str, list[float]] = {"monochrome": [], "photo": []}
    for folder in folders():
        rows = []
        for p in sorted(q for q in folder.iterdir() if q.is_file()):
            im = prepare(p.read_bytes())
            v = {}
            for name, fn in (("monochrome", F.monochrome), ("photo", F.photo)):
                t = time.perf_counter()
                v[name] = fn(im, cfg)
                times[name].append(time.perf_counter() - t)
            rows.append((p.name, monochrome_v1(im), v["monochrome"].passed, v["photo"].passed))
        before = sum(not r[1] for r in rows)
        after = sum(not r[2] for r in rows)
        new = [r[0] for r in rows if r[1] and not r[2]]
        gone = [r[0] for r in rows if not r[1] and r[2]]
        photos = [r[0] for r in rows if not r[3]]
        names = lambda xs: ", ".join(f"`{x}`" for x in xs) or "–"  # noqa: E731
        which = names(photos) if len(photos) <= 3 else f"{len(photos)} of {len(rows)}"
        print(f"| {folder_label(folder)} | {len(rows)} | {before} → {after} | {len(photos)} | {names(new)} | "
              f"{names(gone)} | {which} |")
    print("\n| filter | time per stored picture, decoded (median, max) |")
    print("|---|---|")
    for name, ts in times.items():
        print(f"| {name} | {statistics.median(ts) * 1000:.1f} ms, {max(ts) * 1000:.1f} ms |")


def evaluate_folder(folder: Path, cfg: F.FilterConfig, timings: dict) -> tuple[dict, list, list]:
    cols: dict[str, list] = {k: [] for k in ("mono", "mono128", "monoface", "sharp", "sharp128", "sharpnat",
                                             "size", "share", "colour", "tint", "paper", "colour_area")}
    lines, images = [], []
    for p in sorted(folder.iterdir()):
        if not p.is_file():
            continue
        im = load(p)
        images.append(im)
        for name, fn in (("monochrome", F.monochrome), ("sharpness", F.sharpness), ("photo", F.photo)):
            t = time.perf_counter()
            fn(im, cfg)
            timings[name].append(time.perf_counter() - t)
        crop = centre_crop(im)
        row = {"mono": F.monochrome(im, cfg), "mono128": F.monochrome(crop, cfg), "sharp": F.sharpness(im, cfg),
               "sharp128": F.sharpness(crop, cfg), "sharpnat": F.sharpness(native_crop(im), cfg)}
        looked_at = [im, crop]
        if CASCADE.exists():
            found = faces(im)
            for x, y, w, h in found:
                face = im.crop((x, y, x + w, y + h)).resize((128, 128), Image.LANCZOS)
                looked_at.append(face)
                cols["monoface"].append(F.monochrome(face, cfg))
                cols["size"].append(F.face_size(w, h, cfg))
                cols["share"].append(F.face_share(w, h, im.width, im.height, cfg, faces=len(found)))
        for x in looked_at:
            stats = Monochrome().score(F.Subject.of_image(x)).facts
            cols["colour"].append(stats["colour"])
            cols["tint"].append(stats["tint_area"])
            cols["paper"].append(stats["paper"])
            cols["colour_area"].append(stats["colour_area"])
        for k, v in row.items():
            cols[k].append(v)
        lines.append((folder.name, p.name, row))
    return cols, lines, images


def main(detail: bool = False, only_new_art: bool = False) -> dict:
    if not SHARED_DATA.is_dir():
        print(f"../shared/data is absent ({SHARED_DATA}): nothing to evaluate")
        return {}
    cfg = F.FilterConfig()
    new_art(cfg)
    if only_new_art:
        return {}
    timings: dict[str, list[float]] = {"monochrome": [], "sharpness": [], "photo": []}
    rows, lines, anime = [], [], []
    for folder in folders():
        cols, folder_lines, images = evaluate_folder(folder, cfg, timings)
        name = folder_label(folder)
        rows.append((name, len(images), cols))
        lines += folder_lines
        anime = images if folder.name == "anime" else anime

    print(f"\n### Filters on ../shared/data (defaults; score range, fails, doubtful; {F.FILTERS_VERSION})\n")
    print("| folder | n | monochrome, whole | monochrome, 128 px centre | monochrome, face boxes | "
          "sharpness, stored | sharpness, 128 px centre | sharpness, native 128 px patch | face_size | face_share |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, n, c in rows:
        cells = [span(c[k]) for k in ("mono", "mono128", "monoface", "sharp", "sharp128", "sharpnat", "size", "share")]
        print(f"| {name} | {n} | " + " | ".join(cells) + " |")

    print("\n### What monochrome decides on (whole, 128 px centre and face boxes together)\n")
    print(f"| folder | colour at equal lightness (threshold {cfg.min_colour:g}) | "
          f"share of the picture light in one strong hue (tinted from {cfg.max_tint_share:g}) | "
          f"bare paper (a sketch from {cfg.min_paper_share:g}) | share of the drawing coloured "
          f"(an accent below {cfg.min_colour_area:g}) |")
    print("|---|---|---|---|---|")
    for name, _, c in rows:
        print(f"| {name} | {rng(c['colour'])} | {rng(c['tint'], '.2f')} | {rng(c['paper'], '.2f')} | "
              f"{rng(c['colour_area'], '.3f')} |")

    print(f"\n### Sharpness on copies of the {len(anime)} anime pictures (threshold {cfg.min_sharpness:g})\n")
    print("| copy | sharpness |")
    print("|---|---|")
    for label, make in DERIVED.items():
        print(f"| {label} | {span([F.sharpness(make(im), cfg) for im in anime])} |")
    print(f"| blank 256 px | {span([F.sharpness(Image.new('RGB', (256, 256), (236, 230, 222)), cfg)])} |")

    print("\n### Generated faces (replicas.drawn.draw_face, seeds 0-11)\n")
    print("| size | sharpness | monochrome | monochrome, grey copy saved as RGB |")
    print("|---|---|---|---|")
    for size in (64, 128, 256, 512):
        fs = [draw_face(seed, size) for seed in range(12)]
        grey = [F.monochrome(f.convert("L").convert("RGB"), cfg) for f in fs]
        print(f"| {size} px | {span([F.sharpness(f, cfg) for f in fs])} | "
              f"{span([F.monochrome(f, cfg) for f in fs])} | {span(grey)} |")

    print("\n### Time per call (this machine)\n")
    print("| filter | 512 px face (median of 50) | stored ../shared pictures (median, max) |")
    print("|---|---|---|")
    face = draw_face(3, 512)
    for name, fn in (("monochrome", F.monochrome), ("sharpness", F.sharpness), ("photo", F.photo)):
        ts = []
        for _ in range(50):
            t = time.perf_counter()
            fn(face, cfg)
            ts.append(time.perf_counter() - t)
        stored = timings[name]
        print(f"| {name} | {statistics.median(ts) * 1000:.1f} ms | "
              f"{statistics.median(stored) * 1000:.1f} ms, {max(stored) * 1000:.1f} ms |")

    if detail:
        print("\n### Per picture (* = fails)\n")
        for folder, name, row in sorted(lines, key=lambda r: (r[0], r[2]["mono"].score)):
            print(f"{folder:14s} {name[:40]:40s} "
                  + " ".join(f"{k} {v.score:7.3f}{' ' if v.passed else '*'}" for k, v in row.items()))
    return {"rows": rows}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="Filter scores per folder of ../shared/data. "
                                             "Example: python -m bench.filter_eval --detail")
    ap.add_argument("--detail", action="store_true", help="also print one line per picture")
    ap.add_argument("--new-art", action="store_true", help="only the new-art table (every folder, as decoded)")
    args = ap.parse_args()
    main(args.detail, args.new_art)
