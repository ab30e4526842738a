"""Crop embeddings: computed once per crop and kept in the workspace, the very vectors of the
training metrics' features for the same pixels, and a killed or damaged run that the next one
completes without computing anything twice."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from curation.embeddings import (
    EmbedConfig, Embeddings, embeddings_dir, load_embeddings, present_crops, update_embeddings,
)
from curation.review.sample import make_review_workspace
from manifests.workspace import Workspace
from replicas.drawn import draw_face
from training.features import FEATURE_DIM, FEATURE_VERSION, FeatureExtractor

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def ws(tmp_path):
    ws = Workspace.open(tmp_path / "ws")
    make_review_workspace(ws, 40, seed=5, size=64, draw=draw_face)
    return ws


def _shard_ids(ws) -> list[str]:
    out = []
    for p in sorted(embeddings_dir(ws).glob("part-*.npz")):
        with np.load(p) as z:
            out += [str(c) for c in z["ids"]]
    return out


def test_a_second_run_computes_only_the_new_crops(ws):
    first = update_embeddings(ws)
    assert (first.crops, first.cached, first.computed, first.failed, first.left) == (40, 0, 40, 0, 0)
    again = update_embeddings(ws)
    assert (again.cached, again.computed) == (40, 0)
    make_review_workspace(ws, 12, seed=6, size=64, draw=draw_face)  # a later process run adds crops
    third = update_embeddings(ws)
    assert (third.crops, third.cached, third.computed) == (52, 40, 12)
    ids = _shard_ids(ws)
    assert len(ids) == len(set(ids)) == 52
    assert embeddings_dir(ws).parent.parent == ws.cache and embeddings_dir(ws).name == FEATURE_VERSION
    # a caller may ask for some crops, in its order, a few at a time (the review server does)
    crops = present_crops(ws)
    got, X = load_embeddings(ws, [c for c, _ in crops[::-1]])
    assert got == [c for c, _ in crops[::-1]] and X.shape == (52, FEATURE_DIM) and X.dtype == np.float32


def test_limit_and_order(ws):
    crops = present_crops(ws)
    r = update_embeddings(ws, crops[::-1], limit=5)
    assert (r.computed, r.left) == (5, 35)
    assert set(_shard_ids(ws)) == {c for c, _ in crops[-5:]}


def test_the_vectors_are_the_training_features_of_the_same_pixels(ws, tmp_path):
    crops = present_crops(ws)[:16]
    # one crop of another size goes through the same resize as the metrics' features
    big = Image.open(ws.crop_file(crops[0][1])).convert("RGB").resize((150, 150), Image.BICUBIC)
    big.save(ws.crop_file(crops[0][1]))
    update_embeddings(ws, crops, config=EmbedConfig(batch_size=8))
    ids, got = load_embeddings(ws, [c for c, _ in crops])
    assert ids == [c for c, _ in crops]
    ex = FeatureExtractor()
    want = np.concatenate([
        ex.features(torch.from_numpy(np.array(Image.open(ws.crop_file(crops[0][1])).convert("RGB")))
                    .permute(2, 0, 1)[None]),
        ex.features(torch.from_numpy(np.stack([np.asarray(Image.open(ws.crop_file(p)).convert("RGB"))
                                               for _, p in crops[1:]])).permute(0, 3, 1, 2).contiguous()),
    ])
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    assert np.abs(got - want).max() < 2e-3  # float16 storage
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-3)
    assert (got * want).sum(axis=1).min() > 0.9999


def test_an_unreadable_crop_is_a_failure_kept_not_retried(ws):
    crops = present_crops(ws)
    ws.crop_file(crops[3][1]).write_bytes(b"not a png")
    r = update_embeddings(ws)
    assert (r.computed, r.failed) == (40, 1)
    assert update_embeddings(ws).computed == 0
    ids, X = load_embeddings(ws)
    assert len(ids) == 39 and crops[3][0] not in ids and len(X) == 39


_KILLED_RUN = textwrap.dedent("""
    import os, signal, sys
    from curation.embeddings import EmbedConfig, update_embeddings
    from manifests.workspace import Workspace

    def progress(done, todo):
        if done >= 20:  # two shards of 8 written, the third half full
            os.kill(os.getpid(), signal.SIGKILL)

    update_embeddings(Workspace.open(sys.argv[1]), config=EmbedConfig(batch_size=4, shard_rows=8), progress=progress)
