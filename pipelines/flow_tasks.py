"""The build flow's tasks: each wraps one stage function and adds what Prefect adds (retries,
a cache, a place in the run's history). No curation logic lives here.

Caching: a task's result is kept under `<home>/flows/results`, one file per cache key, and the
key is the task's inputs, the stage's settings among them, and the code version
(manifests.tables.code_version()). Process items are pure functions of their content, so their
key is their content. A crawl or an ingest reads the web or a folder, whose content is not
known before reading it: their inputs include the build's id, which a build that did not finish
(killed, stopped) hands to the next one, so a rerun skips what finished and a new build reads
again. The stages' own incrementality (rows already written are never written twice) stays
the guarantee underneath.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

from prefect import task, unmapped
from prefect.futures import as_completed
from prefect.tasks import exponential_backoff

from curation import process as process_stage
from curation.ingest import IngestConfig, ingest
from manifests.tables import code_version
from manifests.workspace import Workspace, new_run_id
from spiders.run import CrawlRequest, crawl

from .flow_runtime import STOPPING

PROCESS_CHUNK = 8  # images per process task: small enough to commit often, big enough to cost little
CRAWL_RETRIES = 2
CRAWL_BACKOFF = 10.0  # seconds before the first retry of a failed crawl, doubled for the next
# Row statuses that show a crawl reached its site (the rest are failures with a reason).
REACHED = ("ok", "page", "opted_out")


def results_dir(home: str | Path) -> Path:
    return Path(home) / "flows" / "results"


# --- cache keys -------------------------------------------------------------------------------


def plain(x: Any) -> Any:
    """A JSON-able, order-stable form of task inputs (dataclasses, sets, paths, dates)."""
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return {"__type__": type(x).__name__, **{f.name: plain(getattr(x, f.name)) for f in dataclasses.fields(x)}}
    if isinstance(x, dict):
        return {str(k): plain(v) for k, v in sorted(x.items(), key=lambda kv: str(kv[0]))}
    if isinstance(x, (list, tuple)):
        return [plain(v) for v in x]
    if isinstance(x, (set, frozenset)):
        return sorted((plain(v) for v in x), key=lambda v: json.dumps(v, sort_keys=True))
    if x is None or isinstance(x, (str, int, float, bool)):
        return x
    return str(x)  # datetime, Path


def content_key(context: Any, parameters: dict[str, Any]) -> str:
    """The task's name, its inputs and the code version, hashed."""
    name = context.task.name
    doc = {"task": name, "code": code_version(), "inputs": plain(parameters)}
    digest = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()
    return f"{name}-{digest[:40]}"


def cached_task(**options: Any):
    return task(cache_key_fn=content_key, persist_result=True, **options)


def stored(t, home: str | Path, **options: Any):
    """Task `t` with its results kept in the workspace (set per call: the workspace is a flow parameter)."""
    return t.with_options(result_storage=results_dir(home), **options)


def crawl_task(home: str | Path):
    """crawl_source with its results in the workspace and the backoff read now (tests shorten it)."""
    return stored(crawl_source, home, retry_delay_seconds=exponential_backoff(CRAWL_BACKOFF))


# --- crawl ------------------------------------------------------------------------------------


class CrawlFailed(RuntimeError):
    pass


def _not_stopping(task, task_run, state) -> bool:
    return not STOPPING.is_set()  # a crawl that a Ctrl-C stopped is resumed by the next build, not retried now


def _crawl_rows(ws: Workspace, run_id: str) -> tuple[Counter, Counter]:
    """(rows by status, failure reasons) that the crawl `run_id` wrote."""
    import pyarrow.compute as pc

    from manifests import tables
    from manifests.records import ScrapedImage

    t = tables.read_table(ws, ScrapedImage, ["crawl_run_id", "status", "reason"])
    mine = t.filter(pc.equal(t["crawl_run_id"], run_id)).to_pylist()
    status = Counter(r["status"] for r in mine)
    reasons = Counter(f"{r['status']}: {r['reason']}" for r in mine if r["status"] not in REACHED)
    return status, reasons


@cached_task(name="crawl", retries=CRAWL_RETRIES, retry_delay_seconds=exponential_backoff(CRAWL_BACKOFF),
             retry_condition_fn=_not_stopping)
def crawl_source(req: CrawlRequest, home: str, build: str) -> dict:
    """One [[sources]] table: its own `scrapy crawl` process, to its end. Raises CrawlFailed when
    scrapy failed, when the crawl stopped before its end, or when every request it made failed
    (a site that cannot be reached still ends the crawl with exit code 0)."""
    ws = Workspace.open(home)
    run_id = new_run_id(f"crawl-{req.source}")
    started = time.monotonic()
    # Our own run id (a setting the crawl passes on to the store) so that its rows can be told apart.
    code = crawl(replace(req, settings={**req.settings, "HEADSHOT_RUN_ID": run_id}), ws, quiet=True)
    if code:
        raise CrawlFailed(f"scrapy exit code {code}" + (" (the disk is full)" if code == 4 else ""))
    if (ws.crawl_jobs / req.job_key()).exists():
        raise CrawlFailed("the crawl stopped before its end; the next build resumes it")
    status, reasons = _crawl_rows(ws, run_id)
    if status and not any(status[s] for s in REACHED):
        top = "; ".join(f"{why} (x{n})" if n > 1 else why for why, n in reasons.most_common(3))
        raise CrawlFailed(f"every request failed: {top}")
    return {"source": req.source, "run_id": run_id, "rows": dict(status),
            "seconds": round(time.monotonic() - started, 1)}


