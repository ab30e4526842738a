"""Review queue speed, in real headless Chromium (Debian's package, driven by Playwright).

1. Keyboard labelling: 1,000 crops decided one key press each (a/r/s in a fixed pattern, the
   focus moving on by itself) until all 1,000 are saved in review.sqlite, with the active
   learner training in the background as it would for a user. Reported as decisions per
   minute next to the seed's 83 (15,000 images in three hours, one at a time).
2. Time to first grid: the queue page opened on a workspace of 50,000 crops, from navigation
   until the first screen of crops has its images decoded; and the same on 1,000 crops, so the
   ratio says what the size costs. The server's start (reading the manifests) is reported apart.

Usage: python -m bench review [--crops 50000] [--decisions 1000]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from curation.review.sample import make_review_workspace
from curation.review.server import ReviewServer
from curation.review.store import ReviewStore
from manifests.workspace import Workspace
from replicas.drawn import draw_face

SEED_RATE = 15000 / 180  # decisions per minute by hand: 15,000 images in three hours
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]
FIRST_SCREEN = """() => {
  const cells = [...document.querySelectorAll('.cell')];
  const visible = cells.filter(c => c.getBoundingClientRect().top < innerHeight);
  return visible.length > 0 && visible.every(c => c.querySelector('img').complete && c.querySelector('img').naturalWidth > 0);
}"""


def _browser(p):
    return p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=ARGS)


def label_speed(root: Path, decisions: int) -> dict:
    from playwright.sync_api import sync_playwright

    ws = Workspace.open(root / "label")
    # ~45% are doubtful: enough queue for every key
    make_review_workspace(ws, int(decisions * 2.4), seed=3, draw=draw_face)
    pattern = "aaaraaasaraaaara"
    with ReviewServer(ws, port=0, learner=True) as server, sync_playwright() as p:
        left = server.queue.counts()["left"]
        assert left >= decisions, f"only {left} crops in the queue"
        browser = _browser(p)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.add_init_script("localStorage.setItem('headshot.reviewer', 'bench')")
        page.goto(server.url)
        page.wait_for_selector("body[data-ready='1']")
        lat = []
        start = time.perf_counter()
        for n in range(decisions):
            t = time.perf_counter()
            page.keyboard.press(pattern[n % len(pattern)])
            lat.append(time.perf_counter() - t)
        page.wait_for_selector("body[data-pending='0']", state="attached", timeout=600_000)
        seconds = time.perf_counter() - start
        browser.close()
    with ReviewStore(ws.review_db) as store:
        saved = sum(1 for s in store.current().values() if s.decision)
    rate = saved / seconds * 60
    return {"decisions": saved, "seconds": round(seconds, 2), "per_minute": round(rate),
            "vs_seed": round(rate / SEED_RATE, 1), "key_ms_median": round(1000 * statistics.median(lat), 1),
            "key_ms_p95": round(1000 * sorted(lat)[int(0.95 * len(lat))], 1)}


def first_grid(root: Path, crops: int) -> dict:
    from playwright.sync_api import sync_playwright

    ws = Workspace.open(root / f"grid{crops}")
    t = time.perf_counter()
    make_review_workspace(ws, crops, seed=5, draw=draw_face)
    made = time.perf_counter() - t
    t = time.perf_counter()
    with ReviewServer(ws, port=0, learner=False) as server, sync_playwright() as p:
        started = time.perf_counter() - t
        browser = _browser(p)
        times = []
        for _ in range(3):
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            t = time.perf_counter()
            page.goto(server.url)
            page.wait_for_selector("body[data-ready='1']")
            page.wait_for_function(FIRST_SCREEN)
            times.append(time.perf_counter() - t)
            page.close()
        browser.close()
        total = server.queue.counts()["total"]
    return {"crops": total, "made_s": round(made, 1), "server_start_s": round(started, 2),
            "first_grid_s": round(statistics.median(times), 3)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--crops", type=int, default=50_000)
    ap.add_argument("--decisions", type=int, default=1000)
    args = ap.parse_args(argv)
    if not Path("/usr/bin/chromium").exists():
        print("## review queue: skipped (/usr/bin/chromium is missing: apt-get install chromium)")
        return {}
    with tempfile.TemporaryDirectory(prefix="headshot-bench-review-") as tmp:
        root = Path(tmp)
        lab = label_speed(root, args.decisions)
        small = first_grid(root, 1000)
        big = first_grid(root, args.crops)
    print("## review queue (headless Chromium, python -m bench review)\n")
    print(f"- keyboard labelling: {lab['decisions']} decisions saved in {lab['seconds']} s = "
          f"**{lab['per_minute']} decisions/min**, {lab['vs_seed']}x the seed's {SEED_RATE:.0f}/min by hand "
          f"(key press to next focus: median {lab['key_ms_median']} ms, p95 {lab['key_ms_p95']} ms)")
    print(f"- time to first grid: {big['crops']} crops **{big['first_grid_s']} s**, {small['crops']} crops "
          f"{small['first_grid_s']} s (ratio {big['first_grid_s'] / small['first_grid_s']:.2f}x); server start "
          f"(reading the manifests) {big['server_start_s']} s vs {small['server_start_s']} s")
    return {"label": lab, "grid_small": small, "grid_big": big}


if __name__ == "__main__":
    main()
