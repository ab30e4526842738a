"""The crawl's store pipeline when its decoding worker dies: that image's row says why, the
worker is replaced, and the next image is stored as usual."""

from __future__ import annotations

import asyncio
import io
import os
import signal

from PIL import Image
from scrapy.utils.test import get_crawler

from manifests import tables
from manifests.records import ScrapedImage, StoredImage
from manifests.workspace import Workspace
from spiders.items import Fetched
from spiders.parsing import ImageItem
from spiders.pipelines.store import StorePipeline


def _png(colour: tuple[int, int, int], side: int = 256) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (side, side), colour).save(buf, "PNG")
    return buf.getvalue()


def _fetched(n: int, body: bytes) -> Fetched:
    item = ImageItem(source="getchu", source_id=f"img{n}", page_url=f"http://127.0.0.1/item/{n}/",
                     image_url=f"http://127.0.0.1/img/{n}.png")
    return Fetched(item, "ok", body=body, http_status=200)


def test_a_worker_that_dies_costs_one_row_with_its_reason(tmp_path, run_async):
    home = tmp_path / "ws"
    Workspace.open(home)
    store = StorePipeline(str(home), "crawl-test", workers=1)
    store.crawler = get_crawler()

    async def main():
        store.open_spider()
        # A big picture, so that its worker is still decoding it when the OOM killer comes.
        task = asyncio.ensure_future(store.process_item(_fetched(1, _png((200, 30, 30), 4000))))
        await asyncio.sleep(0)  # the item is handed to the worker
        os.kill(store.pool.workers[0]["proc"].pid, signal.SIGKILL)
        first = await task
        second = await store.process_item(_fetched(2, _png((30, 200, 30))))
        store.close_spider()
        return first, second

    first, second = run_async(main)
    assert first.status == "unreadable" and "ended its process" in first.reason and "-9" in first.reason
    assert second.status == "ok"
    ws = Workspace.open(home)
    rows = {r["source_id"]: r for r in tables.read_table(ws, ScrapedImage).to_pylist()}
    assert rows["img1"]["status"] == "unreadable" and rows["img1"]["image_sha256"] == ""
    assert rows["img2"]["status"] == "ok" and rows["img2"]["image_sha256"]
    stored = tables.read_table(ws, StoredImage).to_pylist()
    assert [r["image_sha256"] for r in stored] == [rows["img2"]["image_sha256"]]
    assert stored[0]["status"] == "ok" and (home / stored[0]["blob_path"]).is_file()
