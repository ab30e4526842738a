"""End to end: `headshot crawl deviantart` (a real Scrapy process) against a replica on
127.0.0.1, with a second replica on "localhost" as the image CDN, so images really come from
another host. Feeds and API objects follow the real captures where the test says so."""

import json
import os
import secrets
import signal
import subprocess
import sys

import pytest

from manifests import tables
from manifests.records import ScrapedImage, StoredImage
from manifests.workspace import Workspace
from replicas.sites.deviantart import FIRST_ID, RSS, DeviantArtReplica, DeviantArtServer
from replicas.sites.server import Replica, Response
from spiders.items import page_key
from spiders.sites import deviantart as da
from tests.conftest import shared_path

CAPTURES = shared_path("sites", "deviantart")
FAST = ["DOWNLOAD_DELAY=0", "AUTOTHROTTLE_ENABLED=False", "HEADSHOT_BACKOFF=0.1", "LOG_LEVEL=INFO"]
PAGE_STATUSES = {"page", "blocked", "age_gate", "unavailable", "truncated", "not_found", "page_error", "offsite"}


def crawl_argv(home, site, *extra, sets=()):
    argv = [sys.executable, "-m", "pipelines.cli", "--home", str(home), "crawl", "deviantart", *extra,
            "--set", f"DEVIANTART_RSS_URL={site.rss_url}", "--set", f"DEVIANTART_API_URL={site.api_url}"]
    for s in [*FAST, *sets]:
        argv += ["--set", s]
    return argv


