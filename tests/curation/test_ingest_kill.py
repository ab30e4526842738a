"""An ingest of 500 files killed with SIGKILL half-way, then run again: 500 ok rows, no
duplicate, no half-written Parquet file."""

import os
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq

from manifests import tables
from manifests.records import ScrapedImage, StoredImage
from manifests.workspace import Workspace
from replicas.drawn import write_faces


def _ingest_cmd(home, folder):
    return [sys.executable, "-m", "pipelines.cli", "--home", str(home), "ingest", "--workers", "1",
            "--no-progress", str(folder)]


def _assert_no_process_left(marker: str) -> None:
    """The decoding workers die with their driver instead of holding the workspace."""
    deadline = time.monotonic() + 10
    while True:
        alive = []
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open(f"/proc/{d}/cmdline", "rb") as f:
                        if marker.encode() in f.read():
                            alive.append(d)
                except OSError:
                    pass
        if not alive:
            return
        assert time.monotonic() < deadline, f"processes outlived the killed ingest: {alive}"
        time.sleep(0.05)


def test_sigkill_half_way_then_resume(tmp_path):
    folder = tmp_path / "art"
    write_faces(folder, 500, size=160)
    home = tmp_path / "ws"
    proc = subprocess.Popen(_ingest_cmd(home, folder), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while not list((home / "manifests").glob("stored.part-*.parquet")):
        assert proc.poll() is None, proc.stdout.read().decode()
        assert time.monotonic() < deadline, "no part was written in time"
        time.sleep(0.005)
    assert proc.poll() is None, "the run ended before it could be killed half-way"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    _assert_no_process_left(str(home))

    ws = Workspace.open(home)
    done_before = tables.read_table(ws, StoredImage).num_rows
    assert 0 < done_before < 500

    out = subprocess.run(_ingest_cmd(home, folder), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert f"{500 - done_before} new images" in out.stdout  # the rerun decodes only what was missing

    stored = tables.read_records(ws, StoredImage)
    scraped = tables.read_records(ws, ScrapedImage)
    assert len(stored) == 500 and {r.status for r in stored} == {"ok"}
    assert len({r.image_sha256 for r in stored}) == 500
    assert len(scraped) == 500 and len({r.source_id for r in scraped}) == 500
    for cls in (StoredImage, ScrapedImage):
        for f in tables.table_files(ws, cls):
            assert pq.read_table(f).num_rows > 0
    leftovers = [p for p in home.rglob(".tmp-*")]
    assert leftovers == []
    blobs = [p for p in (home / "images").rglob("*") if p.is_file()]
    assert len(blobs) == 500
