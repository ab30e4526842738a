"""End to end: `headshot crawl myanimelist` (a real Scrapy process) against a replica of Jikan
and MyAnimeList on 127.0.0.1 (the real captures where there are some) with its image CDN on
"localhost", and every fault the two show."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from manifests import tables
from manifests.records import ScrapedImage, StoredImage
from manifests.workspace import Workspace
from replicas.sites.myanimelist import MyAnimeListReplica, character_page
from replicas.sites.server import Replica, Response
from tests.conftest import shared_path

CAPTURES = shared_path("sites", "myanimelist")
FAST = ["DOWNLOAD_DELAY=0", "AUTOTHROTTLE_ENABLED=False", "HEADSHOT_BACKOFF=0.1", "LOG_LEVEL=WARNING"]
JSON = {"Content-Type": "application/json"}
RATE_LIMITED = b'{"status":429,"type":"RateLimitException","message":"You are being rate limited","error":null}'


def crawl(home, mal, *extra, sets=(), terms=True, interval="0"):
    """`interval=None` keeps the spider's own JIKAN_MIN_INTERVAL."""
    argv = [sys.executable, "-m", "pipelines.cli", "--home", str(home), "crawl", "myanimelist", *extra,
            "--set", f"MAL_BASE_URL={mal.site_base}", "--set", f"JIKAN_BASE_URL={mal.jikan_base}"]
    settings = [*FAST, *(["MAL_TERMS_ACCEPTED=True"] if terms else []),
                *([f"JIKAN_MIN_INTERVAL={interval}"] if interval is not None else []), *sets]
    for s in settings:
        argv += ["--set", s]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if terms:
        assert out.returncode == 0, out.stderr[-3000:]
    return out


def rows(home):
    ws = Workspace.open(home)
    return ({r.source_id: r for r in tables.read_records(ws, ScrapedImage)},
            {r.image_sha256: r for r in tables.read_records(ws, StoredImage)})


def images_of(scraped, mal_id):
    return {k: v for k, v in scraped.items() if k.startswith(f"character/{mal_id}/")}


def sid(mal_id, path):
    return f"character/{mal_id}/{Path(path).stem}"


def gap(hits):
    return hits[1][0] - hits[0][0]


def replica(captures, **kw):
    site, cdn = Replica().start(), Replica("localhost").start()
    return site, cdn, MyAnimeListReplica(site, cdn, captures, **kw)


@pytest.fixture
def captured():
    if not CAPTURES.is_dir():
        pytest.skip(f"../shared/sites/myanimelist is absent ({CAPTURES}): the replica serves its real captures")
    site, cdn, mal = replica(CAPTURES)
    yield site, cdn, mal
    site.stop(), cdn.stop()


@pytest.fixture
def synthetic():
    site, cdn, mal = replica(None, pages=2, per_page=3)
    yield site, cdn, mal
    site.stop(), cdn.stop()