def crawl_env(extra=None):
    """This process's environment without any DeviantArt credentials of its own, plus `extra`."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("DEVIANTART_")}, **(extra or {})}


def crawl(home, site, *extra, sets=(), env=None):
    return subprocess.run(crawl_argv(home, site, *extra, sets=sets), capture_output=True, text=True, timeout=180,
                          env=crawl_env(env))


def rows(home):
    ws = Workspace.open(home)
    return ({r.source_id: r for r in tables.read_records(ws, ScrapedImage)},
            {r.image_sha256: r for r in tables.read_records(ws, StoredImage)})


def images_asked(cdn, since=0):
    """Deviation ids whose image the CDN was asked for, in order."""
    return [int(req.path.split("/")[-2]) for _, req, _ in cdn.log[since:] if req.path.startswith("/images/")]


def offsets_asked(site, path="/rss.xml"):
    return [int(req.query.get("offset", ["0"])[0]) for _, req, _ in site.log if req.path == path]


@pytest.fixture
def captures():
    if not CAPTURES.is_dir():
        pytest.skip(f"../shared/sites/deviantart is absent ({CAPTURES}): "
                    "this test's replica builds its feeds and API objects from the real captures")
    return CAPTURES


@pytest.fixture
def servers():
    with DeviantArtServer() as site, Replica("localhost") as cdn:
        yield site, cdn


def test_feed_pages_up_to_the_limit_then_a_second_crawl_fetches_only_new_images(captures, servers, tmp_path):
    site, cdn = servers
    ids = [FIRST_ID + n for n in range(1, 301)]  # five feed pages of 60
    adult = {ids[4], ids[70], ids[200]}
    document, noai, hidden, big, html_bytes = ids[10], ids[20], ids[30], ids[40], ids[50]
    fake = DeviantArtReplica(site, captures, pages=5, cdn=cdn, adult=adult, documents={document}, noai={noai},
                             intermediary={hidden})
    cdn.fault(fake.image_path(big), Response(200, {"Content-Type": "image/jpeg"}, b"\xff\xd8" + b"\0" * 1_500_000))
    cdn.fault(fake.image_path(html_bytes), Response(200, {"Content-Type": "text/html"}, b"<html>log in</html>"))
    home = tmp_path / "ws"

    first = crawl(home, fake, "--query", "furry headshot", "--limit", "150", sets=["DOWNLOAD_MAXSIZE=1000000"])
    assert first.returncode == 0, first.stderr[-3000:]
    scraped, stored = rows(home)

    # What the limit leaves: items in feed order, literature skipped, adult ones filtered, 150 asked for.
    wanted, filtered = [], []
    for i in ids:
        if len(wanted) == 150:
            break
        if i != document:
            (filtered if i in adult else wanted).append(i)
    images = {k: r for k, r in scraped.items() if r.status not in PAGE_STATUSES | {"filtered"}}
    assert len(images) == 150 and set(images) == {str(i) for i in wanted}
    assert offsets_asked(site) == [0, 60, 120]  # and no page after the one where the limit was reached
    assert {k for k, r in scraped.items() if r.status == "filtered"} == {str(i) for i in filtered}
    assert "DEVIANTART_ALLOW_ADULT" in scraped[str(ids[4])].reason and scraped[str(ids[4])].rating == "adult"
    assert not set(filtered) & set(images_asked(cdn)), "an adult item was fetched"
    assert str(document) not in scraped
    # noai header, robots.txt of the CDN, oversized, HTML bytes served as an image.
    assert scraped[str(noai)].status == "opted_out" and scraped[str(noai)].image_sha256 == ""
    assert scraped[str(hidden)].status == "robots_disallowed" and hidden not in images_asked(cdn)
    assert scraped[str(big)].status == "too_large"
    assert scraped[str(html_bytes)].status == "ok"
    assert stored[scraped[str(html_bytes)].image_sha256].status == "not_image"
    ok = [r for r in images.values() if r.status == "ok" and r.source_id != str(html_bytes)]
    assert len(ok) == 146 and all(stored[r.image_sha256].status == "ok" for r in ok)
    assert len(stored) == 147  # the 146 faces and the HTML page: nothing stored for the opted-out image
    # Fields from the feed, and images from the CDN host with their signed URL untouched.
    one = scraped[str(ids[0])]
    assert one.artist == "ExampleVulpine" and one.tags == ("furry", "headshot", "commission", "fox", "anthro")
    assert one.rating == "nonadult" and one.image_url.startswith("http://localhost:")
    # The CDN was asked with each signed URL whole; rows (published with datasets) keep it with
    # its token REDACTED, in image_url and in the page's extra fields alike.
    signed = [req.query.get("token", [""])[0] for _, req, _ in cdn.log if req.path.startswith("/images/")]
    assert len(signed) >= 146 and all(t.startswith("REPLICA") for t in signed)
    assert one.image_url.endswith("?token=REDACTED")
    assert not [r.source_id for r in scraped.values() if "REPLICA" in r.image_url + r.extra + r.reason]
    assert json.loads(one.extra)["deviation_id"] == ids[0]
    assert [req.path for _, req, _ in cdn.log].count("/robots.txt") == 1

    cdn_before, feeds_before = len(cdn.log), len(offsets_asked(site))
    second = crawl(home, fake, "--query", "furry headshot", "--limit", "150", sets=["DOWNLOAD_MAXSIZE=1000000"])
    assert second.returncode == 0, second.stderr[-3000:]
    again = images_asked(cdn, cdn_before)
    settled = {int(k) for k, r in scraped.items() if r.status in ("ok", "opted_out")}
    assert not settled & set(again), "the second crawl fetched an image the first one had settled"
    # Only what was new (the rest of the feed) or unsettled (the oversized image, served whole this time).
    assert sorted(again) == sorted({big} | set(ids[153:]) - adult - {hidden})
    assert offsets_asked(site)[feeds_before:] == [0, 60, 120, 180, 240]  # feeds are read again: they change
    scraped, _ = rows(home)
    assert scraped[str(big)].status == "ok"


def test_listing_faults_are_rows_and_paging_goes_on(servers, tmp_path):
    site, cdn = servers
    fake = DeviantArtReplica(site, None, pages=11, per_page=10, cdn=cdn)  # our own templates, as in the demo

    def feed(offset):
        return da.rss_search_url(fake.rss_url, "headshot", offset=offset)

    def raw(offset):
        return feed(offset)[len(site.base):]

    body = fake.feed_page("headshot", 30)
    site.fault(raw(10), Response(429, {"Retry-After": "1"}, b"slow down"))
    site.fault(raw(20), Response(500, {}, b"oops"))
    site.fault(raw(30), Response(200, RSS, body, truncate_to=len(body) // 2))
    site.fault(raw(50), fake.block())
    site.fault(raw(70), Response(302, {"Location": f"http://localhost:{cdn.server.server_port}/rss.xml"}))
    site.fault(raw(90), Response(302, {"Location": "/users/login?next=%2Frss.xml"}))  # robots.txt disallows it
    home = tmp_path / "ws"
    out = crawl(home, fake, "--query", "headshot")
    assert out.returncode == 0, out.stderr[-3000:]
    scraped, _ = rows(home)

    def page(offset):
        return scraped[page_key(feed(offset))]

    assert page(30).status == "truncated"
    assert page(50).status == "blocked" and "CloudFront" in page(50).reason
    assert page(70).status == "offsite" and "localhost" in page(70).reason
    assert page(90).status == "robots_disallowed"
    assert all(page(o).status == "page" for o in (0, 10, 20, 40, 60, 80, 100))
    # 429 with Retry-After: 1, honoured; 500 then success.
    (t429, _, s429), (t_ok, _, s_ok) = site.hits(raw(10))
    assert (s429, s_ok) == (429, 200) and t_ok - t429 >= 0.9
    assert [s for _, _, s in site.hits(raw(20))] == [500, 200]
    # After each failed page the crawl went on at the next offset, and ended after the last page.
    assert sorted(set(offsets_asked(site))) == list(range(0, 110, 10))
    assert not site.hits("/users/login") and not cdn.hits("/rss.xml")
    good = {i for k in (0, 1, 2, 4, 6, 8, 10) for i in fake.ids[k * 10:(k + 1) * 10]}
    images = {k: r for k, r in scraped.items() if not k.startswith("page:")}
    assert set(images) == {str(i) for i in good} and all(r.status == "ok" for r in images.values())


def test_adult_items_when_allowed_and_the_page_check(servers, tmp_path):
    site, cdn = servers
    adult, noai = {FIRST_ID + 2, FIRST_ID + 3}, {FIRST_ID + 4, FIRST_ID + 5}
    fake = DeviantArtReplica(site, None, pages=1, per_page=10, cdn=cdn, adult=adult, noai=noai)
    home = tmp_path / "ws"
    out = crawl(home, fake, "--query", "headshot", sets=["DEVIANTART_ALLOW_ADULT=True", "DEVIANTART_CHECK_PAGE=True"])
    assert out.returncode == 0, out.stderr[-3000:]
    scraped, stored = rows(home)
    for i in adult:
        assert scraped[str(i)].status == "ok" and scraped[str(i)].rating == "adult"
    for i in noai:
        r = scraped[str(i)]
        assert r.status == "opted_out" and r.opted_out and "page" in r.reason and r.image_sha256 == ""
    # The page said noai, so the image was never downloaded; every other image was, after its page.
    assert sorted(images_asked(cdn)) == sorted(set(fake.ids) - noai)
    assert len([e for e in site.log if "/art/" in e[1].path]) == 10
    assert len(stored) == 8


def test_tags_mode_with_client_credentials(captures, servers, tmp_path):
    site, cdn = servers
    secret = "s3cret-" + secrets.token_hex(8)
    mature = FIRST_ID + 6
    fake = DeviantArtReplica(site, captures, pages=3, cdn=cdn, adult={mature}, client=("headshot-test", secret))
    page2 = da.browse_tags_url(fake.api_url, "furryheadshot", offset=50)[len(site.base):]
    site.fault(page2, Response(401, {"Content-Type": "application/json"}, json.dumps(fake.invalid_token).encode()))
    home = tmp_path / "ws"
    env = {"DEVIANTART_CLIENT_ID": "headshot-test", "DEVIANTART_CLIENT_SECRET": secret}
    out = crawl(home, fake, "--arg", "mode=tags", "--arg", "tag=furryheadshot", "--limit", "120", env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    scraped, _ = rows(home)

    posts = [req for _, req, _ in site.log if req.path == "/oauth2/token"]
    assert len(posts) == 2 and all(p.method == "POST" and p.form["grant_type"] == ["client_credentials"] for p in posts)
    api = [(req, status) for _, req, status in site.log if req.path.endswith("/browse/tags")]
    bearer = [req.headers.get("Authorization") for req, _ in api]
    first, renewed = (f"Bearer {t}" for t in fake.tokens)
    # One token until the API said it expired, then one more: never a token per request.
    assert [(req.query["offset"][0], status) for req, status in api] == [("0", 200), ("50", 401), ("50", 200),
                                                                          ("100", 200)]
    assert bearer == [first, first, renewed, renewed]
    assert not [req for _, req, _ in cdn.log if "Authorization" in req.headers]  # the token is the API's only
    images = {k: r for k, r in scraped.items() if not k.startswith("page:")}
    assert len(images) == 120 and all(r.status == "ok" and r.rating == "nonadult" for r in images.values())
    assert str(mature) not in images  # mature_content=false: the API left it out
    assert scraped[str(fake.ids[0])].artist == "minnoux"  # objects follow the capture's, ids are the replica's
    # Neither the secret nor a token is in the log or anywhere in the workspace.
    log = out.stdout + out.stderr
    for needle in [secret, *fake.tokens]:
        assert needle not in log
        for path in home.rglob("*"):
            assert not path.is_file() or needle.encode() not in path.read_bytes(), f"{needle[:10]}... in {path}"


def test_interrupted_tags_crawl_leaves_no_token_in_its_jobdir(tmp_path):
    """Ctrl-C keeps the queue in the JOBDIR for the rerun: the API requests in it must not
    carry the bearer token, nor the token request the secret."""
    secret = "s3cret-" + secrets.token_hex(8)
    env = {"DEVIANTART_CLIENT_ID": "headshot-test", "DEVIANTART_CLIENT_SECRET": secret}
    home, crawl_process = tmp_path / "ws", {}
    with DeviantArtServer() as site:  # images on the API's host: they go first, the next page waits in the queue
        fake = DeviantArtReplica(site, None, pages=2, client=("headshot-test", secret))
        draw, served = site.routes["/images/*"], []

        def image(req):
            served.append(req.path)
            if len(served) == 10:  # mid-page: the next API page is queued behind the images
                crawl_process["proc"].send_signal(signal.SIGINT)  # what a terminal's Ctrl-C does
            return draw(req)

        site.route("/images/*", image)
        argv = crawl_argv(home, fake, "--arg", "mode=tags", "--arg", "tag=furryheadshot")
        crawl_process["proc"] = proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                                        env=crawl_env(env))
        log = "".join(proc.communicate(timeout=120))
        [jobdir] = (home / "crawl-jobs").iterdir()
        queued = b"".join(p.read_bytes() for p in jobdir.rglob("*") if p.is_file())
        assert b"browse/tags" in queued  # the check below looks at real queued API requests
        for needle in [secret, *fake.tokens]:
            assert needle.encode() not in queued and needle not in log
        assert b"Bearer" not in queued and b"client_secret" not in queued
        out = crawl(home, fake, "--arg", "mode=tags", "--arg", "tag=furryheadshot", env=env)
        assert out.returncode == 0, out.stderr[-3000:]
    assert len(fake.tokens) == 2  # one per process: the rerun had none on disk to reuse
    scraped, stored = rows(home)
    images = {k: r for k, r in scraped.items() if not k.startswith("page:")}
    assert set(images) == {str(i) for i in fake.ids} and all(r.status == "ok" for r in images.values())
    assert len(stored) == 120


def test_tags_mode_needs_credentials_that_work(tmp_path):
    with DeviantArtServer() as site:
        fake = DeviantArtReplica(site, None, pages=1)
        out = crawl(tmp_path / "ws", fake, "--arg", "mode=tags", "--arg", "tag=furryheadshot")
        assert out.returncode != 0
        assert "DEVIANTART_CLIENT_ID" in out.stderr + out.stdout
        assert not site.log
        # Refused credentials: one token request, a row that says why, and the crawl stops.
        wrong = "wrong-" + secrets.token_hex(8)
        out = crawl(tmp_path / "ws", fake, "--arg", "mode=tags", "--arg", "tag=furryheadshot",
                    env={"DEVIANTART_CLIENT_ID": "replica-client", "DEVIANTART_CLIENT_SECRET": wrong})
        assert out.returncode == 0, out.stderr[-3000:]
        assert [req.path for _, req, _ in site.log if req.path != "/robots.txt"] == ["/oauth2/token"]
        [row] = rows(tmp_path / "ws")[0].values()
        assert row.status == "page_error" and "invalid_client" in row.reason and "DEVIANTART_CLIENT_ID" in row.reason
        assert wrong not in out.stdout + out.stderr and wrong not in row.reason
