"""What a filter is: one class that scores a picture or a face, judges the score against its
threshold, and says which settings, ledger fields and learner features it owns.

Every score is "higher passes": passed == (score >= threshold). `score` reads pixels or
geometry and no setting, so a verdict can be judged again from it under other settings;
`judge` is where every setting is read. A filter's version fingerprint covers exactly the
settings it `reads`: changing one of them re-judges that filter alone, and nothing else.

A filter registers itself with `@register`; the package imports every module in this folder,
so a new filter is one new file here (and its test).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, ClassVar, Mapping

from PIL import Image

from manifests.records import FilterResult

from .config import FilterConfig

IMAGE, FACE = "image", "face"  # what a filter judges: a whole picture before detection, or one face
CONFIG_FIELDS = frozenset(f.name for f in fields(FilterConfig))
# What `Verdict.record` fills in a FilterResult (subject_id and filter name aside).
LEDGER_FIELDS = ("score", "threshold", "passed", "reason", "doubtful", "version")
RATIO_CLIP = 4.0  # log2(score / threshold): 16x either side says all there is to say


@dataclass(frozen=True)
class Verdict:
    filter: str
    score: float
    threshold: float
    passed: bool
    reason: str
    doubtful: bool
    version: str

    def record(self, subject_id: str) -> FilterResult:
        """This verdict as a row of the rejection ledger."""
        return FilterResult(subject_id=subject_id, filter=self.filter, score=float(self.score),
                            threshold=float(self.threshold), passed=bool(self.passed),
                            version=self.version, reason=self.reason, doubtful=bool(self.doubtful))


@dataclass(frozen=True)
class Subject:
    """What a filter is shown. For a face: its box in source pixels, the picture's size, the
    crop as it will be used (`pixels`), the item's publication date and how many faces were
    found in the picture (`faces`; 0 when the caller does not say). For a whole picture: the
    decoded picture (`pixels`) and its size."""

    kind: str  # IMAGE or FACE
    pixels: Image.Image | None = None
    face_w: int = 0
    face_h: int = 0
    image_w: int = 0
    image_h: int = 0
    published_at: datetime | None = None
    faces: int = 0

    @classmethod
    def of_image(cls, image: Image.Image, published_at: datetime | None = None) -> "Subject":
        return cls(IMAGE, image, image_w=image.width, image_h=image.height, published_at=published_at)

    @classmethod
    def of_face(cls, face_w: int, face_h: int, image_w: int = 0, image_h: int = 0, crop: Image.Image | None = None,
                published_at: datetime | None = None, faces: int = 0) -> "Subject":
        return cls(FACE, crop, face_w, face_h, image_w, image_h, published_at, faces)


@dataclass(frozen=True)
class Score:
    """A filter's measurement before any setting is applied: the value the ledger keeps (or
    the raw value it is derived from, see Monochrome) and the numbers the reason quotes."""

    value: float
    facts: Mapping[str, Any] = field(default_factory=dict)


def log_ratio(score: float, threshold: float) -> float:
    """Where a score lies relative to its threshold, on a scale that means the same for every
    crop: log2(score / threshold), clipped. Without a usable threshold, 0 (the learner then
    goes by `passed`)."""
    if not (math.isfinite(score) and math.isfinite(threshold)) or threshold <= 0:
        return 0.0
    r = math.log2(max(score, 0.0) / threshold) if score > 0 else -RATIO_CLIP
    return max(-RATIO_CLIP, min(RATIO_CLIP, r))


def fingerprint(version: str, reads: tuple[str, ...], cfg: FilterConfig) -> str:
    """`<code version>+<8 hex of the settings read>`. Stored in every ledger row: keep it
    byte-identical for the same settings, or every workspace re-runs every filter."""
    d = cfg.as_dict()
    text = json.dumps({k: d[k] for k in reads}, sort_keys=True, default=str)
    return f"{version}+{hashlib.sha256(text.encode()).hexdigest()[:8]}"


class Filter:
    """One filter. Subclasses set the class attributes, write `score` and `reason`, and
    override `judge` only when the threshold-and-margin rule does not fit (dates, duotones)."""

    name: ClassVar[str] = ""  # the ledger's `filter` column
    # Bump whenever the score changes meaning, so ledger rows measured by different code are
    # never compared.
    version: ClassVar[str] = ""
    # The FilterConfig fields the verdict depends on, the threshold first. Nothing else may
    # be read: the version fingerprint is made of these.
    reads: ClassVar[tuple[str, ...]] = ()
    judges: ClassVar[tuple[str, ...]] = (FACE,)  # IMAGE and/or FACE
    # Position in run order, in the ledger and in the learner's features: cheap geometry first.
    order: ClassVar[int] = 100
    writes: ClassVar[tuple[str, ...]] = LEDGER_FIELDS
    # Per-verdict features for the review learner (it adds "<name>.present" itself).
    features: ClassVar[tuple[str, ...]] = ("ratio", "passed")

    def score(self, subject: Subject) -> Score:
        raise NotImplementedError

    def reason(self, score: Score, threshold: float, passed: bool, cfg: FilterConfig) -> str:
        return f"{self.name} {score.value:.3g} {'>=' if passed else '<'} {threshold:g}"

    def threshold(self, cfg: FilterConfig) -> float:
        return float(getattr(cfg, self.reads[0]))

    def judge(self, score: Score, cfg: FilterConfig) -> Verdict:
        """Passed at or above the threshold; doubtful within `doubtful_margin` of it."""
        threshold = self.threshold(cfg)
        passed = score.value >= threshold
        doubtful = abs(score.value - threshold) <= cfg.doubtful_margin * abs(threshold)
        return self.verdict(score.value, threshold, passed, self.reason(score, threshold, passed, cfg), doubtful)

    def __call__(self, subject: Subject, cfg: FilterConfig = FilterConfig()) -> Verdict:
        return self.judge(self.score(subject), cfg)

    def verdict(self, score: float, threshold: float, passed: bool, reason: str, doubtful: bool) -> Verdict:
        return Verdict(self.name, float(score), float(threshold), bool(passed), reason, bool(doubtful), self.version)

    def fingerprint(self, cfg: FilterConfig) -> str:
        """The version the ledger stores: the code's, plus the settings this filter reads."""
        return fingerprint(self.version, self.reads, cfg)

    def ratio(self, score: float, threshold: float) -> float:
        return log_ratio(score, threshold)

    def learner_features(self, score: float, threshold: float, passed: bool) -> tuple[float, ...]:
        """One value per `features` entry, from a ledger row. Lower is worse: a filter that ran
        twice on a crop counts with the lower of each."""
        return (self.ratio(score, threshold), float(passed))


