"""The commented headshot.toml that `headshot init` writes: every key at its default, each under
a one-line comment saying what it does and what it accepts. Parsed back, it is HeadshotConfig().

The ranges come from pipelines.config_rules.RULES (the checks themselves); DOCS says what each key does.
"""

from __future__ import annotations

import typing
from dataclasses import is_dataclass
from datetime import datetime
from typing import Any

from pipelines.config import HeadshotConfig, Scalar, Source, rule_for, schema
from pipelines.config_toml import dumps, format_value, key

_HASH = {
    "": "Perceptual hashes {of}, and how close two must be to count as near-duplicates",
    "algorithm": "Hash algorithm",
    "bits": "Hash length in bits: a square multiple of 64 (64, 256, 1024)",
    "radius": "Largest Hamming distance grouped as near-duplicates; below bits",
    "review_margin": "Pairs within radius +- this go to the review queue as borderline",
    "alpha_variants": "Also hash transparent pictures composited on black (reposts lose their alpha)",
}

DOCS: dict[str, str] = {
    "home": "Workspace folder (originals, crops, manifests, datasets, review queue, runs); --home and HEADSHOT_HOME win",
    "sources": "Crawl sources: `headshot crawl SITE` starts from the first [[sources]] table of that site, its flags win",
    "sources.site": "The site to crawl",
    "sources.query": "Search words (getchu keyword, MAL name, DeviantArt search); \"\" for none",
    "sources.since": "First release month (getchu)",
    "sources.until": "Last release month (getchu)",
    "sources.limit": "Stop after this many images; 0 for no limit",
    "sources.settings": "Scrapy settings, e.g. { GETCHU_BASE_URL = \"http://127.0.0.1:8080\" }; --set KEY=VALUE wins",
    "sources.args": "Spider arguments, e.g. { ids = \"1092994\", mode = \"html\" }; --arg KEY=VALUE wins",
    "ingest": "`headshot ingest`: what it reads and which files it keeps",
    "ingest.paths": "Folders, image files or URL-list .txt files read when `headshot ingest` gets no PATH",
    "ingest.min_side": "Pictures with a shorter side (px, upright) are stored as too_small; --min-side wins",
    "ingest.max_pixels": "Pictures with more pixels (width x height) are refused: decompression bombs",
    "ingest.max_bytes": "Files read or downloaded over this many bytes are kept as too_large",
    "process": "`headshot process`: detect faces, crop, filter, hash and group near-duplicates; --set KEY=VALUE wins",
    "process.subject": ("What a crop is centred on: faces (the detectors), whole (one square per picture, centred on "
                        "its subject: pictures that are already headshots) or auto (faces, else the whole picture "
                        "as a doubtful crop); --subject wins"),
    "process.dedup_policy": "Which crop of a near-duplicate group is kept: criteria in order, the first decides",
    "process.workers": "Processes, 0 for one per core; --workers wins",
    "process.part_rows": "Rows per manifest part written while a run goes (a killed run resumes from them)",
    "process.part_seconds": "... or a part this often, in seconds, whichever comes first",
    "process.detector": "Face detection (the defaults are the measured best; bench/detect_eval.py)",
    "process.detector.detector": "Which detector finds faces; ensemble merges its members' boxes; --detector wins",
    "process.detector.members": "The ensemble's members",
    "process.detector.rule": "union keeps a box any member finds; vote needs two members, or one that is sure",
    "process.detector.merge_iou": "Boxes of two members overlapping by this IoU are one face",
    "process.detector.scale_factor": "Cascade scale step between window sizes",
    "process.detector.min_neighbors": "Cascade neighbours a box needs to be kept",
    "process.detector.min_size": "Smallest face the cascades look for, px",
    "process.detector.equalize": "Equalise the histogram before the cascades (costs finds on flat-shaded art)",
    "process.detector.upscale_below": "Enlarge pictures with a shorter side below this for the cascades; 0 never",
    "process.detector.max_side": "Shrink larger pictures to this long side before detecting; 0 never",
    "process.detector.animeface_threshold": "animeface boxes below this likelihood are dropped",
    "process.detector.sure_likelihood": "With rule vote: animeface alone is sure from this likelihood",
    "process.detector.sure_neighbors": "With rule vote: a cascade alone is sure from this many neighbours",
    "process.detector.rotations": "Extra passes on the picture rotated by these degrees (tilted heads); [] for none",
    "process.detector.rotate_members": "In an ensemble, the members that run the rotated passes",
    "process.detector.rotate_when": "fallback: rotated passes only where the upright ones found no face",
    "process.detector.flip": "An extra pass on the mirrored picture",
    "process.crop": "Crops: squares around each face",
    "process.crop.margin": "Added on each side, a fraction of the face side; --margin wins",
    "process.crop.size": "Crop side in px; --size wins",
    "process.crop.pad": "Where a square crosses the border: shift it inside, or pad (replicate edges, white)",
    "process.filters": "Filter thresholds; a verdict's score and threshold are kept in the ledger",
    "process.filters.min_colour": "Colour at equal lightness; below it a picture is monochrome or line art",
    "process.filters.max_tint_share": ("Share of the picture light and in one strong hue from which a picture with "
                                       "little colour across hues counts as printed on tinted paper"),
    "process.filters.min_paper_share": "Share of bare paper from which a drawing in strokes counts as a sketch",
    "process.filters.min_colour_area": "Share of the drawing in colour below which a grey picture is grey with an accent",
    "process.filters.min_edge_crispness": "Edge crispness below which a picture is taken for a photograph",
    "process.filters.photo_doubt": "Within this of the edge-crispness threshold a photo verdict is doubtful",
    "process.filters.min_sharpness": "Detail score below which a crop is too blurred or upscaled",
    "process.filters.min_face_side": "Shorter side of a face box in source px below which it is too small",
    "process.filters.min_face_share": "Face box area over picture area below which the face is too small a part",
    "process.filters.min_published": "Keep only items published on or after this date",
    "process.filters.keep_undated": "Items with no known date pass the date filter",
    "process.filters.doubtful_margin": "A score within this fraction of its threshold is doubtful and goes to review",
    "process.filters.doubtful_days": "The same for dates, in days",
    **{f"process.hashing.{k}" if k else "process.hashing": v.format(of="of face crops") for k, v in _HASH.items()},
    **{f"process.image_hashing.{k}" if k else "process.image_hashing":
       v.format(of="of whole pictures (the same artwork resized or re-encoded)") for k, v in _HASH.items()},
    "dataset": "`headshot dataset build`: the rules a new version follows",
    "dataset.name": "Dataset built when `headshot dataset build` gets no NAME",
    "dataset.require_empty_queue": "Refuse to build while doubtful crops wait in the review queue; --allow-queue wins",
    "dataset.accept_by_rule": "A crop nobody decided on is accepted when it passed every filter without doubt; --no-rules wins",
    "dataset.min_accepted": "Fail, writing no version, with fewer accepted crops; --min-accepted wins",
    "dataset.val_fraction": "Share of pictures (with their duplicate groups) held out for validation",
    "dataset.split_seed": "Another seed draws another train/val split",
    "dataset.include_model": "Decisions bulk-confirmed from the learner's proposals count; --no-model wins",
    "train": "`headshot train`: any other training setting (training/config.py) may be added, e.g. ema_decay = 0.999",
    "train.preset": "Starting point: dcgan (the paper), sngan (spectral norm, hinge), dragan (gradient penalty)",
    "train.steps": "Generator steps in all",
    "train.batch_size": "Pictures per step",
    "train.size": "Picture side the model draws, px",
    "train.device": "Where to train; auto picks CUDA, MPS or the CPU",
    "flow": "`headshot flow build|train|serve`: where a flow runs a stage's items",
    "flow.task_runner": "threads runs them in the flow's own process, dask on a Dask cluster",
    "flow.dask_address": "With dask: the scheduler of a running cluster to send the items to",
    "flow.dask_workers": "With dask and no address: the local cluster's worker processes, one thread each",
    "schedule": "Named cron lines for the flows' schedules (headshot flow serve)",
}

