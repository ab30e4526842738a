"""The review API as a client sees it: views, decisions, and what it refuses."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from curation.review.app import AppConfig, create_app
from curation.review.queue import Queue
from curation.review.store import ReviewStore

HOSTILE = "<script>alert(1)</script>"


@pytest.fixture
def client(review_ws):
    ws, ids = review_ws
    store = ReviewStore(ws.review_db)
    queue = Queue(ws, store)
    with TestClient(create_app(queue), base_url="http://127.0.0.1:8765") as c:
        c.queue, c.ids = queue, ids
        yield c
    store.close()


def decide(client, ids, decision, reviewer="alice"):
    r = client.post("/api/decide", json={"reviewer": reviewer, "ids": ids, "decision": decision})
    assert r.status_code == 200, r.text
    return r.json()


def test_the_queue_comes_most_doubtful_first_and_pages_from_a_snapshot(client):
    first = client.get("/api/items", params={"limit": 50}).json()
    doubts = [it["doubt"] for it in first["items"]]
    assert doubts == sorted(doubts) and all(it["state"] == "doubtful" for it in first["items"])
    assert all(it["reasons"] and "filter" in it["reasons"][0] for it in first["items"])
    total = first["total"]
    decide(client, [it["id"] for it in first["items"][:10]], "accept")
    # Labelling does not shift the pages of the open view ...
    second = client.get("/api/items", params={"snap": first["snap"], "offset": 50, "limit": 50}).json()
    again = client.get("/api/items", params={"snap": first["snap"], "offset": 0, "limit": 100}).json()
    assert [it["id"] for it in again["items"][50:]] == [it["id"] for it in second["items"]]
    # ... and a new view no longer holds the decided ones.
    fresh = client.get("/api/items", params={"limit": 1000}).json()
    assert fresh["total"] == total - 10
    assert client.get("/api/stats").json()["left"] == total - 10


def test_views(client):
    meta = client.get("/api/meta").json()
    assert {"queue", "reason", "score", "groups", "tag", "decided"} <= set(meta["views"])
    assert "monochrome" in meta["filters"]
    by_score = client.get("/api/items", params={"view": "score", "arg": "sharpness", "limit": 1000}).json()["items"]
    scores = [next(r["score"] for r in it["reasons"] if r["filter"] == "sharpness") for it in by_score]
    assert scores == sorted(scores) and len(scores) == 300
    mono = client.get("/api/items", params={"view": "reason", "arg": "monochrome", "limit": 1000}).json()["items"]
    assert mono and all(any(r["filter"] == "monochrome" and (not r["passed"] or r["doubtful"]) for r in it["reasons"])
                        for it in mono)
    groups = client.get("/api/items", params={"view": "groups", "limit": 1000}).json()["items"]
    assert groups[0]["keeper"] and all(it["group_size"] > 1 for it in groups)
    assert groups[1]["group"] == groups[0]["group"] and not groups[1]["keeper"]
    assert client.get("/api/items", params={"view": "nope"}).status_code == 400
    assert client.get("/api/items", params={"view": "score", "arg": "nope"}).status_code == 400


def test_revising_a_decision_and_the_decided_view(client):
    a, b = client.ids[:2]
    decide(client, [a, b], "reject")
    decide(client, [a], "accept", reviewer="bob")
    decided = client.get("/api/items", params={"view": "decided"}).json()["items"]
    assert [(it["id"], it["decision"], it["by"]) for it in decided] == [(a, "accept", "bob"), (b, "reject", "alice")] \
        or {(it["id"], it["decision"]) for it in decided} == {(a, "accept"), (b, "reject")}
    hist = client.get(f"/api/items/{a}/history").json()["history"]
    assert [h["decision"] for h in hist] == ["reject", "accept"]


def test_undo_and_tags(client):
    a = client.ids[0]
    assert client.post("/api/tags", json={"key": 3, "name": "Disney style"}).json()["tags"] == {"3": "Disney style"}
    client.post("/api/tag", json={"reviewer": "alice", "ids": [a], "tag": "Disney style"})
    assert client.get("/api/items", params={"view": "tag", "arg": "Disney style"}).json()["total"] == 1
    decide(client, [a], "skip")
    undone = client.post("/api/undo", json={"reviewer": "alice"}).json()
    assert [it["id"] for it in undone["items"]] == [a] and undone["items"][0]["decision"] is None
    assert undone["items"][0]["tags"] == ["Disney style"]  # the tag batch still stands


def test_group_key_keeps_the_keeper(client):
    group = next(g for g in client.queue.groups.values() if len(g) >= 2)
    r = client.post("/api/group-decide", json={"reviewer": "alice", "crop_id": group[-1].crop_id}).json()
    got = {it["id"]: it["decision"] for it in r["items"]}
    assert got == {it.crop_id: "accept" if it.keeper else "reject" for it in group}


@pytest.mark.parametrize("path", [
    "/crop/../../etc/passwd", "/crop/..%2F..%2Fetc%2Fpasswd", "/crop/%2Fetc%2Fpasswd", "/crop/0123456789abcdef",
    "/crop/ZZZZZZZZ", "/static/..%2Fapp.py", "/static/app.py", "/static/%2Fetc%2Fpasswd",
])
def test_only_known_crop_ids_reach_the_filesystem(client, path):
    r = client.get(path)
    assert r.status_code in (404, 405) and b"root:" not in r.content


def test_a_known_crop_is_served(client):
    r = client.get(f"/crop/{client.ids[0]}")
    assert r.status_code == 200 and r.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_unknown_ids_and_bad_input_are_refused(client):
    assert client.post("/api/decide", json={"reviewer": "a", "ids": ["../../etc/passwd"], "decision": "accept"}).status_code == 404
    assert client.post("/api/decide", json={"reviewer": "a", "ids": [client.ids[0]], "decision": "maybe"}).status_code == 400
    assert client.post("/api/decide", json={"reviewer": "<x>", "ids": [client.ids[0]], "decision": "accept"}).status_code == 400
    assert client.post("/api/decide", json={"reviewer": "a", "ids": [], "decision": "accept"}).status_code == 422
    assert client.get("/api/items/ffffffffffff/history").status_code == 404
    assert ReviewStore(client.queue.ws.review_db).current() == {}


def test_scraped_text_is_data_and_the_page_forbids_inline_script(client):
    items = client.get("/api/items", params={"view": "all", "limit": 1000}).json()["items"]
    assert any(it["title"] == HOSTILE for it in items)  # JSON carries it verbatim; the page sets it as text
    page = client.get("/")
    assert HOSTILE not in page.text and "script-src 'self'" in page.headers["content-security-policy"]
    assert "textContent" in client.get("/static/review.js").text and "innerHTML" not in client.get("/static/review.js").text


def test_a_javascript_url_never_becomes_a_link(review_ws, tmp_path):
    from manifests import tables
    from manifests.records import ScrapedImage

    ws, ids = review_ws
    crop = Queue(ws, ReviewStore(tmp_path / "x.sqlite")).by_id[ids[0]]
    tables.append(ws, ScrapedImage, [ScrapedImage(source="deviantart", source_id="evil", image_url="https://x/y.png",
                                                  status="ok", page_url="javascript:alert(1)",
                                                  image_sha256=crop.image_sha256)], "run-evil")
    queue = Queue(ws, ReviewStore(tmp_path / "y.sqlite"))
    [d] = queue.describe([ids[0]])
    assert not d["page_url"].startswith("javascript")


def test_other_hosts_are_refused_and_a_token_is_required_when_set(review_ws):
    ws, ids = review_ws
    queue = Queue(ws, ReviewStore(ws.review_db))
    with TestClient(create_app(queue), base_url="http://evil.example") as c:
        assert c.get("/api/stats").status_code == 400  # DNS rebinding
    app = create_app(queue, AppConfig(token="s3cret", allowed_hosts=("*",)))
    with TestClient(app, base_url="http://192.0.2.5:8765") as c:
        assert c.get("/api/stats").status_code == 401
        assert c.get(f"/crop/{ids[0]}").status_code == 401
        assert c.get("/api/stats", headers={"X-Headshot-Token": "wrong"}).status_code == 401
        assert c.get("/api/stats", headers={"X-Headshot-Token": "s3cret"}).status_code == 200
        r = c.get("/?token=s3cret")
        assert r.status_code == 200 and "headshot_token" in r.headers["set-cookie"]
        assert c.get("/api/stats").status_code == 200  # the cookie carries it from now on


def test_the_server_refuses_another_interface_without_a_token(review_ws):
    from curation.review.server import ReviewServer, ReviewServerError

    with pytest.raises(ReviewServerError, match="token"):
        ReviewServer(review_ws[0], host="0.0.0.0", port=0, learner=False)


def test_key_presses_sent_together_stay_separate_batches(client):
    a, b, c = client.ids[:3]
    client.post("/api/tags", json={"key": 1, "name": "disney"})
    ops = [{"op": "decide", "ids": [a], "decision": "accept"}, {"op": "decide", "ids": [b, c], "decision": "reject"},
           {"op": "tag", "ids": [a], "tag": "disney"}, {"op": "tag", "ids": [a], "tag": "disney", "on": False},
           {"op": "tag", "ids": [b], "tag": "disney"}]
    r = client.post("/api/batches", json={"reviewer": "alice", "ops": ops})
    assert r.status_code == 200, r.text
    got = {it["id"]: (it["decision"], it["tags"]) for it in r.json()["items"]}
    assert got == {a: ("accept", []), b: ("reject", ["disney"]), c: ("reject", [])}
    # One undo step per key press: the last tag goes, the rest stays.
    undone = client.post("/api/undo", json={"reviewer": "alice"}).json()["items"]
    assert [(it["id"], it["tags"]) for it in undone] == [(b, [])]
    assert client.post("/api/undo", json={"reviewer": "alice"}).json()["items"][0]["tags"] == ["disney"]


def test_one_bad_press_in_a_combined_request_writes_nothing(client):
    a = client.ids[0]
    ops = [{"op": "decide", "ids": [a], "decision": "accept"}, {"op": "decide", "ids": [a], "decision": "maybe"}]
    assert client.post("/api/batches", json={"reviewer": "alice", "ops": ops}).status_code == 400
    ops = [{"op": "decide", "ids": [a], "decision": "accept"}, {"op": "decide", "ids": ["deadbeefdeadbeef"], "decision": "accept"}]
    assert client.post("/api/batches", json={"reviewer": "alice", "ops": ops}).status_code == 404
    ops = [{"op": "explode", "ids": [a]}]
    assert client.post("/api/batches", json={"reviewer": "alice", "ops": ops}).status_code == 400
    assert ReviewStore(client.queue.ws.review_db).current() == {}
