"""Request de-duplication that lives only as long as the crawl process.

Scrapy's default filter persists fingerprints in JOBDIR as requests are *scheduled*; after a
SIGKILL the queue can lose requests whose fingerprints were kept, and a resumed crawl would
never fetch them. headshot resumes from the workspace instead (pages and images already
settled are skipped), so the filter only has to stop repeats within one run.
"""

from __future__ import annotations

from scrapy.dupefilters import RFPDupeFilter


class MemoryDupeFilter(RFPDupeFilter):
    @classmethod
    def from_crawler(cls, crawler):
        return cls(path=None, debug=crawler.settings.getbool("DUPEFILTER_DEBUG"),
                   fingerprinter=crawler.request_fingerprinter)
