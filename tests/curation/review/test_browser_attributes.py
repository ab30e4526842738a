"""Attributes on the review page, in real headless Chromium: the attribute view shows exactly
the crops with an estimated or scraped attribute, the details line lists a crop's attributes,
and a hostile scraped tag is text everywhere it shows."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from playwright.sync_api import expect

from curation.attributes import crop_attributes, update_attributes
from manifests import tables
from manifests.records import FaceCrop, ScrapedImage
from manifests.stage import write_rows
from tests.curation.review.test_browser import decisions, open_queue

pytestmark = pytest.mark.slow
EVIL = '<img src=x onerror="document.body.dataset.pwned=1">'


def test_the_attribute_view_and_the_details_line(browser, review_ws):
    from curation.review.server import ReviewServer

    ws, _ = review_ws
    crop = tables.read_records(ws, FaceCrop)[0]
    write_rows(ws, {ScrapedImage: [ScrapedImage("deviantart", "evil", "https://example.test/e.png", "ok",
                                                tags=(EVIL,), image_sha256=crop.image_sha256)]},
               (ScrapedImage,), "crawl-evil", {})
    assert update_attributes(ws).estimated > 0
    attrs = crop_attributes(ws)
    hair = {}
    for c, values in attrs.items():
        for a in values:
            if a.name == "hair":
                hair.setdefault(a.value, set()).add(c)
    value, want = max(hair.items(), key=lambda kv: len(kv[1]))
    with ReviewServer(ws, port=0, learner=False) as server:
        ctx, page, errors = open_queue(browser, server, query=f"?view=attribute&arg={quote('hair=' + value)}")
        expect(page.locator(".cell")).to_have_count(len(want))
        assert {c for c, _ in decisions(page)} == want
        assert page.input_value("#arg") == f"hair={value}"
        page.click(".cell >> nth=0")
        expect(page.locator("#details .attributes")).to_contain_text(f"hair {value}")
        # The crop with the hostile scraped tag: its details show the tag as text.
        evil = {c for c, values in attrs.items() if any(a.value == EVIL for a in values)}
        assert evil
        page.goto(server.url.rstrip("/") + "/?view=attribute&arg=" + quote("tag=" + EVIL))
        page.wait_for_selector("body[data-ready='1']")
        expect(page.locator(".cell")).to_have_count(len(evil))
        page.click(".cell >> nth=0")
        expect(page.locator("#details .attributes")).to_contain_text("tag " + EVIL)
        assert page.locator("#details img").count() == 0 and page.evaluate("document.body.dataset.pwned") is None
        assert "tag=" + EVIL in page.locator("#arg option").all_text_contents()  # as text
        assert not errors, errors
        ctx.close()
