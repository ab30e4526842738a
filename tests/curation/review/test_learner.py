"""The review queue's active learner: features of crops, the cache that keeps them, the numpy
logistic regression, and the learner's report on labels that follow a rule."""

from __future__ import annotations

import math
import json

import numpy as np
import pytest
from PIL import Image, ImageDraw

from curation.review.features import (
    FEATURE_NAMES, LEDGER_NAMES, N_PIXEL, PIXEL_NAMES, FeatureCache, ledger_features, pixel_features,
)
from curation.review.items import Item
from curation.review.learner import ActiveLearner, LearnerConfig, LogisticRegression, fold_ids
from curation.review.store import Change, ReviewStore

PIX = {n: i for i, n in enumerate(PIXEL_NAMES)}


def _draw(path, colourful: bool, seed: int, size: int = 96) -> None:
    """A face-ish picture: a background and a few ellipses, in colour or in grey levels."""
    rng = np.random.default_rng(seed)

    def colour():
        if colourful:
            return tuple(int(v) for v in rng.integers(0, 256, 3))
        g = int(rng.integers(0, 256))
        return (g, g, g)

    im = Image.new("RGB", (size, size), colour())
    d = ImageDraw.Draw(im)
    for _ in range(6):
        x, y = rng.integers(0, size - 20, 2)
        w, h = rng.integers(10, 40, 2)
        d.ellipse([int(x), int(y), int(x + w), int(y + h)], fill=colour(), outline=(0, 0, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)


def _items(ws, n_grey: int, n_colour: int) -> tuple[list[Item], set[str]]:
    items, grey = [], set()
    for k in range(n_grey + n_colour):
        colourful = k >= n_grey
        cid = f"{'c' if colourful else 'g'}{k:03d}"
        rel = f"crops/{cid[:2]}/{cid}.png"
        _draw(ws.home / rel, colourful, seed=k)
        items.append(Item(cid, f"sha-{cid}", rel, "lbp", 1.0))
        if not colourful:
            grey.add(cid)
    return items, grey


# --- the model ---------------------------------------------------------------------------------------
def test_logistic_regression_recovers_a_separable_rule():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 6)) * [1, 3, 1, 1, 1, 100] + [0, 0, 0, 0, 0, 50]
    y = (X[:, 0] + X[:, 1] / 3 > 0).astype(float)
    model = LogisticRegression(l2=0.1).fit(X, y)
    Xt = rng.normal(size=(2000, 6)) * [1, 3, 1, 1, 1, 100] + [0, 0, 0, 0, 0, 50]
    yt = Xt[:, 0] + Xt[:, 1] / 3 > 0
    p = model.predict_proba(Xt)
    assert p.shape == (2000,) and np.all((p >= 0) & (p <= 1))
    assert ((p >= 0.5) == yt).mean() > 0.97
    assert model.coef_[0] > 0 and model.coef_[1] > 0
    # the noise features weigh little next to the rule's, once scaled by their spread
    scaled = np.abs(model.coef_) * X.std(axis=0)
    assert scaled[2:].max() < 0.2 * scaled[:2].min()
    again = LogisticRegression(l2=0.1).fit(X, y)
    assert np.array_equal(model.coef_, again.coef_) and model.intercept_ == again.intercept_
    # float32 input (what FeatureCache.matrix gives) scores the same
    assert np.allclose(model.predict_proba(Xt.astype(np.float32)), p, atol=1e-3)


def test_logistic_regression_stays_finite_on_one_class_and_constant_features():
    X = np.ones((10, 3))
    model = LogisticRegression().fit(X, np.ones(10))
    p = model.predict_proba(X)
    assert np.all(np.isfinite(model.coef_)) and np.all(p > 0.9)


def test_folds_are_balanced_and_independent_of_order():
    ids = [f"id{k}" for k in range(23)]
    f = fold_ids(ids, 5)
    assert sorted(np.bincount(f).tolist()) == [4, 4, 5, 5, 5]
    g = fold_ids(ids[::-1], 5)
    assert dict(zip(ids, f)) == dict(zip(ids[::-1], g))


