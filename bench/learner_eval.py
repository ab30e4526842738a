"""The review learner against a simulated reviewer on every folder of ../shared/data.

The reviewer's labels come from the folders and nothing else: a crop of a picture in anime/ or
furry/headshot/ is a headshot ("accept"), a crop of any other folder is not ("reject": animals,
cartoon scenes, full-body pictures, monochrome, photographs, paintings, the outliers). The code
under test never sees the folders. Every picture is processed at `--subject auto`, so each has
at least one crop, and every crop is embedded.

For n = 20, 50 and 100 labels, drawn at random (5 draws, stratified so both answers are
there), the learner is trained as the review page trains it and its P(accept) >= 0.5 is
compared with the reviewer on every crop it was not given: the agreement, with the crop
embeddings among its features and without them. Then the reviewer working as the review page
leads (the learner's least sure first, 10 at a time): from the queue's order, and from 10
random starts of 20 labels. Then "more like these": 5 random examples of
one source folder, and the share of that folder's crops among the top 20 of the ranking (or
among the top k where the folder has fewer than 20 crops left: k is printed).

    python -m bench learner_eval
"""

from __future__ import annotations

import os
import random
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from urllib.parse import unquote, urlparse

from curation.embeddings import Embeddings, update_embeddings
from curation.ingest import ingest
from curation.process import ProcessConfig, process
from curation.review.features import FeatureCache
from curation.review.items import load_items
from curation.review.learner import ActiveLearner, LearnerConfig
from curation.review.store import State
from curation.review.tags import more_like_these
from manifests import tables
from manifests.records import ScrapedImage
from manifests.workspace import Workspace

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SKIP = {"cascades", "html"}
HEADSHOTS = {"anime", "furry/headshot"}
# Colour anime pictures filed under an outlier for their format, size or framing: a face the
# detectors found in one is a drawn head in colour, which is what a reviewer looking at the
# crop (not at the folder) accepts. Their whole-picture crops are not headshots.
ANIME_FACES_IN = {"outliers/fullbody", "outliers/animated", "outliers/transparent", "outliers/tiny",
                  "outliers/odd_format", "outliers/near_duplicate"}
# A sheet of several heads (outliers/collage: one character drawn four times, three coloured and
# once as line art): a face found on it is a headshot when the crop itself is in colour, which
# the reviewer sees at a glance; here, the crop's mean spread between its strongest and weakest
# channel (line art is 0). Its whole-picture crop is not a headshot.
SHEETS = {"outliers/collage"}
SHEET_COLOUR = 2.0  # mean max-min channel spread, of 255


def crop_in_colour(ws: Workspace, item) -> bool:
    import numpy as np
    from PIL import Image

    path = Path(item.crop_path)
    with Image.open(path if path.is_absolute() else ws.home / path) as im:
        a = np.asarray(im.convert("RGB"), np.int16)
    return float((a.max(axis=2) - a.min(axis=2)).mean()) >= SHEET_COLOUR


def reviewers(ws: Workspace, items) -> tuple[dict[str, bool], dict[str, bool]]:
    """(by folder, by what the crop shows): crop id -> headshot."""
    folder = folders_of(ws)
    by_folder = {it.crop_id: folder.get(it.image_sha256, "") in HEADSHOTS for it in items}
    by_crop = {}
    for it in items:
        f = folder.get(it.image_sha256, "")
        face = it.detector != "whole"
        by_crop[it.crop_id] = by_folder[it.crop_id] or (face and f in ANIME_FACES_IN) or (
            face and f in SHEETS and crop_in_colour(ws, it))
    return by_folder, by_crop


SIZES = (20, 50, 100)
DRAWS = 5
STARTS = 10


def folders_of(ws: Workspace) -> dict[str, str]:
    """picture sha256 -> its folder under ../shared/data (the first one it was found in)."""
    out: dict[str, str] = {}
    for r in tables.read_table(ws, ScrapedImage, ["image_url", "image_sha256"]).to_pylist():
        url, sha = r["image_url"] or "", r["image_sha256"]
        if sha and url.startswith("file:") and sha not in out:
            out[sha] = str(Path(unquote(urlparse(url).path)).parent.relative_to(SHARED_DATA))
    return out


def label(decision: str) -> State:
    return State(decision=decision, tags=(), reviewer="simulated", origin="human", at="2026-12-03T00:00:00Z")


