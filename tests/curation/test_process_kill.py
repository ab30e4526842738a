"""`headshot process` killed with SIGKILL: its fork server, its workers and the resource
tracker die with it (they used to live on for good, ~0.5 GB each time), and a rerun finishes
the work without a duplicate row."""

import os
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq

from curation.ingest import IngestConfig, ingest
from manifests import tables
from manifests.records import FaceCrop, FilterResult
from manifests.workspace import Workspace
from replicas.drawn import write_faces


def _process_cmd(home):
    return [sys.executable, "-m", "pipelines.cli", "--home", str(home), "process", "--detector", "animeface",
            "--no-progress"]


def _children() -> dict[int, int]:
    """pid -> parent pid of every process on the machine."""
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    out[int(d)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    return out


def _descendants(pid: int) -> set[int]:
    parents = _children()
    found, todo = set(), [pid]
    while todo:
        p = todo.pop()
        for child, parent in parents.items():
            if parent == p and child not in found:
                found.add(child)
                todo.append(child)
    return found


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                    alive.add(p)
        except OSError:
            pass
    return alive


def _lock_is_free(ws) -> bool:
    import fcntl

    with open(ws.manifests / ".lock") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


def test_sigkill_of_process_leaves_no_worker_then_the_rerun_finishes(tmp_path):
    home = tmp_path / "ws"
    ws = Workspace.open(home)
    write_faces(tmp_path / "art", 80, size=768)
    ingest([str(tmp_path / "art")], ws, IngestConfig(workers=1), progress=False)

    proc = subprocess.Popen(_process_cmd(home), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    family: set[int] = set()
    # Wait for the fork server, its two workers and the resource tracker, and their first crops.
    while len(family) < 4 or not list(ws.crops.glob("*/*.png")):
        assert proc.poll() is None, "process ended before it could be killed: " + proc.stdout.read().decode()
        assert time.monotonic() < deadline, f"the workers did not start in time ({family})"
        family |= _descendants(proc.pid)
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while _alive(family):
        assert time.monotonic() < deadline, f"processes outlived the killed process: {sorted(_alive(family))}"
        time.sleep(0.05)

    assert not (ws.manifests / ".lock").exists() or _lock_is_free(ws)
    out = subprocess.run(_process_cmd(home), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    crops = tables.read_records(ws, FaceCrop)
    assert len(crops) == len({c.crop_id for c in crops}) > 0
    faces_rows = [r for r in tables.read_records(ws, FilterResult) if r.filter == "faces"]
    assert len(faces_rows) == len({r.subject_id for r in faces_rows}) == 80
    for f in ws.manifests.glob("*.parquet"):
        pq.read_table(f)
    assert list(home.rglob(".tmp-*")) == []
