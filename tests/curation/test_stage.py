"""The stage contract: plan / run / commit driven by hand, as a flow or a cluster worker would,
and stages that overlap on one workspace.

The faces are drawn in code and found by the animeface detector (its model is in its wheel).
"""

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from curation import ingest as ingest_stage
from curation import process as process_stage
from curation.ingest import ingest
from curation.process import ProcessConfig, process
from manifests import tables
from manifests.records import PIPELINE_TABLES, FaceCrop, FilterResult, HashRecord, ScrapedImage, StoredImage
from manifests.workspace import Workspace

CFG = ProcessConfig(detector=replace(ProcessConfig().detector, detector="animeface"), workers=2)
REPO = Path(__file__).resolve().parents[2]

# Columns that differ between two runs of the same work: who ran it and when.
VOLATILE = {"crawl_run_id", "fetched_at", "ingested_at", "run_id", "at"}


def _draw(folder: Path, seeds, size=384) -> Path:
    from replicas.drawn import draw_character, encode

    folder.mkdir(parents=True, exist_ok=True)
    for i in seeds:
        (folder / f"face{i}.png").write_bytes(encode(draw_character(i, size), "PNG"))
    (folder / "sky.png").write_bytes(encode(Image.new("RGB", (300, 200), (120, 170, 230)), "PNG"))
    return folder


def snapshot(ws: Workspace) -> dict[str, list[tuple]]:
    """Every pipeline table as sorted rows, run ids and timestamps aside."""
    out = {}
    for cls in PIPELINE_TABLES:
        t = tables.read_table(ws, cls)
        cols = [c for c in t.column_names if c not in VOLATILE]
        out[cls.TABLE] = sorted(tuple(json.dumps(r[c], default=str) for c in cols) for r in t.select(cols).to_pylist())
    return out


def raw_keys(ws: Workspace, cls) -> list[tuple]:
    """Every row's key in every file of a table, duplicates kept (what was written, not what a read collapses)."""
    keys = []
    for f in tables.table_files(ws, cls):
        t = pq.read_table(f, columns=list(cls.KEY))
        keys += [tuple(r.values()) for r in t.to_pylist()]
    return keys


def test_plan_run_commit_by_hand_gives_what_headshot_process_gives(tmp_path):
    art = _draw(tmp_path / "art", (1, 3, 5))
    by_hand, by_command = Workspace.open(tmp_path / "a"), Workspace.open(tmp_path / "b")
    for ws in (by_hand, by_command):
        ingest([str(art)], ws, progress=False)

    jobs = process_stage.plan(by_hand, CFG)
    assert [j.kind for j in jobs] == ["detect"] * 4
    ctx = process_stage.context(by_hand, CFG)
    outcomes = [process_stage.run(job, ctx) for job in jobs]  # a plain loop: no pool, no globals
    report = process_stage.commit(by_hand, outcomes, "process-by-hand", CFG)
    assert report.stage.items == 4 and report.stage.status["ok"] == 4
    assert report.stage.rows["crops"] == 3 and report.duplicates == 0

    subprocess.run([sys.executable, "-m", "pipelines.cli", "--home", str(by_command.home), "process",
                    "--detector", "animeface"],
                   check=True, capture_output=True, cwd=REPO, timeout=300)
    assert snapshot(by_hand) == snapshot(by_command)
    assert process_stage.plan(by_hand, CFG) == []  # nothing left to do


def test_a_commit_of_work_already_committed_writes_nothing(tmp_path):
    art = _draw(tmp_path / "art", (1, 3))
    ws = Workspace.open(tmp_path / "ws")
    ingest([str(art)], ws, progress=False)
    jobs = process_stage.plan(ws, CFG)
    ctx = process_stage.context(ws, CFG)
    outcomes = [process_stage.run(job, ctx) for job in jobs]
    first = process_stage.commit(ws, outcomes, "process-one", CFG, final=False)
    assert first.stage.rows["crops"] == 2
    files = sorted(ws.manifests.glob("*.parquet"))
    again = process_stage.commit(ws, outcomes, "process-two", CFG, final=False)  # a second worker's copy of the same work
    assert sum(again.stage.rows.values()) == 0 and again.stage.skipped_rows["crops"] == 2
    assert sorted(ws.manifests.glob("*.parquet")) == files


