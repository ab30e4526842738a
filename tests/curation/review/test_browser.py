"""The queue in real headless Chromium (Debian's package, driven by Playwright)."""

from __future__ import annotations

import json
import urllib.request

import pytest
from playwright.sync_api import expect

from curation.review.store import ReviewStore

HOSTILE = "<script>alert(1)</script>"  # the title conftest gives every 7th crop

pytestmark = pytest.mark.slow


def open_queue(browser, server, reviewer="alice", query=""):
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("dialog", lambda d: (errors.append(f"dialog: {d.message}"), d.dismiss()))
    page.add_init_script(f"localStorage.setItem('headshot.reviewer', {json.dumps(reviewer)})")
    page.goto(server.url.rstrip("/") + "/" + query)
    page.wait_for_selector("body[data-ready='1']")
    return ctx, page, errors


def settled(page):
    page.wait_for_selector("body[data-pending='0']", state="attached")


def decisions(page):
    return page.eval_on_selector_all(".cell", "cs => cs.map(c => [c.dataset.id, c.dataset.decision])")


def test_label_by_keyboard_bulk_undo_and_reload(browser, server):
    ctx, page, errors = open_queue(browser, server)
    cells = decisions(page)
    assert len(cells) > 50 and all(d == "" for _, d in cells)
    first = [c for c, _ in cells[:6]]
    page.keyboard.press("a")  # accept the focused crop; focus moves on
    page.keyboard.press("r")
    page.keyboard.press("ArrowRight")  # skip over the third one
    page.keyboard.press("s")
    # Shift+arrows select a range, one key decides it all.
    page.keyboard.press("Shift+ArrowRight")
    page.keyboard.press("Shift+ArrowRight")
    settled(page)
    now = dict(decisions(page))
    assert [now[c] for c in first[:4]] == ["accept", "reject", "", "skip"]
    page.keyboard.press("r")
    settled(page)
    now = dict(decisions(page))
    assert [now[c] for c in first[4:6]] == ["reject", "reject"]
    page.keyboard.press("u")  # undo the bulk reject
    settled(page)
    now = dict(decisions(page))
    assert [now[c] for c in first[4:6]] == ["", ""]
    counter = page.text_content("#counter")
    # The store holds exactly what the page showed.
    store = ReviewStore(server.ws.review_db)
    state = store.current()
    assert {c: state[c].decision for c in first if c in state and state[c].decision} == \
        {first[0]: "accept", first[1]: "reject", first[3]: "skip"}
    assert all(state[c].reviewer == "alice" for c in (first[0], first[1], first[3]))
    assert len(store.history(first[4])) == 1 and store.history(first[4])[0]["undone_at"]
    store.close()
    # Reload: the decided crops have left the queue and show in the decided view with their labels.
    page.reload()
    page.wait_for_selector("body[data-ready='1']")
    ids_now = [c for c, _ in decisions(page)]
    assert first[0] not in ids_now and first[2] in ids_now and first[4] in ids_now
    assert "3 decided" in page.text_content("#counter") and counter != page.text_content("#counter")
    expect(page.locator("#learner")).to_have_text("learner: off (--no-learner)")
    page.select_option("#view", "decided")
    page.wait_for_selector("body[data-view='decided']", state="attached")
    expect(page.locator(".cell")).to_have_count(3)
    assert dict(decisions(page)) == {first[0]: "accept", first[1]: "reject", first[3]: "skip"}
    assert errors == []
    ctx.close()


def test_hostile_titles_show_as_text(browser, server):
    ctx, page, errors = open_queue(browser, server, query="?view=all")
    titles = page.eval_on_selector_all(".cell .title", "ts => ts.map(t => t.textContent)")
    assert any(HOSTILE in t for t in titles)
    assert page.locator("script").count() == 1  # the page's own script only
    # From the page's own origin, a path or an unknown id never reaches a file.
    for path in ("crop/../../etc/passwd", "crop/..%2F..%2Fetc%2Fpasswd", "crop/0123456789abcdef", "static/..%2Fapp.py"):
        r = page.request.get(server.url + path)
        assert r.status == 404 and b"root:" not in r.body(), path
    assert errors == []
    ctx.close()


def test_two_reviewers_at_once_lose_nothing(browser, server):
    a_ctx, a, _ = open_queue(browser, server, "alice")
    b_ctx, b, _ = open_queue(browser, server, "bob")
    ids = [c for c, _ in decisions(a)]
    assert len(ids) >= 20  # a shorter queue would leave the check below fewer than the 20 crops both label
    # Both label the first 20 crops, interleaved key by key; bob rejects where alice accepts.
    for _ in range(20):
        a.keyboard.press("a")
        b.keyboard.press("r")
    settled(a)
    settled(b)
    store = ReviewStore(server.ws.review_db)
    for c in ids[:20]:
        hist = store.history(c)
        assert sorted(h["reviewer"] for h in hist) == ["alice", "bob"]  # nothing lost
        latest = max(hist, key=lambda h: h["seq"])
        assert store.current()[c].decision == latest["decision"]  # the latest one wins
    store.close()
    a_ctx.close()
    b_ctx.close()


