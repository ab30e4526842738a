"""The review queue against a hostile or unlucky world: bad JSON, forged provenance, other sites'
forms, weak tokens, wildcard addresses, crafted crop paths and a full disk. Each ends as a clear
refusal (a status with a JSON detail, or one `headshot: error:` line), never a 500 or a traceback."""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request

import pytest
from fastapi.testclient import TestClient

from curation.review.app import AppConfig, create_app
from curation.review.queue import Queue
from curation.review.server import ReviewServer, ReviewServerError, new_token, other_addresses
from curation.review.store import ReviewStore, StoreUnavailable

BASE = "http://127.0.0.1:8765"
CLI = [sys.executable, "-c", "from pipelines.cli import main; main()"]


@pytest.fixture
def client(review_ws):
    ws, ids = review_ws
    store = ReviewStore(ws.review_db)
    queue = Queue(ws, store)
    with TestClient(create_app(queue), base_url=BASE) as c:
        c.queue, c.store, c.ids = queue, store, ids
        yield c
    store.close()


def rows(ws) -> list[tuple]:
    """Every decision row, read through a connection of its own (what a restart would see)."""
    with sqlite3.connect(ws.review_db) as db:
        return db.execute("SELECT crop_id, decision, origin, undone_at FROM decisions ORDER BY seq").fetchall()


def detail(r) -> str:
    body = r.json()
    assert isinstance(body.get("detail"), str), body
    return body["detail"]


def run_cli(home, *args, env=None, timeout=20):
    started = time.monotonic()
    done = subprocess.run([*CLI, "--home", str(home), "review", "--port", "0", "--no-learner", *args],
                          capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})
    return done, time.monotonic() - started


def one_error_line(done) -> str:
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0 and len(lines) == 1 and lines[0].startswith("headshot: error: "), done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    return lines[0]


