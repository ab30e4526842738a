"""First pipeline: an item that cannot become a sound row is marked `invalid` with the reason."""

from __future__ import annotations

from urllib.parse import urlsplit

from ..items import Fetched


class ValidatePipeline:
    def process_item(self, fetched: Fetched) -> Fetched:
        item = fetched.item
        if fetched.is_page:
            return fetched
        problems = []
        if not item.source or not item.source_id:
            problems.append("no source id")
        if urlsplit(item.image_url).scheme not in ("http", "https"):
            problems.append(f"image URL {item.image_url!r} is not http(s)")
        if fetched.status == "ok" and not fetched.body:
            problems.append("the response had no body")
        if problems:
            return fetched.with_status("invalid", "; ".join(problems))
        return fetched
