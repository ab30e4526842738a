"""URL lists against a real HTTP server on 127.0.0.1: retries, Retry-After, robots.txt,
opt-outs, the size cap, and bytes judged by content rather than Content-Type."""

from dataclasses import replace

import pytest

from curation.fetch import FetchConfig, Fetcher
from curation.ingest import IngestConfig, ingest
from manifests import tables
from manifests.records import ScrapedImage, StoredImage
from media.optout import opted_out
from media.web import parse_retry_after
from replicas.drawn import draw_face, encode

JPEG = {"Content-Type": "image/jpeg"}


def fast(**kw) -> FetchConfig:
    return replace(FetchConfig(), per_host_delay=0.0, backoff=0.05, timeout=5, **kw)


def img(seed: int) -> bytes:
    return encode(draw_face(seed, 96), "JPEG", quality=85)


def test_url_list_gives_one_row_per_line_with_the_right_status(ws, site, tmp_path):
    site.add("/robots.txt", (200, {"Content-Type": "text/plain"}, b"User-agent: *\nDisallow: /private/\n"))
    urls = {
        "ok": site.add("/a.jpg", (200, JPEG, img(1))),
        "retried_500": site.add("/flaky.jpg", (500, {}, b"oops"), (200, JPEG, img(2))),
        "retry_after": site.add("/busy.jpg", (429, {"Retry-After": "1"}, b"slow down"), (200, JPEG, img(3))),
        "missing": site.url("/gone.jpg"),
        "noai": site.add("/noai.jpg", (200, {**JPEG, "X-Robots-Tag": "noai, noimageai"}, img(4))),
        "private": site.add("/private/x.jpg", (200, JPEG, img(5))),
        "html_as_jpeg": site.add("/login.jpg", (200, JPEG, b"<html><body>please log in</body></html>")),
        "jpeg_as_text": site.add("/odd", (200, {"Content-Type": "text/plain"}, img(6))),
        "huge": site.add("/huge.jpg", (200, JPEG, b"\xff\xd8" + b"\0" * 5000)),
    }
    listing = tmp_path / "urls.txt"
    listing.write_text("# artwork to fetch\n\n" + "\n".join(urls.values()) + "\nftp://example.org/x.jpg\n")
    cfg = IngestConfig(fetch=fast(max_bytes=4000), download_threads=3)
    report = ingest([str(listing)], ws, cfg, progress=False)
    assert report.inputs == len(urls) + 1

    rows = {r.source_id: r for r in tables.read_records(ws, ScrapedImage)}
    stored = {r.image_sha256: r for r in tables.read_records(ws, StoredImage)}
    status = {k: rows[u].status for k, u in urls.items()}
    assert status == {
        "ok": "ok", "retried_500": "ok", "retry_after": "ok", "missing": "http_error", "noai": "opted_out",
        "private": "robots_disallowed", "html_as_jpeg": "ok", "jpeg_as_text": "ok", "huge": "too_large",
    }
    assert rows["ftp://example.org/x.jpg"].status == "invalid"
    assert "404" in rows[urls["missing"]].reason
    assert rows[urls["noai"]].opted_out and rows[urls["noai"]].image_sha256 == ""
    assert stored[rows[urls["html_as_jpeg"]].image_sha256].status == "not_image"
    assert stored[rows[urls["jpeg_as_text"]].image_sha256].format == "JPEG"
    # Opted-out and disallowed bytes are never stored.
    assert len(site.hits("/private/x.jpg")) == 0
    assert len(stored) == 5  # ok, retried, retry-after, html-as-jpeg, jpeg-as-text
    # Retry-After: 1 was honoured, the 500 was retried once.
    first, second = site.hits("/busy.jpg")
    assert second - first >= 0.9
    assert len(site.hits("/flaky.jpg")) == 2
    # An honest User-Agent on every request.
    assert all(h.get("User-Agent", "").startswith("headshot/") for _, _, h in site.log)


def test_per_host_delay_spaces_requests(site):
    for i in range(3):
        site.add(f"/{i}.jpg", (200, JPEG, img(i)))
    f = Fetcher(replace(fast(), per_host_delay=0.3))
    for i in range(3):
        assert f.fetch(site.url(f"/{i}.jpg")).status == "ok"
    times = [t for t, path, _ in site.log if path.endswith(".jpg")]
    assert all(b - a >= 0.28 for a, b in zip(times, times[1:]))


def test_a_retry_after_longer_than_the_run_waits_gives_up_with_a_reason(site):
    site.add("/slow.jpg", (503, {"Retry-After": "86400"}, b""))
    res = Fetcher(fast(max_retry_after=5)).fetch(site.url("/slow.jpg"))
    assert res.status == "http_error" and "retry after 86400" in res.reason
    assert len(site.hits("/slow.jpg")) == 1


def test_unreadable_robots_means_no_fetch(site):
    site.add("/robots.txt", (500, {}, b""))
    site.add("/a.jpg", (200, JPEG, img(1)))
    res = Fetcher(fast()).fetch(site.url("/a.jpg"))
    assert res.status == "robots_disallowed" and "HTTP 500" in res.reason
    assert site.hits("/a.jpg") == []


def test_unreachable_host_is_an_http_error_row(ws, tmp_path):
    listing = tmp_path / "urls.txt"
    listing.write_text("http://127.0.0.1:9/nothing-listens-here.jpg\n")
    ingest([str(listing)], ws, IngestConfig(fetch=fast(obey_robots=False, retries=1)), progress=False)
    [row] = tables.read_records(ws, ScrapedImage)
    assert row.status == "http_error" and "network error" in row.reason


@pytest.mark.parametrize("header,expected", [
    ("noai", True), ("noimageai", True), ("googlebot: noai", True), ("noindex, nofollow", False),
])
def test_noai_header_forms(header, expected):
    from email.message import Message

    m = Message()
    m["X-Robots-Tag"] = header
    assert opted_out(m) is expected


def test_retry_after_forms():
    assert parse_retry_after("120") == 120
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0
    assert parse_retry_after("soon") is None


def test_credentials_in_a_url_list_are_used_and_never_recorded(ws, site, tmp_path):
    site.add("/robots.txt", (404, {}, b""))
    url = site.add("/private.jpg", (200, JPEG, img(4)))
    listing = tmp_path / "urls.txt"
    listing.write_text(url.replace("http://", "http://ann:s3cret@") + "\n")
    report = ingest([str(listing)], ws, IngestConfig(fetch=fast()), progress=False)
    assert report.input_status == {"ok": 1}
    [row] = tables.read_records(ws, ScrapedImage)
    assert row.source_id == row.image_url == url
    auth = [headers.get("Authorization", "") for _, path, headers in site.log if path == "/private.jpg"]
    assert len(auth) == 1 and auth[0].startswith("Basic ")
    import pyarrow.parquet as pq

    for f in ws.manifests.glob("*.parquet"):
        t = pq.read_table(f)
        assert "s3cret" not in str(t.to_pylist()) and b"s3cret" not in str(t.schema.metadata).encode()
