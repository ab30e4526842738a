"""One benchmark run as a whole process: its wall time, CPU time and the peak memory of its
process tree (the main process's resident set plus the private pages, Private_Clean +
Private_Dirty of /proc/PID/smaps_rollup, of every process under it; pages a worker shares with
its parent count once), sampled every 0.25 s with wait4's exact peak RSS of the main process as
the floor; and how much of the machine other work took meanwhile. Used by bench/train_speed.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE_S = 0.25


# -- one whole process, timed and its memory watched -----------------------------------------
@dataclass
class Proc:
    cmd: list[str]
    rc: int
    wall_s: float
    peak_tree_mb: float  # sampled: main RSS + children's private pages
    peak_main_mb: float  # exact: wait4's ru_maxrss of the main process
    stdout: str
    stderr: str
    timed_out: bool = False
    cpu_s: float = 0.0  # user + system time of the process and the children it waited for

    @property
    def peak_mb(self) -> float:
        return max(self.peak_tree_mb, self.peak_main_mb)

    def last_json(self) -> dict:
        """The JSON document at the end of stdout (a single line, or headshot's indented one)."""
        text = self.stdout.strip()
        for start in [i for i, c in enumerate(text) if c == "{" and (i == 0 or text[i - 1] == "\n")][::-1]:
            try:
                return json.loads(text[start:])
            except ValueError:
                continue
        raise ValueError("no JSON at the end of its output")

    def why(self) -> str:
        tail = (self.stderr.strip() or self.stdout.strip()).splitlines()[-15:]
        what = "timed out" if self.timed_out else f"exit code {self.rc}"
        return f"{' '.join(self.cmd)}: {what}\n" + "\n".join("    " + line for line in tail)


def _kb(path: str, keys: tuple[str, ...]) -> int:
    total = 0
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(keys):
                    total += int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass  # gone, or a zombie: nothing left to count
    return total


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def tree_kb(pid: int) -> int:
    main = _kb(f"/proc/{pid}/status", ("VmRSS:",))
    return main + sum(_kb(f"/proc/{c}/smaps_rollup", ("Private_Clean:", "Private_Dirty:")) for c in _descendants(pid))


def run_measured(cmd: list[str], env: dict[str, str] | None = None, timeout: float | None = None) -> Proc:
    """Run `cmd` to its end; its wall time, peak memory (see the module's doc) and output."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=REPO, start_new_session=True)
        stop, peak, killed = threading.Event(), [0], []

        def watch() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], tree_kb(p.pid))
                if timeout is not None and time.perf_counter() - t > timeout and not killed:
                    killed.append(True)
                    try:
                        os.killpg(p.pid, signal.SIGKILL)
                    except OSError:
                        pass
                stop.wait(SAMPLE_S)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        _, status, usage = os.wait4(p.pid, 0)  # this child's own rusage, not all children's so far
        wall = time.perf_counter() - t
        stop.set()
        watcher.join()
        p.returncode = os.waitstatus_to_exitcode(status)
        if p.returncode != 0:  # a dying process can leave its workers behind
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
        out.seek(0)
        err.seek(0)
        return Proc(cmd, p.returncode, wall, peak[0] / 1024, usage.ru_maxrss / 1024, out.read(), err.read(),
                    bool(killed), usage.ru_utime + usage.ru_stime)


class MachineLoad:
    """How much of the machine other work took while the bench ran: every core's busy time
    (/proc/stat) less the bench's own processes' CPU time, as cores in use on average."""

    def __init__(self) -> None:
        self.t, self.busy = time.perf_counter(), self._busy()
        self.ours = 0.0
        self.load_start = os.getloadavg()[0]

    @staticmethod
    def _busy() -> float:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return (sum(v[:8]) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait

    def add(self, proc: Proc) -> Proc:
        self.ours += proc.cpu_s
        return proc

    def summary(self) -> dict:
        import resource

        me = resource.getrusage(resource.RUSAGE_SELF)
        wall = time.perf_counter() - self.t
        other = (self._busy() - self.busy - self.ours - me.ru_utime - me.ru_stime) / wall
        return {"other_cores": max(0.0, other), "load_start": self.load_start, "load_end": os.getloadavg()[0]}
