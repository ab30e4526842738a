"""The workspace: one folder that holds originals, crops, manifests, datasets and runs."""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

DEFAULT_HOME = "workspace"
ENV_HOME = "HEADSHOT_HOME"


class WorkspaceBusy(RuntimeError):
    """Another headshot process is writing to this workspace."""


# A forked child (a decoding worker) shares the parent's lock file description; if it kept
# the descriptor, the lock would outlive a killed parent. Children drop it at once (closing
# a duplicate does not release the parent's lock; LOCK_UN would).
_HELD_LOCKS: set[int] = set()


def _drop_inherited_locks() -> None:
    for fd in list(_HELD_LOCKS):
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD_LOCKS.clear()


os.register_at_fork(after_in_child=_drop_inherited_locks)


def _writer_alive(temp_name: str) -> bool:
    """Whether the process that is writing a temp file (`.tmp-<name>-<pid>-<random>`) still runs."""
    try:
        pid = int(temp_name.rsplit("-", 2)[-2])
    except (ValueError, IndexError):
        return False
    if pid == os.getpid():
        return True  # another thread of this process may be writing it now (a crawl stores as it goes)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def resolve_home(home: str | os.PathLike[str] | None = None) -> Path:
    """`--home` wins, then HEADSHOT_HOME, then ./workspace."""
    chosen = home if home not in (None, "") else os.environ.get(ENV_HOME) or DEFAULT_HOME
    return Path(chosen).expanduser().resolve()


def utcnow() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def new_run_id(stage: str) -> str:
    """Sortable by time, unique across processes: `<stage>-<UTC time>-<random>`."""
    return f"{stage}-{utcnow().strftime('%Y%m%dT%H%M%S%fZ')}-{secrets.token_hex(3)}"


@dataclass(frozen=True)
class Workspace:
    home: Path

    @classmethod
    def open(cls, home: str | os.PathLike[str] | None = None, create: bool = True) -> "Workspace":
        ws = cls(resolve_home(home))
        if create:
            for d in (ws.images, ws.crops, ws.manifests, ws.datasets, ws.runs, ws.tmp):
                d.mkdir(parents=True, exist_ok=True)
        return ws

    images = property(lambda self: self.home / "images")
    crops = property(lambda self: self.home / "crops")
    manifests = property(lambda self: self.home / "manifests")
    datasets = property(lambda self: self.home / "datasets")
    runs = property(lambda self: self.home / "runs")  # training runs, and nothing else
    tmp = property(lambda self: self.home / "tmp")
    review_db = property(lambda self: self.home / "review.sqlite")
    # Derived files that can be rebuilt from the tables (features, the review learner's cache).
    cache = property(lambda self: self.home / "cache")
    # The near-duplicate indexes, one folder per hash setting.
    nearindex = property(lambda self: self.manifests / "nearindex")
    # Which crops the latest process run's settings make (curation/selection.py).
    selection_file = property(lambda self: self.manifests / "selection.json")
    # Scrapy's resume state of unfinished crawls, one folder per crawl request.
    crawl_jobs = property(lambda self: self.home / "crawl-jobs")

    def relative(self, path: Path) -> str:
        return path.relative_to(self.home).as_posix()

    def absolute(self, rel: str) -> Path:
        p = (self.home / rel).resolve()
        if self.home not in p.parents:
            raise ValueError(f"{rel!r} points outside the workspace")
        return p

    def crop_file(self, rel: str) -> Path:
        """The crop file a manifest row names, only if it lies in crops/ once every symlink is
        resolved: a crafted crop_path must never hand out review.sqlite, a manifest or a file a
        link inside crops/ points at."""
        try:
            crops = self.crops.resolve()
            p = (self.home / rel).resolve()
        except (OSError, RuntimeError, ValueError) as exc:  # a symlink loop, a NUL byte
            raise ValueError(f"crop path {rel!r} cannot be resolved: {exc}") from None
        if crops not in p.parents:
            raise ValueError(f"crop path {rel!r} is not inside {crops}")
        return p

    @contextlib.contextmanager
    def writer_lock(self, what: str = "write", wait: float = 0.0, clean: bool = True) -> Iterator[None]:
        """One writer at a time; a killed writer's lock goes with its process.

        `wait` seconds: how long to wait for another writer to finish (0: fail at once with
        WorkspaceBusy). Stages take it only to commit rows, so a wait is short. `clean`: remove
        the temp files of writers that died, on the way in and out (a stage does it once a run,
        not at every part it commits: it walks every blob and crop folder)."""
        self.manifests.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.manifests / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline = time.monotonic() + wait
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() < deadline:
                        time.sleep(0.05)
                        continue
                    holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
                    raise WorkspaceBusy(
                        f"the workspace {self.home} is busy ({holder or 'another headshot process'}); "
                        "wait for it to finish or stop it"
                    ) from None
            _HELD_LOCKS.add(fd)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} running {what}".encode(), 0)
            if clean:
                self._clean_stale_temps()
            try:
                yield
            finally:
                # A temp file whose writer has ended is one a failed write (a full disk, a
                # killed worker) could not remove. Gone before the lock is.
                if clean:
                    self._clean_stale_temps()
        finally:
            _HELD_LOCKS.discard(fd)
            os.close(fd)

    def _clean_stale_temps(self) -> None:
        # Stages write blobs and crops while they run, without the lock: only a temp file whose
        # writing process is gone is stale (its name carries the writer's pid).
        for pattern in (self.manifests.glob(".tmp-*"), self.tmp.glob(".tmp-*"),
                        self.images.glob("*/.tmp-*"), self.crops.glob("*/.tmp-*")):
            for p in pattern:
                if not _writer_alive(p.name):
                    p.unlink(missing_ok=True)