def test_ingest_plan_run_commit_by_hand(tmp_path):
    art = _draw(tmp_path / "art", (1,))
    (art / "copy.png").write_bytes((art / "face1.png").read_bytes())
    (art / "notes.txt.bin").write_bytes(b"not a picture")
    ws = Workspace.open(tmp_path / "ws")
    items, ctx = ingest_stage.plan(ws, [str(art)])
    assert len(items) == 4
    outcomes = [(item, ingest_stage.run(item, ctx)) for item in items]
    report = ingest_stage.commit(ws, outcomes, "ingest-by-hand")
    assert report.new_images == 3 and report.already_stored == 1  # the copy is the same bytes
    assert report.stored_status["not_image"] == 1
    assert len(tables.read_table(ws, StoredImage)) == 3 and len(tables.read_table(ws, ScrapedImage)) == 4
    again = ingest_stage.commit(ws, outcomes, "ingest-again")
    assert again.new_images == 0 and sum(again.stage.rows.values()) == 0


def _cli(home: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipelines.cli", "--home", str(home), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO, text=True)


@pytest.mark.slow
def test_two_process_runs_and_an_ingest_at_once_all_finish_with_no_row_lost_or_twice(tmp_path):
    art = _draw(tmp_path / "art", (1, 3, 5, 6, 14, 15, 16, 17, 18, 19), size=768)  # seconds of work: the runs overlap
    more = _draw(tmp_path / "more", (11, 12, 13), size=320)
    home = tmp_path / "ws"
    subprocess.run([sys.executable, "-m", "pipelines.cli", "--home", str(home), "ingest", str(art)],
                   check=True, capture_output=True, cwd=REPO, timeout=300)
    procs = [_cli(home, "process", "--detector", "animeface"),
             _cli(home, "process", "--detector", "animeface"),
             _cli(home, "ingest", str(more))]
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-2000:]
        assert "busy" not in err
    ws = Workspace.open(home)
    for f in ws.manifests.glob("*.parquet"):
        pq.read_table(f)  # every file whole
    for cls in (StoredImage, ScrapedImage, FaceCrop, HashRecord):
        keys = raw_keys(ws, cls)
        assert len(keys) == len(set(keys)), f"{cls.TABLE}: a row written twice"
    assert len(tables.read_table(ws, StoredImage)) == 10 + 1 + 3 + 1 - 1  # the two skies are the same bytes
    # Whatever the second ingest added, a last process run finds it and the crops are all there.
    subprocess.run([sys.executable, "-m", "pipelines.cli", "--home", str(home), "process",
                    "--detector", "animeface"], check=True, capture_output=True, cwd=REPO, timeout=600)
    faces = {r["subject_id"]: r for r in tables.read_table(ws, FilterResult).to_pylist() if r["filter"] == "faces"}
    assert len(faces) == 14  # every picture detected, once
    crops = tables.read_table(ws, FaceCrop).to_pylist()
    assert len({c["image_sha256"] for c in crops}) == sum(1 for r in faces.values() if r["score"] > 0)
    assert sum(1 for r in faces.values() if r["score"] > 0) >= 8


def test_a_changed_pad_recrops_from_stored_boxes_and_nothing_else(tmp_path):
    from curation.crop import PADS
    from curation.selection import CropSettings, current_crops, read_selection

    art = _draw(tmp_path / "art", (1, 3, 5))
    ws = Workspace.open(tmp_path / "ws")
    ingest([str(art)], ws, progress=False)
    process(ws, CFG, progress=False)
    faces_before = {(r.subject_id, r.version) for r in tables.read_records(ws, FilterResult) if r.filter == "faces"}
    other = next(p for p in PADS if p != CFG.crop.pad)
    padded = replace(CFG, crop=replace(CFG.crop, pad=other))
    report = process(ws, padded, progress=False)
    assert (report.images_detected, report.images_recropped, report.rejudged) == (0, 3, 0)
    assert report.crops_new == 3
    assert {(r.subject_id, r.version) for r in tables.read_records(ws, FilterResult) if r.filter == "faces"} == faces_before
    assert read_selection(ws) == CropSettings.of(padded)
    now = current_crops(ws)  # what the review queue and dataset builds see
    assert len(now) == 3 and {c["pad"] for c in now} == {other}
    assert not ({c["crop_id"] for c in now} & {c["crop_id"] for c in current_crops(ws, CropSettings.of(CFG))})
    assert process(ws, padded, progress=False).did_work is False
