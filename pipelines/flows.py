"""The Prefect flows: the whole build (crawl, ingest, process, review queue, dataset version)
and training when a new version is ready. They wire the stages, retry, cache and report; every
decision about images, crops and versions stays in the stages.

    build_flow(config, home)             -> summary dict (also a markdown and a table artifact)
    train_when_ready_flow(config, home)  -> summary dict (markdown, sample grid, metrics)

`run_build` / `run_train` call them the way a command should: heartbeat off, and a Ctrl-C
that stops the crawls cleanly (pipelines/flow_runtime.py). `headshot flow build|train` adds a
Prefect API (a temporary server that dies with it when PREFECT_API_URL is unset).
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from prefect import flow
from prefect.futures import wait
from prefect.task_runners import ThreadPoolTaskRunner

from manifests.atomic import write_bytes_atomic
from manifests.workspace import Workspace, utcnow
from pipelines import flow_report
from pipelines.config import HeadshotConfig
from pipelines.flow_dask import process_runner
from pipelines.flow_runtime import flow_settings, stop_crawls_on_interrupt
from pipelines.flow_tasks import (build_version, crawl_task, ingest_paths, map_process, refresh_review, stored)
from spiders.run import CrawlRequest

# Crawls are subprocesses and process chunks short: a few threads keep both busy without
# drowning two cores (PREFECT_TASKS_RUNNER_THREAD_POOL_MAX_WORKERS does not apply to this one).
THREADS = max(4, os.cpu_count() or 1)


# --- the build's id: what a rerun of an unfinished build shares with it -------------------------


def _build_file(ws: Workspace) -> Path:
    return ws.home / "flows" / "build.json"


def begin_build(ws: Workspace) -> str:
    """The id of the build that did not finish (killed, stopped, crashed), or a new one."""
    try:
        doc = json.loads(_build_file(ws).read_text())
        if not doc.get("finished_at"):
            return doc["build"]
    except (OSError, ValueError, KeyError):
        pass
    build = f"build-{utcnow().strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"
    write_bytes_atomic(_build_file(ws), json.dumps({"build": build, "started_at": utcnow().isoformat()}).encode())
    return build


def finish_build(ws: Workspace, build: str) -> None:
    doc = {"build": build, "finished_at": utcnow().isoformat()}
    write_bytes_atomic(_build_file(ws), json.dumps(doc).encode())


# --- sources ----------------------------------------------------------------------------------


def crawl_requests(config: HeadshotConfig) -> dict[str, CrawlRequest]:
    """Every [[sources]] table as the crawl `headshot crawl SITE` would run for it, by label."""
    base = config.ingest.crawl_settings()
    return {f"sources[{i}] {s.site}": CrawlRequest(s.site, s.spider_args(), {**base, **s.scrapy_settings()})
            for i, s in enumerate(config.sources, 1)}


def host_of(req: CrawlRequest) -> str:
    """The site a crawl asks (its address settings, else the site's default): one crawl at a
    time per host, each spider throttling itself."""
    hosts = sorted(urlsplit(v).netloc for k, v in req.settings.items() if k.endswith("_URL"))
    return ",".join(hosts) or req.source


def _error(fut) -> str:
    exc = fut.result(raise_on_failure=False)
    if isinstance(exc, BaseException):
        return f"{type(exc).__name__}: {exc}"
    return str(fut.state.message or fut.state.name)


def _crawl_all(requests: dict[str, CrawlRequest], home: str, build: str) -> dict[str, dict]:
    from prefect import allow_failure

    t = crawl_task(home)
    futures, last_on_host = {}, {}
    for label, req in requests.items():
        before = last_on_host.get(host_of(req))
        futures[label] = t.with_options(task_run_name=f"crawl {label}").submit(
            req, home, build, wait_for=[allow_failure(before)] if before else None)
        last_on_host[host_of(req)] = futures[label]
    wait(list(futures.values()))
    out = {}
    for label, fut in futures.items():
        if fut.state.is_completed():
            out[label] = {"ok": True, "cached": fut.state.name == "Cached", **fut.result()}
        else:
            out[label] = {"ok": False, "cached": False, "error": _error(fut), "rows": {}}
    return out


# --- the build ----------------------------------------------------------------------------------


def _process(ws: Workspace, cfg, task_runner=None) -> dict:
    from curation import process as process_stage
    from manifests.workspace import new_run_id

    run_id = new_run_id("process")
    report = process_stage.ProcessReport(run_id)
    jobs = process_stage.plan(ws, cfg)
    kinds = [j.kind for j in jobs]
    report.images_detected, report.images_recropped, report.rejudged = (
        kinds.count("detect"), kinds.count("recrop"), kinds.count("refilter"))
    tasks = cached = 0
    for outcomes, was_cached in map_process(jobs, process_stage.context(ws, cfg), task_runner):
        process_stage.commit(ws, outcomes, run_id, cfg, final=False, report=report)
        tasks, cached = tasks + 1, cached + was_cached
    process_stage.finish(ws, cfg, run_id, report)
    return {"run_id": run_id, "jobs": len(jobs), "kinds": {k: kinds.count(k) for k in sorted(set(kinds))},
            "tasks": tasks, "cached_tasks": cached, "crops_new": report.crops_new, "failed": report.images_failed,
            "duplicates": report.duplicates, "errors": report.errors[:10]}


@flow(name="headshot-build", task_runner=ThreadPoolTaskRunner(max_workers=THREADS), validate_parameters=False)
def build_flow(config: HeadshotConfig | dict | None = None, home: str | None = None) -> dict:
    """Crawl every [[sources]] table (in parallel, one crawl at a time per host, each retried
    twice with backoff), ingest [ingest] paths, process what is new with its items mapped over
    the task runner, refresh the review queue, and write a dataset version when the [dataset]
    rules hold. A failing source is reported and the others go on."""
    from pipelines.status import status

    config = HeadshotConfig.of(config)  # a deployment brings it back as its as_dict()
    ws = Workspace.open(home or config.home)
    home = str(ws.home)
    build = begin_build(ws)
    failed: list[str] = []
    summary: dict[str, Any] = {"build": build, "home": home}

    summary["sources"] = _crawl_all(crawl_requests(config), home, build)
    summary["failed_sources"] = {k: v["error"] for k, v in summary["sources"].items() if not v["ok"]}
    failed += [f"{k}: {why}" for k, why in summary["failed_sources"].items()]

    summary["ingest"] = None
    if config.ingest.paths:
        # In this thread: a Ctrl-C reaches the stage itself, which keeps what it decoded.
        st = stored(ingest_paths, home)(list(config.ingest.paths), config.ingest.stage(), home, build,
                                        return_state=True)
        if st.is_completed():
            summary["ingest"] = {**st.result(), "cached": st.name == "Cached"}
        else:
            exc = st.result(raise_on_failure=False)
            summary["ingest"] = {"error": f"{type(exc).__name__}: {exc}" if isinstance(exc, BaseException)
                                 else str(st.message)}
            failed.append(f"ingest: {summary['ingest']['error']}")

    try:
        summary["process"] = _process(ws, config.process, process_runner(config.flow))  # [flow] task_runner
    except Exception as exc:  # the rows committed so far are kept; the next build goes on from them
        summary["process"] = {"error": f"{type(exc).__name__}: {exc}"}
        failed.append(f"process: {summary['process']['error']}")

    summary["review"] = refresh_review(home)
    if "error" in summary["process"]:
        summary["dataset"] = {"name": config.dataset.name, "version": None,
                              "why": "the process stage failed: its duplicate groups may be stale"}
    else:
        summary["dataset"] = build_version(home, config.dataset, summary["review"]["left"])
    summary["failed"] = failed
    summary["status"] = status(ws)
    _build_artifacts(ws, summary)
    finish_build(ws, build)
    return summary


def _build_artifacts(ws: Workspace, s: dict) -> None:
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    create_markdown_artifact(flow_report.build_markdown(s), key="headshot-build",
                             description=f"headshot build {s['build']}")
    d = s["dataset"]
    shown = d.get("version") or d.get("latest")
    if shown:
        create_table_artifact(flow_report.dataset_rows(ws, d["name"], shown),
                              key=flow_report.artifact_key("dataset", d["name"]),
                              description=f"{d['name']} v{shown}: the first {flow_report.TABLE_ROWS} rows")


# --- train when ready ---------------------------------------------------------------------------


def _run_name(ws: Workspace, name: str, version: int) -> str:
    from training.data import Source
    from training.run import new_run_name

    run = new_run_name(Source("dataset", name, version))
    n = 2
    while (ws.runs / run).exists():
        run, n = f"{new_run_name(Source('dataset', name, version))}-{n}", n + 1
    return run


@flow(name="headshot-train-when-ready", validate_parameters=False)
def train_when_ready_flow(config: HeadshotConfig | dict | None = None, home: str | None = None) -> dict:
    """Train the newest version of [dataset] name when no run has trained its content yet
    (<home>/flows/trained.json, under a lock: never twice, even for two triggers at once),
    evaluate it and keep the run; otherwise say why nothing was done."""
    from manifests.datasets import versions
    from pipelines.flow_record import claim, last_trained
    from pipelines.flow_train import evaluate_run, train_version

    config = HeadshotConfig.of(config)  # a deployment brings it back as its as_dict()
    ws = Workspace.open(home or config.home)
    home, name = str(ws.home), config.dataset.name
    s: dict[str, Any] = {"dataset": name, "home": home, "trained": False, "version": None, "why": ""}
    vs = versions(ws, name)
    latest = vs[-1] if vs else None
    if latest is None:
        s["why"] = f"no version of dataset {name} yet (headshot flow build writes one)"
    elif latest.rows < config.dataset.build.min_accepted:
        s["why"] = f"{name} v{latest.version} holds {latest.rows} crops, fewer than [dataset] min_accepted"
    if s["why"]:
        return _train_done(s)
    s["version"] = latest.version
    got = claim(ws, name, latest.version, latest.content_hash, _run_name(ws, name, latest.version))
    if isinstance(got, str):
        s["why"] = got
        s["last_trained"] = last_trained(ws, name)
        return _train_done(s)
    with got:
        s.update(trained=True, run=got.run, resumed=got.resume, attempt=got.attempt)
        try:
            t = train_version(home, f"{name}@v{latest.version}", config.train, got.run, got.resume)
        except Exception as exc:  # recorded as started, not finished: the next trigger retries it
            got.note_error(f"{type(exc).__name__}: {exc}")
            s.update(training={"run": got.run, "step": 0, "steps": 0}, error=f"{type(exc).__name__}: {exc}")
            return _train_done(s)
        s["training"] = t
        if t["interrupted"]:
            return _train_done(s)  # started, not finished: the next trigger resumes it
        try:
            s["evaluation"] = evaluate_run(home, t["run"])
        except Exception as exc:  # not finished: the next trigger finds the run complete and evaluates again
            got.note_error(f"evaluation: {type(exc).__name__}: {exc}")
            s["error"] = f"evaluation: {type(exc).__name__}: {exc}"
            return _train_done(s)
        got.finish(step=t["step"], version=latest.version,
                   kid_x1e3=s["evaluation"].get("kid_x1e3"), best=t["best"])
    return _train_done(s)


def _train_done(s: dict) -> dict:
    from prefect.artifacts import create_image_artifact, create_markdown_artifact, create_table_artifact

    from pipelines.flow_train import sample_grid_url

    create_markdown_artifact(flow_report.train_markdown(s), key="headshot-train",
                             description=f"train-when-ready on {s['dataset']}")
    t = s.get("training") or {}
    if t.get("folder"):
        url = sample_grid_url(t["folder"])
        if url:
            create_image_artifact(url, key="headshot-train-samples", description=f"samples of run {t['run']}")
        create_table_artifact(flow_report.metric_rows(s), key="headshot-train-metrics",
                              description=f"figures of run {t['run']}")
    return s


# --- how a command runs them --------------------------------------------------------------------


def run_build(config: HeadshotConfig | None = None, home: str | None = None) -> dict:
    with flow_settings(), stop_crawls_on_interrupt():
        return build_flow(config, home)


def run_train(config: HeadshotConfig | None = None, home: str | None = None) -> dict:
    with flow_settings(), stop_crawls_on_interrupt():
        return train_when_ready_flow(config, home)


__all__ = ["build_flow", "crawl_requests", "map_process", "run_build", "run_train", "train_when_ready_flow"]
