"""More like these and tag proposals from the page, in real headless Chromium: select a few
crops, `m` ranks every other crop by embedding similarity, `A` accepts from the top down to the
focused crop; a tag's proposals button opens the crops the learner would give it."""

from __future__ import annotations

import json
import urllib.request

import pytest
from playwright.sync_api import expect

from curation.review.store import ReviewStore
from tests.curation.review.test_browser import decisions, open_queue, settled

pytestmark = pytest.mark.slow


@pytest.fixture
def embedded_server(review_ws):
    from curation.embeddings import update_embeddings
    from curation.review.server import ReviewServer

    ws, _ = review_ws
    report = update_embeddings(ws)
    assert report.computed > 0
    with ReviewServer(ws, port=0, learner=False) as s:
        yield s


def test_more_like_these_ranks_the_rest_and_one_key_accepts_the_top(browser, embedded_server):
    server = embedded_server
    ctx, page, errors = open_queue(browser, server)
    examples = [c for c, _ in decisions(page)[:2]]
    page.keyboard.press("Space")  # select the first crop, then the second
    page.keyboard.press("ArrowRight")
    page.keyboard.press("Space")
    page.keyboard.press("m")
    page.wait_for_selector("body[data-view='similar']", state="attached")
    shown = [c for c, _ in decisions(page)]
    # The page shows the server's ranking: every other crop, most alike first, the examples left out.
    with urllib.request.urlopen(server.url + "api/similar?ids=" + ",".join(examples) + "&limit=500") as r:
        ranked = [i["id"] for i in json.load(r)["items"]]
    assert shown[:len(ranked)] == ranked[:len(shown)] and not set(examples) & set(shown)
    assert "most alike first" in page.text_content("#status")
    for _ in range(4):
        page.keyboard.press("ArrowRight")
    page.keyboard.press("Shift+A")  # accept the top five
    settled(page)
    state = ReviewStore(server.ws.review_db).current()
    accepted = {c for c, s in state.items() if s.decision == "accept"}
    assert accepted == set(ranked[:5])
    assert errors == []
    ctx.close()


def test_a_tag_proposals_button_says_what_it_needs_before_the_tag_is_learned(browser, embedded_server):
    ctx, page, errors = open_queue(browser, embedded_server)
    page.fill("#tags input[data-key='1']", "disney style")
    page.press("#tags input[data-key='1']", "Enter")
    button = page.locator("#tags button[data-key='1']")
    button.wait_for(state="visible")
    assert page.locator("#tags button[data-key='2']").is_hidden()  # no tag on key 2: no button
    button.click()
    expect(page.locator("#status")).to_contain_text("#disney style")
    assert "crops carry it" in page.text_content("#status")
    assert errors == []
    ctx.close()


def test_a_learned_tag_s_proposals_open_as_a_view(browser, review_ws):
    from curation.embeddings import update_embeddings
    from curation.review.server import ReviewServer

    ws, _ = review_ws
    update_embeddings(ws)
    with ReviewServer(ws, port=0) as server:
        ctx, page, errors = open_queue(browser, server)
        page.fill("#tags input[data-key='1']", "blue hair")
        page.press("#tags input[data-key='1']", "Enter")
        page.locator("#tags button[data-key='1']").wait_for(state="visible")
        page.locator("#grid").focus()
        for _ in range(4):  # tag four crops with key 1
            page.keyboard.press("1")
            page.keyboard.press("ArrowRight")
        settled(page)
        tagged = {c for c, s in ReviewStore(ws.review_db).current().items() if "blue hair" in s.tags}
        assert len(tagged) == 4
        # The learner thread trains the tag's classifier in the background: ask until it has.
        deadline = 60
        for _ in range(deadline):
            with urllib.request.urlopen(server.url + "api/tag-proposals?tag=blue%20hair&limit=1") as r:
                if json.load(r)["ready"]:
                    break
            page.wait_for_timeout(1000)
        page.locator("#tags button[data-key='1']").click()
        page.wait_for_selector("body[data-view='tag proposals']", state="attached")
        shown = [c for c, _ in decisions(page)]
        assert shown and not tagged & set(shown)  # proposals are for crops not looked at yet
        assert "proposed for" in page.text_content("#status")
        assert errors == []
        ctx.close()
