"""What the review queue and dataset builds see: the present crops, each with its ledger,
duplicate group and lineage, read column by column so that 50,000 crops load in a second.

A crop is `doubtful` when any verdict on it (or on its picture) is near its threshold, `failed`
when a filter rejected it without doubt, `passed` otherwise. The queue shows the doubtful ones,
nearest a threshold first; the other views show all of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from manifests import tables
from manifests.records import DupGroup, FaceCrop, FilterResult, ScrapedImage, StoredImage
from manifests.workspace import Workspace

from .. import selection

DOUBTFUL, FAILED, PASSED = "doubtful", "failed", "passed"


class NothingToReview(RuntimeError):
    """The workspace has no processed crops yet."""


@dataclass
class Item:
    crop_id: str
    image_sha256: str
    crop_path: str
    detector: str
    detector_score: float
    state: str = PASSED
    doubt: float = math.inf  # distance of the nearest doubtful score to its threshold, relative
    first_failed: str = ""
    reasons: list[dict[str, Any]] = field(default_factory=list)
    group_id: str = ""
    keeper: bool = True
    distance: int = 0
    group_size: int = 1
    source: str = ""
    title: str = ""
    artist: str = ""
    page_url: str = ""
    image_url: str = ""
    opted_out: bool = False
    # where the crop sits in its picture (source pixels after EXIF orientation; 0: not known)
    box_w: int = 0
    box_h: int = 0
    image_width: int = 0
    image_height: int = 0

    def public(self) -> dict[str, Any]:
        """What the browser gets: no filesystem path."""
        return {
            "id": self.crop_id, "state": self.state, "doubt": None if math.isinf(self.doubt) else round(self.doubt, 4),
            "failed": self.first_failed, "reasons": self.reasons, "group": self.group_id, "keeper": self.keeper,
            "distance": self.distance, "group_size": self.group_size, "source": self.source, "title": self.title,
            "artist": self.artist, "page_url": self.page_url, "detector": self.detector,
            "detector_score": round(self.detector_score, 3),
        }


def _columns(table) -> dict[str, list]:
    return {name: table.column(name).to_pylist() for name in table.column_names}


def _select(ws: Workspace) -> dict[str, list]:
    crops = _columns(tables.read_table(ws, FaceCrop, ["crop_id", "image_sha256", "crop_path", "detector", "score",
                                                      "box_w", "box_h", *selection.COLUMNS]))
    if not crops["crop_id"]:
        raise NothingToReview(f"no crops in {ws.home} yet: run `headshot ingest PATH` and `headshot process` first")
    keep = selection.selected(ws, crops)
    return {k: [v[i] for i in keep] for k, v in crops.items()}


def _lineage(ws: Workspace, wanted: set[str]) -> dict[str, dict[str, Any]]:
    """image sha256 -> the row that says where the picture came from (earliest publication first)."""
    cols = ["image_sha256", "source", "title", "artist", "page_url", "image_url", "published_at", "opted_out", "status"]
    t = _columns(tables.read_table(ws, ScrapedImage, cols))
    best: dict[str, dict[str, Any]] = {}
    opted: set[str] = set()
    for i, sha in enumerate(t["image_sha256"]):
        if sha not in wanted:
            continue
        if t["opted_out"][i] or t["status"][i] == "opted_out":
            opted.add(sha)
        row = {c: t[c][i] for c in cols}
        old = best.get(sha)
        if old is None or _earlier(row, old):
            best[sha] = row
    for sha in opted:
        best.setdefault(sha, {})["opted_out"] = True
    return best


def _dimensions(ws: Workspace, wanted: set[str]) -> dict[str, tuple[int, int]]:
    """image sha256 -> (width, height) of the stored picture, upright."""
    t = _columns(tables.read_table(ws, StoredImage, ["image_sha256", "width", "height"]))
    return {sha: (int(w or 0), int(h or 0)) for sha, w, h in zip(t["image_sha256"], t["width"], t["height"])
            if sha in wanted}


def _earlier(a: dict, b: dict) -> bool:
    pa_, pb = a["published_at"], b["published_at"]
    if pa_ is not None and (pb is None or pa_ < pb):
        return True
    return pa_ == pb and a["source"] != "local" and b["source"] == "local"


def load_items(ws: Workspace) -> list[Item]:
    """The present crops with their verdicts, groups and lineage (unsorted)."""
    crops = _select(ws)
    ids = crops["crop_id"]
    items = [Item(c, s, p, d, float(sc or 0.0), box_w=int(w or 0), box_h=int(h or 0)) for c, s, p, d, sc, w, h in
             zip(ids, crops["image_sha256"], crops["crop_path"], crops["detector"], crops["score"], crops["box_w"],
                 crops["box_h"])]
    by_subject: dict[str, list[int]] = {}
    for n, it in enumerate(items):
        by_subject.setdefault(it.crop_id, []).append(n)
        by_subject.setdefault(it.image_sha256, []).append(n)
    led = _columns(tables.read_table(ws, FilterResult))
    for i, subject in enumerate(led["subject_id"]):
        owners = by_subject.get(subject)
        if not owners or led["filter"][i] == "faces":
            continue
        row = {"filter": led["filter"][i], "score": led["score"][i], "threshold": led["threshold"][i],
               "passed": led["passed"][i], "doubtful": led["doubtful"][i], "reason": led["reason"][i]}
        for n in owners:
            items[n].reasons.append(row)
    groups = _columns(tables.read_table(ws, DupGroup))
    index = {it.crop_id: it for it in items}
    sizes: dict[str, int] = {}
    for c, g, k, d in zip(groups["crop_id"], groups["group_id"], groups["keeper"], groups["distance"]):
        if c in index:
            it = index[c]
            it.group_id, it.keeper, it.distance = g, bool(k), int(d)
            sizes[g] = sizes.get(g, 0) + 1
    lineage = _lineage(ws, {it.image_sha256 for it in items})
    dims = _dimensions(ws, {it.image_sha256 for it in items})
    for it in items:
        it.image_width, it.image_height = dims.get(it.image_sha256, (0, 0))
        it.group_size = sizes.get(it.group_id, 1)
        src = lineage.get(it.image_sha256, {})
        it.source, it.title, it.artist = src.get("source") or "", src.get("title") or "", src.get("artist") or ""
        it.page_url, it.image_url = src.get("page_url") or "", src.get("image_url") or ""
        it.opted_out = bool(src.get("opted_out"))
        _judge(it)
    return items


def _judge(it: Item) -> None:
    it.reasons.sort(key=lambda r: (r["passed"], not r["doubtful"], r["filter"]))
    for r in it.reasons:
        if r["doubtful"]:
            rel = abs(r["score"] - r["threshold"]) / max(abs(r["threshold"]), 1e-9)
            it.doubt = min(it.doubt, rel)
    failed = [r["filter"] for r in it.reasons if not r["passed"]]
    it.first_failed = failed[0] if failed else ""
    it.state = DOUBTFUL if not math.isinf(it.doubt) else FAILED if failed else PASSED


def queue_order(items: list[Item]) -> list[Item]:
    """Most doubtful first: nearest a threshold, then failed before passed, then by id (stable)."""
    return sorted(items, key=lambda it: (it.state != DOUBTFUL, it.doubt, it.state != FAILED, it.crop_id))
