"""The dedup step of `headshot process`, and what the ledger says was kept and why the rest went.

The near-duplicate index lives in the workspace (`manifests/nearindex/<config>/`) and takes
new crops without being rebuilt. Groups are transitive; the keeper follows the policy; every
crop gets a DupGroup row and a "duplicate" verdict in the ledger, doubtful when its nearest
pair lies near the radius.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

from manifests import tables
from manifests.records import DupGroup, FaceCrop, FilterResult, HashRecord, ScrapedImage, StoredImage
from manifests.workspace import Workspace

from . import selection
from .selection import CropSettings
from .dedup import Candidate, borderline, dup_groups, is_lossless, open_index, union_groups, why_kept
from .subject import process_key
from .nearindex_store import save_index
from .hashes import HASH_LIBRARY_VERSION, from_hex

DUPLICATE = "duplicate"


def current_crops(ws: Workspace, cfg) -> list[dict[str, Any]]:
    """The crops the present detector and crop settings make (older settings' crops stay on disk)."""
    return selection.current_crops(ws, CropSettings.of(cfg))


def index_folder(ws: Workspace, cfg, images: bool = False) -> Path:
    """One index per setting: crops of other settings, or hashes of another library, never mix."""
    h = cfg.image_hashing if images else cfg.hashing
    made_by = [] if images else [cfg.detector.params_json(), cfg.crop.margin, cfg.crop.size, cfg.crop.pad]
    key = json.dumps(made_by + [h.algorithm, h.bits, HASH_LIBRARY_VERSION])
    prefix = "image-" if images else ""
    return ws.nearindex / f"{prefix}{h.algorithm}{h.bits}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def _indexed_pairs(ws: Workspace, folder: Path, h, ids: set[str], hashes: dict[str, list[int]]) -> tuple[list, bool]:
    """Pairs within h's search radius among `ids`, after adding the ones not indexed yet."""
    index = open_index(folder, h)
    new = sorted(i for i in ids - set(index.ids) if hashes.get(i))
    index.add(new, [hashes[i][0] for i in new])
    if new:
        save_index(index, folder)
    return [p for p in index.pairs_within(h.search_radius) if p[0] in ids and p[1] in ids], bool(new)


def _same_face(a: dict, b: dict, size_a: tuple[int, int], size_b: tuple[int, int], tolerance: float = 0.08) -> bool:
    """Two crops of two copies of one picture: boxes at the same place relative to the picture."""
    (wa, ha), (wb, hb) = size_a, size_b
    if not (wa and ha and wb and hb):
        return False
    ca = ((a["box_x"] + a["box_w"] / 2) / wa, (a["box_y"] + a["box_h"] / 2) / ha, a["box_w"] / wa)
    cb = ((b["box_x"] + b["box_w"] / 2) / wb, (b["box_y"] + b["box_h"] / 2) / hb, b["box_w"] / wb)
    return max(abs(x - y) for x, y in zip(ca, cb)) <= tolerance


def _crop_pairs_from_images(image_pairs: list, crops: list[dict], sizes: dict[str, tuple[int, int]]) -> list:
    by_image: dict[str, list[dict]] = {}
    for c in crops:
        by_image.setdefault(c["image_sha256"], []).append(c)
    out = []
    for a_img, b_img, d in image_pairs:
        for a in by_image.get(a_img, []):
            for b in by_image.get(b_img, []):
                if _same_face(a, b, sizes.get(a_img, (0, 0)), sizes.get(b_img, (0, 0))):
                    out.append((a["crop_id"], b["crop_id"], d))
    return out


def _hashes(ws: Workspace, h, ids: set[str]) -> dict[str, list[int]]:
    """subject id -> [primary hash, variants...] of `h`'s algorithm and size, this library's."""
    out: dict[str, list[int]] = {}
    for r in tables.read_table(ws, HashRecord).to_pylist():
        if r["crop_id"] in ids and r["hash_size"] == h.bits and r["library_version"] == HASH_LIBRARY_VERSION \
                and r["algorithm"].split("+")[0] == h.algorithm:
            vals = out.setdefault(r["crop_id"], [])
            value = from_hex(r["value"])
            if r["algorithm"] == h.algorithm:
                vals.insert(0, value)
            else:
                vals.append(value)
    return out


def _candidates(ws: Workspace, crops: list[dict]) -> list[Candidate]:
    stored = {r["image_sha256"]: r for r in tables.read_table(ws, StoredImage, ["image_sha256", "format", "bytes"]).to_pylist()}
    first_seen: dict[str, Any] = {}
    reposted: set[str] = set()
    for r in tables.read_table(ws, ScrapedImage, ["image_sha256", "published_at", "source"]).to_pylist():
        sha = r["image_sha256"]
        if r["published_at"] is not None and (sha not in first_seen or r["published_at"] < first_seen[sha]):
            first_seen[sha] = r["published_at"]
        if r["source"] == "url":  # a bare URL list says nothing about who made the picture
            reposted.add(sha)
    out = []
    for c in crops:
        s = stored.get(c["image_sha256"], {})
        # "Largest" means the face in source pixels: that is what a crop can be made from.
        out.append(Candidate(id=c["crop_id"], width=c["box_w"], height=c["box_h"],
                             lossless=is_lossless(s.get("format", "")),
                             is_original_source=c["image_sha256"] not in reposted,
                             published_at=first_seen.get(c["image_sha256"]), bytes=s.get("bytes", 0)))
    return out


def _measure_cleanliness(ws: Workspace, cands: list[Candidate], pairs: list, crops: list[dict],
                         crop_size: int) -> list[Candidate]:
    """The candidates with their drawn-on marks and compression measured, for the members of
    groups of two or more (a crop alone keeps itself whatever it looks like)."""
    from dataclasses import replace

    from media.decode import prepare

    from .cleanliness import at_crop_scale, compression, marks_in

    group_of = union_groups(pairs, [c.id for c in cands])
    sizes = Counter(group_of.values())
    crop = {c["crop_id"]: c for c in crops}
    blobs = {r["image_sha256"]: r["blob_path"] for r in
             tables.read_table(ws, StoredImage, ["image_sha256", "blob_path"]).to_pylist() if r["blob_path"]}
    out = []
    for c in cands:
        if sizes[group_of.get(c.id, c.id)] < 2:
            out.append(c)
            continue
        row = crop[c.id]
        try:
            data = (ws.home / blobs[row["image_sha256"]]).read_bytes()
            # The face at the picture's own resolution: marks are thin, and the crop's resize blurs them.
            marks = marks_in(prepare(data), (row["box_x"], row["box_y"], row["box_w"], row["box_h"]))
            squeezed = at_crop_scale(compression(data), max(row["box_w"], row["box_h"]), crop_size)
        except (OSError, KeyError, ValueError):
            marks, squeezed = 0.0, 0.0
        out.append(replace(c, marks=marks, compression=squeezed))
    return out


def dedup(ws: Workspace, cfg, run_id: str, changed: bool) -> tuple[int, int]:
    """Index new crops, regroup, and write DupGroup rows and "duplicate" verdicts.
    Returns (crops that are not keepers, borderline pairs). No work when nothing changed."""
    crops = current_crops(ws, cfg)
    ids = {c["crop_id"] for c in crops}
    hashes = _hashes(ws, cfg.hashing, ids)
    pairs, new_crops = _indexed_pairs(ws, index_folder(ws, cfg), cfg.hashing, ids, hashes)
    sizes = {r["image_sha256"]: (r["width"], r["height"]) for r in
             tables.read_table(ws, StoredImage, ["image_sha256", "status", "width", "height"]).to_pylist() if r["status"] == "ok"}
    image_ids = {c["image_sha256"] for c in crops}
    image_pairs, new_images = _indexed_pairs(ws, index_folder(ws, cfg, images=True), cfg.image_hashing, image_ids,
                                             _hashes(ws, cfg.image_hashing, image_ids))
    grouped = set(tables.read_table(ws, DupGroup, ["crop_id"]).column("crop_id").to_pylist())
    if not (new_crops or new_images or changed) and ids <= grouped:
        return 0, 0
    close = [p for p in pairs if p[2] <= cfg.hashing.radius]
    # Copies of one picture at another size: their crops are duplicates whatever the crop hashes say.
    close += _crop_pairs_from_images([p for p in image_pairs if p[2] <= cfg.image_hashing.radius], crops, sizes)
    indexed = [c for c in _candidates(ws, crops) if c.id in hashes]
    if "clean" in cfg.dedup_policy:
        indexed = _measure_cleanliness(ws, indexed, close, crops, cfg.crop.size)
    candidate = {c.id: c for c in indexed}
    rows = dup_groups(close, indexed, cfg.dedup_policy, hashes=hashes)
    edge = borderline(pairs, cfg.hashing.radius, cfg.hashing.review_margin)
    edge += [b for b in borderline(_crop_pairs_from_images(image_pairs, crops, sizes), cfg.image_hashing.radius,
                                   cfg.image_hashing.review_margin) if not b.grouped]
    near: dict[str, str] = {}
    for b in edge:
        for x, y in ((b.a, b.b), (b.b, b.a)):
            near.setdefault(x, f"{b.reason} (with {y})")
    keeper_of = {r.group_id: r.crop_id for r in rows if r.keeper}
    verdicts = []
    for r in rows:
        reason = ("no near-duplicate" if r.keeper and r.distance == 0 and sum(1 for x in rows if x.group_id == r.group_id) == 1
                  else "keeper of its duplicate group" if r.keeper
                  else f"near-duplicate of {keeper_of[r.group_id]} at distance {r.distance} (policy {r.policy}: "
                       f"{why_kept(candidate[keeper_of[r.group_id]], candidate[r.crop_id], r.policy)})")
        if r.crop_id in near:
            reason += "; " + near[r.crop_id]
        verdicts.append(FilterResult(subject_id=r.crop_id, filter=DUPLICATE, score=float(r.distance),
                                     threshold=float(cfg.hashing.radius), passed=r.keeper,
                                     version=f"{cfg.hashing.algorithm}{cfg.hashing.bits}", reason=reason,
                                     doubtful=r.crop_id in near))
    meta = cfg.as_dict()
    tables.append(ws, DupGroup, rows, run_id, meta)
    tables.append(ws, FilterResult, verdicts, run_id, meta)
    return sum(1 for r in rows if not r.keeper), len(edge)


def summary(ws: Workspace, cfg) -> dict[str, Any]:
    """What the present settings keep, and the first reason each other crop or image went."""
    crops = current_crops(ws, cfg)
    ledger: dict[str, list[dict]] = {}
    for r in tables.read_table(ws, FilterResult).to_pylist():
        ledger.setdefault(r["subject_id"], []).append(r)
    det_key = process_key(cfg)
    images = [r for r in tables.read_table(ws, StoredImage, ["image_sha256", "status"]).to_pylist() if r["status"] == "ok"]
    no_face = sum(1 for r in images for f in ledger.get(r["image_sha256"], [])
                  if f["filter"] == "faces" and f["version"] == det_key and not f["passed"])
    rejected: Counter = Counter()
    kept = doubtful = 0
    for c in crops:
        rows = ledger.get(c["crop_id"], []) + [f for f in ledger.get(c["image_sha256"], []) if f["filter"] != "faces"]
        failed = [f["filter"] for f in rows if not f["passed"]]
        doubtful += any(f["doubtful"] for f in rows)
        if failed:
            rejected[failed[0]] += 1
        else:
            kept += 1
    return {"images": len(images), "images_without_face": no_face, "crops": len(crops), "kept": kept,
            "rejected_by": dict(rejected.most_common()), "doubtful": doubtful}
