"""A dead host in a URL list: 100 URLs on one host that accepts connections and never answers.

`headshot ingest list.txt` (the real CLI, in a subprocess, fresh workspace, default settings)
against a naive loop of `urllib.request.urlopen(url, timeout=30)`. The naive loop would take
minutes, so only its first 2 URLs are timed and the figure is that mean x the URL count. A
third row runs the same URLs through `Fetcher` in this process with robots.txt off, to show
that the dead-host rule, not the robots.txt cache, is what ends the run early."""

from __future__ import annotations

import collections
import concurrent.futures as cf
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def silent_host() -> socket.socket:
    """A listening socket on 127.0.0.1 whose connections are accepted, held open, never answered."""
    sock = socket.create_server(("127.0.0.1", 0), backlog=128)
    held: list[socket.socket] = []

    def accept_forever() -> None:
        while True:
            try:
                held.append(sock.accept()[0])
            except OSError:
                return  # closed at the end of the bench

    threading.Thread(target=accept_forever, daemon=True).start()
    return sock


def headshot_cli() -> list[str]:
    exe = REPO / ".venv" / "bin" / "headshot"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "pipelines.cli"]


def run_cli(urls: list[str], root: Path) -> tuple[float, collections.Counter, str]:
    from manifests import tables
    from manifests.records import ScrapedImage
    from manifests.workspace import Workspace

    listing = root / "list.txt"
    listing.write_text("\n".join(urls) + "\n")
    home = root / "ws"
    t = time.perf_counter()
    out = subprocess.run([*headshot_cli(), "--home", str(home), "ingest", str(listing), "--no-progress"],
                         capture_output=True, text=True, timeout=3600, cwd=REPO)
    took = time.perf_counter() - t
    assert out.returncode == 0, out.stderr[-2000:]
    rows = tables.read_records(Workspace.open(home), ScrapedImage)
    assert len(rows) == len(urls), (len(rows), out.stdout)
    statuses = collections.Counter(r.status for r in rows)
    first = min(rows, key=lambda r: "earlier in this run" in r.reason).reason
    return took, statuses, first


def run_fetcher_without_robots(urls: list[str]) -> tuple[float, collections.Counter]:
    from curation.fetch import FetchConfig, Fetcher

    fetcher = Fetcher(replace(FetchConfig(), obey_robots=False))
    t = time.perf_counter()
    with cf.ThreadPoolExecutor(4) as pool:  # ingest's download_threads default
        results = list(pool.map(fetcher.fetch, urls))
    return time.perf_counter() - t, collections.Counter(r.status for r in results)


def naive_per_url(urls: list[str], timeout: float = 30.0) -> float:
    times = []
    for url in urls:
        t = time.perf_counter()
        try:
            urllib.request.urlopen(url, timeout=timeout).read()
        except OSError:
            pass  # the timeout: what is being measured
        times.append(time.perf_counter() - t)
    return sum(times) / len(times)


def main(n: int = 100) -> dict:
    sock = silent_host()
    port = sock.getsockname()[1]
    urls = [f"http://127.0.0.1:{port}/art/{i:03d}.jpg" for i in range(n)]
    root = Path(tempfile.mkdtemp(prefix="headshot-bench-dead-"))
    try:
        cli_s, statuses, first = run_cli(urls, root)
        fetcher_s, fetcher_statuses = run_fetcher_without_robots(urls)
        naive_s = naive_per_url(urls[:2]) * n
    finally:
        sock.close()
        shutil.rmtree(root, ignore_errors=True)
    result = {"urls": n, "headshot_ingest_s": round(cli_s, 1), "fetcher_no_robots_s": round(fetcher_s, 1),
              "naive_estimate_s": round(naive_s), "statuses": dict(statuses), "first_reason": first}
    print("## dead host")
    print(f"{n} URLs on one host that accepts connections and never answers; default settings (30 s read timeout, "
          f"3 retries, 1 s per-host delay). Rows: {dict(statuses)}; the first says: {first!r}")
    print("| | wall time (s) |\n|---|---|")
    print(f"| headshot ingest (CLI, subprocess, fresh workspace, robots.txt obeyed) | {result['headshot_ingest_s']} |")
    print(f"| headshot Fetcher, robots.txt off, 4 threads ({dict(fetcher_statuses)}) | {result['fetcher_no_robots_s']} |")
    print(f"| naive urlopen(url, timeout=30) loop, estimated: mean of its first 2 URLs x {n} | {result['naive_estimate_s']} |")
    return result


if __name__ == "__main__":
    main()
