"""`headshot crawl` forks its crawl process as it begins (spiders/prestart.py): a fork that is
never given a command line ends (cancelled, or its CLI gone), a command line given to it runs
to its exit code, and no fork is made where another thread runs."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _script(body: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(body)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def _gone(pid: int, within: float = 20.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True  # ended; only its parent's wait is missing
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


def test_a_cancelled_fork_ends_and_a_fork_runs_the_command_it_is_given():
    out = _script("""
        import os, sys
        from spiders.prestart import prestart
        p = prestart()
        assert p is not None
        child = p.pid
        p.cancel()
        print("cancelled", child, os.path.exists(f"/proc/{child}"))
        q = prestart()
        # A `scrapy` command line of its own: `version` prints and exits 0, an unknown command exits 2.
        print("version", q.run([sys.executable, "-m", "scrapy", "version"]))
        print("unknown", prestart().run([sys.executable, "-m", "scrapy", "no-such-command"]))
    """)
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines() if " " in line)
    assert lines["cancelled"].split()[1] == "False"
    assert lines["version"] == "0" and "Scrapy" in out.stdout
    assert lines["unknown"] == "2"


def test_a_fork_whose_cli_dies_before_the_command_line_ends_too():
    out = _script("""
        import os
        from spiders.prestart import prestart
        p = prestart()
        print(p.pid, flush=True)
        os._exit(0)  # as a CLI killed while reading its config
    """)
    assert out.returncode == 0, out.stderr
    assert _gone(int(out.stdout.split()[0]))


def test_no_fork_beside_another_thread():
    out = _script("""
        import threading
        from spiders.prestart import can_fork, prestart
        print("alone", can_fork())
        ev = threading.Event()
        t = threading.Thread(target=ev.wait)
        t.start()
        print("beside a thread", can_fork(), prestart())
        ev.set()
        t.join()
    """)
    assert out.returncode == 0, out.stderr
    assert "alone True" in out.stdout
    assert "beside a thread False None" in out.stdout


def test_a_bad_crawl_command_ends_at_once_and_leaves_no_process(tmp_path):
    t = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "pipelines.cli", "--home", str(tmp_path / "ws"), "crawl", "nosuch"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "unknown source 'nosuch'" in out.stderr
    # The fork was ended, not left to finish its imports: nothing of it holds the output pipes
    # (run() returned), and it printed nothing.
    assert "Traceback" not in out.stderr
    assert time.monotonic() - t < 30
    leftovers = subprocess.run(["pgrep", "-f", f"{tmp_path / 'ws'}"], capture_output=True, text=True).stdout.split()
    assert [p for p in leftovers if int(p) != os.getpid()] == []
