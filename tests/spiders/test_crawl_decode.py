"""A crawl judges images as `headshot ingest` does: the same decode settings, the same defaults,
the same status and reason for the same bytes (a real Scrapy process against the getchu replica)."""

import json
import subprocess
import sys

import numpy as np
from PIL import Image

from curation.ingest import IngestConfig, ingest
from manifests import tables
from manifests.atomic import read_metadata
from manifests.records import ScrapedImage, StoredImage
from manifests.workspace import Workspace
from media.decode import DecodeConfig
from replicas.drawn import draw_character, encode
from replicas.sites.getchu import GetchuReplica
from replicas.sites.server import Replica, Response

FAST = ["DOWNLOAD_DELAY=0", "AUTOTHROTTLE_ENABLED=False", "HEADSHOT_BACKOFF=0.1", "LOG_LEVEL=WARNING"]
PID = 960001
IMG = "/brandnew/{0}/c{0}{1}.jpg"
JPEG = {"Content-Type": "image/jpeg"}


def crawl(home, r, *sets):
    argv = [sys.executable, "-m", "pipelines.cli", "--home", str(home), "crawl", "getchu", "--arg", f"ids={PID}",
            "--set", f"GETCHU_BASE_URL={r.base}"]
    for s in [*FAST, *sets]:
        argv += ["--set", s]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    ws = Workspace.open(home)
    scraped = {s.source_id: s for s in tables.read_records(ws, ScrapedImage) if not s.source_id.startswith("page:")}
    stored = {s.image_sha256: s for s in tables.read_records(ws, StoredImage)}
    return scraped, stored


def test_a_too_small_image_found_by_a_crawl_is_kept_as_too_small(tmp_path):
    tiny = encode(draw_character(5, 30), "JPEG", quality=90)  # under DecodeConfig's 40 px minimum side
    with Replica() as r:
        GetchuReplica(r, None, synthetic_ids=[PID])
        r.fault(IMG.format(PID, "chara1"), Response(200, JPEG, tiny))
        scraped, stored = crawl(tmp_path / "ws", r)
    assert len(scraped) == 4 and all(s.status == "ok" for s in scraped.values())  # the download itself was fine
    small = stored[scraped[f"{PID}/chara1"].image_sha256]
    assert small.status == "too_small" and (small.width, small.height) == (30, 30)
    assert "40 px" in small.reason
    assert small.blob_path and (tmp_path / "ws" / small.blob_path).read_bytes() == tiny  # kept for a looser setting
    assert all(stored[scraped[f"{PID}/{k}"].image_sha256].status == "ok" for k in ("chara2", "charab1", "charab2"))

    # The same bytes given to `headshot ingest` get the same row.
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "tiny.jpg").write_bytes(tiny)
    ws = Workspace.open(tmp_path / "ingested")
    ingest([str(tmp_path / "in")], ws, IngestConfig(workers=1), progress=False)
    [again] = tables.read_records(ws, StoredImage)
    assert (again.image_sha256, again.status, again.reason) == (small.image_sha256, small.status, small.reason)


def test_the_crawl_takes_min_side_and_the_byte_cap_from_its_settings(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, (400, 400, 3), dtype=np.uint8)
    big = encode(Image.fromarray(noise), "PNG")  # ~480 kB, over the cap below
    with Replica() as r:
        GetchuReplica(r, None, synthetic_ids=[PID])  # portraits (chara) 250 px, full bodies (charab) 400 px
        r.fault(IMG.format(PID, "charab2"), Response(200, JPEG, big))
        scraped, stored = crawl(tmp_path / "ws", r, "HEADSHOT_MIN_SIDE=300", "HEADSHOT_MAX_BYTES=200000")
    for k in ("chara1", "chara2"):
        row = stored[scraped[f"{PID}/{k}"].image_sha256]
        assert row.status == "too_small" and "300 px" in row.reason
    assert stored[scraped[f"{PID}/charab1"].image_sha256].status == "ok"
    capped = scraped[f"{PID}/charab2"]
    assert capped.status == "too_large" and capped.image_sha256 == "" and "size cap" in capped.reason
    # The settings the rows were judged by are kept with them.
    [table] = tables.table_files(Workspace.open(tmp_path / "ws"), StoredImage)
    runs = json.loads(read_metadata(table)["headshot.runs"])
    [run] = runs.values()
    assert run["config"]["decode"] == {"min_side": 300, "max_pixels": DecodeConfig().max_pixels, "max_bytes": 200000}
