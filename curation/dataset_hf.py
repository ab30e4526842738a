"""`headshot dataset export NAME --format hf`: a folder Hugging Face's `datasets` reads with
`load_dataset("imagefolder", data_dir=PATH)`, and a dataset card.

    PATH/train/<crop_id>.<ext>, PATH/train/metadata.parquet (and validation/ for the val split)
    PATH/README.md                                           the dataset card
    PATH/.headshot-export.json                               which version this is (ignored by
                                                             datasets: names starting with "." are)

Each metadata row names its picture in `file_name` and carries the crop's lineage and
attributes as columns: crop_id, split, tags (a person's), attributes ("name=value"), one column
per estimated or scraped attribute name (hair, eyes, character: the first value; "" when the
crop has none), source, page_url, image_url, artist, title, image_sha256. Parquet, with its
schema written out: JSON lines would leave an all-empty list column without a type, and
datasets refuses splits whose metadata types differ.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from manifests.atomic import read_metadata
from manifests.datasets import VersionInfo
from manifests.records import DatasetRow

SPLIT_FOLDERS = {"train": "train", "val": "validation"}  # datasets' own split names
MARKER_FILE = ".headshot-export.json"
SINGLE = ("hair", "eyes", "character")  # attribute names with a column of their own
_TEXT, _LIST = pa.string(), pa.list_(pa.string())
SCHEMA = pa.schema([("file_name", _TEXT), ("crop_id", _TEXT), ("split", _TEXT), ("tags", _LIST), ("attributes", _LIST),
                    *[(n, _TEXT) for n in SINGLE], ("source", _TEXT), ("page_url", _TEXT), ("image_url", _TEXT),
                    ("artist", _TEXT), ("title", _TEXT), ("image_sha256", _TEXT)])


def is_hf_export(folder: Path) -> bool:
    try:
        return json.loads((folder / MARKER_FILE).read_text(encoding="utf-8")).get("format") == "hf"
    except (OSError, ValueError, AttributeError):
        return False


def _first(attrs: tuple[str, ...], name: str) -> str:
    return next((a.partition("=")[2] for a in attrs if a.partition("=")[0] == name), "")


def write_hf(tmp: Path, rows: list[DatasetRow], sources: list[Path], info: VersionInfo,
             place) -> list[str]:
    """Write the export into the new folder `tmp`; `place(src, dst)` copies or links a crop.
    Returns the split folders written."""
    tmp.mkdir()
    lines: dict[str, list[dict]] = {}
    for r, src in zip(rows, sources):
        folder = SPLIT_FOLDERS.get(r.split, r.split)
        (tmp / folder).mkdir(exist_ok=True)
        name = f"{r.crop_id}{src.suffix.lower()}"
        place(src, tmp / folder / name)
        doc = {"file_name": name, "crop_id": r.crop_id, "split": r.split, "tags": list(r.tags),
               "attributes": list(r.attributes), **{n: _first(r.attributes, n) for n in SINGLE},
               "source": r.source, "page_url": r.page_url, "image_url": r.image_url, "artist": r.artist,
               "title": r.title, "image_sha256": r.image_sha256}
        lines.setdefault(folder, []).append(doc)
    for folder, docs in lines.items():
        table = pa.Table.from_pylist(docs, schema=SCHEMA)
        pq.write_table(table, tmp / folder / "metadata.parquet", compression="zstd")
    (tmp / "README.md").write_text(dataset_card(rows, info), encoding="utf-8")
    (tmp / MARKER_FILE).write_text(json.dumps({
        "format": "hf", "dataset": info.name, "version": info.version, "content_hash": info.content_hash,
        "created_at": info.created_at}, indent=1), encoding="utf-8")
    return sorted(lines)


def _build_meta(info: VersionInfo) -> dict:
    try:
        return json.loads(read_metadata(info.path).get("headshot.config", "{}") or "{}")
    except (OSError, ValueError):
        return {}


def _table(counter: Counter, head: str, limit: int = 20) -> list[str]:
    out = [f"| {head} | crops |", "|---|---|"]
    for k, n in counter.most_common(limit):
        out.append(f"| {_cell(k)} | {n} |")
    if len(counter) > limit:
        out.append(f"| ({len(counter) - limit} more) | {sum(n for _, n in counter.most_common()[limit:])} |")
    return out


def _cell(text: str) -> str:
    """Scraped text in a Markdown table cell: as text (no markup, no pipes, one line)."""
    text = " ".join(str(text).split())[:120]
    for ch in "\\|<>[]`*_#":
        text = text.replace(ch, "\\" + ch)
    return text or "-"


def dataset_card(rows: list[DatasetRow], info: VersionInfo) -> str:
    meta = _build_meta(info)
    counts, build = meta.get("counts", {}), meta.get("build", {})
    splits = Counter(SPLIT_FOLDERS.get(r.split, r.split) for r in rows)
    tags = Counter(t for r in rows for t in r.tags)
    scraped = Counter(a.partition("=")[2] for r in rows for a in r.attributes if a.startswith("tag="))
    hair = Counter(_first(r.attributes, "hair") or "unknown" for r in rows)
    sources = Counter(r.source or "unknown" for r in rows)
    artists = Counter(r.artist for r in rows if r.artist)
    made = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    parts = [
        "---",
        f"pretty_name: {info.name} v{info.version}",
        "task_categories:",
        "- unconditional-image-generation",
        "size_categories:",
        f"- {'n<1K' if len(rows) < 1000 else '1K<n<10K' if len(rows) < 10_000 else '10K<n<100K'}",
        "---",
        "",
        f"# {info.name} v{info.version}",
        "",
        f"{len(rows)} square face crops, built by headshot from artwork collected on the web, exported {made}. "
        f"Load it with `datasets.load_dataset(\"imagefolder\", data_dir=...)`; every crop's lineage and "
        "attributes are columns.",
        "",
        "## Splits",
        "",
        *_table(splits, "split"),
        "",
        "Crops of one picture or one near-duplicate group are always in the same split.",
        "",
        "## Tags",
        "",
        *(_table(tags, "tag (given in review)") if tags else ["No crop carries a tag given in review."]),
        "",
        *(_table(scraped, "tag (scraped with the picture)") + [""] if scraped else []),
        *_table(hair, "hair colour (estimated)"),
        "",
        "## Sources and artists",
        "",
        *_table(sources, "source"),
        "",
        *(_table(artists, "artist") if artists else ["No artist is recorded for these crops."]),
        "",
        "Each crop's `page_url` and `image_url` say where its artwork was found. The artwork belongs to its "
        "artists; check their terms before any use beyond research.",
        "",
        "## Opt-outs honoured",
        "",
        f"Artwork marked noai/noimageai (X-Robots-Tag or the page's robots meta) is never used: "
        f"{counts.get('opted_out', 0)} crop(s) of such artwork were left out of this version.",
        "",
        "## How it was built",
        "",
        "headshot crawled or ingested the pictures (robots.txt obeyed, throttled per host), found faces and cropped "
        "them, filtered out monochrome art, small faces, blurry crops and near-duplicates (keeping the clean copy), "
        "and a person reviewed the doubtful ones.",
        "",
        f"- accepted by a person: {counts.get('accepted_human', 0)}, bulk-confirmed proposals: "
        f"{counts.get('accepted_model', 0)}, by the filters' rule: {counts.get('accepted_rule', 0)}",
        f"- left out: rejected {counts.get('rejected', 0)}, skipped {counts.get('skipped', 0)}, failed a filter "
        f"{counts.get('failed', 0)}, undecided {counts.get('undecided', 0)}, not tagged as asked "
        f"{counts.get('not_tagged', 0)}",
        f"- build settings: {_cell(json.dumps(build, sort_keys=True))}",
        f"- version content hash: `{info.content_hash}`, created {info.created_at}",
        "",
    ]
    return "\n".join(parts)
