"""Which dataset versions were trained: `<home>/flows/trained.json`, so that train-when-ready
trains a version once, whoever triggers it and however often.

    {"faces": {"<content hash>": {"version": 3, "run": "faces-v3-...", "state": "started" | "finished",
                                   "started_at": ..., "finished_at": ..., "attempts": 1, "error": ""}}}

Two locks, both flock (the kernel drops them when their process dies, SIGKILL included):
- `trained.lock`, held from reading the record to writing "started": two triggers at once
  cannot both decide to train;
- `training-<hash>.lock`, held for the whole training: a "started" entry whose lock nobody
  holds is a training that crashed or was stopped, and the next trigger retries it (resuming
  its run from its last checkpoint); one whose lock is held is being trained right now.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from manifests.atomic import write_bytes_atomic
from manifests.workspace import Workspace, utcnow

# A forked child must not keep our lock descriptors: the lock would outlive a killed parent.
_HELD: set[int] = set()


def _drop_inherited() -> None:
    for fd in list(_HELD):
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD.clear()


os.register_at_fork(after_in_child=_drop_inherited)


def flows_dir(ws: Workspace) -> Path:
    return ws.home / "flows"


def record_path(ws: Workspace) -> Path:
    return flows_dir(ws) / "trained.json"


def read_record(ws: Workspace) -> dict[str, dict[str, dict[str, Any]]]:
    try:
        return json.loads(record_path(ws).read_text())
    except FileNotFoundError:
        return {}


def _write(ws: Workspace, doc: dict) -> None:
    write_bytes_atomic(record_path(ws), json.dumps(doc, indent=1, sort_keys=True).encode())


def _open_lock(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    fd = _open_lock(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        _HELD.add(fd)
        yield
    finally:
        _HELD.discard(fd)
        os.close(fd)


def _try_lock(path: Path) -> int | None:
    """The descriptor holding `path`'s lock, or None when another holds it."""
    fd = _open_lock(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    _HELD.add(fd)
    return fd


@dataclass
class Claim:
    """The right to train one version: held until `finish` or `release`."""

    ws: Workspace
    name: str
    content_hash: str
    run: str
    resume: bool  # go on with `run` (a crashed or stopped training) rather than start it
    attempt: int
    fd: int | None = field(default=None, repr=False)

    def _update(self, **changes: Any) -> None:
        with _locked(flows_dir(self.ws) / "trained.lock"):
            doc = read_record(self.ws)
            doc.setdefault(self.name, {}).setdefault(self.content_hash, {}).update(changes)
            _write(self.ws, doc)

    def finish(self, **details: Any) -> None:
        self._update(state="finished", finished_at=utcnow().isoformat(), error="", **details)

    def note_error(self, error: str) -> None:
        """The training failed: the entry stays "started", so the next trigger retries it."""
        self._update(error=error)

    def release(self) -> None:
        if self.fd is not None:
            _HELD.discard(self.fd)
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> "Claim":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def claim(ws: Workspace, name: str, version: int, content_hash: str, new_run: str) -> Claim | str:
    """A Claim to train version `version` of `name` (content `content_hash`), or why not: it was
    trained, or another process is training it now. `new_run`: the run name for a first try."""
    with _locked(flows_dir(ws) / "trained.lock"):
        doc = read_record(ws)
        entry = doc.get(name, {}).get(content_hash)
        if entry and entry.get("state") == "finished":
            return (f"{name} v{entry['version']} (content {content_hash[:12]}) was trained already: "
                    f"run {entry['run']}")
        fd = _try_lock(flows_dir(ws) / f"training-{content_hash[:16]}.lock")
        if fd is None:
            run = entry["run"] if entry else "?"
            return f"{name} v{version} is being trained now (run {run}) by another trigger"
        resume = bool(entry) and (ws.runs / entry["run"] / "checkpoints" / "last.pt").is_file()
        run = entry["run"] if resume else new_run
        attempt = int(entry.get("attempts", 0)) + 1 if entry else 1
        doc.setdefault(name, {})[content_hash] = {
            "version": version, "run": run, "state": "started", "started_at": utcnow().isoformat(),
            "attempts": attempt, "pid": os.getpid(), "error": (entry or {}).get("error", ""),
            **({"previous_run": entry["run"]} if entry and not resume else {})}
        _write(ws, doc)
        return Claim(ws, name, content_hash, run, resume, attempt, fd)


def last_trained(ws: Workspace, name: str) -> dict[str, Any] | None:
    """The entry of the version of `name` finished last, or None."""
    done = [dict(e, content_hash=h) for h, e in read_record(ws).get(name, {}).items() if e.get("state") == "finished"]
    return max(done, key=lambda e: e.get("finished_at", "")) if done else None
