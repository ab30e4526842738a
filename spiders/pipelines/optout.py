"""Images whose response or page says noai / noimageai are recorded as opted out, never stored."""

from __future__ import annotations

from curation.fetch import opted_out

from ..items import Fetched


class _Headers:
    def __init__(self, values: list[str]) -> None:
        self.values = values

    def get_all(self, name: str) -> list[str]:
        return self.values


class OptOutPipeline:
    def process_item(self, fetched: Fetched) -> Fetched:
        if fetched.is_page:
            return fetched
        if opted_out(_Headers(fetched.x_robots_tag)):
            return fetched.with_status("opted_out", "the image response says noai/noimageai (X-Robots-Tag)")
        if fetched.item.extra.get("page_noai"):
            return fetched.with_status("opted_out", "the artwork's page says noai/noimageai (meta robots)")
        return fetched
