"""The review learner on crop embeddings: the accept/reject learner reads them beside the ledger
and pixels (and works as before without them), each tag gets proposals of its own from three
examples, "more like these" ranks by cosine, and the review API serves both."""

from __future__ import annotations

import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from curation.embeddings import Embeddings, add_embeddings, update_embeddings
from curation.review.app import create_app
from curation.review.items import Item
from curation.review.learner import ActiveLearner, LearnerConfig
from curation.review.queue import Queue
from curation.review.store import Change, ReviewStore, State
from curation.review.tags import TagConfig, learn_tags, more_like_these
from manifests.workspace import Workspace
from media.features import FEATURE_DIM

CLUSTERS = 4


def _clustered(n: int, seed: int = 0, spread: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    """n raw feature vectors in CLUSTERS clusters (cluster k = rows k, k + 4, ...), ReLU-like
    positive as the model's are."""
    rng = np.random.default_rng(seed)
    centres = np.abs(rng.normal(size=(CLUSTERS, FEATURE_DIM)))
    cluster = np.arange(n) % CLUSTERS
    X = centres[cluster] + spread * np.abs(rng.normal(size=(n, FEATURE_DIM)))
    return X.astype(np.float32), cluster


def _ids(n: int) -> list[str]:
    return [f"{k:08x}{'ab' * 4}" for k in range(n)]  # crop-id-like hex


def _state(tags=(), decision="accept", origin="human") -> State:
    return State(decision, tuple(tags), "alice", origin, "2026-12-03T00:00:00")


@pytest.fixture
def embedded(tmp_path):
    ws = Workspace.open(tmp_path / "ws")
    ids = _ids(400)
    X, cluster = _clustered(len(ids))
    add_embeddings(ws, ids, X)
    return ws, ids, cluster


# --- tags ----------------------------------------------------------------------------------------
def test_a_tag_gets_proposals_from_three_examples(embedded):
    ws, ids, cluster = embedded
    emb = Embeddings(ws)
    fluffy = [i for i in range(len(ids)) if cluster[i] == 0]
    states = {ids[i]: _state(["fluffy"]) for i in fluffy[:3]}
    states.update({ids[i]: _state() for i in range(1, 40, 4)})  # looked at, other clusters, no tag
    report = learn_tags(ids, states, emb)
    r = report.tags["fluffy"]
    assert (r.positives, r.negatives) == (3, 10) and r.background == TagConfig().background
    proposed = [c for c, _ in r.proposals]
    unseen_fluffy = {ids[i] for i in fluffy} - set(states)
    assert proposed and not set(proposed) & set(states)  # only crops nobody looked at
    assert len(set(proposed) & unseen_fluffy) / len(proposed) >= 0.95
    assert len(set(proposed) & unseen_fluffy) / len(unseen_fluffy) >= 0.9
    ps = [p for _, p in r.proposals]
    assert ps == sorted(ps, reverse=True) and min(ps) >= TagConfig().propose_above
    assert r.recall == 1.0 and r.specificity == 1.0 and r.agreement == 1.0
    assert report.proposed(proposed[0]) == {"fluffy": r.proposals[0][1]}
    # the same answer whatever order the crops come in
    again = learn_tags(ids[::-1], dict(reversed(list(states.items()))), emb)
    assert again.tags["fluffy"].proposals == r.proposals
    d = report.as_dict()
    assert d["tags"]["fluffy"]["proposals"] == len(proposed) and d["needs"] == 3 and d["embedded"] == 400


def test_a_tag_waits_for_three_and_needs_embeddings(embedded):
    ws, ids, cluster = embedded
    emb = Embeddings(ws)
    two = {ids[0]: _state(["fluffy"]), ids[4]: _state(["fluffy"])}
    report = learn_tags(ids, two, emb)
    assert report.tags == {} and report.waiting == {"fluffy": 2}
    # crops without an embedding are neither examples nor proposals
    others = _ids(410)[400:]
    three = {**two, others[0]: _state(["fluffy"])}
    report = learn_tags([*ids, *others], three, emb)
    assert report.tags == {} and report.waiting == {"fluffy": 2} and report.pending == 10
    # only tags as examples, nobody else looked at: the background stands in for the rest
    three = {**two, ids[8]: _state(["fluffy"], decision=None)}
    r = learn_tags(ids, three, emb).tags["fluffy"]
    assert r.negatives == 0 and r.proposals and all(cluster[ids.index(c)] == 0 for c, _ in r.proposals)


def test_no_embeddings_no_tags(tmp_path):
    ws = Workspace.open(tmp_path / "ws")
    ids = _ids(10)
    report = learn_tags(ids, {c: _state(["x"]) for c in ids[:5]}, Embeddings(ws))
    assert report.tags == {} and report.waiting == {"x": 0} and report.pending == 10


# --- more like these -----------------------------------------------------------------------------
def test_more_like_these_ranks_by_cosine_to_the_examples_mean(embedded):
    ws, ids, cluster = embedded
    emb = Embeddings(ws)
    examples = [ids[1], ids[5], ids[9]]  # cluster 1
    found = more_like_these(emb, [*examples, "ffffffffffff"], ids)
    assert found.examples == examples and found.missing == ["ffffffffffff"] and found.pending == 0
    ranked = [c for c, _ in found.ranked]
    assert len(ranked) == 397 and not set(ranked) & set(examples)
    assert all(cluster[ids.index(c)] == 1 for c in ranked[:97])  # the rest of cluster 1 first
    scores = [s for _, s in found.ranked]
    assert scores == sorted(scores, reverse=True)
    E, _ = emb.matrix(ids)
    q = E[[1, 5, 9]].mean(axis=0)
    q /= np.linalg.norm(q)
    assert np.isclose(found.ranked[0][1], float(E[ids.index(ranked[0])] @ q), atol=1e-5)
    assert [c for c, _ in more_like_these(emb, examples, ids, limit=5).ranked] == ranked[:5]
    nothing = more_like_these(emb, ["ffffffffffff"], ids)
    assert nothing.ranked == [] and nothing.missing == ["ffffffffffff"]


# --- the accept/reject learner -------------------------------------------------------------------
def _items_with_pictures(ws, ids) -> list[Item]:
    """Items whose pictures say nothing about the label (one flat grey each)."""
    items = []
    for k, c in enumerate(ids):
        rel = f"crops/{c[:2]}/{c}.png"
        (ws.home / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64, 64), (100 + k % 50,) * 3).save(ws.home / rel)
        items.append(Item(c, f"sha-{c}", rel, "lbp", 1.0))
    return items


