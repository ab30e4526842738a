"""The learner's model on its own: whole-picture crops get weights of their own, the nearest
labelled crops by embedding vote beside the regression, and a crop's place in its picture
reaches the features (load_items reads the box and the picture's size)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from curation.embeddings import Embeddings, add_embeddings
from curation.ingest import ingest
from curation.process import ProcessConfig, process
from curation.review.features import feature_names, geometry_features
from curation.review.items import Item, load_items
from curation.review.learner import WHOLE, Judge, LearnerConfig, neighbour_vote
from media.features import FEATURE_DIM


def _two_kinds(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Columns (signal, whole): a face crop is a headshot when signal > 0, a whole-picture crop
    when signal < 0 (the same colour cue means opposite things for the two kinds)."""
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=n)
    whole = (np.arange(n) % 2).astype(np.float64)
    y = np.where(whole == 1, signal < 0, signal > 0).astype(np.float64)
    return np.column_stack([signal, whole]), y


def test_whole_picture_crops_get_weights_of_their_own():
    X, y = _two_kinds(200)
    Xt, yt = _two_kinds(400, seed=1)
    ids = [f"c{k}" for k in range(len(X))]
    tids = [f"t{k}" for k in range(len(Xt))]
    cfg = LearnerConfig()
    per_kind = Judge(cfg, whole=1).fit(X, y, ids).predict_proba(Xt, tids)
    shared = Judge(LearnerConfig(per_kind=False), whole=1).fit(X, y, ids).predict_proba(Xt, tids)
    assert ((per_kind >= 0.5) == (yt == 1)).mean() > 0.9
    assert ((shared >= 0.5) == (yt == 1)).mean() < 0.7  # one set of weights cannot say both
    # without a whole column the design is the features as they are
    assert Judge(cfg).fit(X, y, ids).model.coef_.shape == (2,)
    assert Judge(cfg, whole=1).fit(X, y, ids).model.coef_.shape == (4,)


def test_the_nearest_labelled_crops_vote(tmp_path):
    from manifests.workspace import Workspace

    ws = Workspace.open(tmp_path / "ws")
    rng = np.random.default_rng(0)
    centres = np.abs(rng.normal(size=(2, FEATURE_DIM)))
    ids = [f"{k:08x}abababab" for k in range(40)]
    cluster = np.arange(40) % 2
    add_embeddings(ws, ids, centres[cluster] + 0.3 * np.abs(rng.normal(size=(40, FEATURE_DIM))))
    emb = Embeddings(ws)
    train, test = ids[:20], ids[20:] + ["not-embedded"]
    y = (cluster[:20] == 1).astype(float)  # cluster 1 is accepted
    vote, at = neighbour_vote(emb, train, y, test, k=3)
    assert at.tolist() == list(range(20))  # the crop without an embedding gets no vote
    assert np.allclose(vote, np.where(cluster[20:] == 1, 3.5 / 4, 0.5 / 4))
    # Blended: the regression over a feature that says nothing is pulled to the vote's side.
    X = np.zeros((20, 1))
    judge = Judge(LearnerConfig(neighbours=3, neighbour_weight=0.5), embeddings=emb).fit(X, y, train)
    p = judge.predict_proba(np.zeros((21, 1)), test)
    assert np.all(p[:20][cluster[20:] == 1] > 0.6) and np.all(p[:20][cluster[20:] == 0] < 0.4)
    assert p[20] == pytest.approx(0.5, abs=0.05)  # no embedding: the regression alone
    alone = Judge(LearnerConfig(neighbour_weight=0.0), embeddings=emb).fit(X, y, train).predict_proba(
        np.zeros((21, 1)), test)
    assert np.allclose(alone, alone[0])
    with pytest.raises(ValueError, match="neighbour"):
        LearnerConfig(neighbour_weight=1.5)


def test_geometry_features_say_where_the_crop_sits():
    names = feature_names()
    assert WHOLE in names
    banner = Item("a", "s", "p", "whole", 0.5, box_w=100, box_h=100, image_width=400, image_height=100)
    g = dict(zip(("whole", "aspect", "abs_aspect", "share", "box_aspect", "side"), geometry_features(banner)))
    assert g["whole"] == 1.0 and g["aspect"] == pytest.approx(np.log(4)) == g["abs_aspect"]
    assert g["share"] == pytest.approx(0.25) and g["box_aspect"] == 0.0 and g["side"] == pytest.approx(np.log(400))
    face = Item("b", "s", "p", "animeface", 3.0, box_w=50, box_h=50, image_width=100, image_height=200)
    assert geometry_features(face)[:2] == [0.0, pytest.approx(-np.log(2))]
    unknown = Item("c", "s", "p", "lbp", 1.0)  # rows of an older workspace: no sizes known
    assert geometry_features(unknown) == [0.0, 0.0, 0.0, 1.0, 0.0, 0.0]


def test_load_items_reads_the_box_and_the_picture_size(ws, tmp_path):
    art = tmp_path / "art"
    art.mkdir()
    im = Image.new("RGB", (300, 120), (240, 240, 240))
    im.paste(Image.new("RGB", (80, 80), (200, 40, 40)), (110, 20))
    im.save(art / "banner.png")
    ingest([str(art)], ws, progress=False)
    process(ws, ProcessConfig(subject="whole", workers=1), progress=False)
    (it,) = load_items(ws)
    assert it.detector == WHOLE and (it.image_width, it.image_height) == (300, 120)
    assert 0 < it.box_w <= 300 and 0 < it.box_h <= 120
    g = geometry_features(it)
    assert g[0] == 1.0 and g[1] == pytest.approx(np.log(300 / 120)) and 0 < g[3] < 1