# --- ingest -----------------------------------------------------------------------------------


@cached_task(name="ingest")
def ingest_paths(paths: list[str], cfg: IngestConfig, home: str, build: str) -> dict:
    """[ingest] paths through the ingest stage (its own pool of decoding processes)."""
    report = ingest(list(paths), Workspace.open(home), cfg, progress=False)
    return {"run_id": report.run_id, "inputs": report.inputs, "new_images": report.new_images,
            "already_stored": report.already_stored, "stored_status": dict(report.stored_status),
            "input_status": dict(report.input_status)}


# --- process ----------------------------------------------------------------------------------


@cached_task(name="process-items")
def process_items(jobs: list, ctx: process_stage.ProcessContext) -> list:
    """curation.process.run for each job: the pixel work; the flow plans and commits."""
    process_stage.worker_setup()
    return [process_stage.run(job, ctx) for job in jobs]


def chunks(jobs: list, size: int = PROCESS_CHUNK) -> list[list]:
    return [jobs[i:i + size] for i in range(0, len(jobs), size)]


def map_process(jobs: list, ctx: process_stage.ProcessContext, task_runner=None) -> Iterator[tuple[list, bool]]:
    """`process_items` mapped over chunks of `jobs` on a task runner: the flow's own when None,
    else `task_runner` (one not started yet, e.g. prefect-dask's DaskTaskRunner: it is started and
    stopped here). Yields (outcomes, cached) per chunk as each finishes, so the flow commits as
    it goes and a killed build keeps what it committed."""
    parts = chunks(jobs)
    if not parts:
        return
    t = stored(process_items, ctx.home)
    if task_runner is None:
        for fut in as_completed(t.map(parts, unmapped(ctx))):
            yield fut.result(), fut.state.name == "Cached"
        return
    with task_runner:
        futures = task_runner.map(t, {"jobs": parts, "ctx": unmapped(ctx)})
        for fut in as_completed(futures):
            yield fut.result(), fut.state.name == "Cached"


# --- review queue and dataset -----------------------------------------------------------------


@task(name="review-refresh")
def refresh_review(home: str) -> dict:
    """What the review queue needs to show new crops: it reads them from the tables and the
    selection file that `process` wrote; here its learner's pixel features and the crops'
    embeddings are computed for the crops that have none yet, so proposals cover them when the
    queue opens."""
    from curation.embeddings import update_embeddings
    from curation.review.features import FeatureCache
    from curation.review.items import NothingToReview, load_items, queue_order
    from curation.review.status import review_status

    ws = Workspace.open(home)
    try:
        items = load_items(ws)
    except NothingToReview:
        items = []
    computed = FeatureCache(ws).ensure(queue_order(items)) if items else 0
    crops = [(it.crop_id, it.crop_path) for it in queue_order(items)]
    embedded = update_embeddings(ws, crops).computed if crops else 0
    return {**review_status(ws), "features_computed": computed, "embeddings_computed": embedded}


DIFF_ROWS = 20


@task(name="dataset-build")
def build_version(home: str, section: Any, queue_left: int) -> dict:
    """The next version of [dataset] name when the [dataset] rules hold, else why not."""
    from curation.dataset_build import build_dataset
    from manifests.datasets import DatasetError
    from manifests.workspace import WorkspaceBusy

    out: dict[str, Any] = {"name": section.name, "version": None, "why": ""}
    if section.require_empty_queue and queue_left:
        out["why"] = (f"{queue_left} doubtful crop(s) wait in the review queue and [dataset] require_empty_queue "
                      "is on: label them (headshot review)")
        return out
    try:
        res = build_dataset(Workspace.open(home), section.name, section.build)
    except (DatasetError, WorkspaceBusy) as exc:
        out["why"] = str(exc)
        return out
    out.update(counts=res.counts, splits=res.splits, latest=res.latest.version, rows=res.latest.rows,
               content_hash=res.latest.content_hash)
    if res.written is None:
        out["why"] = f"v{res.latest.version} already holds exactly this"
        return out
    out.update(version=res.written.version, previous=res.previous.version if res.previous else None)
    if res.diff is not None:
        d = res.diff
        out["diff"] = d.summary()
        out["diff_rows"] = ([{"change": "added", "crop_id": r.crop_id, "what": r.image_url or r.crop_path}
                             for r in d.added] +
                            [{"change": "removed", "crop_id": r.crop_id, "what": r.image_url or r.crop_path}
                             for r in d.removed] +
                            [{"change": "relabelled", "crop_id": x.crop_id,
                              "what": f"tags {','.join(x.tags) or '-'} -> {','.join(y.tags) or '-'}, "
                                      f"split {x.split} -> {y.split}"} for x, y in d.relabelled])[:DIFF_ROWS]
    return out
