"""A review-ready workspace of any size, drawn in code: for the queue's browser tests and benchmarks.

It writes what `headshot process` writes (crop files, FaceCrop, FilterResult, DupGroup,
StoredImage and ScrapedImage rows, the selection) for faces drawn with Pillow, with filter
scores spread around their thresholds so that a share of them is doubtful, duplicate groups
of two or three, and titles and artists as a scraped page would give them (some hostile).
Detecting 50,000 faces would take an hour; the queue only reads what detection leaves.

The faces come from the caller (`draw=replicas.drawn.draw_face` in the tests and benchmarks):
curation imports nothing that stands in for the web.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
from datetime import datetime, timezone
from typing import Callable

import numpy as np
from PIL import Image

from manifests import tables
from manifests.atomic import write_bytes_atomic
from manifests.records import DupGroup, FaceCrop, FilterResult, ScrapedImage, StoredImage
from manifests.workspace import Workspace, new_run_id

from ..selection import CropSettings, write_selection

PARAMS = json.dumps({"detector": "sample"})
FILTERS = (("monochrome", 0.12), ("sharpness", 40.0), ("face_size", 48.0))


def _crop_png(base: Image.Image, rng: random.Random, grey: bool) -> bytes:
    a = np.asarray(base, dtype=np.int16)
    shift = np.array([rng.randint(-40, 40) for _ in range(3)], dtype=np.int16)
    a = np.clip(a + shift, 0, 255).astype(np.uint8)
    im = Image.fromarray(a)
    if grey:
        im = im.convert("L").convert("RGB")
    buf = io.BytesIO()
    im.save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def make_review_workspace(ws: Workspace, n: int, seed: int = 0, size: int = 64, titles: dict[int, str] | None = None,
                          dup_every: int = 20, part_rows: int = 20000, *,
                          draw: Callable[[int, int], Image.Image]) -> list[str]:
    """Write `n` crops and their records into `ws`; returns the crop ids in creation order.
    `draw(seed, size)` paints one RGB face; `titles` overrides the scraped title of crop i
    (to test escaping)."""
    rng = random.Random(seed)
    bases = [draw(seed * 1000 + i, size) for i in range(min(n, 256))]
    run = new_run_id("sample")
    now = datetime.now(timezone.utc)
    ids: list[str] = []
    buf: dict[type, list] = {c: [] for c in (FaceCrop, FilterResult, DupGroup, StoredImage, ScrapedImage)}

    def flush() -> None:
        for cls, rows in buf.items():
            tables.append(ws, cls, rows, run, {"sample": True})
            rows.clear()

    group_start = None
    for i in range(n):
        grey = rng.random() < 0.15
        data = _crop_png(bases[i % len(bases)], rng, grey)
        sha = hashlib.sha256(data + str(i).encode()).hexdigest()
        cid = hashlib.sha256(f"{sha}|crop".encode()).hexdigest()[:24]
        rel = f"crops/{cid[:2]}/{cid}.png"
        write_bytes_atomic(ws.home / rel, data, durable=False)
        ids.append(cid)
        buf[StoredImage].append(StoredImage(image_sha256=sha, status="ok", blob_path="", bytes=len(data),
                                            format="PNG", width=size * 3, height=size * 3, mode="RGB", frames=1))
        title = (titles or {}).get(i, f"Character {i} by artist {i % 97}")
        buf[ScrapedImage].append(ScrapedImage(
            source="deviantart", source_id=str(100000 + i), image_url=f"https://images.example/art/{i}.png",
            status="ok", page_url=f"https://www.example/art/{i}", title=title, artist=f"artist{i % 97}",
            tags=("headshot",), fetched_at=now, image_sha256=sha))
        buf[FaceCrop].append(FaceCrop(crop_id=cid, image_sha256=sha, box_x=size, box_y=size, box_w=size, box_h=size,
                                      margin=0.25, detector="sample", detector_version="1", detector_params=PARAMS,
                                      score=round(rng.uniform(0.3, 1.0), 3), crop_path=rel, size=size))
        for name, threshold in FILTERS:
            score = threshold * (0.3 if (grey and name == "monochrome") else rng.uniform(0.6, 3.0))
            passed = score >= threshold
            buf[FilterResult].append(FilterResult(
                subject_id=cid, filter=name, score=score, threshold=threshold, passed=passed, version="sample-1",
                reason=f"{name} {score:.3g} {'>=' if passed else '<'} {threshold:g}",
                doubtful=abs(score - threshold) <= 0.25 * threshold))
        in_group = dup_every and i % dup_every in (1, 2)
        if in_group and group_start is None:
            group_start = ids[-2] if len(ids) > 1 else cid
        gid = group_start if in_group else cid
        keeper = not in_group
        dist = rng.randint(1, 8) if in_group else 0
        if in_group and i % dup_every == 1:  # the group's first member is the keeper; re-write it in the group
            buf[DupGroup].append(DupGroup(crop_id=group_start, group_id=gid, keeper=True, distance=0, policy="largest"))
        buf[DupGroup].append(DupGroup(crop_id=cid, group_id=gid, keeper=keeper, distance=dist, policy="largest"))
        buf[FilterResult].append(FilterResult(
            subject_id=cid, filter="duplicate", score=float(dist), threshold=8.0, passed=keeper, version="sample-1",
            reason="no near-duplicate" if keeper else f"near-duplicate of {gid} at distance {dist}",
            doubtful=not keeper and dist >= 6))
        if not in_group:
            group_start = None
        if sum(map(len, buf.values())) >= part_rows:
            flush()
    flush()
    for cls in buf:
        tables.compact(ws, cls, run)
    write_selection(ws, CropSettings(PARAMS, 0.25, size), {"sample": True}, run_id=run)
    return ids
