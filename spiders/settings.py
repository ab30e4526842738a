"""Scrapy settings for headshot's spiders: polite by default.

Site addresses are settings so that a test or a mirror can point a spider anywhere
(`headshot crawl getchu --set GETCHU_BASE_URL=http://127.0.0.1:8080`).
"""

from scrapy.settings import default_settings as _scrapy_defaults

from manifests.tables import code_version
from media.decode import DecodeConfig

BOT_NAME = "headshot"
SPIDER_MODULES = ["spiders.crawlers"]
NEWSPIDER_MODULE = "spiders.crawlers"

# Where rows and originals go (`headshot crawl` sets it from --home / HEADSHOT_HOME).
HEADSHOT_HOME = None

GETCHU_BASE_URL = "https://www.getchu.com"
MAL_BASE_URL = "https://myanimelist.net"
JIKAN_BASE_URL = "https://api.jikan.moe/v4"
DEVIANTART_RSS_URL = "https://backend.deviantart.com/rss.xml"
DEVIANTART_API_URL = "https://www.deviantart.com/api/v1/oauth2"

USER_AGENT = f"headshot/{code_version().split('+')[0]} (face dataset builder; obeys robots.txt, noai and Retry-After)"
ROBOTSTXT_OBEY = True
CONCURRENT_REQUESTS = 8
CONCURRENT_REQUESTS_PER_DOMAIN = 1
DOWNLOAD_DELAY = 2.0
DOWNLOAD_DELAY_JITTER = 0.5  # each delay drawn from 0.5x to 1.5x: no fixed beat
AUTOTHROTTLE_ENABLED = True
AUTOTHROTTLE_START_DELAY = 2.0
AUTOTHROTTLE_TARGET_CONCURRENCY = 1.0
# Items of one response processed at once. Scrapy starts this many tasks for every response,
# whatever it yields (its default, 100, is ~100 tasks per image); a page yields a few.
CONCURRENT_ITEMS = 8
DOWNLOAD_TIMEOUT = 60
DOWNLOAD_MAXSIZE = 64 * 1024 * 1024
DOWNLOAD_WARNSIZE = 16 * 1024 * 1024
COOKIES_ENABLED = True
TELNETCONSOLE_ENABLED = False
# Crawls are started and stopped through `headshot crawl` (one Ctrl-C stops one cleanly): no
# remote-control endpoint. Scrapy's own extensions but that one, so that its module (and
# aiohttp, 0.1-0.2 s of every crawl's start) is not even imported.
REMOTE_CONTROL_ENABLED = False
EXTENSIONS_BASE = {k: v for k, v in _scrapy_defaults.EXTENSIONS_BASE.items() if not k.endswith(".RemoteControl")}
LOG_LEVEL = "INFO"

# headshot's own retry: Retry-After honoured host-wide, exponential backoff on 429 and 5xx.
RETRY_ENABLED = False
HEADSHOT_RETRY_TIMES = 3
HEADSHOT_RETRY_CODES = [429, 500, 502, 503, 504, 408, 522, 524]
HEADSHOT_BACKOFF = 2.0  # seconds before the first retry without Retry-After, doubled each time
HEADSHOT_MAX_RETRY_AFTER = 300.0  # a longer Retry-After ends in a row with a reason instead
HEADSHOT_MAX_BLOCKS = 3  # block pages in a row before the spider stops
HEADSHOT_REFRESH = False  # True: fetch again what earlier crawls stored

# Crawled images are judged as `headshot ingest` judges its inputs (media.decode.DecodeConfig,
# with its defaults): a shorter side than HEADSHOT_MIN_SIDE px is kept as too_small, and an image
# over HEADSHOT_MAX_BYTES is not downloaded past that (too_large), as a file over it is not read.
HEADSHOT_MIN_SIDE = DecodeConfig.min_side
HEADSHOT_MAX_PIXELS = DecodeConfig.max_pixels
HEADSHOT_MAX_BYTES = DecodeConfig.max_bytes

DOWNLOADER_MIDDLEWARES = {
    "scrapy.downloadermiddlewares.offsite.OffsiteMiddleware": None,
    "spiders.middlewares.RobotsTxtOffsiteMiddleware": 50,  # CDNs' robots.txt is read too
    "spiders.middlewares.PoliteRetryMiddleware": 550,
}
ITEM_PIPELINES = {
    "spiders.pipelines.validate.ValidatePipeline": 100,
    "spiders.pipelines.optout.OptOutPipeline": 200,
    "spiders.pipelines.repeats.RepeatsPipeline": 300,
    "spiders.pipelines.store.StorePipeline": 400,
}
DUPEFILTER_CLASS = "spiders.dupefilter.MemoryDupeFilter"
# One site's spider failing to import must not stop the others from crawling.
SPIDER_LOADER_WARN_ONLY = True
