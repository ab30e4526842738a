"""The first user's job, scripted: 15,000 scraped pictures sorted into headshots and the rest,
by the review learner and a person's labels instead of three hours by hand.

The pictures: heads drawn in code in colour (the headshots), the same kind of heads in black
and white, drawn scenes with no head, and every picture of ../shared/data repeated with small
changes (a shifted crop, another size, another JPEG quality): its headshots are anime/ and
furry/headshot/, the rest (photos, monochrome, full-body figures, paintings, scenes) are not.
All are ingested and processed at `--subject auto` (every picture gets a crop) and embedded.

A scripted reviewer labels crops the way the review page leads (the queue's order, then the
learner's least-sure-first), `--batch` at a time, with the truth. After each batch the crops
nobody labelled take the learner's proposal (P(accept) >= 0.5: what confirming its proposals
in bulk does), and the share of pictures whose decision (any crop accepted = kept) agrees
with the truth is measured. The figure is the number of labels when it first reaches 95%.

    python -m bench first_user                 # 15,000 pictures (about 20 minutes on 2 cores)
    python -m bench.first_user --pictures 1500  # a quick look
"""

from __future__ import annotations

import argparse
import io
import os
import random
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from PIL import Image, ImageDraw, ImageOps

from curation.embeddings import Embeddings, update_embeddings
from curation.ingest import ingest
from curation.process import ProcessConfig, process
from curation.review.features import FeatureCache
from curation.review.items import load_items, queue_order
from curation.review.learner import ActiveLearner, LearnerConfig
from curation.review.store import State
from replicas.drawn import draw_face

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SKIP = {"cascades", "html"}
HEADSHOTS = {"anime", "furry/headshot"}
GOAL = 0.95