def test_jikan_top_pages_with_every_fault(captured, tmp_path):
    site, cdn, mal = captured
    pics = "/v4/characters/{}/pictures"
    lelouch, luffy = mal.character(417), mal.character(40)
    aoi, ren, mio = (mal.character(i) for i in (900001, 900002, 900003))
    site.fault(pics.format(417), Response(500, {}, b"oops"))
    site.fault("/v4/top/characters?page=2", Response(429, {"Retry-After": "1", **JSON}, RATE_LIMITED))
    site.fault(pics.format(900001), Response(200, JSON, b'{"data":[{"jpg":{"image_url":"http://x/a.jpg"}}]}',
                                             truncate_to=20))
    site.fault(pics.format(900002), Response(200, JSON, RATE_LIMITED))  # Jikan's 429 inside an HTTP 200
    cdn.fault(luffy.pictures[0], Response(429, {"Retry-After": "1"}, b"slow down"))
    cdn.fault(ren.pictures[0], Response(200, {"Content-Type": "image/jpeg", "X-Robots-Tag": "noai"}, b"\xff\xd8x"))
    cdn.fault(ren.pictures[1], Response(200, {"Content-Type": "image/jpeg"}, b"\xff\xd8" + b"\0" * 300_000))
    cdn.fault(mio.pictures[0], Response(200, {"Content-Type": "text/html"}, b"<html><body>login</body></html>"))

    home = tmp_path / "ws"
    crawl(home, mal, "--limit", "7", sets=["DOWNLOAD_MAXSIZE=200000", "MAL_RATE_LIMIT_WAIT=1"])
    scraped, stored = rows(home)
    status = {k: v.status for k, v in scraped.items()}

    # The real Jikan page 1, then page 2 (after its 429), and no page 3: the limit was met on page 2.
    assert [e[1].raw_path for e in site.log if e[1].path == "/v4/top/characters"] == [
        "/v4/top/characters?page=1", "/v4/top/characters?page=2", "/v4/top/characters?page=2"]
    assert gap(site.hits("/v4/top/characters?page=2")) >= 0.9
    # 2 + 2 + 0 (truncated) + 2 + 1 (the limit) images asked for; the thumbnails at full size only.
    assert len([k for k in scraped if not k.startswith("page:")]) == 7
    assert not [e for e in cdn.log if e[1].path.startswith("/r/") or e[2] == 404]
    assert {s for s in images_of(scraped, 417)} == {sid(417, p) for p in lelouch.pictures}
    assert all(r.status == "ok" for r in images_of(scraped, 417).values())
    first = scraped[sid(417, lelouch.pictures[0])]
    assert (first.character, first.page_url) == ("Lelouch Lamperouge", "https://myanimelist.net/character/417/Lelouch_Lamperouge")
    assert json.loads(first.extra)["favorites"] == 180332 and stored[first.image_sha256].status == "ok"
    assert len(site.hits(pics.format(417))) == 2  # 500, then success
    # A CDN 429 with Retry-After: 1 was waited out.
    assert status[sid(40, luffy.pictures[0])] == "ok" and gap(cdn.hits(luffy.pictures[0])) >= 0.9
    # A cut Jikan answer is a row, and the crawl went on to the next character.
    assert status[f"page:{pics.format(900001)}"] == "truncated" and not images_of(scraped, 900001)
    # Jikan's RateLimitException was waited out (MAL_RATE_LIMIT_WAIT) before asking again.
    assert gap(site.hits(pics.format(900002))) >= 0.9
    assert status[sid(900002, ren.pictures[0])] == "opted_out" and not scraped[sid(900002, ren.pictures[0])].image_sha256
    assert status[sid(900002, ren.pictures[1])] == "too_large"
    html_image = scraped[sid(900003, mio.pictures[0])]
    assert html_image.status == "ok" and stored[html_image.image_sha256].status == "not_image"
    assert not cdn.hits(mio.pictures[1]) and not site.hits(pics.format(900004))
    assert site.log[0][1].path == "/robots.txt" and cdn.log[0][1].path == "/robots.txt"


def test_jikan_requests_are_at_least_a_second_apart(tmp_path):
    site, cdn, mal = replica(None, pages=2, per_page=2)
    try:
        crawl(tmp_path / "ws", mal, "--limit", "4", interval=None)  # robots.txt, page 1, 2 x pictures
    finally:
        site.stop(), cdn.stop()
    starts = [t for t, _, _ in site.log]
    assert len(starts) == 4 and len(cdn.log) == 1 + 4
    assert min(b - a for a, b in zip(starts, starts[1:])) >= 1.0


def test_name_search_and_anime_cast(synthetic, tmp_path):
    site, cdn, mal = synthetic
    crawl(tmp_path / "search", mal, "--query", "Ra")
    scraped, _ = rows(tmp_path / "search")
    found = {json.loads(r.extra)["mal_id"] for k, r in scraped.items() if not k.startswith("page:")}
    assert found == {c.mal_id for c in mal.characters.values() if "ra" in c.name.lower()} and len(found) == 4
    # The replica answers 2 characters a page: the search was followed to its second page, not further.
    searches = [e[1] for e in site.log if e[1].path == "/v4/characters"]
    assert [(q.query["q"], q.query["page"]) for q in searches] == [(["Ra"], ["1"]), (["Ra"], ["2"])]
    assert all(r.status in ("ok", "page") for r in scraped.values())

    crawl(tmp_path / "cast", mal, "--arg", "anime=5000")
    scraped, _ = rows(tmp_path / "cast")
    roles = {json.loads(r.extra)["mal_id"]: json.loads(r.extra)["role"] for k, r in scraped.items()
             if not k.startswith("page:")}
    assert roles == {900001: "Main", 900002: "Supporting"}
    assert site.hits("/v4/anime/5000/characters")


def test_explicit_ids_read_the_real_character_answers(captured, tmp_path):
    site, cdn, mal = captured
    crawl(tmp_path / "ws", mal, "--arg", "ids=425,105591")
    scraped, _ = rows(tmp_path / "ws")
    ginko = images_of(scraped, 425)
    assert set(ginko) == {sid(425, p) for p in mal.character(425).pictures}
    g = next(iter(ginko.values()))
    assert (g.character, g.title, g.page_url) == ("Ginko", "Mushishi", "https://myanimelist.net/character/425/Ginko")
    assert json.loads(g.extra)["nicknames"] == ["Mushishi", "Yoki"] and json.loads(g.extra)["favorites"] == 15304
    # The three pictures of the Jikan pictures capture.
    assert set(images_of(scraped, 105591)) == {sid(105591, p) for p in mal.gallery(105591)}
    assert all(r.status == "ok" for r in scraped.values() if r.status != "page")


