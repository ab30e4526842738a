"""The process stage: stored images -> face crops, filter verdicts, hashes and duplicate groups.

`process()` handles only what is new. Detection is recorded per image and detector setting
(a "faces" row in the ledger, also for images with no face), so a rerun skips what it has
seen; a new crop margin or size re-crops from the stored face boxes without detecting again;
new thresholds re-judge the stored scores. Image work runs on every core; rows are written as
whole Parquet parts while it goes, so a killed run resumes where it was.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from manifests import tables
from manifests.atomic import DiskFull, write_bytes_atomic
from manifests.stage import RowBuffer, StageReport, run_items, write_rows
from manifests.records import FaceCrop, FilterResult, HashRecord, ScrapedImage, StoredImage
from manifests.workspace import Workspace, new_run_id
from media.decode import bounded, decode_upright, prepare_from, with_alpha

from . import selection
from .crop import crop_id, make_crop, square_box
from .detect import Face, detect_faces, detector_version, disagreement, prepare
from .filters import FilterConfig, Verdict, run_face_filters, run_image_filters
from .selection import CropSettings
from .hashes import hash_records, sha256_of_image_pixels
from .subject import (FALLBACK_FILTER, FALLBACK_REASON, WHOLE, WHOLE_VERSION, fallback_params, find_subject,
                      process_key, subject_version, whole_params, whole_square)
from .process_types import Job, Outcome, ProcessConfig  # noqa: F401  (part of this module's API)


# Where each filter runs, the settings its verdict depends on (a change to one of them re-runs
# that filter alone: no detection, no other filter) and its version: each filter's class says.
from .filters import FACE_FILTERS, FILTER_FIELDS, IMAGE_FILTERS, filter_version  # noqa: E402,F401


def _record(v: Verdict, subject: str, cfg: FilterConfig) -> FilterResult:
    return replace(v.record(subject), doubtful=bool(v.doubtful), version=filter_version(v.filter, cfg))


UNREADABLE = "the image could not be processed"  # how the ledger's "faces" row starts for a picture that failed
CROP_MODE = 0o444
WHOLE_HASH_SIDE = 1600  # the working size of whole-picture hashes when detection has none


def crop_relpath(cid: str) -> str:
    return f"crops/{cid[:2]}/{cid}.png"


# --- worker side: `run(job, context)`, pure ------------------------------------------------


@dataclass(frozen=True)
class ProcessContext:
    """What every job of one run needs besides itself: picklable, handed to each worker once."""

    home: str
    cfg: ProcessConfig
    det_key: str
    det_version: str


def context(ws: Workspace, cfg: ProcessConfig) -> ProcessContext:
    version = subject_version(cfg) if cfg.subject == "whole" else detector_version(cfg.detector)
    return ProcessContext(str(ws.home), cfg, process_key(cfg), version)


def worker_setup() -> None:
    import cv2

    cv2.setNumThreads(1)  # the pool already has a process per core: OpenCV's own threads would contend


def run(job: Job, ctx: ProcessContext) -> Outcome:
    """All the pixel work for one image. Never raises for the image's own faults: a failure is
    an Outcome with an error (a full disk does raise: it is not the image's fault, and recording
    the image as seen would skip it for good)."""
    try:
        out = _refilter(job, ctx) if job.filters_only else _work(job, ctx)
    except DiskFull:
        raise
    except Exception as exc:  # one bad image must cost one row, not the run
        out = Outcome(job.image_sha256, error=f"{type(exc).__name__}: {exc}")
    out.detected = job.kind == "detect"
    return out


def _refilter(job: Job, ctx: ProcessContext) -> Outcome:
    cfg, home = ctx.cfg, Path(ctx.home)
    out = Outcome(job.image_sha256)
    if job.refilter_image:
        image = prepare((home / job.blob_path).read_bytes())
        out.filters += [_record(v, job.image_sha256, cfg.filters) for v in run_image_filters(image, cfg.filters)]
    width, height = job.size
    for cid, (face, path) in job.refilter_crops.items():
        from PIL import Image

        with Image.open(home / path) as crop:
            crop.load()
            verdicts = run_face_filters(face.w, face.h, width, height, crop, job.published_at, cfg.filters,
                                        faces=job.face_count or len(job.refilter_crops))
        out.filters += [_record(v, cid, cfg.filters) for v in verdicts]
    return out


def _subject_view(upright, image):
    """What the subject is found on: the picture with its transparency where it has some (the
    opaque part is the subject), else the prepared picture."""
    return with_alpha(upright) if upright.has_transparency_data else image


def _work(job: Job, ctx: ProcessContext) -> Outcome:
    cfg, home = ctx.cfg, Path(ctx.home)
    upright = decode_upright((home / job.blob_path).read_bytes())  # once, for crops, filters and hashes
    image = prepare_from(upright)
    width, height = image.size
    out = Outcome(job.image_sha256)
    faces = job.faces
    fallback = job.whole  # `auto`, no face found earlier: the whole picture now
    if faces is None:
        out.filters += [_record(v, job.image_sha256, cfg.filters) for v in run_image_filters(image, cfg.filters)]
        # One working copy for detection and the picture's hash: shrunk once, not per use.
        work = bounded(image, cfg.detector.max_side)
        if cfg.subject == WHOLE:
            subject, how = find_subject(_subject_view(upright, image))
            faces = [subject]
            out.filters.append(FilterResult(subject_id=job.image_sha256, filter="faces", score=1.0, threshold=1.0,
                                            passed=True, version=ctx.det_key, doubtful=False,
                                            reason=f"the whole picture, centred on its subject ({how}; --subject whole)"))
        else:
            faces = detect_faces(work, cfg.detector, source_size=image.size)
            doubts = disagreement(faces, cfg.detector)
            reason = (f"{len(faces)} face(s) found" if faces else "no face found") + (
                "; " + "; ".join(doubts) if doubts else "")
            out.filters.append(FilterResult(subject_id=job.image_sha256, filter="faces", score=float(len(faces)),
                                            threshold=1.0, passed=bool(faces), version=ctx.det_key,
                                            reason=reason, doubtful=bool(doubts)))
            fallback = not faces and cfg.subject == "auto"
        # The picture's own hash, alpha kept: a transparent sprite is also hashed on black, which
        # is how a copy saved without its alpha channel still matches. At the working size: a
        # 32 x 32 hash of a 9000 px picture is the same as of its 1600 px copy, within a bit or two.
        side = cfg.detector.max_side or WHOLE_HASH_SIDE
        hashed = work if upright is image and side == cfg.detector.max_side else bounded(with_alpha(upright), side)
        out.hashes += hash_records(job.image_sha256, hashed, cfg.image_hashing)
    if fallback:
        faces = [find_subject(_subject_view(upright, image))[0]]
    detector_params = cfg.detector.params_json()
    for face in faces:
        whole = face.detector == WHOLE
        params = (whole_params() if cfg.subject == WHOLE else fallback_params(detector_params)) if whole \
            else detector_params
        box = whole_square(face, width, height) if whole else square_box(face, width, height, cfg.crop)
        crop = make_crop(image, box, cfg.crop)
        cid = crop_id(job.image_sha256, face.box, params, cfg.crop.margin, cfg.crop.size, pad=cfg.crop.pad)
        buf = io.BytesIO()
        crop.save(buf, "PNG", optimize=False, compress_level=1)  # a fast deflate: the pixels are what count
        rel = crop_relpath(cid)
        if not (home / rel).exists():
            # Read-only: a crop is shared by every dataset version that holds it, so a tool
            # that edits an image in place (a hard-linked export) must not change it for all.
            write_bytes_atomic(home / rel, buf.getvalue(), durable=False, mode=CROP_MODE)
        out.crops.append(FaceCrop(
            crop_id=cid, image_sha256=job.image_sha256, box_x=face.x, box_y=face.y, box_w=face.w, box_h=face.h,
            margin=cfg.crop.margin, detector=face.detector, detector_version=ctx.det_version,
            detector_params=params, score=float(face.score), crop_path=rel, size=cfg.crop.size,
            crop_sha256=sha256_of_image_pixels(crop), pad=cfg.crop.pad,
        ))
        if whole and cfg.subject != WHOLE:  # an `auto` fallback: a person decides
            out.filters.append(FilterResult(subject_id=cid, filter=FALLBACK_FILTER, score=0.0, threshold=1.0,
                                            passed=True, version=WHOLE_VERSION, reason=FALLBACK_REASON,
                                            doubtful=True))
        verdicts = run_face_filters(face.w, face.h, width, height, crop, job.published_at, cfg.filters,
                                    faces=len(faces))
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
    stage: StageReport = None  # type: ignore[assignment]  # set in __post_init__
    images_detected: int = 0
    images_recropped: int = 0
    images_failed: int = 0
    crops_new: int = 0
    rejudged: int = 0  # images whose filters alone ran again
    duplicates: int = 0
    borderline: int = 0
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.stage is None:
            self.stage = StageReport("process", self.run_id)

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


def plan(ws: Workspace, cfg: ProcessConfig) -> list[Job]:
    """The work the present settings call for, takes no lock: images to detect, then images to
    re-crop from their stored boxes, then images whose filter verdicts are stale (`Job.kind`)."""
    det_key = process_key(cfg)
    images = {r["image_sha256"]: r for r in tables.read_table(
        ws, StoredImage, ["image_sha256", "status", "blob_path", "width", "height"]).to_pylist()
        if r["status"] == "ok" and r["blob_path"]}
    ledger = tables.read_table(ws, FilterResult, ["subject_id", "filter", "version", "score", "reason"]).to_pylist()
    detected = {r["subject_id"]: r["score"] for r in ledger if r["filter"] == "faces" and r["version"] == det_key}
    unreadable = {r["subject_id"] for r in ledger if r["filter"] == "faces" and r["version"] == det_key
                  and r["reason"].startswith(UNREADABLE)}
    have = {(r["subject_id"], r["filter"]): r["version"] for r in ledger}
    settings = CropSettings.of(cfg)
    crops = [r for r in tables.read_table(ws, FaceCrop).to_pylist() if settings.makes_params(r["detector_params"])]
    boxes: dict[str, dict[tuple, Face]] = {}
    current: dict[str, list[dict]] = {}
    for r in crops:
        face = Face(r["box_x"], r["box_y"], r["box_w"], r["box_h"], r["score"], r["detector"])
        boxes.setdefault(r["image_sha256"], {})[face.box] = face
        if settings.makes_row(r):
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
        elif cfg.subject == "auto" and detected[sha] == 0 and sha not in current and sha not in unreadable:
            # No face found: the whole picture stands in (from its stored box at other settings).
            job.faces = sorted(boxes.get(sha, {}).values(), key=lambda f: f.box)
            job.whole = not job.faces
            recrop.append(job)
        else:
            job.refilter_image = stale(sha, IMAGE_FILTERS)
            job.face_count = len(current.get(sha, []))  # a sheet of faces is judged as one
            job.refilter_crops = {
                c["crop_id"]: (Face(c["box_x"], c["box_y"], c["box_w"], c["box_h"], c["score"], c["detector"]),
                               c["crop_path"])
                for c in current.get(sha, []) if stale(c["crop_id"], FACE_FILTERS)}
            if job.filters_only:
                refilter.append(job)
    return detect + recrop + refilter


# The ledger last: its "faces" row marks an image done, so a kill between parts re-does the
# image rather than leaving it half written.
ORDER = (FaceCrop, HashRecord, FilterResult)


def _rows(outcome: Outcome, det_key: str) -> list:
    if outcome.error:
        if not outcome.detected:
            return []
        # Recorded as seen, with the reason: a rerun would fail the same way.
        return [FilterResult(subject_id=outcome.image_sha256, filter="faces", score=0.0, threshold=1.0,
                             passed=False, version=det_key,
                             reason=f"{UNREADABLE}: {outcome.error}")]
    return [*outcome.crops, *outcome.hashes, *outcome.filters]


def _tally(report: "ProcessReport", outcome: Outcome) -> None:
    report.stage.items += 1
    if outcome.error:
        report.images_failed += 1
        report.stage.status["failed"] += 1
        report.errors.append(f"{outcome.image_sha256[:12]}: {outcome.error}")
    else:
        report.stage.status["ok"] += 1
        report.crops_new += len(outcome.crops)


def commit(ws: Workspace, outcomes: list[Outcome], run_id: str, cfg: ProcessConfig | None = None, *,
           final: bool = True, report: "ProcessReport | None" = None) -> "ProcessReport":
    """Write the outcomes' rows under the writer lock (rows another run wrote meanwhile are not
    written again). `final`: then regroup near-duplicates, compact the tables and remember the
    settings' crop selection, once per run."""
    cfg = cfg or ProcessConfig()
    report = report or ProcessReport(run_id)
    det_key = process_key(cfg)
    buf = RowBuffer()
    for o in outcomes:
        _tally(report, o)
        buf.add(_rows(o, det_key))
    write_rows(ws, buf.take(), ORDER, run_id, cfg.as_dict(), report.stage, what="process")
    if final:
        finish(ws, cfg, run_id, report)
    return report


