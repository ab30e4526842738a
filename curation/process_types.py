"""The process stage's records of work: its settings, one image's job and its outcome.

Plain data, picklable, shared by the planner, the workers (`curation.process.run`) and the
flows that map jobs over a task runner.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime

from manifests.records import FaceCrop, FilterResult, HashRecord

from .crop import CropConfig
from .detect import DetectorConfig, Face
from .filters import FilterConfig
from .hashes import HashConfig


@dataclass(frozen=True)
class ProcessConfig:
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    crop: CropConfig = field(default_factory=CropConfig)
    filters: FilterConfig = field(default_factory=FilterConfig)
    hashing: HashConfig = field(default_factory=HashConfig)  # of face crops
    # Of whole pictures: the same artwork at another size or encoding gives crops whose boxes
    # jitter (a 3% shift moves a crop's pHash by ~10 bits), while the pictures' hashes stay
    # within the radius: pHash-64 puts the known resizes and re-encodings of ../shared/data at
    # 0-2 bits at any size, and every other pair at 12 or more.
    image_hashing: HashConfig = field(default_factory=HashConfig)
    dedup_policy: str = "clean,largest,lossless,original,earliest"
    # What a crop is centred on (curation/subject.py): "faces" (the detectors), "whole" (one
    # square per picture, centred on its subject: pictures that are already headshots) or
    # "auto" (the detectors, else the whole picture as a doubtful crop).
    subject: str = "faces"
    workers: int = 0  # 0 = one per core
    part_rows: int = 2000
    part_seconds: float = 10.0

    def __post_init__(self) -> None:
        from .subject import SUBJECTS

        if self.subject not in SUBJECTS:
            raise ValueError(f"subject must be one of {', '.join(SUBJECTS)}, not {self.subject!r}")

    def as_dict(self) -> dict:
        d = asdict(self)
        d["detector"] = self.detector.as_dict()
        d["filters"] = self.filters.as_dict()
        d["hashing"] = self.hashing.as_dict()
        d["image_hashing"] = self.image_hashing.as_dict()
        return d


@dataclass
class Job:
    """One image's work: detect (faces None), re-crop from known boxes, or re-run stale filters."""

    image_sha256: str
    blob_path: str
    published_at: datetime | None
    faces: list[Face] | None = None  # known boxes (re-crop), or None to detect
    # Filters only, for settings that changed: the image's own, and crop id -> (face, crop path).
    refilter_image: bool = False
    refilter_crops: dict[str, tuple[Face, str]] = field(default_factory=dict)
    size: tuple[int, int] = (0, 0)  # the image's width and height after orientation
    # `--subject auto`, no face found: crop the whole picture (faces is then []).
    whole: bool = False
    face_count: int = 0  # re-judging: how many current crops the picture has (face share of a sheet)

    @property
    def filters_only(self) -> bool:
        return self.faces is None and (self.refilter_image or bool(self.refilter_crops))

    @property
    def kind(self) -> str:
        return "refilter" if self.filters_only else "detect" if self.faces is None else "recrop"


@dataclass
class Outcome:
    image_sha256: str
    crops: list[FaceCrop] = field(default_factory=list)
    filters: list[FilterResult] = field(default_factory=list)
    hashes: list[HashRecord] = field(default_factory=list)
    error: str = ""
    detected: bool = False  # this outcome is the image's detection (its "faces" row)
