"""Last pipeline: originals into the blob store and rows into the manifests, through the
`manifests` package (content-addressed `images/ab/<sha256>.<ext>`, not Scrapy's URL hashes).

Rows are written as whole Parquet parts during the crawl, so a crawl killed at any point
keeps what it stored and the resumed crawl skips it. Each part is a commit of the stage
contract (manifests/stage.py): the writer lock is held only while a part is written, so
`headshot process` or an ingest can run on the same workspace while a crawl goes on. Images
are decoded and stored in worker processes (which die with the crawl) that the reactor feeds
through their own pipes (manifests/loop_pool.py), so it keeps its core for downloading.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from datetime import datetime

from manifests import tables
from manifests.atomic import DiskFull
from manifests.blobs import BlobStore, sha256_hex
from manifests.records import ScrapedImage, StoredImage
from manifests.loop_pool import LoopPool, WorkerDied, cpu_workers
from manifests.stage import COMMIT_WAIT, write_rows
from manifests.workspace import Workspace, utcnow
from media.decode import DecodeConfig
from media.store import store_item
from media.web import recorded_text, recorded_url

from ..items import Fetched


def decode_config(settings) -> DecodeConfig:
    """The crawl's decode settings (HEADSHOT_MIN_SIDE, HEADSHOT_MAX_PIXELS, HEADSHOT_MAX_BYTES),
    DecodeConfig's own defaults where one is not set: a crawl and an ingest judge alike."""
    d = DecodeConfig()
    return DecodeConfig(min_side=settings.getint("HEADSHOT_MIN_SIDE", d.min_side),
                        max_pixels=settings.getint("HEADSHOT_MAX_PIXELS", d.max_pixels),
                        max_bytes=settings.getint("HEADSHOT_MAX_BYTES", d.max_bytes))


def _recorded(value):
    """A page's extra fields with every URL in their strings as rows keep URLs."""
    if isinstance(value, str):
        return recorded_text(value)
    if isinstance(value, dict):
        return {k: _recorded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_recorded(v) for v in value]
    return value


def _when(value: str) -> datetime | None:
    if not value:
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        return None
    if dt.tzinfo is None:
        from datetime import timezone

        dt = dt.replace(tzinfo=timezone.utc)
    return dt


