"""The reference for the crawl benchmark: a bare Scrapy spider that fetches a list of URLs and
does nothing else (no parsing, no rows, no storage). Run with `scrapy runspider`."""

import scrapy


class BareSpider(scrapy.Spider):
    name = "bare"

    async def start(self):
        with open(self.urls) as f:
            for line in f:
                if line.strip():
                    yield scrapy.Request(line.strip(), cookies={"getchu_adalt_flag": "getchu.com"},
                                         headers={"Referer": self.referer_for(line.strip())})

    def referer_for(self, url: str) -> str:
        # The replica, like the site, wants the item page as Referer for its images.
        if "/brandnew/" in url:
            pid = url.split("/brandnew/")[1].split("/")[0]
            return url.split("/brandnew/")[0] + f"/item/{pid}/?gc=gc"
        return ""

    def parse(self, response):
        yield {"url": response.url, "bytes": len(response.body)}