def test_the_learner_reads_embeddings_when_there_are_some(embedded):
    ws, ids, cluster = embedded
    ids = ids[:160]
    items = _items_with_pictures(ws, ids)
    # the person accepts clusters 0 and 1 and rejects 2 and 3: only the embeddings tell them apart
    states = {ids[i]: _state(decision="accept" if cluster[i] < 2 else "reject") for i in range(60)}
    learner = ActiveLearner(ws, LearnerConfig(min_labels=20))
    learner.cache.ensure(items)  # the review server's background thread does this
    with_emb = learner.update(items, states)
    assert with_emb.embedded == 60 and with_emb.agreement >= 0.95 and with_emb.agreement > with_emb.baseline
    assert with_emb.as_dict()["embedded"] == 60
    right = [d == ("accept" if cluster[ids.index(c)] < 2 else "reject") for c, d, _ in with_emb.proposals]
    assert len(right) >= 80 and all(right)
    without = ActiveLearner(ws, LearnerConfig(min_labels=20, embed_components=0)).update(items, states)
    assert without.embedded == 0 and without.agreement < 0.8 and not without.proposals


def test_the_learner_works_as_before_without_embeddings(tmp_path):
    ws = Workspace.open(tmp_path / "ws")
    ids = _ids(60)
    items = _items_with_pictures(ws, ids)
    states = {c: _state(decision="accept" if k % 2 else "reject") for k, c in enumerate(ids[:40])}
    a = ActiveLearner(ws, LearnerConfig(min_labels=20)).update(items, states)
    b = ActiveLearner(ws, LearnerConfig(min_labels=20, embed_components=0)).update(items, states)
    assert a.embedded == 0 and a.as_dict() == b.as_dict() | {"config": a.config.as_dict()}


# --- the review API ------------------------------------------------------------------------------
@pytest.fixture
def api(tmp_path):
    from curation.review.sample import make_review_workspace
    from replicas.drawn import draw_face

    ws = Workspace.open(tmp_path / "review")
    ids = make_review_workspace(ws, 200, seed=7, size=64, draw=draw_face)
    X, cluster = _clustered(len(ids), seed=1)
    add_embeddings(ws, ids[:-5], X[:-5])  # the last five have none yet
    store = ReviewStore(ws.review_db)
    holder: dict = {}
    queue = Queue(ws, store, tag_report=lambda: holder.get("tags"))
    with TestClient(create_app(queue), base_url="http://127.0.0.1:8765") as c:
        c.ids, c.cluster, c.holder, c.store, c.queue = ids, cluster, holder, store, queue
        yield c
    store.close()