def test_tags_and_duplicate_groups_by_key(browser, server):
    req = urllib.request.Request(server.url + "api/tags", data=json.dumps({"key": 1, "name": "disney"}).encode(),
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req).read()
    ctx, page, errors = open_queue(browser, server, query="?view=groups")
    cells = decisions(page)
    page.keyboard.press("1")
    settled(page)
    page.keyboard.press("k")  # keep the keeper of the focused group, reject the rest
    settled(page)
    store = ReviewStore(server.ws.review_db)
    state = store.current()
    assert state[cells[0][0]].tags == ("disney",)
    group = server.queue.group_of(cells[0][0])
    assert len(group) >= 2
    assert {it.crop_id: state[it.crop_id].decision for it in group} == \
        {it.crop_id: ("accept" if it.keeper else "reject") for it in group}
    # g selects the whole group of the focused crop, wherever its members are; s skips them all.
    other = next(g for g in server.queue.groups.values() if g[0].crop_id != group[0].crop_id)
    page.click(f".cell[data-id='{other[-1].crop_id}']")
    page.keyboard.press("g")
    expect(page.locator(".cell.selected")).to_have_count(len(other))
    page.keyboard.press("s")
    settled(page)
    state = store.current()
    assert all(state[it.crop_id].decision == "skip" for it in other)
    store.close()
    page.select_option("#view", "tag")
    expect(page.locator(".cell")).to_have_count(1)
    assert errors == []
    ctx.close()


def test_the_learner_proposes_and_the_person_confirms_in_bulk(browser, review_ws):
    from curation.review.server import ReviewServer

    ws, _ = review_ws
    with ReviewServer(ws, port=0, learner=True) as server:
        ctx, page, errors = open_queue(browser, server, query="?view=all")
        cells = page.eval_on_selector_all(
            ".cell", "cs => cs.map(c => [c.dataset.id, c.querySelector('.reason').textContent])")
        # The person's rule: black-and-white crops out, the rest in (they see it in the picture). 60 labels by keyboard.
        mono = {it.crop_id: any(r["filter"] == "monochrome" and not r["passed"] for r in it.reasons)
                for it in server.queue.items}
        assert len(cells) >= 60, len(cells)  # fewer would give the learner fewer than its 60 labels
        for crop, _ in cells[:60]:
            page.keyboard.press("r" if mono[crop] else "a")
        settled(page)
        expect(page.locator("#learner")).to_contain_text("agrees with you on", timeout=30000)
        text = page.text_content("#learner")
        agreement = int(text.split("agrees with you on ")[1].split("%")[0])
        assert agreement >= 80 and "proposals (proposals view" in text, text  # it beats the commoner answer
        page.select_option("#view", "proposals")
        page.wait_for_selector("body[data-view='proposals']", state="attached")
        expect(page.locator(".cell").first).to_be_visible()
        proposed = page.eval_on_selector_all(".cell", "cs => cs.map(c => [c.dataset.id, c.querySelector('.tagline').textContent])")
        assert proposed and all(t.startswith("model: ") for _, t in proposed)
        page.keyboard.press("Enter")
        settled(page)
        store = ReviewStore(ws.review_db)
        state = store.current()
        confirmed = [state[c] for c, _ in proposed if c in state]
        assert len(confirmed) == len(proposed) and all(s.origin == "model" and s.reviewer == "alice" for s in confirmed)
        assert [s.decision for s in confirmed] == [t.split()[1] for _, t in proposed]
        # The proposals follow the person's rule on crops it never saw labelled.
        right = sum((s.decision == "reject") == mono[c] for (c, _), s in zip(proposed, confirmed))
        assert right / len(confirmed) >= 0.9
        store.close()
        assert errors == []
        ctx.close()


def test_hundreds_of_crops_on_one_screen_and_the_focused_ones_details(browser, server):
    ctx, page, errors = open_queue(browser, server, query="?view=all")
    page.set_viewport_size({"width": 1600, "height": 1000})
    visible = "cs => cs.filter(c => c.getBoundingClientRect().bottom <= innerHeight).length"
    default = page.eval_on_selector_all(".cell", visible)
    page.keyboard.press("-")
    smaller = page.eval_on_selector_all(".cell", visible)
    assert default >= 100 and smaller >= 200 and smaller > default, (default, smaller)
    page.keyboard.press("ArrowRight")
    item = server.queue.by_id[page.get_attribute(".cell.focus", "data-id")]
    text = page.text_content("#details")
    assert item.reasons  # every sample crop went through the filters: an empty list would check nothing
    assert item.title in text and all(r["filter"] in text for r in item.reasons)
    assert page.get_attribute("#details a", "href") == item.page_url
    page.screenshot(path=str(server.ws.home / "queue.png"))
    assert errors == []
    ctx.close()


def test_labels_from_the_page_become_exactly_the_dataset_version(browser, server):
    from curation.dataset_build import build_dataset
    from manifests.datasets import read_version

    ctx, page, errors = open_queue(browser, server)  # the queue: doubtful crops only
    keys = "aarararaaa"
    shown = [c for c, _ in decisions(page)][:len(keys)]
    assert len(shown) == len(keys)  # one key per crop shown: a shorter queue would label fewer
    for k in keys:
        page.keyboard.press(k)
    settled(page)
    ctx.close()
    ws = server.ws
    res = build_dataset(ws, "faces")
    rows = {r.crop_id: r for r in read_version(ws, "faces")}
    by_key = dict(zip(shown, keys))
    passed = {it.crop_id for it in server.queue.items if it.state == "passed" and it.keeper}
    assert set(rows) == {c for c, k in by_key.items() if k == "a"} | passed
    assert res.counts["accepted_human"] == keys.count("a") and res.counts["rejected"] == keys.count("r")
    assert len(rows) == keys.count("a") + len(passed)  # what the loop below checks, all of the version
    for r in rows.values():  # each traceable to where the artwork came from
        item = server.queue.by_id[r.crop_id]
        assert r.image_url == item.image_url and r.image_url.startswith("https://images.example/art/")
        assert r.page_url == item.page_url and r.artist == item.artist
    assert build_dataset(ws, "faces").written is None  # no new decisions: no new version
    assert errors == []
