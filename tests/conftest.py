"""Shared fixtures: the ../shared data folder, a fresh workspace, and a local HTTP site."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import signal
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable

import pytest

REPO = Path(__file__).resolve().parents[1]

# A suite started in the background of a non-interactive shell (`make test &`, nohup) inherits
# SIGINT ignored, and every command a test starts would inherit that too: the tests that press
# Ctrl-C on a crawl or a training would see it ignored. A handler here is reset to the default
# in each child at exec, so children get a normal Ctrl-C whoever started the suite.
# The same after a test whose code left SIGINT ignored in this process: checked before each test.
def _normal_ctrl_c() -> None:
    if signal.getsignal(signal.SIGINT) in (signal.SIG_IGN, None):
        signal.signal(signal.SIGINT, signal.default_int_handler)


_normal_ctrl_c()


@pytest.fixture(autouse=True)
def normal_ctrl_c():
    _normal_ctrl_c()
    yield


def shared_path(*parts: str) -> Path:
    """A path in the shared folder: $HEADSHOT_SHARED when set, else ../shared beside the repository.

    The one place that knows where the folder is (tests/test_shared_fixture.py holds every other
    test module to it). For module-level constants (parametrize lists, module skips, --regen
    scripts: `from tests.conftest import shared_path`); a test takes the `shared_data` fixture."""
    root = os.environ.get("HEADSHOT_SHARED") or REPO.parent / "shared"
    return Path(root).joinpath(*parts)


SHARED = shared_path()
SHARED_DATA = SHARED / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "SHA256SUMS").exists():
        pytest.skip(f"../shared/data is absent ({SHARED_DATA}): these tests read real images from it")
    return SHARED_DATA


@pytest.fixture
def ws(tmp_path):
    from manifests.workspace import Workspace

    return Workspace.open(tmp_path / "ws")


@dataclass
class Route:
    """What the site answers on one path: a list of (status, headers, body), one per request,
    the last repeated."""

    responses: list[tuple[int, dict[str, str], bytes]]
    hits: list[float] = field(default_factory=list)


class Site:
    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.log: list[tuple[float, str, dict[str, str]]] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def url(self, path: str) -> str:
        return self.base + path

    def add(self, path: str, *responses: tuple[int, dict[str, str], bytes]) -> str:
        self.routes[path] = Route(list(responses))
        return self.url(path)

    def hits(self, path: str) -> list[float]:
        return self.routes[path].hits

    def _handler(self) -> Callable:
        site = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output quiet
                pass

            def do_GET(self) -> None:
                now = time.monotonic()
                with site.lock:
                    site.log.append((now, self.path, dict(self.headers)))
                    route = site.routes.get(self.path)
                    if route is None:
                        status, headers, body = 404, {"Content-Type": "text/plain"}, b"not found"
                    else:
                        route.hits.append(now)
                        i = min(len(route.hits) - 1, len(route.responses) - 1)
                        status, headers, body = route.responses[i]
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                if "Content-Length" not in headers:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler


@pytest.fixture
def site():
    s = Site()
    s.thread.start()
    yield s
    s.server.shutdown()
    s.server.server_close()


def _mount_tmpfs(path: Path, size: str) -> str:
    """'' when a tmpfs of `size` is mounted at `path`, else why it cannot be."""
    import subprocess

    if os.geteuid() != 0:
        return "a full disk is simulated on a small tmpfs, which needs root to mount"
    path.mkdir(parents=True, exist_ok=True)
    try:
        out = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"cannot run mount: {exc}"
    return "" if out.returncode == 0 else f"cannot mount a tmpfs here: {out.stderr.strip() or out.returncode}"


@pytest.fixture
def small_disk(tmp_path):
    """A folder on its own 8 MiB filesystem (a tmpfs), so a test can fill it: `small_disk.fill()`
    leaves about `keep` bytes free, `small_disk.free()` removes the filler. Skipped, with the
    reason, where it cannot be mounted (not root, no mount permission)."""
    import subprocess

    root = tmp_path / "small-disk"
    why = _mount_tmpfs(root, "8m")
    if why:
        pytest.skip(why)

    class Disk:
        path = root
        filler = root / ".filler"

        def fill(self, keep: int = 0) -> None:
            """Fill the disk, leaving about `keep` bytes (tmpfs counts whole 4 KiB pages)."""
            st = os.statvfs(root)
            free = st.f_bavail * st.f_frsize
            with open(self.filler, "ab") as f:
                f.write(b"\0" * max(0, free - keep))
            # Fill the last pages too, when keep is 0: writes until ENOSPC.
            if keep == 0:
                try:
                    with open(self.filler, "ab") as f:
                        while True:
                            f.write(b"\0" * 4096)
                            f.flush()
                except OSError:
                    pass

        def free(self) -> None:
            self.filler.unlink(missing_ok=True)

        def available(self) -> int:
            st = os.statvfs(root)
            return st.f_bavail * st.f_frsize

    try:
        yield Disk()
    finally:
        subprocess.run(["umount", "-l", str(root)], capture_output=True, timeout=30)


# --- Debian's Chromium, one per session for every browser test (review queue, generator page) ---
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]

def ensure_chromium() -> Path:
    """Debian's chromium package, installed on first use (never a downloaded browser build)."""
    if CHROMIUM.exists():
        return CHROMIUM
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("/usr/bin/chromium is missing and cannot be installed here (apt-get as root): "
                    "apt-get install chromium")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-q", "chromium"]):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode:
            raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return CHROMIUM


@pytest.fixture(scope="session")
def browser():
    path = ensure_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(path), headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def run_async():
    """`run_async(main)`: asyncio.run(main()) in a thread of its own, since the session's browser
    (Playwright's sync API) keeps an event loop running in the main thread once it has started."""

    def run(main):
        box: dict = {}

        def target() -> None:
            try:
                box["out"] = asyncio.run(main())
            except BaseException as exc:  # noqa: BLE001  (re-raised in the test's thread)
                box["err"] = exc

        t = threading.Thread(target=target, name="test-event-loop")
        t.start()
        t.join()
        if "err" in box:
            raise box["err"]
        return box.get("out")

    return run
