"""Images whose response or page says noai / noimageai are recorded as opted out, never stored."""

from __future__ import annotations

from media.optout import header_opted_out

from ..items import Fetched


class OptOutPipeline:
    def process_item(self, fetched: Fetched) -> Fetched:
        if fetched.is_page:
            return fetched
        if header_opted_out(fetched.x_robots_tag):
            return fetched.with_status("opted_out", "the image response says noai/noimageai (X-Robots-Tag)")
        if fetched.item.extra.get("page_noai"):
            return fetched.with_status("opted_out", "the artwork's page says noai/noimageai (meta robots)")
        return fetched