""")


def test_a_killed_run_is_resumed_without_duplicates(ws):
    done = subprocess.run([sys.executable, "-c", _KILLED_RUN, str(ws.home)], cwd=REPO, capture_output=True, timeout=300)
    assert done.returncode == -9, done.stderr.decode()[-2000:]
    assert len(_shard_ids(ws)) == 16  # whole shards only: the third died with the process
    # what else a dead run can leave: a temp file half written, a shard damaged from outside
    folder = embeddings_dir(ws)
    (folder / ".tmp-part-x.npz-999999-abcd").write_bytes(b"PK\x03\x04 half")
    (folder / "part-zz-damaged.npz").write_bytes(b"PK\x03\x04 not a whole zip")
    r = update_embeddings(ws)
    assert (r.cached, r.computed) == (16, 24)
    ids = _shard_ids(ws)
    assert len(ids) == len(set(ids)) == 40 and set(ids) == {c for c, _ in present_crops(ws)}
    assert not list(folder.glob(".tmp-*")) and not (folder / "part-zz-damaged.npz").exists()


def test_small_shards_are_merged_and_duplicates_read_once(ws):
    crops = present_crops(ws)
    cfg = EmbedConfig(batch_size=4, shard_rows=8, merge_above=3)
    for k in range(0, 20, 5):  # four runs of five: four small shards, one past merge_above
        update_embeddings(ws, crops[k:k + 5], config=cfg)
    shards = sorted(embeddings_dir(ws).glob("part-*.npz"))
    assert [len(np.load(p)["ids"]) for p in shards] == [8, 8, 4]
    # a merge cut short between writing and removing leaves rows twice: readers take one
    (embeddings_dir(ws) / "part-a-copy.npz").write_bytes(shards[0].read_bytes())
    emb = Embeddings(ws)
    assert len(emb) == 20 and sorted(emb.ids()) == sorted(c for c, _ in crops[:20])
    assert update_embeddings(ws, crops[:20], config=cfg).computed == 0


def test_a_second_run_at_once_finds_the_first_busy(ws):
    folder = embeddings_dir(ws)
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        r = update_embeddings(ws)
        assert r.busy and r.computed == 0 and r.left == 40
    finally:
        os.close(fd)
    assert update_embeddings(ws).computed == 40


def test_embeddings_follow_new_shards_and_a_stop(ws):
    import threading

    crops = present_crops(ws)
    emb = Embeddings(ws)
    assert len(emb) == 0 and emb.missing(["x"]) == ["x"]
    stop = threading.Event()
    r = update_embeddings(ws, config=EmbedConfig(batch_size=4), progress=lambda d, t: stop.set() if d >= 8 else None,
                          stop=stop)
    assert (r.computed, r.left) == (8, 32)
    assert emb.refresh() and len(emb) == 8 and not emb.refresh()
    X, have = emb.matrix([c for c, _ in crops])
    assert len(X) == 8 and list(have) == list(range(8))


def test_derived_rows_follow_the_cache_and_old_axes_stay_usable(tmp_path):
    from curation.embeddings import add_embeddings

    ws = Workspace.open(tmp_path / "ws")
    rng = np.random.default_rng(0)
    ids = [f"{k:012x}" for k in range(300)]
    add_embeddings(ws, ids[:200], np.abs(rng.normal(size=(200, FEATURE_DIM))))
    emb = Embeddings(ws)
    axes = emb.axes(16)
    assert axes is emb.axes(16) and axes.k == 16 and emb.axes(200) is None  # needs two rows per axis
    X, _ = emb.matrix(ids)
    Z, have = emb.coordinates(ids[::-1], axes)
    assert list(have) == list(range(100, 300)) and np.allclose(Z, axes.transform(X[::-1]), atol=1e-5)
    q = X[:3].mean(axis=0)
    q /= np.linalg.norm(q)
    s, have = emb.similarity(q, ids)
    assert len(have) == 200 and np.allclose(s, X @ q, atol=1e-5)
    add_embeddings(ws, ids[200:], np.abs(rng.normal(size=(100, FEATURE_DIM))))
    assert emb.refresh() and len(emb) == 300 and emb.axes(16) is not axes  # new rows, new axes
    Z2, have2 = emb.coordinates(ids, axes)  # a learner's snapshot keeps its own axes
    assert len(have2) == 300 and np.allclose(Z2[:200], Z[::-1], atol=1e-5)
