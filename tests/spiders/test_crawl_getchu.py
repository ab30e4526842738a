"""End to end: `headshot crawl getchu` (a real Scrapy process) against a replica on 127.0.0.1
serving the real item captures, with every fault the site shows."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from manifests import tables
from manifests.records import ScrapedImage, StoredImage
from manifests.workspace import Workspace
from replicas.sites.getchu import GetchuReplica
from replicas.sites.server import Replica, Response
from tests.conftest import shared_path

CAPTURES = shared_path("sites", "getchu")
FAST = ["DOWNLOAD_DELAY=0", "AUTOTHROTTLE_ENABLED=False", "HEADSHOT_BACKOFF=0.1", "LOG_LEVEL=WARNING"]


def crawl_cmd(home, base, *extra, sets=()):
    argv = [sys.executable, "-m", "pipelines.cli", "--home", str(home), "crawl", "getchu", *extra,
            "--set", f"GETCHU_BASE_URL={base}"]
    for s in [*FAST, *sets]:
        argv += ["--set", s]
    return argv


def rows(home):
    ws = Workspace.open(home)
    return ({r.source_id: r for r in tables.read_records(ws, ScrapedImage)},
            {r.image_sha256: r for r in tables.read_records(ws, StoredImage)})


@pytest.fixture
def replica():
    if not CAPTURES.is_dir():
        pytest.skip(f"../shared/sites/getchu is absent ({CAPTURES}): the replica serves its real captures")
    with Replica() as r:
        site = GetchuReplica(r, CAPTURES, months={(2015, 5): [1092994, 900001, 900002, 900005],
                                                  (2015, 6): [1361161, 900003, 900004, 900006]},
                             synthetic_ids=[900001, 900002, 900003, 900004, 900005, 900006])
        yield r, site


def test_month_range_crawl_with_every_fault(replica, tmp_path):
    r, site = replica
    img = "/brandnew/{0}/c{0}{1}.jpg"
    r.fault(img.format(900001, "chara1"), Response(429, {"Retry-After": "1"}, b"slow down"))
    r.fault("/item/900002/?gc=gc", Response(500, {}, b"oops"))
    r.fault("/item/900003/?gc=gc", Response(200, {"Content-Type": "text/html; charset=EUC-JP"},
                                            site.items[900003], truncate_to=len(site.items[900003]) // 2))
    r.fault(img.format(900004, "chara1"), Response(200, {"Content-Type": "image/jpeg", "X-Robots-Tag": "noai"}, b"\xff\xd8x"))
    r.fault(img.format(900004, "chara2"), Response(200, {"Content-Type": "image/jpeg"}, b"\xff\xd8" + b"\0" * 300_000))
    r.fault(img.format(900004, "charab1"), Response(200, {"Content-Type": "text/html"}, b"<html><body>login</body></html>"))
    r.fault("/item/900005/?gc=gc", Response(302, {"Location": f"http://localhost:{r.server.server_port}/item/900005/?gc=gc"}))
    r.fault("/item/900006/?gc=gc", Response(302, {"Location": "/php/attestation.html?aurl=%2Fitem%2F900006%2F"}))

    home = tmp_path / "ws"
    out = subprocess.run(crawl_cmd(home, r.base, "--since", "2015-05", "--until", "2015-06",
                                   sets=["DOWNLOAD_MAXSIZE=200000"]), capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    scraped, stored = rows(home)

    def status(sid):
        return scraped[sid].status

    # The real capture: 4 characters, each a portrait and a full body, EUC-JP decoded.
    real = [s for s in scraped if s.startswith("1092994/")]
    assert len(real) == 8 and all(status(s) == "ok" for s in real)
    himari = scraped["1092994/chara1"]
    assert himari.character == "和泉 妃愛" and himari.title == "ハミダシクリエイティブ"
    assert json.loads(himari.extra)["cv"] == "柳ひとみ" and himari.artist
    assert himari.published_at.date().isoformat() == "2020-09-25"
    assert stored[himari.image_sha256].status == "ok"
    # 429 with Retry-After: 1, honoured, then stored.
    assert status("900001/chara1") == "ok"
    t429, t_ok = [t for t, req, _ in r.hits(img.format(900001, "chara1"))]
    assert t_ok - t429 >= 0.9
    # 500 then success.
    assert status("900002/chara1") == "ok"
    # A truncated page is a row, not "no characters".
    assert status(f"page:/item/900003/?gc=gc") == "truncated"
    # noai header, oversized image, HTML served as an image.
    assert status("900004/chara1") == "opted_out" and scraped["900004/chara1"].image_sha256 == ""
    assert status("900004/chara2") == "too_large"
    assert status("900004/charab1") == "ok"
    assert stored[scraped["900004/charab1"].image_sha256].status == "not_image"
    # A redirect off the site, and an age gate that the cookie did not pass.
    assert status(f"page:/item/900005/?gc=gc") == "offsite"
    assert status(f"page:/item/900006/?gc=gc") == "age_gate"
    # Every image request carried the item page as Referer and the age cookie.
    for _, req, _ in r.log:
        if req.path.startswith("/brandnew/"):
            assert f"/item/{req.path.split('/')[2]}/" in req.headers.get("Referer", "")
            assert req.cookie("getchu_adalt_flag") == "getchu.com"
    # robots.txt was read first.
    assert r.log[0][1].path == "/robots.txt"


def test_referer_is_enforced_by_the_replica(replica):
    import urllib.error
    import urllib.request

    r, _ = replica
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(r.base + "/brandnew/1092994/c1092994chara1.jpg")
    assert e.value.code == 403


def test_second_crawl_fetches_only_what_is_new(replica, tmp_path):
    r, site = replica
    home = tmp_path / "ws"
    first = subprocess.run(crawl_cmd(home, r.base, "--arg", "ids=1092994,900001"), capture_output=True, text=True, timeout=180)
    assert first.returncode == 0, first.stderr[-3000:]
    images_before = len([e for e in r.log if e[1].path.startswith("/brandnew/")])
    assert images_before == 8 + 4
    second = subprocess.run(crawl_cmd(home, r.base, "--arg", "ids=1092994,900001,900002"), capture_output=True,
                            text=True, timeout=180)
    assert second.returncode == 0, second.stderr[-3000:]
    new_hits = [e[1].path for e in r.log if e[1].path.startswith("/brandnew/")][images_before:]
    assert sorted(new_hits) == sorted(f"/brandnew/900002/c900002{k}.jpg" for k in ("chara1", "chara2", "charab1", "charab2"))
    scraped, _ = rows(home)
    assert len([s for s in scraped if not s.startswith("page:")]) == 16
    assert {s for s, r in scraped.items() if r.status == "page"} == {
        f"page:/item/{pid}/?gc=gc" for pid in (1092994, 900001, 900002)}
    # Settled item pages were not fetched again either.
    assert len(r.hits("/item/1092994/")) == 1 and len(r.hits("/item/900002/")) == 1


def test_sigkill_then_resume_has_no_duplicate_and_no_gap(tmp_path):
    ids = list(range(910001, 910041))
    with Replica() as r:
        GetchuReplica(r, None, synthetic_ids=ids)
        home = tmp_path / "ws"
        argv = crawl_cmd(home, r.base, "--arg", "ids=" + ",".join(map(str, ids)),
                         sets=["DOWNLOAD_DELAY=0.02", "CONCURRENT_REQUESTS=2"])
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 120
        while not list((home / "manifests").glob("scraped.part-*.parquet")):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        assert proc.poll() is None, "the crawl ended before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        partial, _ = rows(home)
        assert 0 < len([k for k in partial if not k.startswith("page:")]) < 160
        out = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
    scraped, stored = rows(home)
    expected = {f"{pid}/{k}{n}" for pid in ids for k in ("chara", "charab") for n in (1, 2)}
    images = {k: v for k, v in scraped.items() if not k.startswith("page:")}
    assert set(images) == expected
    assert all(s.status == "ok" for s in images.values())
    assert len(stored) == 160


def test_ctrl_c_stops_cleanly_and_the_rerun_resumes_from_jobdir(tmp_path):
    ids = list(range(930001, 930021))
    with Replica() as r:
        GetchuReplica(r, None, synthetic_ids=ids)
        home = tmp_path / "ws"
        argv = crawl_cmd(home, r.base, "--arg", "ids=" + ",".join(map(str, ids)),
                         sets=["DOWNLOAD_DELAY=0.05", "CONCURRENT_REQUESTS=1"])
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while len([e for e in r.log if e[1].path.startswith("/brandnew/")]) < 20:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)  # what a terminal's Ctrl-C does to `headshot crawl`
        proc.communicate(timeout=120)
        [jobdir] = (home / "crawl-jobs").iterdir()
        assert not any((home / "runs").glob("*"))  # runs/ holds training runs only
        assert (jobdir / "headshot-closed").read_text() == "shutdown"
        assert (jobdir / "requests.queue").is_dir()
        partial, _ = rows(home)
        assert 0 < len([k for k in partial if not k.startswith("page:")]) < 80
        out = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
        assert "did not close cleanly" not in out.stderr
    scraped, stored = rows(home)
    images = {k for k in scraped if not k.startswith("page:")}
    assert images == {f"{pid}/{k}{n}" for pid in ids for k in ("chara", "charab") for n in (1, 2)}
    assert len(stored) == 80
    assert not (home / "crawl-jobs" / jobdir.name).exists()  # a finished crawl leaves no JOBDIR


def test_keyword_is_sent_as_euc_jp_and_brand_search_follows_results_only(replica, tmp_path):
    r, _ = replica
    home = tmp_path / "ws"
    out = subprocess.run(crawl_cmd(home, r.base, "--query", "妹", "--limit", "2"), capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    [search] = [req for _, req, _ in r.log if req.path == "/php/search.phtml"]
    assert "search_keyword=%CB%E5" in search.raw_path  # 妹 in EUC-JP, not UTF-8 (%E5%A6%B9)
    assert r.hits("/item/1092994/")  # its page mentions 妹
    assert not [e for e in r.log if "634685" in e[1].raw_path]  # the banner outside the results
    scraped, _ = rows(home)
    assert len([s for s, v in scraped.items() if v.status == "ok"]) == 2  # --limit 2
    out = subprocess.run(crawl_cmd(home, r.base, "--arg", "brand=56606"), capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    assert any("search_brand_id=56606" in req.raw_path for _, req, _ in r.log)


def test_scrapy_crawl_from_the_repository_works_too(replica, tmp_path):
    r, _ = replica
    repo = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k != "SCRAPY_SETTINGS_MODULE"}
    out = subprocess.run([sys.executable, "-m", "scrapy", "crawl", "getchu", "-s", f"HEADSHOT_HOME={tmp_path / 'ws'}",
                          "-s", f"GETCHU_BASE_URL={r.base}", "-s", "DOWNLOAD_DELAY=0", "-s", "AUTOTHROTTLE_ENABLED=False",
                          "-a", "ids=900001"], cwd=repo, env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    scraped, stored = rows(tmp_path / "ws")
    assert {s for s, v in scraped.items() if v.status == "ok"} == {f"900001/{k}{n}" for k in ("chara", "charab") for n in (1, 2)}


@pytest.mark.parametrize("room", [0, 320_000], ids=["full-at-start", "fills-while-crawling"])
def test_a_full_disk_stops_the_crawl_with_one_line(replica, tmp_path, small_disk, room):
    r, _ = replica
    home = small_disk.path / "ws"
    Workspace.open(home)
    small_disk.fill(keep=room)
    started = time.monotonic()
    out = subprocess.run(crawl_cmd(home, r.base, "--since", "2015-05", "--until", "2015-06"),
                         capture_output=True, text=True, timeout=120)
    assert time.monotonic() - started < 60
    assert out.returncode == 4, out.stderr[-2000:]
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("headshot: error: the disk is full writing to ") and str(home) in last
    assert "Traceback" not in out.stderr
    assert list(home.rglob(".tmp-*")) == []
    small_disk.free()
    out = subprocess.run(crawl_cmd(home, r.base, "--since", "2015-05", "--until", "2015-06"),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    scraped, stored = rows(home)
    assert stored and all((home / s.blob_path).is_file() for s in stored.values() if s.blob_path)
