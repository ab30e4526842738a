"""What `headshot process` makes of every folder of ../shared/data, at the default settings and
at `--subject auto`: per folder, the pictures with a crop, kept (accepted by the dataset rules
with nobody's labels), doubtful (waiting in the review queue), dropped, and the first filter
(or the reason) that dropped them. One workspace: `auto` reuses the default run's detections.

    python -m bench folder_eval            # the table (markdown)
    python -m bench.folder_eval --detail   # also one line per dropped picture
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from urllib.parse import unquote, urlparse

from curation.dataset_build import BuildConfig, decide
from curation.ingest import ingest
from curation.process import ProcessConfig, process
from curation.review.items import DOUBTFUL, load_items
from manifests import tables
from manifests.records import FilterResult, ScrapedImage, StoredImage
from manifests.workspace import Workspace

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SKIP = {"cascades", "html"}


def folder_of(url: str) -> str:
    path = Path(unquote(urlparse(url).path))
    return str(path.parent.relative_to(SHARED_DATA))


def flagged(ws: Workspace) -> dict[str, set[str]]:
    """picture sha256 -> the whole-picture filters it failed (monochrome, photo), doubtful or not."""
    out: dict[str, set[str]] = {}
    for r in tables.read_table(ws, FilterResult, ["subject_id", "filter", "passed"]).to_pylist():
        if r["filter"] in ("monochrome", "photo") and not r["passed"]:
            out.setdefault(r["subject_id"], set()).add(r["filter"])
    return out


def outcome(ws: Workspace) -> dict[str, dict[str, str]]:
    """folder -> {picture url: "kept" | "doubtful" | "dropped: <why>", with "|mono" / "|photo"
    appended where the picture failed those filters}."""
    images = {r["image_sha256"]: r for r in tables.read_table(ws, StoredImage).to_pylist()}
    flags = flagged(ws)
    items = load_items(ws)
    decisions = {d.crop_id: d for d in decide(items, {}, BuildConfig())}
    best: dict[str, str] = {}
    rank = {"kept": 0, "doubtful": 1}
    for it in items:
        d = decisions[it.crop_id]
        state = "kept" if d.included else "doubtful" if it.state == DOUBTFUL else f"dropped: {it.first_failed or d.category}"
        old = best.get(it.image_sha256)
        if old is None or rank.get(state, 2) < rank.get(old, 2):
            best[it.image_sha256] = state
    out: dict[str, dict[str, str]] = {}
    seen = set()
    for r in tables.read_table(ws, ScrapedImage).to_pylist():
        url = r["image_url"] or ""
        if not url.startswith("file:") or url in seen:
            continue
        seen.add(url)
        folder = folder_of(url)
        sha = r["image_sha256"]
        stored = images.get(sha) if sha else None
        if stored is None or stored["status"] != "ok":
            why = f"dropped: {stored['status'] if stored else r['status']}"
        else:
            why = best.get(sha, "dropped: no crop")
        why += "".join(f"|{f}" for f in sorted(flags.get(sha, ())))
        out.setdefault(folder, {})[url] = why
    return out


def table(result: dict[str, dict[str, str]], title: str) -> list[str]:
    lines = [f"#### {title}", "", "| folder | n | with a crop | kept | doubtful | dropped | dropped by | flagged "
             "monochrome | flagged photo |", "|---|---|---|---|---|---|---|---|---|"]
    for folder in sorted(result):
        raw = list(result[folder].values())
        mono, photo = sum("|monochrome" in s for s in raw), sum("|photo" in s for s in raw)
        states = [s.split("|")[0] for s in raw]
        c = Counter(s if not s.startswith("dropped") else "dropped" for s in states)
        by = Counter(s.split(": ", 1)[1] for s in states if s.startswith("dropped"))
        crop = sum(1 for s in states if s != "dropped: no crop" and not s.startswith("dropped: not_image")
                   and not s.startswith("dropped: too_") and not s.startswith("dropped: corrupt"))
        lines.append(f"| {folder} | {len(states)} | {crop} | {c['kept']} | {c['doubtful']} | {c['dropped']} | "
                     + (", ".join(f"{k} {v}" for k, v in by.most_common()) or "-") + f" | {mono} | {photo} |")
    return lines


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--detail", action="store_true", help="one line per dropped picture")
    args = ap.parse_args(argv or [])
    if not SHARED_DATA.is_dir():
        print("## folder evaluation: skipped (no ../shared/data)")
        return {}
    os.environ.setdefault("HEADSHOT_CASCADE_DIR", str(SHARED_DATA / "cascades"))
    folders = [str(p) for p in sorted(SHARED_DATA.iterdir()) if p.is_dir() and p.name not in SKIP]
    results = {}
    with tempfile.TemporaryDirectory(prefix="headshot-folder-eval-") as tmp:
        ws = Workspace.open(Path(tmp) / "ws")
        ingest(folders, ws, progress=False)
        for subject in ("faces", "auto"):
            t = time.perf_counter()
            process(ws, replace(ProcessConfig(), subject=subject), progress=False)
            results[subject] = (outcome(ws), time.perf_counter() - t)
    print("## What process makes of each folder of ../shared/data")
    for subject, (result, seconds) in results.items():
        title = ("default settings (`--subject faces`)" if subject == "faces" else "`--subject auto`") + f", {seconds:.1f} s"
        print("\n".join(table(result, title)))
        print()
        if args.detail:
            for folder, states in sorted(result.items()):
                for url, s in sorted(states.items()):
                    if s.split("|")[0] != "kept" or "|" in s:
                        print(f"    {subject} {folder}/{Path(unquote(urlparse(url).path)).name}: {s}")
    return {k: v[0] for k, v in results.items()}


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
