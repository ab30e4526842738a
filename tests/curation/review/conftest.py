"""Fixtures for the review queue: a review-ready workspace, a live server, and Debian's Chromium."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
HOSTILE = "<script>alert(1)</script>"


def ensure_chromium() -> Path:
    """Debian's chromium package, installed on first use (never a downloaded browser build)."""
    if CHROMIUM.exists():
        return CHROMIUM
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("/usr/bin/chromium is missing and cannot be installed here (apt-get as root): "
                    "apt-get install chromium")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-q", "chromium"]):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode:
            raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return CHROMIUM


@pytest.fixture(scope="session")
def browser():
    path = ensure_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(path), headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="session")
def review_template(tmp_path_factory):
    from curation.review.sample import make_review_workspace
    from manifests.workspace import Workspace
    from replicas.drawn import draw_face

    ws = Workspace.open(tmp_path_factory.mktemp("review-template") / "ws")
    ids = make_review_workspace(ws, 300, seed=7, titles={i: HOSTILE for i in range(0, 300, 7)}, draw=draw_face)
    return ws.home, ids


@pytest.fixture
def review_ws(tmp_path, review_template):
    """A fresh copy per test of a 300-crop review-ready workspace (every 7th title hostile)."""
    from manifests.workspace import Workspace

    home, ids = review_template
    shutil.copytree(home, tmp_path / "ws")
    return Workspace.open(tmp_path / "ws"), ids


@pytest.fixture
def server(review_ws):
    from curation.review.server import ReviewServer

    ws, _ = review_ws
    with ReviewServer(ws, port=0, learner=False) as s:
        yield s