def agreement(ws: Workspace, items, truth: dict[str, bool], n: int, seed: int, components: int,
              cache: FeatureCache, embeddings: Embeddings) -> float | None:
    rng = random.Random(seed)
    pos = [it for it in items if truth[it.crop_id]]
    neg = [it for it in items if not truth[it.crop_id]]
    k = max(5, round(n * len(pos) / len(items)))  # as often as the folders hold them, 5 at least
    chosen = rng.sample(pos, min(k, len(pos))) + rng.sample(neg, min(n - k, len(neg)))
    states = {it.crop_id: label("accept" if truth[it.crop_id] else "reject") for it in chosen}
    learner = ActiveLearner(ws, LearnerConfig(embed_components=components), cache=cache, embeddings=embeddings)
    report = learner.update(items, states)
    if report is None:
        return None
    rest = [it.crop_id for it in items if it.crop_id not in states and it.crop_id in report.p_accept]
    return sum((report.p_accept[c] >= 0.5) == truth[c] for c in rest) / len(rest)


def active_agreement(ws: Workspace, items, truth: dict[str, bool], sizes, components: int,
                     cache: FeatureCache, embeddings: Embeddings, batch: int = 10) -> dict[int, float]:
    """The reviewer working as the review page leads: the queue's order (most doubtful first)
    until the learner speaks, then the learner's (least sure first), `batch` labels at a time;
    the agreement on every crop not labelled yet, after each size in `sizes`."""
    from curation.review.items import queue_order

    states: dict[str, State] = {}
    order = [it.crop_id for it in queue_order(list(items))]
    learner = ActiveLearner(ws, LearnerConfig(embed_components=components), cache=cache, embeddings=embeddings)
    out: dict[int, float] = {}
    report = None
    while len(states) < max(sizes):
        nxt = [c for c in (report.order if report is not None and report.order else order) if c not in states]
        for c in nxt[:batch]:
            states[c] = label("accept" if truth[c] else "reject")
        report = learner.update(items, states)
        if len(states) in sizes and report is not None:
            rest = [it.crop_id for it in items if it.crop_id not in states and it.crop_id in report.p_accept]
            out[len(states)] = sum((report.p_accept[c] >= 0.5) == truth[c] for c in rest) / len(rest)
    return out


def started_agreement(ws: Workspace, items, truth: dict[str, bool], sizes, components: int, seed: int,
                      cache: FeatureCache, embeddings: Embeddings, start: tuple[int, int] = (8, 12),
                      batch: int = 10) -> dict[int, float]:
    """As active_agreement, from a random start instead of the queue's order: `start` labels
    (headshots, others) drawn with `seed`, then the learner's order, `batch` at a time. One
    queue order is one path through the labels; ten starts say how much a figure owes to it."""
    rng = random.Random(seed)
    pos = [it.crop_id for it in items if truth[it.crop_id]]
    neg = [it.crop_id for it in items if not truth[it.crop_id]]
    states = {c: label("accept" if truth[c] else "reject") for c in rng.sample(pos, start[0]) + rng.sample(neg, start[1])}
    learner = ActiveLearner(ws, LearnerConfig(embed_components=components), cache=cache, embeddings=embeddings)
    report = learner.update(items, states)
    out: dict[int, float] = {}
    while len(states) < max(sizes):
        nxt = [c for c in (report.order if report is not None and report.order else [it.crop_id for it in items])
               if c not in states]
        for c in nxt[:batch]:
            states[c] = label("accept" if truth[c] else "reject")
        report = learner.update(items, states)
        if len(states) in sizes and report is not None:
            rest = [c for c in report.p_accept if c not in states]
            out[len(states)] = sum((report.p_accept[c] >= 0.5) == truth[c] for c in rest) / len(rest)
    return out


