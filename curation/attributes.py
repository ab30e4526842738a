"""Attributes per crop, in the manifest table `attributes` (manifests.records.Attribute), each
with where it came from:

- estimated: hair and eye colour from the crop's pixels (curation.colours), for every present
  crop that has none at the estimator's present version: a second run computes nothing, new
  crops cost their own estimate only. A crop where nothing was found gets its rows anyway,
  with an empty value and confidence 0, so that it is not tried again.
- scraped: the tags and the character name of the pages the crop's picture came from
  (ScrapedImage.tags and .character: DeviantArt tags, getchu and MyAnimeList character data).
  Rows already in the table are not written again.
- review: the review queue's own tags (keys 1-9), read from review.sqlite as they stand now by
  `crop_attributes`, beside the table's rows: a person changes them, so they are not copied.

plan / run / commit as the other stages: `plan` names the crops to estimate (no lock), `run`
estimates one (pure: a crop path in, rows out), `commit` writes rows under the writer lock.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

from PIL import Image

from manifests import tables
from manifests.records import Attribute, ScrapedImage
from manifests.stage import write_rows
from manifests.workspace import Workspace, new_run_id

from . import selection
from .colours import COLOURS_VERSION, estimate_colours

ESTIMATED = ("hair", "eyes")
SCRAPED = ("tag", "character")
PART_ROWS = 20_000  # rows per committed part


@dataclass(frozen=True)
class Attr:
    """One attribute as readers see it: `origin` is estimated, scraped or review."""

    name: str
    value: str
    origin: str
    confidence: float = 1.0

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class AttributeReport:
    run_id: str = ""
    crops: int = 0  # present crops
    estimated: int = 0  # crops whose colours this run estimated
    unreadable: int = 0  # among those, crops whose file could not be read (rows with no value)
    scraped_rows: int = 0  # scraped rows written
    rows: int = 0  # rows written in all
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def _present(ws: Workspace) -> list[dict]:
    return selection.current_crops(ws, columns=["crop_id", "crop_path", "image_sha256"])


def plan(ws: Workspace, crops: Sequence[dict] | None = None) -> list[tuple[str, str]]:
    """(crop id, crop path) of the present crops without colours at COLOURS_VERSION. No lock."""
    crops = _present(ws) if crops is None else crops
    t = tables.read_table(ws, Attribute, ["crop_id", "origin", "version"])
    done = {c for c, o, v in zip(t.column("crop_id").to_pylist(), t.column("origin").to_pylist(),
                                 t.column("version").to_pylist()) if o == "estimated" and v == COLOURS_VERSION}
    return [(c["crop_id"], c["crop_path"]) for c in crops if c["crop_id"] not in done]


def run(item: tuple[str, str], home: str | Path) -> list[Attribute]:
    """The estimated rows of one crop: one per ESTIMATED name, empty where nothing was found or
    the file could not be read (its reason is not kept: the crop's own ledger says what it is)."""
    crop_id, rel = item
    try:
        with Image.open(Path(home) / rel) as im:
            found = estimate_colours(im.convert("RGB"))
    except Exception:  # a missing or damaged crop file: the rows say "nothing found"
        found = {}
    return [Attribute(crop_id, name, found[name].name if name in found else "", "estimated",
                      float(found[name].confidence) if name in found else 0.0, COLOURS_VERSION)
            for name in ESTIMATED]


def scraped_rows(ws: Workspace, crops: Sequence[dict]) -> list[Attribute]:
    """The scraped attributes of `crops`' pictures, one row per distinct (crop, name, value)."""
    by_image: dict[str, list[str]] = {}
    for c in crops:
        by_image.setdefault(c["image_sha256"], []).append(c["crop_id"])
    t = tables.read_table(ws, ScrapedImage, ["image_sha256", "tags", "character"])
    seen: set[tuple[str, str, str]] = set()
    out: list[Attribute] = []
    for sha, tags, character in zip(t.column("image_sha256").to_pylist(), t.column("tags").to_pylist(),
                                    t.column("character").to_pylist()):
        owners = by_image.get(sha)
        if not owners:
            continue
        values = [("tag", str(x).strip()) for x in (tags or ())] + [("character", (character or "").strip())]
        for name, value in values:
            if not value:
                continue
            for crop_id in owners:
                if (crop_id, name, value) not in seen:
                    seen.add((crop_id, name, value))
                    out.append(Attribute(crop_id, name, value, "scraped"))
    return out


def commit(ws: Workspace, rows: list[Attribute], run_id: str, report: AttributeReport | None = None) -> int:
    """Write the rows not in the table yet, under the writer lock, briefly. Returns how many."""
    written = write_rows(ws, {Attribute: rows}, (Attribute,), run_id, {"colours_version": COLOURS_VERSION},
                         what="attributes").get(Attribute, [])
    if report is not None:
        report.rows += len(written)
    return len(written)


def update_attributes(ws: Workspace, progress: Callable[[int, int], None] | None = None) -> AttributeReport:
    """Estimate what is missing and add the scraped attributes of every present crop."""
    started = time.monotonic()
    report = AttributeReport(run_id=new_run_id("attributes"))
    crops = _present(ws)
    report.crops = len(crops)
    todo = plan(ws, crops)
    scraped = scraped_rows(ws, crops)
    before = report.rows
    commit(ws, scraped, report.run_id, report)
    report.scraped_rows = report.rows - before
    batch: list[Attribute] = []
    for k, item in enumerate(todo, 1):
        rows = run(item, ws.home)
        if not any(r.value for r in rows) and not (ws.home / item[1]).is_file():
            report.unreadable += 1
        batch.extend(rows)
        report.estimated += 1
        if len(batch) >= PART_ROWS:
            commit(ws, batch, report.run_id, report)
            batch = []
        if progress is not None and (k % 64 == 0 or k == len(todo)):
            progress(k, len(todo))
    commit(ws, batch, report.run_id, report)
    report.seconds = time.monotonic() - started
    return report


def crop_attributes(ws: Workspace, crop_ids: Iterable[str] | None = None,
                    review_tags: dict[str, Sequence[str]] | None = None) -> dict[str, list[Attr]]:
    """crop id -> its attributes: the table's (estimated ones at the present version only,
    found ones only) and the review queue's present tags (origin "review"). `review_tags`:
    crop id -> tags, when the caller has them; otherwise review.sqlite is read, if there is one."""
    wanted = None if crop_ids is None else set(crop_ids)
    out: dict[str, list[Attr]] = {}
    t = tables.read_table(ws, Attribute)
    cols = {n: t.column(n).to_pylist() for n in t.column_names}
    for i, crop_id in enumerate(cols.get("crop_id", [])):
        if wanted is not None and crop_id not in wanted:
            continue
        origin, value = cols["origin"][i], cols["value"][i]
        if not value or (origin == "estimated" and cols["version"][i] != COLOURS_VERSION):
            continue
        out.setdefault(crop_id, []).append(Attr(cols["name"][i], value, origin, float(cols["confidence"][i])))
    if review_tags is None:
        review_tags = _review_tags(ws)
    for crop_id, tags in review_tags.items():
        if wanted is not None and crop_id not in wanted:
            continue
        for tag in tags:
            out.setdefault(crop_id, []).append(Attr("tag", tag, "review"))
    return out


def _review_tags(ws: Workspace) -> dict[str, tuple[str, ...]]:
    if not ws.review_db.exists():  # nobody reviewed yet: do not create an empty store
        return {}
    from .review.store import ReviewStore

    with ReviewStore(ws.review_db) as store:
        return {c: tuple(s.tags) for c, s in store.current().items() if s.tags}


def tags_of(attrs: Sequence[Attr]) -> set[str]:
    """The tags a crop carries, whoever gave them (scraped or the review queue's)."""
    return {a.value for a in attrs if a.name == "tag"}
