"""Drop repeats within one crawl: the same image reached twice (from two listings, or a
retried page) is one input, and its first row stands."""

from __future__ import annotations

from scrapy.exceptions import DropItem

from ..items import Fetched


class RepeatsPipeline:
    def __init__(self) -> None:
        self.seen: set[tuple[str, str, str]] = set()

    def process_item(self, fetched: Fetched) -> Fetched:
        key = (fetched.item.source, fetched.item.source_id, fetched.item.image_url)
        if key in self.seen:
            raise DropItem(f"repeat of {fetched.item.source_id}")
        self.seen.add(key)
        return fetched