def finish(ws: Workspace, cfg: ProcessConfig, run_id: str, report: "ProcessReport") -> None:
    from manifests.records import DupGroup
    from manifests.stage import COMMIT_WAIT

    from .process_dedup import dedup

    with ws.writer_lock(f"process {run_id}", wait=COMMIT_WAIT):
        report.duplicates, report.borderline = dedup(ws, cfg, run_id, changed=report.did_work)
        for cls in (*ORDER, DupGroup):
            tables.compact(ws, cls, run_id)
        write_selection(ws, cfg)


def process(ws: Workspace, cfg: ProcessConfig | None = None, progress: bool = True) -> ProcessReport:
    """Run the stage on everything new in `ws`: plan, run on every core, commit in parts.

    Planning and the image work take no lock; each commit takes the writer lock briefly, so
    another stage (or another `process`) on the same workspace goes on meanwhile."""
    cfg = cfg or ProcessConfig()
    started = time.monotonic()
    run_id = new_run_id("process")
    report = ProcessReport(run_id)
    jobs = plan(ws, cfg)
    kinds = [j.kind for j in jobs]
    report.images_detected, report.images_recropped, report.rejudged = (
        kinds.count("detect"), kinds.count("recrop"), kinds.count("refilter"))
    ctx = context(ws, cfg)
    batch: list[Outcome] = []
    rows = 0
    last = time.monotonic()
    done, crop_bytes = 0, 0
    full: DiskFull | None = None
    try:
        for outcome in run_items(jobs, run, ctx, workers=cfg.workers, preload=("curation.process",),
                                 setup=worker_setup, chunksize=4, progress=progress, desc="process", unit="img"):
            done += 1
            batch.append(outcome)
            rows += len(outcome.crops) + len(outcome.hashes) + len(outcome.filters) + 1
            crop_bytes += sum(_size_of(ws, c.crop_path) for c in outcome.crops)
            if rows >= cfg.part_rows or time.monotonic() - last > cfg.part_seconds:
                commit(ws, batch, run_id, cfg, final=False, report=report)
                batch, rows, last = [], 0, time.monotonic()
    except DiskFull as exc:
        # What the rest would take: crops at this run's average so far (a 128 px PNG is
        # ~30 KB), plus the rows.
        per_image = crop_bytes / done if done and crop_bytes else 3 * cfg.crop.size ** 2 * 0.6
        full = exc.needing(int((len(jobs) - done) * (per_image + 2000)))
    finally:
        try:
            commit(ws, batch, run_id, cfg, final=False, report=report)  # what was done is kept, as far as it fits
        except DiskFull:
            if full is None:
                raise
    if full is not None:
        raise full
    finish(ws, cfg, run_id, report)
    report.stage.seconds = time.monotonic() - started
    return report


def write_selection(ws: Workspace, cfg: ProcessConfig) -> None:
    """Remember which crops the latest run's settings make: the review queue and dataset builds show those."""
    selection.write_selection(ws, CropSettings.of(cfg), cfg.as_dict())
