"""Crawl throughput: `headshot crawl getchu` (parse pages, fetch images, validate, store blobs
and Parquet rows) against a bare Scrapy spider fetching the same URLs, both against the same
local replica in the same run, with throttling off (no delay, no AutoThrottle)."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from manifests import tables
from manifests.records import ScrapedImage
from manifests.workspace import Workspace
from replicas.sites.getchu import GetchuReplica
from replicas.sites.server import Replica

SETTINGS = {"DOWNLOAD_DELAY": "0", "AUTOTHROTTLE_ENABLED": "False", "CONCURRENT_REQUESTS": "16",
            "CONCURRENT_REQUESTS_PER_DOMAIN": "16", "LOG_LEVEL": "ERROR", "TELNETCONSOLE_ENABLED": "False"}


def _sets(prefix: str) -> list[str]:
    out = []
    for k, v in SETTINGS.items():
        out += [prefix, f"{k}={v}"]
    return out


def main(items: int = 100, repeats: int = 3) -> dict:
    ids = list(range(920001, 920001 + items))
    env = {**os.environ, "SCRAPY_SETTINGS_MODULE": "spiders.settings"}
    ours, bare, images = [], [], 0
    with Replica() as r, tempfile.TemporaryDirectory(prefix="headshot-crawl-bench-") as tmp:
        GetchuReplica(r, None, synthetic_ids=ids)
        urls = [f"{r.base}/item/{pid}/?gc=gc" for pid in ids]
        urls += [f"{r.base}/brandnew/{pid}/c{pid}{k}{n}.jpg" for pid in ids for k in ("chara", "charab") for n in (1, 2)]
        url_file = Path(tmp) / "urls.txt"
        url_file.write_text("\n".join(urls))
        bare_cmd = [sys.executable, "-m", "scrapy", "runspider", str(Path(__file__).with_name("bare_spider.py")),
                    "-a", f"urls={url_file}", *_sets("-s"), "-s", "ROBOTSTXT_OBEY=False"]
        bare_env = {**os.environ, "SCRAPY_SETTINGS_MODULE": ""}
        subprocess.run(bare_cmd, check=True, env=bare_env)  # warm-up: the replica draws each image once
        for i in range(repeats):
            home = Path(tmp) / f"ws{i}"
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "pipelines.cli", "--home", str(home), "crawl", "getchu",
                            "--arg", "ids=" + ",".join(map(str, ids)), "--set", f"GETCHU_BASE_URL={r.base}",
                            *_sets("--set")], check=True, env=env)
            ours.append(time.perf_counter() - t)
            rows = tables.read_table(Workspace.open(home), ScrapedImage).to_pylist()
            images = sum(1 for row in rows if row["status"] == "ok")
            t = time.perf_counter()
            subprocess.run(bare_cmd, check=True, env=bare_env)
            bare.append(time.perf_counter() - t)
    o, b = statistics.median(ours), statistics.median(bare)
    result = {"items": items, "images": images, "requests": len(urls),
              "headshot_images_per_s": round(images / o, 1), "bare_images_per_s": round(images / b, 1),
              "ratio_headshot_over_bare": round(b / o, 2)}
    print("## crawl throughput")
    print(f"{items} getchu items, {len(urls)} URLs ({images} images), local replica, throttling off, "
          f"16 concurrent requests, median of {repeats}, wall time including process start")
    print("| | images/s |\n|---|---|")
    print(f"| bare Scrapy spider (fetch only) | {result['bare_images_per_s']} |")
    print(f"| headshot crawl getchu (parse, fetch, validate, store) | {result['headshot_images_per_s']} |")
    print(f"| ratio headshot / bare | {result['ratio_headshot_over_bare']}x |")
    return result


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="Crawl throughput against a bare Scrapy spider. "
                                 "Example: python -m bench.crawl_throughput --items 400")
    ap.add_argument("--items", type=int, default=100, help="getchu items (each: a page and 4 images; default 100)")
    ap.add_argument("--repeats", type=int, default=3, help="runs of each, the median kept (default 3)")
    a = ap.parse_args()
    main(a.items, a.repeats)