class StorePipeline:
    def __init__(self, home: str, run_id: str, part_rows: int = 200, part_seconds: float = 5.0,
                 decode: DecodeConfig | None = None, workers: int = 0) -> None:
        self.ws = Workspace.open(home)
        self.blobs = BlobStore(self.ws.home)
        self.run_id = run_id
        self.part_rows, self.part_seconds = part_rows, part_seconds
        self.scraped: list[ScrapedImage] = []
        self.stored: list[StoredImage] = []
        self.last = time.monotonic()
        self.decode = decode or DecodeConfig()
        # The reactor keeps one core for itself: the others decode.
        self.workers = workers or cpu_workers(reserve=1)
        self.pool = None

    @classmethod
    def from_crawler(cls, crawler):
        home = crawler.settings.get("HEADSHOT_HOME")
        if not home:
            raise ValueError("HEADSHOT_HOME is not set: run `headshot crawl`, or pass -s HEADSHOT_HOME=PATH")
        o = cls(home, crawler.settings.get("HEADSHOT_RUN_ID") or f"crawl-{int(time.time())}",
                decode=decode_config(crawler.settings), workers=crawler.settings.getint("HEADSHOT_STORE_WORKERS", 0))
        o.crawler = crawler
        return o

    def open_spider(self) -> None:
        self.known = set(tables.read_table(self.ws, StoredImage, ["image_sha256"]).column("image_sha256").to_pylist())
        # Processes, not threads (a thread would wait on the reactor for the GIL); forked while
        # no request has started a thread yet: a crawl's process never runs OpenCV (spiders do
        # not import curation).
        self.pool = LoopPool(store_item, (str(self.ws.home), self.decode), self.workers, start="auto")

    def close_spider(self) -> None:
        try:
            self.flush()
            with self.ws.writer_lock(f"crawl {self.run_id}", wait=COMMIT_WAIT):
                tables.compact(self.ws, StoredImage, self.run_id)
                tables.compact(self.ws, ScrapedImage, self.run_id)
        except DiskFull as exc:
            self._stop_for(exc)
        finally:
            self._close_pool()

    def _close_pool(self) -> None:
        """End the decoding workers and free what their queues hold, so that nothing (the
        resource tracker's warnings) is printed after the crawl's last line."""
        pool, self.pool = self.pool, None
        if pool is not None:
            pool.close()

    def _stop_for(self, exc: DiskFull) -> None:
        """Every later write would fail the same way, Scrapy's own closing writes (its JOBDIR
        state) included: keep the rows that still fit and end the process now, as a kill would.
        What is stored stays; the next crawl resumes from the workspace. `headshot crawl` reads
        exit code 4 as "the disk is full", and this line is the last one the user sees."""
        with contextlib.suppress(DiskFull, OSError):
            self.flush()
        self._close_pool()
        sys.stdout.flush()
        sys.stderr.flush()
        print(f"headshot: error: {exc}", file=sys.stderr, flush=True)
        os._exit(4)

    async def process_item(self, fetched: Fetched) -> Fetched:
        sha = ""
        if fetched.status == "ok" and fetched.body:
            sha = sha256_hex(fetched.body)
            if sha not in self.known:
                self.known.add(sha)  # before the await: the same bytes arriving meanwhile are not decoded twice
                # Decoding runs in a worker process, so the crawl's reactor keeps downloading on
                # one core while images are validated on the others (a thread would share its GIL).
                try:
                    stored = await self.pool.run((fetched.body, sha))
                except DiskFull as exc:
                    self._stop_for(exc)
                except WorkerDied as exc:
                    # The decoder's process died on these bytes (a crash, the OOM killer): a row
                    # says so, and the same bytes met again are tried again (a fresh worker runs).
                    self.known.discard(sha)
                    stored = None
                    fetched = fetched.with_status("unreadable", f"decoding the image ended its process: {exc}")
                    sha = ""
                if stored is not None:
                    self.stored.append(stored)
                    self.crawler.stats.inc_value(f"headshot/stored/{stored.status}")
        item = fetched.item
        # Signed image URLs (DeviantArt's ?token=) were fetched as they are; rows, which get
        # published with datasets, keep them with their secret parameters REDACTED.
        self.scraped.append(ScrapedImage(
            source=item.source, source_id=item.source_id, image_url=recorded_url(item.image_url),
            status=fetched.status, reason=recorded_text(fetched.reason), page_url=recorded_url(item.page_url),
            title=item.title, artist=item.artist, character=item.character, tags=tuple(item.tags),
            rating=item.rating, license=item.license, published_at=_when(item.published_at), fetched_at=utcnow(),
            crawl_run_id=self.run_id, opted_out=fetched.status == "opted_out", image_sha256=sha,
            extra=json.dumps(_recorded(item.extra), ensure_ascii=False, sort_keys=True, default=str),
        ))
        self.crawler.stats.inc_value(f"headshot/rows/{fetched.status}")
        if len(self.scraped) + len(self.stored) >= self.part_rows or time.monotonic() - self.last > self.part_seconds:
            try:
                self.flush()
            except DiskFull as exc:
                self._stop_for(exc)
        fetched.body = None  # the bytes are stored; do not keep them in memory
        return fetched

    def flush(self) -> None:
        """Commit a part: stored rows first (another run may have stored the same content
        meanwhile: not written twice), then every input row (a crawl's rows carry fresh metadata)."""
        config = {"decode": self.decode.as_dict()}
        write_rows(self.ws, {StoredImage: self.stored, ScrapedImage: self.scraped}, (StoredImage, ScrapedImage),
                   self.run_id, config, what="crawl", always=(ScrapedImage,))
        self.stored, self.scraped, self.last = [], [], time.monotonic()
