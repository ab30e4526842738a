"""`headshot review` as a user starts it: a real process, a real port, Ctrl-C to stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from curation.review.sample import make_review_workspace
from manifests.workspace import Workspace
from replicas.drawn import draw_face


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    ws = Workspace.open(tmp_path_factory.mktemp("cli-review") / "ws")
    make_review_workspace(ws, 40, seed=1, draw=draw_face)
    return ws.home


def start(home, *args):
    cmd = [sys.executable, "-c", "from pipelines.cli import main; main()", "--home", str(home), "review", "--port", "0",
           "--no-learner", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("review queue: "):
            return proc, line.split()[2], lines
    proc.wait(10)
    raise AssertionError(f"no URL printed: {lines} {proc.stderr.read()}")


def stop(proc):
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    return proc.returncode, out, err


def test_review_serves_on_loopback_and_stops_on_ctrl_c(home):
    proc, url, lines = start(home)
    try:
        assert url.startswith("http://127.0.0.1:") and "token" not in url
        assert "doubtful crops to review" in lines[0]
        stats = json.load(urllib.request.urlopen(url + "api/stats", timeout=10))
        assert stats["total"] == 40 and stats["left"] == stats["queue"]
        page = urllib.request.urlopen(url, timeout=10).read().decode()
        assert "headshot review" in page
    finally:
        code, out, err = stop(proc)
    assert code == 0, err
    assert "decisions are in" in out


def test_another_interface_needs_the_token_it_prints(home):
    proc, url, _ = start(home, "--host", "0.0.0.0")
    try:
        assert "?token=" in url and url.startswith("http://127.0.0.1:")  # one to open, not 0.0.0.0
        other = proc.stdout.readline()  # and where the other machines go
        assert other.startswith("  from another machine: http://") and "0.0.0.0" not in other
        assert other.rstrip().endswith(url.split("/", 3)[3])  # the same ?token=
        token = url.split("?token=")[1]
        port = url.split(":")[2].split("/")[0]
        base = f"http://127.0.0.1:{port}/"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(base + "api/stats", timeout=10)
        assert refused.value.code == 401
        req = urllib.request.Request(base + "api/stats", headers={"X-Headshot-Token": token})
        assert json.load(urllib.request.urlopen(req, timeout=10))["total"] == 40
    finally:
        stop(proc)


def test_a_workspace_without_crops_is_a_clear_error(tmp_path):
    done = subprocess.run([sys.executable, "-c", "from pipelines.cli import main; main()", "--home", str(tmp_path / "empty"),
                           "review", "--port", "0"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "headshot process" in done.stderr
