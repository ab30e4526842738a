"""A full disk, on a real small filesystem (an 8 MiB tmpfs; root only, skipped otherwise):
ingest and process end with one line naming the folder and the space needed, leave no temp
file behind and every table readable, and once there is room again the same command
finishes the work without a duplicate row."""

import subprocess
import sys
import time

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from manifests import tables
from manifests.records import FaceCrop, FilterResult, ScrapedImage, StoredImage
from manifests.workspace import Workspace
from replicas.drawn import write_faces


def _cli(home, *args, timeout=120):
    cmd = [sys.executable, "-m", "pipelines.cli", "--home", str(home), *map(str, args)]
    started = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    return out, time.monotonic() - started


def _noise(folder, n, side=256):
    """Pictures that do not compress: n x ~200 KB."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(folder / f"noise{i:02d}.png")


def _assert_clean(home) -> None:
    assert [p for p in home.rglob(".tmp-*")] == []
    for f in (home / "manifests").glob("*.parquet"):
        pq.read_table(f)  # whole, readable


def _one_error_line(out, folder_part: str) -> str:
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    line = lines[0]
    assert line.startswith("headshot: error: the disk is full writing to ") and folder_part in line
    assert "more are needed" in line and "run the same command again" in line
    return line


def test_ingest_on_a_full_disk_is_one_line_then_resumes(small_disk, tmp_path):
    art = tmp_path / "art"
    _noise(art, 20)  # ~4 MB
    home = small_disk.path / "ws"
    Workspace.open(home)
    small_disk.fill(keep=1_500_000)
    out, took = _cli(home, "ingest", "--workers", "1", "--no-progress", art)
    assert took < 60 and out.returncode == 4, (out.returncode, out.stderr)
    line = _one_error_line(out, str(home))
    assert "Traceback" not in out.stderr and line.count("MB") >= 1
    _assert_clean(home)

    small_disk.free()
    out, _ = _cli(home, "ingest", "--workers", "1", "--no-progress", art)
    assert out.returncode == 0, out.stderr
    ws = Workspace.open(home)
    stored = tables.read_records(ws, StoredImage)
    scraped = tables.read_records(ws, ScrapedImage)
    assert len(stored) == len({r.image_sha256 for r in stored}) == 20
    assert len(scraped) == 20 and {r.status for r in scraped} == {"ok"}
    assert len([p for p in (home / "images").rglob("*.png")]) == 20
    _assert_clean(home)


def test_process_on_a_full_disk_is_one_line_then_resumes(small_disk, tmp_path):
    art = tmp_path / "art"
    write_faces(art, 24, size=384)
    home = small_disk.path / "ws"
    out, _ = _cli(home, "ingest", "--workers", "1", "--no-progress", art)
    assert out.returncode == 0, out.stderr
    small_disk.fill(keep=60_000)
    out, took = _cli(home, "process", "--detector", "animeface", "--no-progress")
    assert took < 90 and out.returncode == 4, (out.returncode, out.stdout, out.stderr)
    _one_error_line(out, str(home))
    _assert_clean(home)
    ws = Workspace.open(home)
    seen_before = {r.subject_id for r in tables.read_records(ws, FilterResult) if r.filter == "faces"}
    assert len(seen_before) < 24  # the images it could not finish were not recorded as seen

    small_disk.free()
    out, _ = _cli(home, "process", "--detector", "animeface", "--no-progress")
    assert out.returncode == 0, out.stderr
    faces = [r for r in tables.read_records(ws, FilterResult) if r.filter == "faces"]
    assert len(faces) == len({r.subject_id for r in faces}) == 24
    assert not any("could not be processed" in r.reason for r in faces)
    crops = tables.read_records(ws, FaceCrop)
    assert len(crops) == len({c.crop_id for c in crops}) > 0
    assert all((home / c.crop_path).is_file() for c in crops)
    _assert_clean(home)
