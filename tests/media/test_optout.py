"""The one opt-out rule: ingest's downloads and a crawl's images read X-Robots-Tag the same way."""

from email.message import Message

import pytest

from media.optout import header_opted_out, opted_out, says_noai
from media.web import parse_retry_after


@pytest.mark.parametrize("value,expected", [
    ("noai", True), ("NoImageAI", True), ("googlebot: noai", True), ("noimageai noai", True),
    ("otherbot: noindex, noimageai", True), ("index,follow,noai", True),
    ("noindex, nofollow", False), ("", False), ("noaiX", False), ("unavailable_after: 25 Jun 2010 15:00:00 PST", False),
])
def test_one_rule_for_every_form(value, expected):
    assert says_noai(value) is expected
    assert header_opted_out([value]) is expected
    m = Message()
    m["X-Robots-Tag"] = value
    assert opted_out(m) is expected  # a urllib response's headers, as ingest's downloader has them


def test_any_header_value_opts_out():
    assert header_opted_out(["noindex", "noai"]) and not header_opted_out([])
    m = Message()
    m["X-Robots-Tag"] = "noindex"
    m["X-Robots-Tag"] = "googlebot: noimageai"
    assert opted_out(m) and not opted_out(Message())


def test_retry_after_forms():
    assert parse_retry_after("120") == 120 and parse_retry_after(" 5 ") == 5
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0  # a past date: no wait
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