def main(argv: list[str] | None = None) -> dict:
    if not SHARED_DATA.is_dir():
        print("## learner evaluation: skipped (no ../shared/data)")
        return {}
    os.environ.setdefault("HEADSHOT_CASCADE_DIR", str(SHARED_DATA / "cascades"))
    result: dict = {}
    with tempfile.TemporaryDirectory(prefix="headshot-learner-eval-") as tmp:
        ws = Workspace.open(Path(tmp) / "ws")
        ingest([str(p) for p in sorted(SHARED_DATA.iterdir()) if p.is_dir() and p.name not in SKIP], ws, progress=False)
        process(ws, replace(ProcessConfig(), subject="auto"), progress=False)
        t = time.perf_counter()
        update_embeddings(ws)
        embed_s = time.perf_counter() - t
        # in crop id order: the rows come in the order the workers finished, and the random draws
        # below must not depend on it
        items = sorted(load_items(ws), key=lambda it: it.crop_id)
        folder = folders_of(ws)
        by_folder, by_crop = reviewers(ws, items)
        cache = FeatureCache(ws)
        cache.ensure(items)
        embeddings = Embeddings(ws)
        print("## The review learner against a simulated reviewer (../shared/data, every folder)")
        print(f"{len(items)} crops at --subject auto, embedded in {embed_s:.1f} s; {DRAWS} random draws per size, "
              "agreement on every crop not labelled. Two reviewers: by folder (a crop of anime/ or furry/headshot/ "
              "is a headshot, any other is not) and by what the crop shows (also the faces found in colour anime "
              "pictures filed under an outlier for their format, size or framing, and the coloured heads of a sheet of "
              "heads)")
        comps = [int(c) for c in os.environ.get("HEADSHOT_BENCH_COMPONENTS", str(LearnerConfig().embed_components)).split(",")]
        for name, truth in (("by folder", by_folder), ("by what the crop shows", by_crop)):
            n_pos = sum(truth.values())
            base = max(n_pos, len(items) - n_pos) / len(items)
            heads = " | ".join(f"embeddings ({c} comp.)" for c in comps)
            print(f"\n{name}: {n_pos} headshots, {len(items) - n_pos} not\n\n| labels | {heads} | without | "
                  f"the commoner answer |\n|---|" + "---|" * (len(comps) + 2))
            for n in SIZES:
                cells = []
                for c in [*comps, 0]:
                    vals = [agreement(ws, items, truth, n, seed, c, cache, embeddings) for seed in range(DRAWS)]
                    vals = [v for v in vals if v is not None]
                    v = (statistics.mean(vals), min(vals), max(vals)) if vals else None
                    result[(name, n, c)] = v
                    cells.append(f"{v[0]:.1%} ({v[1]:.0%}-{v[2]:.0%})" if v else "-")
                print(f"| {n} | " + " | ".join(cells) + f" | {base:.1%} |")
            active = {c: active_agreement(ws, items, truth, SIZES, c, cache, embeddings) for c in [*comps, 0]}
            for n in SIZES:
                print(f"| {n}, in the learner's order | " + " | ".join(
                    f"{active[c][n]:.1%}" if n in active[c] else "-" for c in [*comps, 0]) + f" | {base:.1%} |")
            started = {c: [started_agreement(ws, items, truth, (50, 100), c, seed, cache, embeddings)
                           for seed in range(STARTS)] for c in [*comps, 0]}
            for n in (50, 100):
                cells = []
                for c in [*comps, 0]:
                    vals = [r[n] for r in started[c] if n in r]
                    result[(name, f"started {n}", c)] = statistics.mean(vals) if vals else None
                    cells.append(f"{statistics.mean(vals):.1%} ({min(vals):.0%}-{max(vals):.0%})" if vals else "-")
                print(f"| {n}, learner's order from {STARTS} random starts of 20 | " + " | ".join(cells)
                      + f" | {base:.1%} |")
        print("\n\"More like these\": 5 random examples of one folder, share of that folder in the top k of the rest"
              f" ({DRAWS} draws)\n\n| folder | crops | k | precision at k |\n|---|---|---|---|")
        ids = [it.crop_id for it in items]
        members_of: dict[str, list[str]] = {}
        for it in items:
            members_of.setdefault(folder.get(it.image_sha256, ""), []).append(it.crop_id)
        for name in ("anime", "furry/headshot", "cartoon", "outliers/monochrome"):
            members = members_of.get(name, [])
            if len(members) < 8:
                continue
            k = min(20, len(members) - 5)
            precisions = []
            for seed in range(DRAWS):
                examples = random.Random(seed).sample(members, 5)
                ranked = more_like_these(embeddings, examples, ids, limit=k).ranked
                precisions.append(sum(c in set(members) for c, _ in ranked) / k)
            result[f"similar:{name}"] = statistics.mean(precisions)
            print(f"| {name} | {len(members)} | {k} | {statistics.mean(precisions):.0%} |")
    return result


if __name__ == "__main__":
    main()