# --- the registry --------------------------------------------------------------------------------
_REGISTRY: dict[str, Filter] = {}


def check(cls: type[Filter]) -> None:
    """Raise ValueError when a filter class breaks the contract."""
    if not cls.name or not cls.version:
        raise ValueError(f"{cls.__name__}: a filter needs a name and a version")
    if not cls.reads or not set(cls.reads) <= CONFIG_FIELDS:
        raise ValueError(f"{cls.__name__}: reads {cls.reads} must be FilterConfig fields "
                         f"(not {sorted(set(cls.reads) - CONFIG_FIELDS)})")
    if not cls.judges or not set(cls.judges) <= {IMAGE, FACE}:
        raise ValueError(f"{cls.__name__}: judges {cls.judges} must be {IMAGE!r} and/or {FACE!r}")
    ledger = {f.name for f in fields(FilterResult)}
    if not set(cls.writes) <= ledger or not cls.features or len(set(cls.features)) != len(cls.features):
        raise ValueError(f"{cls.__name__}: writes must be FilterResult fields, features distinct names")


def register(cls: type[Filter]) -> type[Filter]:
    """Class decorator: check the filter and add it to the registry under its name."""
    check(cls)
    if cls.name in _REGISTRY and type(_REGISTRY[cls.name]) is not cls:
        raise ValueError(f"two filters named {cls.name!r}: {type(_REGISTRY[cls.name]).__name__} and {cls.__name__}")
    _REGISTRY[cls.name] = cls()
    return cls


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def registered() -> list[Filter]:
    """Every registered filter, in run order."""
    return sorted(_REGISTRY.values(), key=lambda f: (f.order, f.name))


def get(name: str) -> Filter | None:
    return _REGISTRY.get(name)
