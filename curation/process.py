"""The process stage: stored images -> face crops, filter verdicts, hashes and duplicate groups.

`process()` handles only what is new. Detection is recorded per image and detector setting
(a "faces" row in the ledger, also for images with no face), so a rerun skips what it has
seen; a new crop margin or size re-crops from the stored face boxes without detecting again;
new thresholds re-judge the stored scores. Image work runs on every core; rows are written as
whole Parquet parts while it goes, so a killed run resumes where it was.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import io
import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Iterator

from manifests import tables
from manifests.atomic import DiskFull, write_bytes_atomic
from manifests.records import FaceCrop, FilterResult, HashRecord, ScrapedImage, StoredImage
from manifests.workspace import Workspace, new_run_id
from media.decode import bounded, decode_upright, prepare_from, with_alpha

from .crop import CropConfig, crop_id, make_crop, square_box
from .detect import DetectorConfig, Face, detect_faces, detector_version, disagreement, prepare
from .filters import VERSIONS, FilterConfig, Verdict, run_face_filters, run_image_filters
from .hashes import HashConfig, hash_records, sha256_of_image_pixels
from .workers import die_with_parent, forkserver_context


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
    dedup_policy: str = "largest,lossless,original,earliest"
    workers: int = 0  # 0 = one per core
    part_rows: int = 2000
    part_seconds: float = 10.0

    def as_dict(self) -> dict:
        d = asdict(self)
        d["detector"] = self.detector.as_dict()
        d["filters"] = self.filters.as_dict()
        d["hashing"] = self.hashing.as_dict()
        d["image_hashing"] = self.image_hashing.as_dict()
        return d


def detection_key(cfg: DetectorConfig, cascade_dir: Path | None = None) -> str:
    """What a detection result depends on: the settings and the exact code and model bytes."""
    text = cfg.params_json() + "|" + detector_version(cfg, cascade_dir)
    return "faces:" + hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class Job:
    image_sha256: str
    blob_path: str
    published_at: datetime | None
    faces: list[Face] | None = None  # known boxes (re-crop), or None to detect
    # Filters only, for settings that changed: the image's own, and crop id -> (face, crop path).
    refilter_image: bool = False
    refilter_crops: dict[str, tuple[Face, str]] = field(default_factory=dict)
    size: tuple[int, int] = (0, 0)  # the image's width and height after orientation

    @property
    def filters_only(self) -> bool:
        return self.faces is None and (self.refilter_image or bool(self.refilter_crops))


@dataclass
class Outcome:
    image_sha256: str
    crops: list[FaceCrop] = field(default_factory=list)
    filters: list[FilterResult] = field(default_factory=list)
    hashes: list[HashRecord] = field(default_factory=list)
    error: str = ""
    detected: bool = False  # this outcome is the image's detection (its "faces" row)


# The settings each filter's verdict depends on: a change to one of them re-runs that filter
# alone (no detection, no other filter).
FILTER_FIELDS = {
    "monochrome": ("min_colour", "max_tint_share", "doubtful_margin"),
    "sharpness": ("min_sharpness", "doubtful_margin"),
    "face_size": ("min_face_side", "doubtful_margin"),
    "face_share": ("min_face_share", "doubtful_margin"),
    "published_after": ("min_published", "keep_undated", "doubtful_days"),
}
IMAGE_FILTERS = ("monochrome",)
FACE_FILTERS = ("face_size", "face_share", "sharpness", "monochrome", "published_after")


def filter_version(name: str, cfg: FilterConfig) -> str:
    """The code version of a filter plus a fingerprint of the settings it reads."""
    d = cfg.as_dict()
    fields = json.dumps({k: d[k] for k in FILTER_FIELDS.get(name, ())}, sort_keys=True, default=str)
    return f"{VERSIONS.get(name, '0')}+{hashlib.sha256(fields.encode()).hexdigest()[:8]}"


def _record(v: Verdict, subject: str, cfg: FilterConfig) -> FilterResult:
    return replace(v.record(subject), doubtful=bool(v.doubtful), version=filter_version(v.filter, cfg))


CROP_MODE = 0o444
WHOLE_HASH_SIDE = 1600  # the working size of whole-picture hashes when detection has none


def crop_relpath(cid: str) -> str:
    return f"crops/{cid[:2]}/{cid}.png"


# --- worker side ----------------------------------------------------------------------------

_W: dict = {}


def _init_worker(home: str, cfg: ProcessConfig, det_key: str, det_version: str) -> None:
    die_with_parent()
    import cv2

    cv2.setNumThreads(1)  # the pool already has a process per core: OpenCV's own threads would contend
    _W.update(home=Path(home), cfg=cfg, det_key=det_key, det_version=det_version)


def work(job: Job) -> Outcome:
    """All the pixel work for one image. Never raises: a failure is an Outcome with an error."""
    try:
        out = _work(job)
    except DiskFull:
        raise  # not this image's fault: the run stops (recording it as seen would skip it for good)
    except Exception as exc:  # one bad image must cost one row, not the run
        out = Outcome(job.image_sha256, error=f"{type(exc).__name__}: {exc}")
    out.detected = job.faces is None and not job.filters_only
    return out


def _refilter(job: Job) -> Outcome:
    cfg: ProcessConfig = _W["cfg"]
    home: Path = _W["home"]
    out = Outcome(job.image_sha256)
    if job.refilter_image:
        image = prepare((home / job.blob_path).read_bytes())
        out.filters += [_record(v, job.image_sha256, cfg.filters) for v in run_image_filters(image, cfg.filters)]
    width, height = job.size
    for cid, (face, path) in job.refilter_crops.items():
        from PIL import Image

        with Image.open(home / path) as crop:
            crop.load()
            verdicts = run_face_filters(face.w, face.h, width, height, crop, job.published_at, cfg.filters)
        out.filters += [_record(v, cid, cfg.filters) for v in verdicts]
    return out


def _work(job: Job) -> Outcome:
    if job.filters_only:
        return _refilter(job)
    cfg: ProcessConfig = _W["cfg"]
    home: Path = _W["home"]
    upright = decode_upright((home / job.blob_path).read_bytes())  # once, for crops, filters and hashes
    image = prepare_from(upright)
    width, height = image.size
    out = Outcome(job.image_sha256)
    faces = job.faces
    if faces is None:
        out.filters += [_record(v, job.image_sha256, cfg.filters) for v in run_image_filters(image, cfg.filters)]
        # One working copy for detection and the picture's hash: shrunk once, not per use.
        work = bounded(image, cfg.detector.max_side)
        faces = detect_faces(work, cfg.detector, source_size=image.size)
        doubts = disagreement(faces, cfg.detector)
        reason = (f"{len(faces)} face(s) found" if faces else "no face found") + (
            "; " + "; ".join(doubts) if doubts else "")
        out.filters.append(FilterResult(subject_id=job.image_sha256, filter="faces", score=float(len(faces)),
                                        threshold=1.0, passed=bool(faces), version=_W["det_key"],
                                        reason=reason, doubtful=bool(doubts)))
        # The picture's own hash, alpha kept: a transparent sprite is also hashed on black, which
        # is how a copy saved without its alpha channel still matches. At the working size: a
        # 32 x 32 hash of a 9000 px picture is the same as of its 1600 px copy, within a bit or two.
        side = cfg.detector.max_side or WHOLE_HASH_SIDE
        whole = work if upright is image and side == cfg.detector.max_side else bounded(with_alpha(upright), side)
        out.hashes += hash_records(job.image_sha256, whole, cfg.image_hashing)
    params = cfg.detector.params_json()
    for face in faces:
        box = square_box(face, width, height, cfg.crop)
        crop = make_crop(image, box, cfg.crop)
        cid = crop_id(job.image_sha256, face.box, params, cfg.crop.margin, cfg.crop.size, pad=cfg.crop.pad)
        buf = io.BytesIO()
        crop.save(buf, "PNG", optimize=False)
        rel = crop_relpath(cid)
        if not (home / rel).exists():
            # Read-only: a crop is shared by every dataset version that holds it, so a tool
            # that edits an image in place (a hard-linked export) must not change it for all.
            write_bytes_atomic(home / rel, buf.getvalue(), durable=False, mode=CROP_MODE)
        out.crops.append(FaceCrop(
            crop_id=cid, image_sha256=job.image_sha256, box_x=face.x, box_y=face.y, box_w=face.w, box_h=face.h,
            margin=cfg.crop.margin, detector=face.detector, detector_version=_W["det_version"],
            detector_params=params, score=float(face.score), crop_path=rel, size=cfg.crop.size,
            crop_sha256=sha256_of_image_pixels(crop),
        ))
        verdicts = run_face_filters(face.w, face.h, width, height, crop, job.published_at, cfg.filters)
        out.filters += [_record(v, cid, cfg.filters) for v in verdicts]
        out.hashes += hash_records(cid, crop, cfg.hashing)
    return out


# --- driver side ----------------------------------------------------------------------------


def _size_of(ws: Workspace, rel: str) -> int:
    try:
        return (ws.home / rel).stat().st_size
    except OSError:
        return 0


@dataclass
class ProcessReport:
    run_id: str
    images_detected: int = 0
    images_recropped: int = 0
    images_failed: int = 0
    crops_new: int = 0
    rejudged: int = 0  # images whose filters alone ran again
    duplicates: int = 0
    borderline: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def did_work(self) -> bool:
        return bool(self.images_detected or self.images_recropped or self.rejudged or self.crops_new)


def _published(ws: Workspace) -> dict[str, datetime]:
    """The earliest known publication date of each content (the same bytes may come from several pages)."""
    out: dict[str, datetime] = {}
    for r in tables.read_table(ws, ScrapedImage, ["image_sha256", "published_at"]).to_pylist():
        when, sha = r["published_at"], r["image_sha256"]
        if sha and when is not None and (sha not in out or when < out[sha]):
            out[sha] = when
    return out


def plan(ws: Workspace, cfg: ProcessConfig, det_key: str) -> tuple[list[Job], list[Job], list[Job]]:
    """(images to detect, images to re-crop from stored boxes, images whose filters are stale)."""
    images = {r["image_sha256"]: r for r in tables.read_table(
        ws, StoredImage, ["image_sha256", "status", "blob_path", "width", "height"]).to_pylist()
        if r["status"] == "ok" and r["blob_path"]}
    ledger = tables.read_table(ws, FilterResult, ["subject_id", "filter", "version", "score"]).to_pylist()
    detected = {r["subject_id"]: r["score"] for r in ledger if r["filter"] == "faces" and r["version"] == det_key}
    have = {(r["subject_id"], r["filter"]): r["version"] for r in ledger}
    params = cfg.detector.params_json()
    crops = [r for r in tables.read_table(ws, FaceCrop).to_pylist() if r["detector_params"] == params]
    boxes: dict[str, dict[tuple, Face]] = {}
    current: dict[str, list[dict]] = {}
    for r in crops:
        face = Face(r["box_x"], r["box_y"], r["box_w"], r["box_h"], r["score"], r["detector"])
        boxes.setdefault(r["image_sha256"], {})[face.box] = face
        if abs(r["margin"] - cfg.crop.margin) < 1e-6 and r["size"] == cfg.crop.size:
            current.setdefault(r["image_sha256"], []).append(r)
    published = _published(ws)

    def stale(subject: str, names: tuple[str, ...]) -> bool:
        return any(have.get((subject, n)) != filter_version(n, cfg.filters) for n in names)

    detect, recrop, refilter = [], [], []
    for sha, r in images.items():
        job = Job(sha, r["blob_path"], published.get(sha), size=(r["width"], r["height"]))
        if sha not in detected:
            detect.append(job)
        elif detected[sha] > 0 and sha not in current and sha in boxes:
            job.faces = sorted(boxes[sha].values(), key=lambda f: f.box)
            recrop.append(job)
        else:
            job.refilter_image = stale(sha, IMAGE_FILTERS)
            job.refilter_crops = {
                c["crop_id"]: (Face(c["box_x"], c["box_y"], c["box_w"], c["box_h"], c["score"], c["detector"]),
                               c["crop_path"])
                for c in current.get(sha, []) if stale(c["crop_id"], FACE_FILTERS)}
            if job.filters_only:
                refilter.append(job)
    return detect, recrop, refilter


def _run(jobs: list[Job], ws: Workspace, cfg: ProcessConfig, det_key: str, det_version: str,
         progress: bool) -> Iterator[Outcome]:
    if not jobs:
        return
    from tqdm import tqdm

    workers = min(cfg.workers or os.cpu_count() or 1, len(jobs))
    # A fork server starts clean once (no OpenCV locks held) and hands out workers that
    # import the detectors only once.
    ctx = forkserver_context(["curation.process"])
    pool = cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                                  initargs=(str(ws.home), cfg, det_key, det_version))
    try:
        with tqdm(total=len(jobs), unit="img", desc="process", disable=None if progress else True) as bar:
            for outcome in pool.map(work, jobs, chunksize=4):
                bar.update(1)
                yield outcome
    except BaseException:
        # A full disk, a Ctrl-C, or the caller giving up: the images not started are not
        # started (map queued them all), so the run ends in seconds, not after each failed.
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def process(ws: Workspace, cfg: ProcessConfig | None = None, progress: bool = True) -> ProcessReport:
    """Run the stage on everything new in `ws`. Takes the workspace's writer lock."""
    from .process_dedup import dedup

    cfg = cfg or ProcessConfig()
    run_id = new_run_id("process")
    report = ProcessReport(run_id)
    det_version = detector_version(cfg.detector)
    det_key = detection_key(cfg.detector)
    meta = cfg.as_dict()
    with ws.writer_lock(f"process {run_id}"):
        detect, recrop, refilter = plan(ws, cfg, det_key)
        buffers: dict[type, list] = {FaceCrop: [], FilterResult: [], HashRecord: []}
        last = time.monotonic()

        def flush() -> None:
            for cls in (FaceCrop, HashRecord, FilterResult):  # the ledger last: it marks an image done
                tables.append(ws, cls, buffers[cls], run_id, meta)
                buffers[cls] = []

        jobs = detect + recrop + refilter
        done, crop_bytes = 0, 0
        full: DiskFull | None = None
        try:
            for outcome in _run(jobs, ws, cfg, det_key, det_version, progress):
                done += 1
                if outcome.error:
                    report.images_failed += 1
                    report.errors.append(f"{outcome.image_sha256[:12]}: {outcome.error}")
                    if outcome.detected:  # recorded as seen, with the reason: a rerun would fail the same way
                        buffers[FilterResult].append(FilterResult(
                            subject_id=outcome.image_sha256, filter="faces", score=0.0, threshold=1.0, passed=False,
                            version=det_key, reason=f"the image could not be processed: {outcome.error}"))
                    continue
                buffers[FaceCrop] += outcome.crops
                buffers[FilterResult] += outcome.filters
                buffers[HashRecord] += outcome.hashes
                report.crops_new += len(outcome.crops)
                crop_bytes += sum(_size_of(ws, c.crop_path) for c in outcome.crops)
                if sum(map(len, buffers.values())) >= cfg.part_rows or time.monotonic() - last > cfg.part_seconds:
                    flush()
                    last = time.monotonic()
        except DiskFull as exc:
            # What the rest would take: crops at this run's average so far (a 128 px PNG is
            # ~30 KB), plus the rows.
            per_image = crop_bytes / done if done and crop_bytes else 3 * cfg.crop.size ** 2 * 0.6
            full = exc.needing(int((len(jobs) - done) * (per_image + 2000)))
        finally:
            try:
                flush()
            except DiskFull:
                if full is None:
                    raise
        if full is not None:
            raise full
        report.images_detected, report.images_recropped, report.rejudged = len(detect), len(recrop), len(refilter)
        report.duplicates, report.borderline = dedup(ws, cfg, run_id, changed=report.did_work)
        for cls in (FaceCrop, HashRecord, FilterResult):
            tables.compact(ws, cls, run_id)
        from manifests.records import DupGroup

        tables.compact(ws, DupGroup, run_id)
        write_selection(ws, cfg)
    return report


def write_selection(ws: Workspace, cfg: ProcessConfig) -> None:
    """Remember which crops the latest run's settings make: the review queue and dataset builds show those."""
    from manifests.atomic import write_bytes_atomic

    from .review.items import SELECTION_FILE

    doc = {"detector_params": cfg.detector.params_json(), "margin": cfg.crop.margin, "size": cfg.crop.size,
           "config": cfg.as_dict()}
    data = json.dumps(doc, indent=1, default=str, sort_keys=True).encode()
    path = ws.manifests / SELECTION_FILE
    if not path.exists() or path.read_bytes() != data:  # a rerun on the same settings writes nothing
        write_bytes_atomic(path, data)