# --- features ----------------------------------------------------------------------------------------
def test_pixel_features_tell_grey_from_colour(tmp_path):
    _draw(tmp_path / "grey.png", False, seed=1)
    _draw(tmp_path / "colour.png", True, seed=1)
    Image.open(tmp_path / "colour.png").save(tmp_path / "colour.jpg", quality=85)
    g, c, cj = (pixel_features(tmp_path / n) for n in ("grey.png", "colour.png", "colour.jpg"))
    assert g.shape == c.shape == (N_PIXEL,) and g.dtype == np.float32
    assert g[PIX["unreadable"]] == 0 and c[PIX["unreadable"]] == 0
    assert g[PIX["grey_fraction"]] > 0.99 and c[PIX["grey_fraction"]] < 0.3
    assert g[PIX["colourfulness"]] < 0.02 < 0.3 < c[PIX["colourfulness"]]
    assert g[PIX["sat_mean"]] < 0.01 < 0.2 < c[PIX["sat_mean"]]
    assert np.allclose(g[PIX["hue_hist_0"]:PIX["hue_hist_7"] + 1], 0, atol=1e-3)
    assert 0 < cj[PIX["grey_fraction"]] < 0.3 and cj[PIX["colourfulness"]] > 0.3
    assert np.all(np.isfinite(cj))