def scene(seed: int, size: int) -> Image.Image:
    """A drawn picture with no head in it: shapes on a ground."""
    rng = random.Random(seed)
    im = Image.new("RGB", (size, size), tuple(rng.randint(60, 255) for _ in range(3)))
    d = ImageDraw.Draw(im)
    for _ in range(rng.randint(4, 12)):
        x, y = rng.randint(0, size), rng.randint(0, size)
        w, h = rng.randint(size // 10, size // 2), rng.randint(size // 10, size // 2)
        box = (x - w // 2, y - h // 2, x + w // 2, y + h // 2)
        colour = tuple(rng.randint(0, 255) for _ in range(3))
        (d.rectangle if rng.random() < 0.5 else d.ellipse)(box, fill=colour)
    return im


def varied(im: Image.Image, rng: random.Random) -> Image.Image:
    """A small change of a picture: a shifted crop of 90-100% of it, resized to 60-100%."""
    im = ImageOps.exif_transpose(im).convert("RGB")
    w, h = im.size
    k = rng.uniform(0.9, 1.0)
    cw, ch = max(16, int(w * k)), max(16, int(h * k))
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    im = im.crop((x, y, x + cw, y + ch))
    s = rng.uniform(0.6, 1.0)
    return im.resize((max(16, int(cw * s)), max(16, int(ch * s))), Image.LANCZOS)


def build(folder: Path, pictures: int, seed: int = 0) -> dict[str, bool]:
    """Write the pictures; returns file name -> is a headshot (the truth, never shown to the code)."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    shared = [p for p in sorted(SHARED_DATA.rglob("*")) if p.is_file() and p.parent.name not in SKIP
              and p.suffix.lower() in (".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp")
              and not any(part in SKIP for part in p.relative_to(SHARED_DATA).parts)]
    n_shared = pictures // 5 if shared else 0
    n_rest = pictures - n_shared
    counts = {"head": n_rest * 45 // 100, "mono": n_rest * 25 // 100}
    counts["scene"] = n_rest - counts["head"] - counts["mono"]
    truth: dict[str, bool] = {}

    def save(name: str, im: Image.Image, quality: int) -> None:
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=quality)
        (folder / name).write_bytes(buf.getvalue())

    for i in range(counts["head"]):
        save(f"head-{i:05d}.jpg", draw_face(100_000 + i, 256), rng.randint(75, 95))
        truth[f"head-{i:05d}.jpg"] = True
    for i in range(counts["mono"]):
        save(f"mono-{i:05d}.jpg", ImageOps.grayscale(draw_face(200_000 + i, 256)).convert("RGB"), rng.randint(75, 95))
        truth[f"mono-{i:05d}.jpg"] = False
    for i in range(counts["scene"]):
        save(f"scene-{i:05d}.jpg", scene(300_000 + i, 256), rng.randint(75, 95))
        truth[f"scene-{i:05d}.jpg"] = False
    for i in range(n_shared):
        src = shared[i % len(shared)]
        try:
            with Image.open(src) as im:
                im.seek(0)
                out = varied(im, rng)
        except Exception:  # the odd formats that are meant to fail stay out of this job
            continue
        rel = str(src.parent.relative_to(SHARED_DATA))
        name = f"shared-{i:05d}.jpg"
        save(name, out, rng.randint(70, 95))
        truth[name] = rel in HEADSHOTS
    return truth


def label(decision: str) -> State:
    return State(decision=decision, tags=(), reviewer="scripted", origin="human", at="2026-12-03T00:00:00Z")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pictures", type=int, default=15_000)
    ap.add_argument("--batch", type=int, default=20, help="labels between two learner updates")
    ap.add_argument("--max-labels", type=int, default=600)
    args = ap.parse_args(argv or [])
    if not SHARED_DATA.is_dir():
        print("## first user's job: skipped (no ../shared/data)")
        return {}
    os.environ.setdefault("HEADSHOT_CASCADE_DIR", str(SHARED_DATA / "cascades"))
    from manifests import tables
    from manifests.records import ScrapedImage
    from manifests.workspace import Workspace

    times: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="headshot-first-user-") as tmp:
        t = time.perf_counter()
        truth_by_name = build(Path(tmp) / "scrape", args.pictures)
        times["draw"] = time.perf_counter() - t
        ws = Workspace.open(Path(tmp) / "ws")
        t = time.perf_counter()
        ingest([str(Path(tmp) / "scrape")], ws, progress=False)
        times["ingest"] = time.perf_counter() - t
        t = time.perf_counter()
        process(ws, replace(ProcessConfig(), subject="auto"), progress=False)
        times["process"] = time.perf_counter() - t
        t = time.perf_counter()
        update_embeddings(ws)
        times["embed"] = time.perf_counter() - t
        name_of = {r["image_sha256"]: Path(r["image_url"]).name
                   for r in tables.read_table(ws, ScrapedImage, ["image_sha256", "image_url"]).to_pylist() if r["image_sha256"]}
        items = load_items(ws)
        t = time.perf_counter()
        cache = FeatureCache(ws)
        cache.ensure(items)
        times["features"] = time.perf_counter() - t
        truth = {it.crop_id: truth_by_name[name_of[it.image_sha256]] for it in items}
        pictures: dict[str, list[str]] = {}
        for it in items:
            pictures.setdefault(it.image_sha256, []).append(it.crop_id)
        picture_truth = {sha: truth_by_name[name_of[sha]] for sha in pictures}
        learner = ActiveLearner(ws, LearnerConfig(), cache=cache, embeddings=Embeddings(ws))
        states: dict[str, State] = {}
        order = [it.crop_id for it in queue_order(list(items))]
        report, curve, reached = None, [], None
        t = time.perf_counter()
        while len(states) < min(args.max_labels, len(items)):
            nxt = [c for c in (report.order if report is not None and report.order else order) if c not in states]
            if not nxt:
                break
            for c in nxt[:args.batch]:
                states[c] = label("accept" if truth[c] else "reject")
            report = learner.update(items, states)
            if report is None:
                continue

            def decided(c: str) -> bool:
                s = states.get(c)
                return s.decision == "accept" if s else report.p_accept.get(c, 0.0) >= 0.5

            right = sum(any(decided(c) for c in crops) == picture_truth[sha] for sha, crops in pictures.items())
            share = right / len(pictures)
            curve.append((len(states), share, report.agreement))
            if reached is None and share >= GOAL:
                reached = len(states)
                break
        times["review"] = time.perf_counter() - t
    heads = sum(picture_truth.values())
    print("## The first user's job: sorting scraped pictures with the learner")
    print(f"{len(pictures)} pictures with a crop of {len(truth_by_name)} written ({heads} headshots), {len(items)} crops; "
          f"times: " + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()))
    print("\n| labels | pictures decided right (labels + the learner's proposals) | learner's own agreement |\n|---|---|---|")
    shown = curve[::max(1, len(curve) // 12)]
    for n, share, agree in shown + [row for row in curve[-1:] if row not in shown]:  # the last row once
        print(f"| {n} | {share:.1%} | {agree:.1%} |")
    print(f"\nlabels to reach {GOAL:.0%}: {reached if reached is not None else f'not within {len(states)}'}"
          f" (by hand: {len(pictures)})")
    return {"labels": reached, "curve": curve, "pictures": len(pictures), "times": times}


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
