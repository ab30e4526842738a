"""Fixtures for the review queue: a review-ready workspace and a live server (Debian's Chromium,
`browser`, is tests/conftest.py's: one per session for every browser test)."""

from __future__ import annotations

import shutil

import pytest

HOSTILE = "<script>alert(1)</script>"


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
