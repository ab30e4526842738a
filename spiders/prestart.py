"""`headshot crawl`'s crawl process, started before its command line is known.

A crawl runs in a process of its own (Scrapy's reactor cannot restart). A new interpreter would
import Scrapy, the spiders, pyarrow and pandas again after `headshot crawl` has read the
project's config: about a second before the first request. `prestart()` forks the CLI's process
as its command begins instead; the fork imports what a crawl needs while the CLI reads the
config, then waits on a pipe for the `scrapy crawl` command line, runs it and exits with its
code. If the CLI ends without sending one (a bad option, a Ctrl-C), the fork reads the end of
the pipe and exits; it also dies with the CLI, and runs in its own session as a crawl
subprocess does, so a terminal's Ctrl-C reaches it once, through the CLI.

Only a process with no other Python thread and no Twisted reactor may be forked (a thread's
locks would stay held in the copy; Scrapy installs its own reactor), and only one that has
run no OpenCV (its thread pool's locks): the CLI before a crawl is such a process.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading

# What a crawl imports before its first request (the spiders' modules, the store's pyarrow and
# the pandas that pyarrow loads with its first table), imported by the fork while it waits.
WARM = ("scrapy.cmdline", "scrapy.crawler", "scrapy.commands.crawl", "scrapy.core.engine", "scrapy.core.scheduler",
        "scrapy.core.downloader.handlers.http11", "spiders.settings", "spiders.crawlers.getchu",
        "spiders.crawlers.myanimelist", "spiders.crawlers.deviantart", "spiders.middlewares", "spiders.dupefilter",
        "spiders.pipelines.validate", "spiders.pipelines.optout", "spiders.pipelines.repeats",
        "spiders.pipelines.store")


def can_fork() -> bool:
    return hasattr(os, "fork") and threading.active_count() == 1 and "twisted.internet.reactor" not in sys.modules


def _scrapy_parts() -> list[str]:
    """The classes a crawler with headshot's settings loads as it starts: its extensions,
    middlewares, download handlers, scheduler, queues, dupe filter and the rest."""
    from scrapy.settings import Settings
    from scrapy.utils.conf import build_component_list

    import spiders.settings as ours

    settings = Settings()
    settings.setmodule(ours, priority="project")
    names = []
    for key in ("EXTENSIONS", "DOWNLOADER_MIDDLEWARES", "SPIDER_MIDDLEWARES", "ITEM_PIPELINES"):
        names += build_component_list(settings.getwithbase(key))
    names += [v for v in settings.getwithbase("DOWNLOAD_HANDLERS").values() if isinstance(v, str)]
    for key in ("SCHEDULER", "SCHEDULER_PRIORITY_QUEUE", "SCHEDULER_DISK_QUEUE", "SCHEDULER_MEMORY_QUEUE",
                "DUPEFILTER_CLASS", "STATS_CLASS", "LOG_FORMATTER", "REQUEST_FINGERPRINTER_CLASS",
                "ROBOTSTXT_PARSER", "SPIDER_LOADER_CLASS", "TWISTED_DNS_RESOLVER", "ITEM_PROCESSOR", "TWISTED_REACTOR"):
        if isinstance(settings.get(key), str):
            names.append(settings.get(key))
    return [n for n in names if isinstance(n, str)]


def _warm() -> None:
    import importlib

    for name in WARM:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001  (the crawl itself reports what cannot be imported)
            pass
    try:
        from scrapy.utils.misc import load_object, walk_modules_iter

        for path in _scrapy_parts():
            try:
                load_object(path)
            except Exception:  # noqa: BLE001
                pass
        list(walk_modules_iter("scrapy.commands"))  # `scrapy crawl` lists every command first
        importlib.import_module("itemadapter")
    except Exception:  # noqa: BLE001
        pass
    try:
        import pyarrow as pa

        pa.array([0])  # pyarrow imports pandas with its first array
    except Exception:  # noqa: BLE001
        pass


class Prestarted:
    """The forked crawl process, waiting for its command line."""

    def __init__(self) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        rfd, wfd = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            os.close(wfd)
            self._child(rfd)  # never returns
        os.close(rfd)
        self.wfd: int | None = wfd

    def run(self, argv: list[str], quiet: bool = False) -> int:
        """Run `argv` (a `python -m scrapy crawl ...` command line) in the fork; its exit code."""
        msg = json.dumps({"argv": argv[3:], "quiet": quiet}).encode()
        try:
            view = memoryview(msg)
            while view:
                view = view[os.write(self.wfd, view):]
        except OSError:
            pass  # the fork is gone: its exit status says how
        self._close()
        while True:
            try:
                _, status = os.waitpid(self.pid, 0)
                return os.waitstatus_to_exitcode(status)
            except KeyboardInterrupt:
                os.kill(self.pid, signal.SIGINT)  # Scrapy's clean stop; a second one forces it
            except ChildProcessError:
                return 1

    def cancel(self) -> None:
        """The CLI will not crawl: the fork ends now (it has written nothing)."""
        if self.wfd is None:
            return
        self._close()
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass

    def _close(self) -> None:
        if self.wfd is not None:
            os.close(self.wfd)
            self.wfd = None

    @staticmethod
    def _child(rfd: int) -> None:
        code = 1
        try:
            os.setsid()
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # until the crawl installs Scrapy's own
            from manifests.workers import die_with_parent

            die_with_parent()
            # In a thread: Scrapy inspects the importing stack, which in the CLI is deep.
            t = threading.Thread(target=_warm, name="headshot-warm")
            t.start()
            t.join()
            chunks = []
            while chunk := os.read(rfd, 65536):
                chunks.append(chunk)
            os.close(rfd)
            if not chunks:
                code = 0
                return
            msg = json.loads(b"".join(chunks))
            if msg["quiet"]:
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, 1)
                os.dup2(null, 2)
            os.environ["SCRAPY_SETTINGS_MODULE"] = "spiders.settings"
            signal.signal(signal.SIGINT, signal.default_int_handler)
            from scrapy.cmdline import execute

            try:
                execute(["scrapy", *msg["argv"]])
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:  # noqa: BLE001  (the fork must never return into the CLI's code)
            import traceback

            traceback.print_exc()
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)  # the rows and the JOBDIR are written; nothing is left to tear down


def prestart() -> Prestarted | None:
    """The fork, or None where this process may not be forked (then `crawl` starts a new one)."""
    return Prestarted() if can_fork() else None
