"""The filters of `headshot process`: one class per file in this folder, found and registered here.

Each filter returns a `Verdict`: a score, the threshold it was held to, passed, a reason
written for a person, whether the score is close enough to the threshold to deserve a human
look (`doubtful`, shown first in the review queue), and the version of the scoring code. The
stage writes every verdict to the rejection ledger (`Verdict.record` -> FilterResult), so a
threshold can be re-tuned later from stored scores without decoding anything again.

Every score is "higher passes": passed == (score >= threshold). Scores depend on the code
version only, never on a threshold (one exception, documented in `monochrome`). Thresholds
live in `FilterConfig`; each default was measured on ../shared/data with bench/filter_eval.py.

What the stage and the review learner need to know about the filters (where each runs, the
settings each depends on, its versions) is derived from the registry below, so a new filter
is one new module here and a test. The "faces" row of the ledger (detection) and the
"duplicate" row (dedup) are written by their own stages and are not filters of this kind:
their versions and doubts come from the detector and the hash index, not from FilterConfig.
"""

from __future__ import annotations

import importlib
import pkgutil
from datetime import datetime

from PIL import Image

from ..image_stats import colour_stats, sharpness_stats  # noqa: F401  (part of this package's API)
from . import base
from .base import FACE, IMAGE, Filter, Score, Subject, Verdict, fingerprint, log_ratio, register, unregister
from .config import FilterConfig

# Every module here but the framework is a filter: importing it registers it.
for _m in pkgutil.iter_modules(__path__):
    if _m.name not in ("base", "config") and not _m.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_m.name}")

# After the loop on purpose: these rebind the package's names from the modules to the functions.
from .face_share import face_share  # noqa: E402
from .face_size import face_size  # noqa: E402
from .monochrome import monochrome  # noqa: E402
from .photo import photo  # noqa: E402
from .published_after import published_after  # noqa: E402
from .sharpness import sharpness  # noqa: E402


registered = base.registered  # every filter, in run order (live: one registered later shows here)


def filter_version(name: str, cfg: FilterConfig) -> str:
    """The code version of a filter plus a fingerprint of the settings it reads (what the
    ledger's `version` column holds; a change re-runs that filter alone). An unknown name
    reads nothing and has version 0."""
    f = base.get(name)
    return f.fingerprint(cfg) if f is not None else fingerprint("0", (), cfg)


def run_image_filters(image: Image.Image, cfg: FilterConfig = FilterConfig()) -> list[Verdict]:
    """On the whole decoded picture, before detection (each filter says why it runs there)."""
    subject = Subject.of_image(image)
    return [f(subject, cfg) for f in base.registered() if IMAGE in f.judges]


def run_face_filters(face_w: int, face_h: int, image_w: int, image_h: int, crop: Image.Image,
                     published_at: datetime | None, cfg: FilterConfig = FilterConfig(),
                     faces: int = 0) -> list[Verdict]:
    """On one face: its box (source pixels), the picture's size, the crop as it will be used,
    the item's publication date and the number of faces found in the picture (0: not known)."""
    subject = Subject.of_face(face_w, face_h, image_w, image_h, crop, published_at, faces)
    return [f(subject, cfg) for f in base.registered() if FACE in f.judges]


# Snapshots of the registry once every module here has registered (what the stage imports).
# Bump a filter's version whenever its score changes meaning; FILTERS_VERSION follows.
VERSIONS: dict[str, str] = {f.name: f.version for f in base.registered()}
FILTERS_VERSION = ",".join(f"{name}={v}" for name, v in sorted(VERSIONS.items()))
# The settings each filter's verdict depends on: a change to one of them re-runs that filter
# alone (no detection, no other filter).
FILTER_FIELDS: dict[str, tuple[str, ...]] = {f.name: f.reads for f in base.registered()}
IMAGE_FILTERS: tuple[str, ...] = tuple(f.name for f in base.registered() if IMAGE in f.judges)
FACE_FILTERS: tuple[str, ...] = tuple(f.name for f in base.registered() if FACE in f.judges)

__all__ = ["FACE", "FACE_FILTERS", "FILTERS_VERSION", "FILTER_FIELDS", "IMAGE", "IMAGE_FILTERS", "VERSIONS",
           "Filter", "FilterConfig", "Score", "Subject", "Verdict", "colour_stats", "face_share", "face_size",
           "filter_version", "log_ratio", "monochrome", "photo", "published_after", "register", "registered",
           "run_face_filters", "run_image_filters", "sharpness", "sharpness_stats", "unregister"]