def test_api_similar(api):
    ids, cluster = api.ids, api.cluster
    examples = [ids[2], ids[6], ids[-1]]
    r = api.get("/api/similar", params={"ids": ",".join(examples), "limit": 10})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["examples"] == examples[:2] and body["missing"] == [ids[-1]] and body["pending"] == 4
    assert body["total"] == len(ids) - 3 - 4 and len(body["items"]) == 10
    assert all(cluster[ids.index(it["id"])] == 2 for it in body["items"])
    scores = [it["score"] for it in body["items"]]
    assert scores == sorted(scores, reverse=True)
    # the ranking is a snapshot the page pages through like any view
    page = api.get("/api/items", params={"snap": body["snap"], "offset": 10, "limit": 5}).json()
    assert page["view"] == "similar" and page["total"] == body["total"]
    ranked = api.get("/api/similar", params={"ids": ",".join(examples), "limit": 1000}).json()["items"]
    assert [it["id"] for it in page["items"]] == [it["id"] for it in ranked[10:15]]
    assert api.get("/api/similar", params={"ids": "0123456789abcdef"}).status_code == 404
    assert api.get("/api/similar", params={"ids": ""}).status_code == 400
    none = api.get("/api/similar", params={"ids": ids[-1]}).json()
    assert none["items"] == [] and none["why"]


def test_api_tag_proposals(api):
    ids, cluster = api.ids, api.cluster
    tagged = [ids[i] for i in range(0, 12, 4)]  # cluster 0
    r = api.post("/api/tag", json={"reviewer": "alice", "ids": tagged, "tag": "furry"})
    assert r.status_code == 200, r.text
    assert api.get("/api/tag-proposals", params={"tag": "furry"}).json()["ready"] is False
    learner = api.get("/api/learner").json()
    assert learner["ready"] is False and learner["tags"] == {}
    api.holder["tags"] = learn_tags(list(api.queue.by_id), api.store.current(), api.queue.embeddings())
    body = api.get("/api/tag-proposals", params={"tag": "furry", "limit": 1000}).json()
    assert body["ready"] and body["positives"] == 3 and body["total"] == len(body["items"]) > 30
    assert all(cluster[ids.index(it["id"])] == 0 for it in body["items"])
    assert not {it["id"] for it in body["items"]} & set(tagged)
    first = body["items"][0]["id"]
    described = api.get("/api/items", params={"snap": body["snap"], "limit": 3}).json()["items"]
    assert described[0]["id"] == first and set(described[0]["tag_proposals"]) == {"furry"}
    learner = api.get("/api/learner").json()
    assert learner["tags"]["tags"]["furry"]["proposals"] == body["total"]
    # a crop the person has looked at since leaves the open proposals at once
    api.post("/api/decide", json={"reviewer": "alice", "ids": [first], "decision": "accept"})
    after = api.get("/api/tag-proposals", params={"tag": "furry", "limit": 1000}).json()
    assert after["total"] == body["total"] - 1 and first not in {it["id"] for it in after["items"]}


def test_the_review_server_embeds_the_crops_and_learns_tags(tmp_path):
    """The real server: its learner thread computes the missing embeddings in the background
    (with the model) and the tag classifier follows the person's tags."""
    from curation.review.sample import make_review_workspace
    from curation.review.server import ReviewServer
    from replicas.drawn import draw_face

    ws = Workspace.open(tmp_path / "ws")
    ids = make_review_workspace(ws, 40, seed=3, size=64, draw=draw_face)
    with ReviewServer(ws, port=0) as s:
        deadline = time.monotonic() + 120
        while len(s.embeddings) < 40 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(s.embeddings) == 40, s.learner_thread.embed_error
        s.store.record([Change(c, None, ("mine",)) for c in ids[:3]], "alice")
        s.learner_thread.wake()
        while (s.learner_thread.tag_report is None or "mine" not in s.learner_thread.tag_report.tags) \
                and time.monotonic() < deadline:
            time.sleep(0.2)
        r = s.learner_thread.tag_report.tags["mine"]
        assert r.positives == 3 and r.background > 0
    assert update_embeddings(ws).computed == 0  # what the server computed is the workspace's cache
