"""What a flow needs around it when a command runs it: Prefect's settings for one-off runs, a
Prefect API (the configured one, checked, or a temporary server that dies with this process),
and a Ctrl-C that stops the crawls cleanly instead of waiting for them.

Why a server of our own: with no PREFECT_API_URL, Prefect starts a temporary server in a
subprocess that outlives a SIGKILLed flow (../shared/STACK.md). The one started here asks Linux
to kill it when this process ends, whatever ends it (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

SERVER_STARTUP = 90.0  # seconds: a first start with a new PREFECT_HOME migrates its database

# Set while a Ctrl-C (or SIGTERM) is stopping a flow: a crawl that ends then is not retried.
STOPPING = threading.Event()


class ApiUnreachable(RuntimeError):
    """PREFECT_API_URL names a server that does not answer, or the temporary one did not start."""


@contextlib.contextmanager
def flow_settings() -> Iterator[None]:
    """Prefect settings for a flow run from a command: no heartbeat thread (it costs ~1 s a flow
    and a one-off run has no worker to tell it is alive; the environment variable cannot say None)."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


def how_to_fix(url: str, why: str) -> str:
    return (f"the Prefect API at {url} does not answer ({why}): unset PREFECT_API_URL to run on a "
            "temporary server, or start one with `prefect server start`")


def check_api(url: str, timeout: float = 5.0) -> None:
    """ApiUnreachable, with how to fix it, unless `url` answers its health check."""
    import httpx

    try:
        r = httpx.get(url.rstrip("/") + "/health", timeout=timeout)
    except httpx.HTTPError as exc:
        raise ApiUnreachable(how_to_fix(url, type(exc).__name__ + (f": {exc}" if str(exc) else ""))) from None
    if r.status_code != 200:
        raise ApiUnreachable(how_to_fix(url, f"HTTP {r.status_code} on /health"))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def temporary_server(timeout: float = SERVER_STARTUP) -> Iterator[str]:
    """`prefect server start` on a free loopback port for the length of the block; its API URL.

    It dies with this process (PR_SET_PDEATHSIG), and sits in a session of its own so that a
    terminal's Ctrl-C reaches the flow, which still reports to it, and not the server."""
    import httpx

    from manifests.workers import die_with_parent

    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    argv = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port),
            "--no-ui", "--no-scheduler", "--no-late-runs", "--analytics-off"]
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            preexec_fn=die_with_parent, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                log.seek(0)
                tail = log.read().decode(errors="replace").strip().splitlines()[-3:]
                raise ApiUnreachable(f"the temporary Prefect server exited with code {proc.returncode}: "
                                     + (" | ".join(tail) or "no output"))
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise ApiUnreachable(f"the temporary Prefect server did not answer within {timeout:.0f} s; "
                                     "start one with `prefect server start` and set PREFECT_API_URL")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _drain_prefect_workers() -> None:
    """Send the logs and events still queued before the server they go to stops."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        try:
            worker.drain_all(timeout=10)
        except Exception:  # a worker that never started, or a server already gone: nothing to keep
            pass


@contextlib.contextmanager
def prefect_api(timeout: float = SERVER_STARTUP) -> Iterator[str]:
    """The configured Prefect API when PREFECT_API_URL is set (ApiUnreachable when it does not
    answer), else a temporary server for the block. Yields the API URL."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    configured = PREFECT_API_URL.value()
    if configured:
        check_api(configured)
        yield configured
        return
    with temporary_server(timeout) as url, temporary_settings(updates={PREFECT_API_URL: url}):
        try:
            yield url
        finally:
            _drain_prefect_workers()


# --- Ctrl-C -------------------------------------------------------------------------------------


def scrapy_children(parent: int | None = None) -> list[int]:
    """Our `scrapy crawl` child processes (Linux /proc; elsewhere none are found)."""
    me = parent or os.getpid()
    out = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == me and b"scrapy" in (entry / "cmdline").read_bytes():
                out.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return out


@contextlib.contextmanager
def stop_crawls_on_interrupt() -> Iterator[None]:
    """Ctrl-C or SIGTERM during the block: the crawls are asked to stop (one SIGINT is Scrapy's
    clean stop: its JOBDIR is kept and the next build resumes it; a second one forces it), then
    KeyboardInterrupt as usual. Needed because the crawls wait in task threads, and a signal
    reaches the main thread only; each crawl runs in a session of its own (spiders/run.py)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum, frame) -> None:
        STOPPING.set()
        for pid in scrapy_children():
            try:
                os.kill(pid, signal.SIGINT)
            except OSError:
                pass
        raise KeyboardInterrupt

    old = {s: signal.signal(s, handle) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        STOPPING.clear()
