"""Last pipeline: originals into the blob store and rows into the manifests, through the
`manifests` package (content-addressed `images/ab/<sha256>.<ext>`, not Scrapy's URL hashes).

Rows are written as whole Parquet parts during the crawl, so a crawl killed at any point
keeps what it stored and the resumed crawl skips it.
"""

from __future__ import annotations

import asyncio
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
from manifests.workspace import Workspace, utcnow
from media.decode import DecodeConfig
from media.store import store_bytes

from ..items import Fetched


def decode_config(settings) -> DecodeConfig:
    """The crawl's decode settings (HEADSHOT_MIN_SIDE, HEADSHOT_MAX_PIXELS, HEADSHOT_MAX_BYTES),
    DecodeConfig's own defaults where one is not set: a crawl and an ingest judge alike."""
    d = DecodeConfig()
    return DecodeConfig(min_side=settings.getint("HEADSHOT_MIN_SIDE", d.min_side),
                        max_pixels=settings.getint("HEADSHOT_MAX_PIXELS", d.max_pixels),
                        max_bytes=settings.getint("HEADSHOT_MAX_BYTES", d.max_bytes))


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
                 decode: DecodeConfig | None = None) -> None:
        self.ws = Workspace.open(home)
        self.blobs = BlobStore(self.ws.home)
        self.run_id = run_id
        self.part_rows, self.part_seconds = part_rows, part_seconds
        self.scraped: list[ScrapedImage] = []
        self.stored: list[StoredImage] = []
        self.last = time.monotonic()
        self.decode = decode or DecodeConfig()

    @classmethod
    def from_crawler(cls, crawler):
        home = crawler.settings.get("HEADSHOT_HOME")
        if not home:
            raise ValueError("HEADSHOT_HOME is not set: run `headshot crawl`, or pass -s HEADSHOT_HOME=PATH")
        o = cls(home, crawler.settings.get("HEADSHOT_RUN_ID") or f"crawl-{int(time.time())}",
                decode=decode_config(crawler.settings))
        o.crawler = crawler
        return o

    def open_spider(self) -> None:
        self._lock = self.ws.writer_lock(f"crawl {self.run_id}")
        self._lock.__enter__()
        self.known = set(tables.read_table(self.ws, StoredImage, ["image_sha256"]).column("image_sha256").to_pylist())

    def close_spider(self) -> None:
        try:
            self.flush()
            tables.compact(self.ws, StoredImage, self.run_id)
            tables.compact(self.ws, ScrapedImage, self.run_id)
        except DiskFull as exc:
            self._stop_for(exc)
        finally:
            self._lock.__exit__(None, None, None)

    def _stop_for(self, exc: DiskFull) -> None:
        """Every later write would fail the same way, Scrapy's own closing writes (its JOBDIR
        state) included: keep the rows that still fit and end the process now, as a kill would.
        What is stored stays; the next crawl resumes from the workspace. `headshot crawl` reads
        exit code 4 as "the disk is full", and this line is the last one the user sees."""
        with contextlib.suppress(DiskFull, OSError):
            self.flush()
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
                # Decoding runs in a thread (Pillow releases the GIL), so the crawl's reactor
                # keeps downloading on one core while images are validated on the other.
                try:
                    stored = await asyncio.to_thread(store_bytes, self.blobs, fetched.body, self.decode, sha)
                except DiskFull as exc:
                    self._stop_for(exc)
                self.stored.append(stored)
                self.crawler.stats.inc_value(f"headshot/stored/{stored.status}")
        item = fetched.item
        self.scraped.append(ScrapedImage(
            source=item.source, source_id=item.source_id, image_url=item.image_url, status=fetched.status,
            reason=fetched.reason, page_url=item.page_url, title=item.title, artist=item.artist,
            character=item.character, tags=tuple(item.tags), rating=item.rating, license=item.license,
            published_at=_when(item.published_at), fetched_at=utcnow(), crawl_run_id=self.run_id,
            opted_out=fetched.status == "opted_out", image_sha256=sha,
            extra=json.dumps(item.extra, ensure_ascii=False, sort_keys=True, default=str),
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
        config = {"decode": self.decode.as_dict()}
        tables.append(self.ws, StoredImage, self.stored, self.run_id, config)
        tables.append(self.ws, ScrapedImage, self.scraped, self.run_id, config)
        self.stored, self.scraped, self.last = [], [], time.monotonic()