_EXAMPLE_SCHEDULE = {"build": "0 3 * * *"}


def _kind(hint: Any) -> str:
    if hint is bool:
        return "true or false"
    if hint is int:
        return "a whole number"
    if hint is float:
        return "a number"
    if hint is str:
        return "text"
    if typing.get_origin(hint) is tuple:
        return "a list"
    if typing.get_origin(hint) is dict:
        return "a table"
    if datetime in typing.get_args(hint):
        return '"YYYY-MM-DD", or "" for none'
    if hint == Scalar:
        return "text, a number or true/false"
    return "see the docs"


def comment(path: str, types: dict[str, Any]) -> str:
    """`# what it does; what it accepts.` for one dotted key (tables: what they hold)."""
    hint = types.get(path)
    doc = DOCS.get(path, path.rsplit(".", 1)[-1].replace("_", " "))
    if hint is None or is_dataclass(hint) or is_dataclass(typing.get_args(hint)[0] if typing.get_args(hint) else None):
        return f"# {doc}."
    rule = rule_for(path)
    accepts = rule.accepts() if rule else _kind(hint)
    if rule and typing.get_origin(hint) is tuple:
        accepts = f"a list, each {accepts}"
    return f"# {doc}; {accepts}."


def init_text() -> str:
    types = schema()
    notes = lambda path: [comment(path, types)]  # noqa: E731
    doc = HeadshotConfig().as_dict()
    head = ["# headshot project config, written by `headshot init` with every setting at its default.",
            "# Every command reads ./headshot.toml (or --config FILE); flags on the command line win over it.",
            "# Relative paths are relative to this file's folder.", ""]
    example = Source(site="getchu", since="2015-05", until="2015-06", limit=200)
    src = ["", comment("sources", types), "# None by default; for example (remove the leading '# '):", "# [[sources]]"]
    for k, v in example.__dict__.items():
        src += ["# " + comment(f"sources.{k}", types), f"# {key(k)} = {format_value(v)}"]
    rest = {k: v for k, v in doc.items() if k not in ("home", "sources")}
    tail = ["# None by default; for example:"] + [f"# {key(k)} = {format_value(v)}" for k, v in _EXAMPLE_SCHEDULE.items()]
    return ("\n".join(head) + "\n" + dumps({"home": doc["home"]}, notes) + "\n".join(src) + "\n\n"
            + dumps(rest, notes) + "\n".join(tail) + "\n")


__all__ = ["DOCS", "comment", "init_text"]
