"""Credentials in a URL's query (signed CDN links, API keys, session ids) are sent with the
request and never written into a row or a reason, as `user:pass@` never is: manifests and
dataset cards get published."""

from dataclasses import replace

import pytest

from curation.fetch import REDACTED, FetchConfig, recorded_url
from curation.ingest import IngestConfig, ingest
from manifests import tables
from manifests.records import ScrapedImage, StoredImage
from media.web import recorded_text
from replicas.drawn import draw_face, encode

JPEG = {"Content-Type": "image/jpeg"}


@pytest.mark.parametrize("url,expected", [
    ("https://cdn.example.org/a.jpg?w=64&X-Amz-Signature=abc123#f",
     f"https://cdn.example.org/a.jpg?w=64&X-Amz-Signature={REDACTED}#f"),
    ("https://ann:pw@example.org/a.jpg?token=t0k", f"https://example.org/a.jpg?token={REDACTED}"),
    ("http://example.org/a.jpg?API_KEY=k1;sig=s2&x=3", f"http://example.org/a.jpg?API_KEY={REDACTED};sig={REDACTED}&x=3"),
    ("http://example.org/a.jpg?api%5Fkey=k1", f"http://example.org/a.jpg?api%5Fkey={REDACTED}"),  # the name decoded
    ("http://example.org/a.jpg?token=&keyword=cat", "http://example.org/a.jpg?token=&keyword=cat"),  # nothing to hide
    ("http://example.org/token=1/a.jpg", "http://example.org/token=1/a.jpg"),  # a path is no query
    ("http://example.org/a.jpg?q=%zz&page=2", "http://example.org/a.jpg?q=%zz&page=2"),  # byte for byte
    ("not a url", "not a url"),
])
def test_recorded_url_hides_the_values_of_secret_parameters_only(url, expected):
    assert recorded_url(url) == expected


def test_recorded_text_hides_them_in_every_url_a_reason_quotes():
    reason = ("ValueError: unknown url type: 'htp://cdn.example.org/a.jpg?token=t1' (after "
              "\"https://u:p@example.org/b.jpg?sig=s2&w=3\"); see https://example.org/help?page=2.")
    assert recorded_text(reason) == (
        f"ValueError: unknown url type: 'htp://cdn.example.org/a.jpg?token={REDACTED}' (after "
        f"\"https://example.org/b.jpg?sig={REDACTED}&w=3\"); see https://example.org/help?page=2.")
    assert recorded_text("HTTP 404") == "HTTP 404"


def test_ingest_sends_the_token_and_records_it_nowhere(ws, site, tmp_path):
    image = encode(draw_face(3, 96), "JPEG", quality=85)
    signed = site.add("/art/a.jpg?w=96&token=abc123", (200, JPEG, image))  # 404 without the token
    hop = site.add("/go.jpg", (302, {"Location": "/private/b.jpg?X-Amz-Signature=zzz999"}, b""))
    # A redirect off http(s): its reason quotes where it pointed, with the signature hidden.
    off = site.add("/off.jpg", (302, {"Location": "ftp://files.example.invalid/c.jpg?sig=yyy777"}, b""))
    site.add("/robots.txt", (200, {"Content-Type": "text/plain"}, b"User-agent: *\nDisallow: /private/\n"))
    listing = tmp_path / "urls.txt"
    listing.write_text(f"{signed}\n{hop}\n{off}\n")
    cfg = IngestConfig(fetch=replace(FetchConfig(), per_host_delay=0.0, backoff=0.05, timeout=5), workers=1)
    report = ingest([str(listing)], ws, cfg, progress=False)
    assert report.new_images == 1
    rows = tables.read_records(ws, ScrapedImage)
    by_status = {r.status: r for r in rows}
    assert len(rows) == 3 and {"ok", "robots_disallowed"} <= set(by_status), rows
    offsite = next(r for r in rows if r.image_url.endswith("/off.jpg"))
    assert offsite.status not in ("ok", "robots_disallowed") and f"sig={REDACTED}" in offsite.reason, offsite
    ok = by_status["ok"]
    assert ok.image_url == ok.source_id == site.url(f"/art/a.jpg?w=96&token={REDACTED}")
    assert tables.read_records(ws, StoredImage)[0].image_sha256 == ok.image_sha256
    blocked = by_status["robots_disallowed"]
    assert f"X-Amz-Signature={REDACTED}" in blocked.reason, blocked.reason
    # Nothing of either secret in any manifest file, rows, reasons and metadata alike.
    for path in ws.manifests.rglob("*.parquet"):
        data = path.read_bytes()
        assert b"abc123" not in data and b"zzz999" not in data and b"yyy777" not in data, path
    assert [p for _, p, _ in site.log if p.startswith("/art/")] == ["/art/a.jpg?w=96&token=abc123"]