def test_html_mode_on_the_real_pages(captured, tmp_path):
    site, cdn, mal = captured
    site.fault("/character/417/Lelouch_Lamperouge",
               *[Response(503, {"Content-Type": "text/html"}, (CAPTURES / "error_503_service_unavailable_2018-06-30.html")
                          .read_bytes())] * 4)  # the first try and the middleware's 3 retries
    luffy = character_page(mal, mal.character(40)).encode()
    site.fault("/character/40/Luffy_Monkey_D", Response(200, {"Content-Type": "text/html"}, luffy,
                                                         truncate_to=len(luffy) // 2))
    site.fault("/character/900001/Aoi_Kisaragi",
               Response(302, {"Location": f"{mal.cdn_base}/character/900001/Aoi_Kisaragi"}))
    spike_gallery = mal.gallery(1)
    cdn.route("/robots.txt", lambda req: Response(200, {}, f"User-agent: *\nDisallow: {spike_gallery[2]}\n".encode()))

    home = tmp_path / "ws"
    crawl(home, mal, "--arg", "mode=html")
    scraped, stored = rows(home)
    status = {k: v.status for k, v in scraped.items()}

    assert status["page:/character/417/Lelouch_Lamperouge"] == "unavailable"
    assert "503" in scraped["page:/character/417/Lelouch_Lamperouge"].reason
    assert status["page:/character/40/Luffy_Monkey_D"] == "truncated"
    assert status["page:/character/900001/Aoi_Kisaragi"] == "offsite"
    # The 2018 character page of Momonga and the 2018 pictures pages of Latifa and Spike.
    momonga = images_of(scraped, 116281)
    assert len(momonga) == 2 and all(r.status == "ok" for r in momonga.values())
    m = scraped[sid(116281, "/images/characters/3/288006.jpg")]
    assert (m.character, m.title, m.page_url) == ("Momonga", "Overlord", "https://myanimelist.net/character/116281/Momonga")
    assert json.loads(m.extra)["name_kanji"] == "モモンガ" and json.loads(m.extra)["favorites"] == 3755
    assert set(images_of(scraped, 105591)) == {sid(105591, p) for p in mal.gallery(105591)}
    spike = images_of(scraped, 1)
    assert set(spike) == {sid(1, p) for p in spike_gallery} and len(spike) == 15
    # The CDN's robots.txt was read too (it is not the site's host) and obeyed.
    assert spike.pop(sid(1, spike_gallery[2])).status == "robots_disallowed" and not cdn.hits(spike_gallery[2])
    assert all(r.status == "ok" for r in spike.values())
    s = next(iter(spike.values()))
    assert (s.character, s.title) == ("Spike Spiegel", "Cowboy Bebop") and json.loads(s.extra)["favorites"] == 49189
    assert all(stored[r.image_sha256].status == "ok" for r in [*momonga.values(), *spike.values()])
    # The list's next page was followed; no thumbnail was asked for; pages and images both obeyed robots.txt.
    assert site.hits("/character.php?limit=50")
    assert not [e for e in cdn.log if e[1].path.startswith("/r/") or e[2] == 404]
    assert site.log[0][1].path == "/robots.txt" and cdn.log[0][1].path == "/robots.txt"


def test_a_second_crawl_fetches_no_image_again(synthetic, tmp_path):
    site, cdn, mal = synthetic
    home = tmp_path / "ws"
    crawl(home, mal, "--limit", "4")
    first = [e[1].path for e in cdn.log if e[1].path.startswith("/images/")]
    assert len(first) == 4
    crawl(home, mal, "--limit", "4")
    again = [e[1].path for e in cdn.log if e[1].path.startswith("/images/")][len(first):]
    assert len(again) == 4 and not set(again) & set(first)
    # Characters whose pictures were all stored were not asked about again; the ranking was.
    for mal_id in (900001, 900002):
        assert len(site.hits(f"/v4/characters/{mal_id}/pictures")) == 1
    assert len(site.hits("/v4/top/characters?page=1")) == 2
    scraped, _ = rows(home)
    assert len([k for k, r in scraped.items() if r.status == "ok"]) == 8


def test_refuses_to_start_without_accepting_the_terms(synthetic, tmp_path):
    site, cdn, mal = synthetic
    out = crawl(tmp_path / "ws", mal, terms=False)
    assert out.returncode != 0
    said = out.stdout + out.stderr
    assert "MAL_TERMS_ACCEPTED=True" in said and "Terms of Use" in said
    assert not site.log and not cdn.log