# -- 1. bodies that are not JSON, or JSON with NaN in it ---------------------------------------
@pytest.mark.parametrize("path, raw, says", [
    ("/api/decide", '{"reviewer": NaN, "ids": ["IDS"], "decision": "accept"}',
     "body.reviewer: nan is not a JSON number"),
    ("/api/tags", '{"key": NaN}', "body.key: nan is not a JSON number"),
    ("/api/tags", '{"key": Infinity, "name": "x"}', "body.key: inf is not a JSON number"),
    ("/api/tag", '{"reviewer": "alice", "ids": ["IDS"], "tag": "t", "on": -Infinity}', "body.on: -inf is not"),
    ("/api/decide", '{"reviewer": "alice", "ids": ["IDS"], "decis', "the body is not valid JSON"),
    ("/api/batches", "not json at all", "the body is not valid JSON"),
])
def test_nan_infinity_and_broken_json_are_a_422_with_a_readable_detail(client, path, raw, says):
    r = client.post(path, content=raw.replace("IDS", client.ids[0]), headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    assert detail(r).startswith("invalid request: ") and says in detail(r)
    assert rows(client.queue.ws) == [] and client.store.tags() == {}


# -- 2. provenance is the server's to say ------------------------------------------------------
def test_a_client_cannot_forge_a_decisions_origin(client):
    a, b = client.ids[:2]
    forged = client.post("/api/decide", json={"reviewer": "alice", "ids": [a], "decision": "accept", "origin": "model"})
    assert forged.status_code == 422 and "body.origin: Extra inputs are not permitted" in detail(forged)
    sneaky = client.post("/api/batches", json={"reviewer": "alice", "ops": [
        {"op": "decide", "ids": [a], "decision": "accept", "origin": "rule"}]})
    assert sneaky.status_code == 422 and "body.ops.0.origin" in detail(sneaky)
    assert rows(client.queue.ws) == []
    # What the page did decides it: a key press is a person's word, Enter on a proposal the learner's.
    assert client.post("/api/decide", json={"reviewer": "alice", "ids": [a], "decision": "reject"}).status_code == 200
    assert client.post("/api/confirm", json={"reviewer": "alice", "proposals": {b: "accept"}}).status_code == 200
    assert [(c, o) for c, _, o, _ in rows(client.queue.ws)] == [(a, "human"), (b, "model")]
    js = client.get("/static/review.js").text
    assert not re.search(r"\borigin\s*:", js)  # the page never sends one


# -- 3. writes from another site ---------------------------------------------------------------
@pytest.mark.parametrize("headers, says", [
    ({"Origin": "http://evil.example"}, "'http://evil.example' is not this page's"),
    ({"Origin": "null"}, "Origin 'null'"),
    ({"Origin": "http://127.0.0.1:9999"}, "is not this page's 'http://127.0.0.1:8765'"),
    ({"Origin": "https://127.0.0.1:8765"}, "is not this page's"),
    ({"Sec-Fetch-Site": "cross-site"}, "Sec-Fetch-Site is 'cross-site'"),
    ({"Origin": BASE, "Sec-Fetch-Site": "same-site"}, "Sec-Fetch-Site is 'same-site'"),
])
def test_writes_from_another_origin_are_refused(client, headers, says):
    body = {"reviewer": "alice", "ids": [client.ids[0]], "decision": "accept"}
    r = client.post("/api/decide", json=body, headers=headers)
    assert r.status_code == 403 and detail(r).startswith("cross-origin writes are refused") and says in detail(r)
    assert rows(client.queue.ws) == []


def test_the_pages_own_writes_reads_and_scripts_pass(client):
    a, b, c = client.ids[:3]
    ok = [{"Origin": BASE, "Sec-Fetch-Site": "same-origin"}, {"Origin": "HTTP://127.0.0.1:8765"},
          {"Sec-Fetch-Site": "none"}, {}]  # the page itself, any case; a typed URL; curl
    for headers, crop in zip(ok, (a, b, c, a)):
        r = client.post("/api/decide", json={"reviewer": "alice", "ids": [crop], "decision": "skip"}, headers=headers)
        assert r.status_code == 200, (headers, r.text)
    assert client.get("/api/stats", headers={"Origin": "http://evil.example"}).status_code == 200  # reads: CSP/CORS
    assert len(rows(client.queue.ws)) == 4


def test_a_valid_token_does_not_make_another_sites_write_ours(review_ws):
    ws, ids = review_ws
    token = new_token()
    queue = Queue(ws, ReviewStore(ws.review_db))
    app = create_app(queue, AppConfig(token=token, allowed_hosts=("*",)))
    with TestClient(app, base_url="http://192.0.2.5:8765") as c:
        c.get(f"/?token={token}")  # the cookie a browser would send along with a forged form
        r = c.post("/api/undo", json={"reviewer": "alice"}, headers={"Origin": "http://evil.example"})
        assert r.status_code == 403 and "cross-origin" in detail(r)
        r = c.post("/api/undo", json={"reviewer": "alice"}, headers={"Origin": "http://192.0.2.5:8765"})
        assert r.status_code == 200
    queue.store.close()


# -- 4. tokens that could be guessed -----------------------------------------------------------
@pytest.mark.parametrize("token, says", [("a", "at least 16 characters long, not 1"),
                                         ("x" * 15, "not 15"), ("with spaces in it ok", "only letters")])
def test_a_weak_or_unsafe_token_is_refused(review_ws, token, says):
    with pytest.raises(ReviewServerError, match=says):
        ReviewServer(review_ws[0], port=0, token=token, learner=False)
    assert len(new_token()) >= 16
    ReviewServer(review_ws[0], port=0, token=new_token(), learner=False).store.close()


def test_the_cli_refuses_a_short_token_from_the_flag_or_the_environment(review_ws):
    home = review_ws[0].home
    for args, env in ((["--token", "a"], {}), ([], {"HEADSHOT_REVIEW_TOKEN": "short"})):
        done, took = run_cli(home, "--host", "0.0.0.0", *args, env=env)
        assert "at least 16 characters" in one_error_line(done) and took < 20


# -- 5. the address printed is one to open -----------------------------------------------------
@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_a_wildcard_host_prints_loopback_and_this_machines_addresses(review_ws, host):
    if host == "::":
        try:
            socket.create_server(("::", 0), family=socket.AF_INET6).close()
        except OSError as exc:
            pytest.skip(f"cannot listen on IPv6 here: {exc}")
    token = new_token()
    with ReviewServer(review_ws[0], host=host, port=0, token=token, learner=False) as s:
        assert s.url == f"http://127.0.0.1:{s.port}/?token={token}"
        stats = json.load(urllib.request.urlopen(s.url.replace("/?", "/api/stats?"), timeout=10))
        assert stats["total"] == 300  # the printed URL opens
        others = s.other_urls()
        assert others or socket.gethostname() == "localhost"  # offline and nameless: nothing to offer
        assert all(u.endswith(f":{s.port}/?token={token}") for u in others)
        assert not any(w in u for u in others for w in ("0.0.0.0", "[::]", "127.0.0.1"))


def test_without_a_route_the_hostname_is_offered(monkeypatch):
    monkeypatch.setattr("curation.review.server._primary_address", lambda family, probe: None)
    monkeypatch.setattr(socket, "gethostname", lambda: "labbox")
    assert other_addresses("0.0.0.0") == ["labbox"]


# -- 6. crop files only from crops/ ------------------------------------------------------------
def craft_crops(ws, paths: dict[str, str]) -> None:
    """FaceCrop rows as a tampered manifest would hold them: made with the present settings."""
    from curation.review.sample import PARAMS
    from manifests import tables
    from manifests.records import FaceCrop

    tables.append(ws, FaceCrop, [FaceCrop(crop_id=cid, image_sha256="0" * 64, box_x=0, box_y=0, box_w=64, box_h=64,
                                          margin=0.25, detector="sample", detector_version="1", detector_params=PARAMS,
                                          score=0.5, crop_path=rel, size=64) for cid, rel in paths.items()], "run-evil")


def test_a_crafted_crop_path_never_serves_another_file(review_ws):
    ws, ids = review_ws
    ReviewStore(ws.review_db).close()
    manifest = ws.relative(next(ws.manifests.glob("*.parquet")))
    (ws.crops / "ev").mkdir()
    (ws.crops / "ev" / "link.png").symlink_to(ws.review_db)
    (ws.crops / "ev" / "fine.png").symlink_to(ws.crops / ids[0][:2] / f"{ids[0]}.png")  # a link within crops/
    evil = {"aa" * 8: "review.sqlite", "bb" * 8: manifest, "cc" * 8: "crops/../review.sqlite",
            "dd" * 8: "crops/ev/link.png", "ee" * 8: "/etc/passwd", "ff" * 8: "crops", "ab" * 8: "crops/ev/fine.png"}
    craft_crops(ws, evil)
    store = ReviewStore(ws.review_db)
    queue = Queue(ws, store)
    assert set(evil) <= set(queue.by_id)  # the rows are in the queue ...
    with TestClient(create_app(queue), base_url=BASE) as c:
        for cid in sorted(set(evil) - {"ab" * 8}):
            r = c.get(f"/crop/{cid}")  # ... but their files are not served
            assert r.status_code == 404 and detail(r) == "no crop with this id", (evil[cid], r.content[:40])
        assert c.get(f"/crop/{ids[0]}").status_code == 200
        assert c.get(f"/crop/{'ab' * 8}").content[:4] == b"\x89PNG"
        assert c.get(f"/crop/{'12' * 8}").status_code == 404  # not in the manifest at all
    store.close()


def test_workspace_crop_file_allows_only_crops(ws, tmp_path):
    (ws.crops / "ab").mkdir()
    (ws.crops / "ab" / "x.png").write_bytes(b"x")
    (tmp_path / "outside.png").write_bytes(b"o")
    (ws.crops / "ab" / "out.png").symlink_to(tmp_path / "outside.png")
    (ws.crops / "ab" / "loop.png").symlink_to(ws.crops / "ab" / "loop.png")
    assert ws.crop_file("crops/ab/x.png") == (ws.crops / "ab" / "x.png").resolve()
    for rel in ("review.sqlite", "manifests/crops.parquet", "crops/../review.sqlite", "crops", "/etc/passwd",
                "crops/ab/out.png", "crops/ab/loop.png", "crops/ab/\0.png", "../ws/crops/../datasets/x"):
        with pytest.raises(ValueError):
            ws.crop_file(rel)


# -- 7. a full disk ----------------------------------------------------------------------------
@pytest.fixture
def full_disk_ws(small_disk):
    from curation.review.sample import make_review_workspace
    from manifests.workspace import Workspace
    from replicas.drawn import draw_face

    ws = Workspace.open(small_disk.path / "ws")
    ids = make_review_workspace(ws, 30, seed=3, draw=draw_face)
    return ws, ids, small_disk


def test_a_full_disk_refuses_writes_with_507_and_loses_nothing_acknowledged(full_disk_ws, caplog):
    ws, ids, disk = full_disk_ws
    a, b, c = ids[:3]
    store = ReviewStore(ws.review_db)
    caplog.set_level(logging.ERROR, logger="headshot.review")
    acknowledged = []
    with TestClient(create_app(Queue(ws, store)), base_url=BASE) as client:
        def post(path, body):
            return client.post(path, json={"reviewer": "alice", **body})

        assert post("/api/decide", {"ids": [a], "decision": "accept"}).status_code == 200
        acknowledged.append((a, "accept"))
        disk.fill()
        refused = [post("/api/decide", {"ids": [b], "decision": "reject"}),
                   post("/api/batches", {"ops": [{"op": "decide", "ids": [b], "decision": "reject"},
                                                 {"op": "decide", "ids": [c], "decision": "skip"}]}),
                   post("/api/undo", {}),
                   client.post("/api/tags", json={"key": 1, "name": "smile"})]
        for r in refused:
            assert r.status_code == 507, r.text
            assert "its disk is full" in detail(r) and "free some space" in detail(r) and str(ws.review_db) in detail(r)
        logged = [rec for rec in caplog.records if rec.name == "headshot.review"]
        assert len(logged) == 4 and all(rec.levelno == logging.ERROR for rec in logged)
        line = logged[0].getMessage()
        assert "/api/decide" in line and "database or disk is full" in line and "\n" not in line
        disk.free()
        again = post("/api/batches", {"ops": [{"op": "decide", "ids": [b], "decision": "reject"},
                                              {"op": "decide", "ids": [c], "decision": "skip"}]})
        assert again.status_code == 200, again.text
        acknowledged += [(b, "reject"), (c, "skip")]
    assert [(crop, d) for crop, d, _, undone in rows(ws)] == acknowledged  # exactly these, once each
    assert all(undone is None for *_, undone in rows(ws)) and store.tags() == {}
    store.close()


def test_a_store_that_cannot_be_opened_on_a_full_disk_is_one_clear_line(full_disk_ws):
    ws, _, disk = full_disk_ws
    disk.fill()
    with pytest.raises(StoreUnavailable, match=r"cannot open .*review\.sqlite: its disk is full .*free some space"):
        ReviewStore(ws.review_db)
    done, took = run_cli(ws.home)
    line = one_error_line(done)
    assert "its disk is full" in line and str(ws.review_db) in line and took < 20
    assert done.returncode == 4  # the full disk's exit code, as ingest, process and crawl
    assert "review queue:" not in done.stdout


# -- the page keeps what a full disk refused and sends it again --------------------------------
@pytest.mark.slow
def test_the_page_keeps_refused_key_presses_and_sends_them_again(browser, server):
    from playwright.sync_api import expect

    page = browser.new_context().new_page()
    refusals = []

    def full_once(route):
        if not refusals:
            refusals.append(route.request.post_data)
            return route.fulfill(status=507, content_type="application/json",
                                 body=json.dumps({"detail": "cannot record a decision: its disk is full"}))
        return route.continue_()

    page.route("**/api/batches", full_once)
    page.goto(server.url)
    page.wait_for_selector("body[data-ready='1']")
    first = page.eval_on_selector(".cell", "c => c.dataset.id")
    page.keyboard.press("a")
    expect(page.locator("#status")).to_contain_text("its disk is full · 1 key press kept, sent again in 2 s",
                                                         timeout=10_000)
    assert page.eval_on_selector(".cell", "c => c.dataset.decision") == "accept"  # still shown, still pending
    assert page.evaluate("document.body.dataset.pending") == "1"
    page.wait_for_selector("body[data-pending='0']", state="attached", timeout=20_000)  # sent again, saved
    assert refusals and [(c, d) for c, d, _, _ in rows(server.ws)] == [(first, "accept")]
    page.context.close()