def test_pixel_features_of_a_bad_file_are_a_flag_not_an_exception(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really" * 20)
    for path in (bad, tmp_path / "missing.png", tmp_path):
        f = pixel_features(path)
        assert f.shape == (N_PIXEL,) and f[PIX["unreadable"]] == 1.0 and not f[:-1].any()


def test_ledger_features_have_fixed_slots():
    it = Item("x", "s", "crops/x.png", "lbp", 3.0, reasons=[
        {"filter": "monochrome", "score": 2.1, "threshold": 1.05, "passed": True, "doubtful": False},
        {"filter": "monochrome", "score": 0.5, "threshold": 1.05, "passed": False, "doubtful": False},
        {"filter": "published_after", "score": float("nan"), "threshold": float("-inf"), "passed": True, "doubtful": False},
        {"filter": "something_new", "score": 1.0, "threshold": 1.0, "passed": True, "doubtful": False},
    ], group_size=4, keeper=False, distance=3)
    f = dict(zip(LEDGER_NAMES, ledger_features(it)))
    assert len(ledger_features(it)) == len(LEDGER_NAMES) == len(f)
    assert f["monochrome.ratio"] == pytest.approx(np.log2(0.5 / 1.05))  # the worse of the two runs
    assert f["monochrome.passed"] == 0 and f["monochrome.present"] == 1
    assert f["published_after.present"] == 1 and f["published_after.ratio"] == 0
    assert f["sharpness.present"] == 0 and f["sharpness.ratio"] == 0
    assert f["keeper"] == 0 and f["distance"] == 3 and f["log_group_size"] == pytest.approx(np.log(4))
    assert len(FEATURE_NAMES) == len(set(FEATURE_NAMES))


def test_a_filter_registered_later_widens_the_cache_s_matrix(ws):
    from curation import filters as F
    from curation.review import features

    class Tinted(F.Filter):  # lives in this test only
        name, version, reads, order = "test_tinted", "1", ("min_colour",), 70

    items, _ = _items(ws, 2, 2)
    for k, it in enumerate(items):
        it.reasons = [{"filter": "test_tinted", "score": 0.5 + k, "threshold": 1.0, "passed": k >= 1}]
    cache = FeatureCache(ws)
    cache.ensure(items)
    before, _ = cache.matrix(items)
    F.register(Tinted)
    try:
        X, _ = cache.matrix(items)  # the same Item objects: their remembered ledger rows are stale
        assert X.shape == (4, len(features.FEATURE_NAMES)) == (4, before.shape[1] + 3)
        col = {n: X[:, i] for i, n in enumerate(features.FEATURE_NAMES)}
        assert col["test_tinted.present"].tolist() == [1, 1, 1, 1] and col["test_tinted.passed"].tolist() == [0, 1, 1, 1]
        assert col["test_tinted.ratio"] == pytest.approx(np.log2([0.5, 1.5, 2.5, 3.5]))
    finally:
        F.unregister(Tinted.name)
    assert np.array_equal(cache.matrix(items)[0], before)


def test_cache_computes_once_and_a_second_cache_loads_it(ws):
    items, _ = _items(ws, 3, 3)
    calls = []

    def counting(path):
        calls.append(path)
        return pixel_features(path)

    cache = FeatureCache(ws, compute=counting)
    assert cache.ensure(items, limit=2) == 2 and len(calls) == 2
    X, have = cache.matrix(items)
    assert X.shape == (2, len(FEATURE_NAMES)) and X.dtype == np.float32 and have.tolist() == [0, 1]
    assert cache.ensure(items) == 4 and len(calls) == 6
    assert cache.path.exists() and cache.path.parent == ws.home / "cache"
    X, have = cache.matrix(items[::-1])
    assert have.tolist() == list(range(6))
    assert cache.ensure(items) == 0 and len(calls) == 6

    calls.clear()
    again = FeatureCache(ws, compute=counting)
    assert len(again) == 6 and again.ensure(items) == 0 and calls == []
    X2, _ = again.matrix(items[::-1])
    assert np.array_equal(X, X2)


def test_a_damaged_cache_file_is_rebuilt(ws):
    items, _ = _items(ws, 1, 1)
    cache = FeatureCache(ws)
    cache.path.parent.mkdir(parents=True, exist_ok=True)
    cache.path.write_bytes(b"half a file")
    fresh = FeatureCache(ws)
    assert len(fresh) == 0 and fresh.ensure(items) == 2
    assert len(FeatureCache(ws)) == 2


# --- the learner -------------------------------------------------------------------------------------
def test_learner_follows_the_person_reject_grey_accept_colour(ws, tmp_path):
    items, grey = _items(ws, 24, 24)
    store = ReviewStore(tmp_path / "review.sqlite")
    learner = ActiveLearner(ws, LearnerConfig(min_labels=20, min_per_class=5))

    def decide(cid, origin="human", decision=None):
        store.record([Change(cid, decision or ("reject" if cid in grey else "accept"))], "alice", origin)

    labelled = [it.crop_id for it in items[:12]] + [it.crop_id for it in items[24:36]]  # 12 grey, 12 colour
    for cid in labelled[:10] + labelled[12:20]:  # 18 labels: not enough yet
        decide(cid)
    assert learner.update(items, store.current()) is None
    for cid in labelled[10:12] + labelled[20:24]:
        decide(cid)
    decide(items[12].crop_id, decision="skip")  # put aside: neither a label nor proposed again
    decide(items[36].crop_id, origin="rule", decision="reject")  # a rule's word: not trained on
    decide(items[37].crop_id, origin="model")  # a confirmed proposal: trained on, not scored
    learner.cache.ensure(items)  # the web app's background thread does this
    report = learner.update(items, store.current())
    assert report is not None
    assert report.human_labels == 24 and report.labels == 25 and report.agreement_n == 24
    assert 0.0 <= report.agreement <= 1.0 and report.agreement >= 0.9
    assert report.accepted == 13 and report.rejected == 12 and report.baseline == pytest.approx(0.5)
    assert report.proposing and report.ordering  # 90% or more against 50%

    decided = set(labelled) | {items[12].crop_id, items[36].crop_id, items[37].crop_id}
    undecided = [it.crop_id for it in items if it.crop_id not in decided]
    assert set(report.p_accept) == set(report.order) == set(undecided) and report.pending == 0
    assert report.proposals and {c for c, _, _ in report.proposals} <= set(undecided)
    for cid, decision, p in report.proposals:
        assert decision == ("reject" if cid in grey else "accept")
        assert (p >= 0.9) if decision == "accept" else (p <= 0.1)
    sure = [max(p, 1 - p) for _, _, p in report.proposals]
    assert sure == sorted(sure, reverse=True)
    unsure = [abs(report.p_accept[c] - 0.5) for c in report.order]
    assert unsure == sorted(unsure)
    right = [(report.p_accept[c] < 0.5) == (c in grey) for c in undecided]
    assert sum(right) >= 0.9 * len(right)

    d = report.as_dict()
    assert json.loads(json.dumps(d, allow_nan=False))["agreement"] == pytest.approx(report.agreement, abs=1e-4)
    assert "p_accept" not in report.as_dict(with_p=False)
    store.close()


def test_learner_waits_for_both_classes_and_orders_unscored_crops_last(ws, tmp_path):
    items, grey = _items(ws, 6, 24)
    store = ReviewStore(tmp_path / "review.sqlite")
    colour = [it.crop_id for it in items if it.crop_id not in grey]
    store.record([Change(c, "accept") for c in colour[:20]], "alice")
    store.record([Change(c, "reject") for c in sorted(grey)[:4]], "alice")
    learner = ActiveLearner(ws, LearnerConfig(min_labels=20, min_per_class=5))
    assert learner.update(items, store.current()) is None  # 4 rejects < 5
    store.record([Change(sorted(grey)[4], "reject")], "alice")
    # pixel features only for the labels (update computes those) and one undecided crop
    learner.cache.ensure([items[5]])
    report = learner.update(items, store.current())
    assert report is not None and report.labels == 25
    undecided = [it.crop_id for it in items[6:] if it.crop_id not in colour[:20]]
    assert report.pending == len(undecided) == 4
    assert list(report.p_accept) == [items[5].crop_id] and report.order[0] == items[5].crop_id
    assert report.order[1:] == undecided  # unscored: in the order given, after the scored ones
    store.close()


def test_a_learner_no_better_than_the_commoner_decision_proposes_nothing(ws, tmp_path):
    items, _ = _items(ws, 12, 12)
    # Each picture twice, labelled both ways: nothing in the features can tell the copies apart,
    # so held-out agreement cannot beat always saying the commoner decision (50%).
    twins = [Item(it.crop_id + "-twin", it.image_sha256 + "-twin", it.crop_path, "lbp", 1.0) for it in items]
    extra, _ = _items(ws, 0, 4)
    extra = [Item("u" + it.crop_id, "sha-u" + it.crop_id, it.crop_path, "lbp", 1.0) for it in extra]
    store = ReviewStore(tmp_path / "review.sqlite")
    store.record([Change(it.crop_id, "accept") for it in items] + [Change(it.crop_id, "reject") for it in twins], "alice")
    learner = ActiveLearner(ws, LearnerConfig(min_labels=20, min_per_class=5))
    learner.cache.ensure(extra)  # the web app's background thread does this
    report = learner.update(items + twins + extra, store.current())
    assert report is not None and report.baseline == pytest.approx(0.5)
    assert not report.agreement > report.baseline
    assert report.proposals == [] and report.order == []  # the queue keeps the filters' order
    assert not report.proposing and not report.ordering
    assert set(report.p_accept) == {it.crop_id for it in extra}  # still scored, for the record
    store.close()


def test_a_tie_with_the_commoner_decision_keeps_the_learners_order_but_proposes_nothing():
    from curation.review.learner import gates

    assert gates(0.8, 0.7) == (True, True)
    assert gates(22 / 30, 1 - 8 / 30) == (False, True)  # a tie: no proposals, the least sure still first
    assert gates(0.6, 0.7) == (False, False)  # worse: the filters' order
    assert gates(math.nan, 0.7) == (False, False) and gates(0.8, math.nan) == (False, False)
