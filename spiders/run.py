"""Run a crawl in its own process (Scrapy's reactor cannot restart inside one process).

`headshot crawl` and a Prefect task both go through `crawl()`: it builds the `scrapy crawl`
command line, keeps a JOBDIR per source and query in the workspace so that a stopped or
killed crawl resumes where it was, and removes that JOBDIR once a crawl has finished, so that
the next crawl of the same query starts over and fetches only what is new.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from manifests.workspace import Workspace, new_run_id

SOURCES = ("getchu", "myanimelist", "deviantart")
FINISHED_MARKER = "headshot-finished"
CLOSED_MARKER = "headshot-closed"  # written only by a clean close; absent after a kill


@dataclass(frozen=True)
class CrawlRequest:
    source: str
    args: dict[str, str] = field(default_factory=dict)  # spider arguments (query, since, ...)
    settings: dict[str, str] = field(default_factory=dict)  # Scrapy settings (--set KEY=VALUE)

    def job_key(self) -> str:
        """Same source, arguments and site addresses -> same JOBDIR (so a rerun resumes)."""
        sites = {k: v for k, v in self.settings.items() if k.endswith("_URL")}
        blob = json.dumps({"source": self.source, "args": self.args, "sites": sites}, sort_keys=True)
        return f"{self.source}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def parse_assignments(pairs: list[str], what: str) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"bad {what} {pair!r}: write KEY=VALUE")
        out[key.strip()] = value
    return out


def command(req: CrawlRequest, ws: Workspace, run_id: str) -> tuple[list[str], Path]:
    if req.source not in SOURCES:
        raise ValueError(f"unknown source {req.source!r}: choose one of {', '.join(SOURCES)}")
    jobdir = ws.crawl_jobs / req.job_key()
    settings = {"HEADSHOT_HOME": str(ws.home), "HEADSHOT_RUN_ID": run_id, "JOBDIR": str(jobdir), **req.settings}
    argv = [sys.executable, "-m", "scrapy", "crawl", req.source]
    for k, v in settings.items():
        argv += ["-s", f"{k}={v}"]
    for k, v in req.args.items():
        argv += ["-a", f"{k}={v}"]
    return argv, jobdir


def _die_with_parent() -> None:
    # If `headshot crawl` is killed, its scrapy process must not go on writing alone.
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


# Scrapy's start-up (its JOBDIR files, the first rows) needs this much; on a disk with less, the
# crawl would end in Scrapy's own traceback before the store could say why.
MIN_FREE = 256 * 1024


def _check_room(jobdir: Path) -> None:
    """DiskFull (one line from the CLI) when the workspace's disk cannot even start a crawl."""
    from manifests.atomic import DiskFull, free_bytes, space_for

    with space_for(jobdir.parent, MIN_FREE):
        jobdir.mkdir(parents=True, exist_ok=True)
    free = free_bytes(jobdir)
    if free is not None and free < MIN_FREE:
        raise DiskFull(jobdir.parent, MIN_FREE, free)


def crawl(req: CrawlRequest, ws: Workspace, quiet: bool = False, prestarted=None) -> int:
    """Run the crawl to its end; returns scrapy's exit code.

    prestarted: a `spiders.prestart.Prestarted` fork to run it in (`headshot crawl` starts one
    as it begins, so that nothing is imported twice); otherwise a new interpreter runs it."""
    run_id = new_run_id(f"crawl-{req.source}")
    argv, jobdir = command(req, ws, run_id)
    _check_room(jobdir)
    env = {**os.environ, "SCRAPY_SETTINGS_MODULE": "spiders.settings"}
    code = prestarted.run(argv, quiet) if prestarted is not None else _run_process(argv, env, quiet)
    if code == 0 and (jobdir / FINISHED_MARKER).exists():
        shutil.rmtree(jobdir, ignore_errors=True)
    return code


def _run_process(argv: list[str], env: dict[str, str], quiet: bool) -> int:
    # Its own session, so a terminal's Ctrl-C reaches scrapy once, through us: one SIGINT is
    # Scrapy's clean stop (the JOBDIR is saved and the next run resumes from it), a second forces it.
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL if quiet else None,
                            stderr=subprocess.DEVNULL if quiet else None, preexec_fn=_die_with_parent,
                            start_new_session=True)
    while True:
        try:
            return proc.wait()
        except KeyboardInterrupt:
            proc.send_signal(signal.SIGINT)
