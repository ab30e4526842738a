"""The Prefect flows end to end: a getchu replica on 127.0.0.1 crawled by the real spider, drawn
art ingested, faces found by animeface (its model is in its wheel), a dataset version written,
a tiny model trained when it is ready; a failing source, two triggers at once, and a build
killed with SIGKILL half way and run again.

One Prefect test server for the module (prefect_test_harness); the killed build runs as a
`headshot flow build` subprocess on a temporary server of its own, which must die with it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from manifests import tables
from manifests.records import FaceCrop, FilterResult, HashRecord, ScrapedImage, StoredImage
from manifests.workspace import Workspace
from pipelines.config import HeadshotConfig
from pipelines.demo import DEMO_IDS
from tests.pipelines.conftest import ENV

REPO = Path(__file__).resolve().parents[2]
FAST = {"DOWNLOAD_DELAY": "0", "AUTOTHROTTLE_ENABLED": "False", "HEADSHOT_BACKOFF": "0.1", "LOG_LEVEL": "WARNING"}
TINY_TRAIN = {"steps": 4, "batch_size": 8, "device": "cpu", "ngf": 8, "ndf": 8, "sample_every": 2,
              "checkpoint_every": 2, "eval_every": 0, "best_metric": "none", "precision": "fp32",
              "channels_last": "off", "threads": 2, "eval_samples": 16}


@pytest.fixture(scope="module")
def site():
    from replicas.sites.getchu import GetchuReplica
    from replicas.sites.server import Replica

    with Replica() as r:
        GetchuReplica(r, None, months={(2015, 5): DEMO_IDS[:3], (2015, 6): DEMO_IDS[3:]}, synthetic_ids=DEMO_IDS)
        yield r


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens on it once the socket is closed


def project(site, art: Path | None, *, failing: bool = False, **changes) -> HeadshotConfig:
    sources = [{"site": "getchu", "since": "2015-05", "until": "2015-06",
                "settings": {"GETCHU_BASE_URL": site.base, **FAST}}]
    if failing:  # another month than the good one, so that its rows have keys of their own
        sources.append({"site": "getchu", "since": "2015-07", "until": "2015-07",
                        "settings": {"GETCHU_BASE_URL": f"http://127.0.0.1:{closed_port()}", **FAST}})
    doc = {"sources": sources, "ingest": {"paths": [str(art)] if art else []},
           "process": {"workers": 2, "detector": {"detector": "animeface"}},
           "dataset": {"name": "faces"}, "train": TINY_TRAIN}
    return HeadshotConfig.from_dict(doc).with_changes(changes) if changes else HeadshotConfig.from_dict(doc)


@pytest.fixture(scope="module")
def art(tmp_path_factory):
    from replicas.drawn import write_faces

    folder = tmp_path_factory.mktemp("art")
    write_faces(folder, 10)
    return folder


@pytest.fixture(scope="module")
def built(prefect_api, site, art, tmp_path_factory):
    """One build with a good and a failing source, shared by the build and train tests."""
    from pipelines import flow_tasks
    from pipelines.flows import run_build

    home = tmp_path_factory.mktemp("built") / "ws"
    cfg = project(site, art, failing=True)
    old, flow_tasks.CRAWL_BACKOFF = flow_tasks.CRAWL_BACKOFF, 0.0
    try:
        summary = run_build(cfg, str(home))
    finally:
        flow_tasks.CRAWL_BACKOFF = old
    return home, cfg, summary


def raw_keys(ws: Workspace, cls) -> list[tuple]:
    keys = []
    for f in tables.table_files(ws, cls):
        keys += [tuple(r.values()) for r in pq.read_table(f, columns=list(cls.KEY)).to_pylist()]
    return keys


def artifact(key: str):
    from prefect.artifacts import Artifact

    # Sync on purpose: after other suites (a browser's, a local S3's) this thread may look like
    # an async context to Prefect's dispatch, which would hand back a coroutine.
    return Artifact.get(key, _sync=True)


# --- build ------------------------------------------------------------------------------------


def test_build_runs_every_stage_and_names_the_failing_source(built):
    home, cfg, s = built
    good, bad = s["sources"]["sources[1] getchu"], s["sources"]["sources[2] getchu"]
    assert good["ok"] and good["rows"]["ok"] == len(DEMO_IDS) * 4 and good["rows"]["page"] == len(DEMO_IDS) + 2
    assert not bad["ok"] and "every request failed" in bad["error"] and "refused" in bad["error"].lower()
    assert [f.split(":")[0] for f in s["failed"]] == ["sources[2] getchu"]
    assert s["failed_sources"] == {"sources[2] getchu": bad["error"]}
    assert s["ingest"]["inputs"] == 10 and s["ingest"]["new_images"] == 10
    p = s["process"]
    assert p["jobs"] == len(DEMO_IDS) * 4 + 10 and p["failed"] == 0 and p["crops_new"] > 10
    assert p["tasks"] == -(-p["jobs"] // 8)  # mapped in chunks of 8
    st = s["status"]
    assert st["stages"]["crops"]["total"] == p["crops_new"]
    assert s["review"]["crops"] == p["crops_new"] and s["review"]["features_computed"] == p["crops_new"]
    assert s["review"]["embeddings_computed"] == p["crops_new"]  # for the learner and "more like these"
    d = s["dataset"]
    assert d["version"] == 1 and st["datasets"]["faces"]["latest_version"] == 1 and d["rows"] > 0
    # The run's artifacts: the summary names the failing source and the version; the table holds its rows.
    md = artifact("headshot-build").data
    assert "sources[2] getchu" in md and "every request failed" in md and "**v1**" in md and "crops (crops)" in md
    rows = json.loads(artifact("dataset-faces").data)
    assert len(rows) == min(d["rows"], 50) and {r["split"] for r in rows} <= {"train", "val"}


def test_a_failing_source_is_retried_twice_before_it_is_reported(built):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName

    counts: dict = {}
    deadline = time.monotonic() + 20  # the server records task runs from their events, a moment later
    while time.monotonic() < deadline:
        with get_client(sync_client=True) as client:
            found = client.read_task_runs(task_run_filter=TaskRunFilter(name=TaskRunFilterName(
                any_=["crawl sources[1] getchu", "crawl sources[2] getchu"])))
        counts = {r.name: (r.run_count, r.state_type.value if r.state_type else None) for r in found}
        if counts.get("crawl sources[2] getchu", (0, None))[1] == "FAILED":
            break
        time.sleep(0.5)
    assert counts["crawl sources[2] getchu"] == (3, "FAILED")
    assert counts["crawl sources[1] getchu"] == (1, "COMPLETED")


def test_a_second_build_crawls_again_and_writes_no_new_version(built, site):
    from pipelines.flows import run_build

    home, cfg, first = built
    cfg = project(site, Path(cfg.ingest.paths[0]))  # the good source only
    asked = len(site.log)
    s = run_build(cfg.as_dict(), str(home))  # as a deployment's JSON parameters bring it
    assert s["build"] != first["build"]  # the first build finished: a new one reads the site again
    assert len(site.log) > asked and not s["sources"]["sources[1] getchu"]["cached"]
    assert s["failed"] == [] and s["process"]["jobs"] == 0
    assert s["dataset"]["version"] is None and "already holds exactly this" in s["dataset"]["why"]


def test_require_empty_queue_stops_the_version_with_the_reason(built, site, tmp_path):
    from PIL import Image

    from pipelines.flows import run_build

    home, cfg, first = built
    # A picture no detector finds a face in: at --subject auto its whole-picture crop waits in the queue.
    extra = tmp_path / "extra"
    extra.mkdir()
    Image.new("RGB", (300, 200), (120, 170, 230)).save(extra / "sky.png")
    cfg = project(site, extra, **{"dataset.require_empty_queue": True, "dataset.min_accepted": 1,
                                  "process.subject": "auto"})
    s = run_build(cfg, str(home))
    left = s["review"]["left"]
    assert left >= 1 + first["review"]["left"]
    assert s["dataset"]["version"] is None and "require_empty_queue" in s["dataset"]["why"]
    assert f"{left} doubtful" in s["dataset"]["why"]


def test_flow_build_exits_1_and_names_the_source_that_failed(prefect_api, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from pipelines import flow_tasks
    from pipelines.cli import app

    monkeypatch.setattr(flow_tasks, "CRAWL_BACKOFF", 0.0)
    doc = {"sources": [{"site": "getchu", "since": "2015-07", "until": "2015-07",
                        "settings": {"GETCHU_BASE_URL": f"http://127.0.0.1:{closed_port()}", **FAST}}],
           "process": {"detector": {"detector": "animeface"}}}
    (tmp_path / "headshot.toml").write_text(HeadshotConfig.from_dict(doc).to_toml())
    out = CliRunner().invoke(app, ["--home", str(tmp_path / "ws"), "flow", "build", "--config",
                                   str(tmp_path / "headshot.toml")], catch_exceptions=False)
    assert out.exit_code == 1, out.output
    assert "crawl sources[1] getchu: FAILED: CrawlFailed: every request failed" in out.output
    assert "dataset faces: no new version: no crops" in out.output  # nothing to build from, and why


def test_flow_build_with_an_unreachable_api_says_how_to_fix_it(tmp_path):
    env = {**os.environ, **ENV, "PREFECT_HOME": str(tmp_path / "ph"),
           "PREFECT_API_URL": f"http://127.0.0.1:{closed_port()}/api"}
    out = subprocess.run([sys.executable, "-m", "pipelines.cli", "--home", str(tmp_path / "ws"), "flow", "build"],
                         env=env, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 2, out.stderr[-2000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "unset PREFECT_API_URL" in lines[0] and "prefect server start" in lines[0]


def test_map_process_on_another_task_runner_gives_run_s_outcomes_and_caches_them_by_content(prefect_api, tmp_path):
    from dataclasses import replace

    from prefect.task_runners import ThreadPoolTaskRunner

    from curation import process as process_stage
    from curation.ingest import ingest
    from pipelines.flow_tasks import map_process
    from replicas.drawn import write_faces

    write_faces(tmp_path / "art", 10)
    ws = Workspace.open(tmp_path / "ws")
    ingest([str(tmp_path / "art")], ws, progress=False)
    cfg = replace(process_stage.ProcessConfig(), detector=replace(process_stage.ProcessConfig().detector,
                                                                  detector="animeface"))
    jobs = process_stage.plan(ws, cfg)
    ctx = process_stage.context(ws, cfg)
    first = list(map_process(jobs, ctx, ThreadPoolTaskRunner(max_workers=2)))
    assert [cached for _, cached in first] == [False, False]  # 10 images: chunks of 8 and 2
    by_image = {o.image_sha256: o for outcomes, _ in first for o in outcomes}
    assert sorted(by_image) == sorted(j.image_sha256 for j in jobs)
    direct = process_stage.run(jobs[0], ctx)
    assert [c.crop_id for c in by_image[jobs[0].image_sha256].crops] == [c.crop_id for c in direct.crops]
    again = list(map_process(jobs, ctx, ThreadPoolTaskRunner(max_workers=2)))
    assert [cached for _, cached in again] == [True, True]
    assert {o.image_sha256: [c.crop_id for c in o.crops] for outcomes, _ in again for o in outcomes} == \
        {k: [c.crop_id for c in o.crops] for k, o in by_image.items()}
    other = replace(cfg, crop=replace(cfg.crop, margin=cfg.crop.margin + 0.05))  # another setting, another key
    from prefect import flow

    @flow
    def on_the_flow_s_runner() -> list[bool]:
        return [cached for _, cached in map_process(jobs, process_stage.context(ws, other))]

    assert on_the_flow_s_runner() == [False, False]
    assert len(list((tmp_path / "ws" / "flows" / "results").iterdir())) == 4


# --- train when ready -------------------------------------------------------------------------


def test_train_when_ready_does_nothing_without_a_version_or_below_the_minimum(prefect_api, site, tmp_path, built):
    from pipelines.flows import run_train

    s = run_train(project(site, None), str(tmp_path / "empty"))
    assert not s["trained"] and "no version of dataset faces" in s["why"]
    home, _, first = built
    s = run_train(project(site, None, **{"dataset.min_accepted": first["dataset"]["rows"] + 1}), str(home))
    assert not s["trained"] and "fewer than [dataset] min_accepted" in s["why"]
    assert not (home / "runs").exists() or not any((home / "runs").iterdir())


def test_train_when_ready_retries_a_crashed_training_then_never_trains_that_version_again(built, site):
    from manifests.datasets import versions
    from pipelines.flow_record import claim, read_record
    from pipelines.flows import run_train

    home, _, first = built
    ws = Workspace.open(home)
    v1 = versions(ws, "faces")[-1]
    # A training that crashed before its first checkpoint: recorded as started, its lock gone with it.
    crashed = claim(ws, "faces", v1.version, v1.content_hash, "faces-v1-crashed")
    crashed.release()
    assert read_record(ws)["faces"][v1.content_hash]["state"] == "started"

    s = run_train(project(site, None), str(home))
    assert s["trained"] and s["attempt"] == 2 and s["training"]["step"] == 4 and not s["training"]["interrupted"]
    entry = read_record(ws)["faces"][v1.content_hash]
    assert entry["state"] == "finished" and entry["run"] == s["run"] != "faces-v1-crashed"
    assert (home / "runs" / s["run"] / "checkpoints" / "best.pt").is_file()
    ev = s["evaluation"]
    assert ev["against"] == "train split" and ev["n_fake"] == ev["n_real"] == 16  # v1's val split is under 6 crops
    assert ev["kid_x1e3"] == ev["kid_x1e3"] and 0 <= ev["precision"] <= 1 and 0 <= ev["copy_rate"] <= 1
    # Its artifacts: the sample grid as a data: URL, the figures, the summary.
    assert artifact("headshot-train-samples").data.startswith("data:image/png;base64,")
    metrics = json.loads(artifact("headshot-train-metrics").data)
    assert any(m["metric"] == "loss/loss_d" for m in metrics)
    assert s["run"] in artifact("headshot-train").data

    again = run_train(project(site, None), str(home))
    assert not again["trained"] and "trained already" in again["why"] and s["run"] in again["why"]
    assert len([p for p in (home / "runs").iterdir() if p.is_dir()]) == 1


def _new_version(home: Path) -> int:
    """v2: a person rejects one crop of v1."""
    from curation.dataset_build import build_dataset
    from curation.review.store import Change, ReviewStore
    from manifests.datasets import read_version

    ws = Workspace.open(home)
    crop = read_version(ws, "faces")[0].crop_id
    with ReviewStore(ws.review_db) as store:
        store.record([Change(crop, "reject")], "tester")
    res = build_dataset(ws, "faces")
    assert res.written is not None
    return res.written.version


def test_two_triggers_at_once_train_a_new_version_once(built, prefect_api, tmp_path):
    from pipelines.flow_record import read_record

    home, cfg, _ = built
    runs_before = {p.name for p in (home / "runs").iterdir()}
    version = _new_version(home)
    (tmp_path / "headshot.toml").write_text(cfg.to_toml())
    env = {**os.environ, **ENV, "PREFECT_API_URL": prefect_api}
    argv = [sys.executable, "-m", "pipelines.cli", "--home", str(home), "flow", "train", "--config",
            str(tmp_path / "headshot.toml")]
    procs = [subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e[-2000:] for _, e in outs]
    said = sorted(o.splitlines()[0] for o, _ in outs)
    trained = [line for line in said if line.startswith(f"trained faces v{version}")]
    assert len(trained) == 1, said
    other = next(line for line in said if line not in trained)
    assert "being trained now" in other or "trained already" in other
    new_runs = {p.name for p in (home / "runs").iterdir()} - runs_before
    assert len(new_runs) == 1
    entries = [e for e in read_record(Workspace.open(home))["faces"].values() if e["version"] == version]
    assert len(entries) == 1 and entries[0]["state"] == "finished" and entries[0]["run"] in new_runs


# --- a build killed with SIGKILL, and run again -------------------------------------------------


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for e in Path("/proc").glob("[0-9]*"):
        try:
            ppid = int((e / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(e.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")  # a zombie waits for init to reap it: it runs nothing


def _mentions(needle: str) -> list[int]:
    """Live processes whose command line or environment names `needle`."""
    found = []
    for e in Path("/proc").glob("[0-9]*"):
        pid = int(e.name)
        try:
            text = (e / "cmdline").read_bytes() + (e / "environ").read_bytes()
        except OSError:
            continue
        if needle.encode() in text and _alive(pid):
            found.append(pid)
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc to find leftover processes")
def test_a_build_killed_half_way_leaves_no_process_and_a_rerun_skips_what_finished(prefect_api, site, tmp_path):
    from manifests.tables import code_version
    from pipelines.flows import run_build
    from replicas.drawn import write_faces

    art = tmp_path / "art"
    write_faces(art, 30)
    cfg = project(site, art)
    (tmp_path / "headshot.toml").write_text(cfg.to_toml())
    home = tmp_path / "ws"
    prefect_home = tmp_path / "killed-prefect-home"  # marks the temporary server's environment
    env = {**{k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}, **ENV, "PREFECT_HOME": str(prefect_home)}
    version = code_version()
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "--home", str(home), "flow", "build", "--config",
                             str(tmp_path / "headshot.toml")], env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    results = home / "flows" / "results"
    seen: dict[int, str] = {}
    deadline = time.monotonic() + 150
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            for pid in _descendants(proc.pid):
                # Every command line a pid had: one read between fork and exec shows the parent's.
                line = _cmdline(pid)
                if line and line not in seen.get(pid, ""):
                    seen[pid] = f"{seen[pid]} | {line}" if pid in seen else line
            if results.is_dir() and any(f.name.startswith("process-items-") for f in results.iterdir()):
                break  # crawl and ingest finished, the first images are processed: the middle
            time.sleep(0.1)
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert any("prefect server start" in c for c in seen.values()), seen  # it did start a server of its own
    assert any("scrapy crawl" in c for c in seen.values()), seen
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and ([p for p in seen if _alive(p)] or _mentions(str(prefect_home))):
        time.sleep(0.2)
    assert [(p, seen[p]) for p in seen if _alive(p)] == []
    assert _mentions(str(prefect_home)) == [] and _mentions(f"HEADSHOT_HOME={home}") == []
    killed_build = json.loads((home / "flows" / "build.json").read_text())
    assert "finished_at" not in killed_build

    asked = len(site.log)
    s = run_build(cfg, str(home))
    assert s["build"] == killed_build["build"] and s["failed"] == []
    if code_version() == version:  # a commit between the two runs changes every cache key
        assert s["sources"]["sources[1] getchu"]["cached"] and s["ingest"]["cached"]
        assert len(site.log) == asked  # the crawl was not run again
    ws = Workspace.open(home)
    for cls in (StoredImage, ScrapedImage, FaceCrop, HashRecord, FilterResult):
        keys = raw_keys(ws, cls)
        assert keys and len(keys) == len(set(keys)), f"{cls.TABLE}: a row written twice"
    faces = [r for r in tables.read_table(ws, FilterResult).to_pylist() if r["filter"] == "faces"]
    assert len(faces) == len(DEMO_IDS) * 4 + 30  # every picture detected, once
    assert s["dataset"]["version"] == 1 and "finished_at" in json.loads((home / "flows" / "build.json").read_text())


def test_ctrl_c_stops_the_crawl_cleanly_and_the_next_build_resumes_it(prefect_api, site, tmp_path):
    from pipelines.flows import run_build

    slow = project(site, None, **{"sources": [{"site": "getchu", "since": "2015-05", "until": "2015-06", "settings": {
        "GETCHU_BASE_URL": site.base, **FAST, "DOWNLOAD_DELAY": "0.4", "DOWNLOAD_DELAY_JITTER": "0"}}]})
    (tmp_path / "headshot.toml").write_text(slow.to_toml())
    home = tmp_path / "ws"
    env = {**os.environ, **ENV, "PREFECT_API_URL": prefect_api}
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "--home", str(home), "flow", "build", "--config",
                             str(tmp_path / "headshot.toml")], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    scrapy: list[int] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not scrapy and proc.poll() is None:
        scrapy = [p for p in _descendants(proc.pid) if "scrapy crawl" in _cmdline(p)]
        time.sleep(0.1)
    assert scrapy, proc.stderr.read()[-3000:] if proc.poll() is not None else "no crawl started"
    time.sleep(2)  # a few pages in
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-3000:]
    assert "interrupted" in err.splitlines()[-1] and "run the same command again" in err.splitlines()[-1]
    assert [p for p in scrapy if _alive(p)] == []
    jobs = list((home / "crawl-jobs").iterdir())
    assert len(jobs) == 1 and (jobs[0] / "headshot-closed").exists()  # Scrapy's clean stop: its queue saved
    stopped = json.loads((home / "flows" / "build.json").read_text())
    assert "finished_at" not in stopped

    s = run_build(project(site, None), str(home))  # the same site address: the same crawl job, resumed
    assert s["build"] == stopped["build"] and s["failed"] == []
    assert s["sources"]["sources[1] getchu"]["ok"] and not (home / "crawl-jobs" / jobs[0].name).exists()
    ws = Workspace.open(home)
    scraped = tables.read_table(ws, ScrapedImage).to_pylist()
    assert sum(r["status"] == "ok" for r in scraped) == len(DEMO_IDS) * 4
    for cls in (StoredImage, ScrapedImage):
        keys = raw_keys(ws, cls)
        assert len(keys) == len(set(keys)), f"{cls.TABLE}: a row written twice"
