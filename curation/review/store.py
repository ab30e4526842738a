"""The label store: review.sqlite in the workspace.

Every decision is a row that is never deleted: the history is the table. A batch (one key
press on a selection) is one transaction. The present state of a crop is its latest row that
was not undone, whoever wrote it, so several reviewers can work at once and the last word
wins. Undo marks a reviewer's latest batch undone; the rows stay.

Tags are the user's own style labels (the number keys 1-9); a row may carry a decision, a tag
set, or both.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterable

from manifests.records import Review
from manifests.workspace import new_run_id, utcnow

DECISIONS = ("accept", "reject", "skip")
ORIGINS = ("human", "rule", "model")
_REVIEWER = re.compile(r"^[\w][\w .@-]{0,39}$")
_TAG = re.compile(r"^[^\x00-\x1f\x7f]{1,40}$")
SCHEMA_VERSION = 1

_DDL = """
CREATE TABLE IF NOT EXISTS decisions (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    batch     TEXT NOT NULL,
    crop_id   TEXT NOT NULL,
    decision  TEXT CHECK (decision IS NULL OR decision IN ('accept', 'reject', 'skip')),
    tags      TEXT,
    reviewer  TEXT NOT NULL,
    origin    TEXT NOT NULL CHECK (origin IN ('human', 'rule', 'model')),
    at        TEXT NOT NULL,
    undone_at TEXT
);
CREATE INDEX IF NOT EXISTS decisions_by_reviewer ON decisions (reviewer, seq);
CREATE INDEX IF NOT EXISTS decisions_by_crop ON decisions (crop_id, seq);
CREATE TABLE IF NOT EXISTS tags (
    key  INTEGER PRIMARY KEY CHECK (key BETWEEN 1 AND 9),
    name TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
"""
_INSERT = "INSERT INTO decisions (batch, crop_id, decision, tags, reviewer, origin, at) VALUES (?,?,?,?,?,?,?)"


class ReviewError(ValueError):
    """A decision the store refuses (bad name, decision or tag)."""


class StoreUnavailable(RuntimeError):
    """review.sqlite cannot be opened or written (a full disk, an I/O error): nothing was written.
    Not a ReviewError: the request was fine, so the page keeps it and sends it again."""

    disk_full = False  # the disk is full (the CLI's exit code 4), not another disk trouble


# SQLite's primary result codes that mean the disk, not the data: say so instead of a traceback.
_DISK_TROUBLE = {sqlite3.SQLITE_FULL: "its disk is full", sqlite3.SQLITE_IOERR: "a disk I/O error",
                 sqlite3.SQLITE_CANTOPEN: "the file cannot be opened or created"}


def _disk_trouble(exc: sqlite3.Error, path: Path, doing: str) -> StoreUnavailable | None:
    """The StoreUnavailable that `exc` means, or None when it is not about the disk."""
    why = _DISK_TROUBLE.get(getattr(exc, "sqlite_errorcode", -1) & 0xFF)
    if why is None:
        return None
    err = StoreUnavailable(f"cannot {doing} {path}: {why} ({exc}); free some space in {path.parent} "
                           "(or make it writable) and try again")
    err.disk_full = getattr(exc, "sqlite_errorcode", -1) & 0xFF == sqlite3.SQLITE_FULL
    return err


@dataclass(frozen=True)
class Change:
    """One crop's part of a batch."""

    crop_id: str
    decision: str | None = None
    tags: tuple[str, ...] | None = None


@dataclass(frozen=True)
class State:
    """A crop's present decision and tags (None: nobody decided)."""

    decision: str | None
    tags: tuple[str, ...]
    reviewer: str
    origin: str
    at: str


def check_reviewer(name: str) -> str:
    name = (name or "").strip()
    if not _REVIEWER.match(name):
        raise ReviewError(f"bad reviewer name {name!r}: 1-40 letters, digits, spaces, '.', '@' or '-'")
    return name


def check_decision(decision: str | None) -> str:
    if decision not in DECISIONS:
        raise ReviewError(f"decision {decision!r} is not one of {', '.join(DECISIONS)}")
    return decision


def check_tag(name: str) -> str:
    name = (name or "").strip()
    if not _TAG.match(name):
        raise ReviewError(f"bad tag {name!r}: 1-40 printable characters")
    return name


class ReviewStore:
    """Thread-safe; one connection per store, WAL so readers never wait for a writer."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.RLock()
        self._cache: dict[str, State] | None = None
        self._seen_version: tuple[int, int] | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(f"cannot make the folder {self.path.parent} for {self.path.name}: "
                                   f"{exc.strerror}; free some space there (or make it writable)") from None
        db = None
        try:
            db = self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=30000")
            with self._lock:
                self._db.executescript(_DDL)
                self._db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        except sqlite3.Error as exc:
            if db is not None:
                db.close()
            # Any failure here stops `headshot review` before it serves: one clear line, never a traceback.
            raise _disk_trouble(exc, self.path, "open") or StoreUnavailable(
                f"cannot open {self.path} as the review store: {exc}") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> "ReviewStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- writing -------------------------------------------------------------------------
    def record(self, changes: Iterable[Change], reviewer: str, origin: str = "human") -> str:
        """Write one batch in one transaction; returns its id."""
        rows = self._rows(changes, reviewer, origin)
        batch = rows[0][0]
        self._write(lambda db: db.executemany(_INSERT, rows), "record a decision in")
        return batch

    def _rows(self, changes: Iterable[Change], reviewer: str, origin: str) -> list[tuple]:
        """One batch's rows, every change checked before anything is written."""
        reviewer = check_reviewer(reviewer)
        if origin not in ORIGINS:
            raise ReviewError(f"origin {origin!r} is not one of {', '.join(ORIGINS)}")
        rows = []
        batch = new_run_id("batch")
        at = utcnow().isoformat()
        for c in changes:
            if c.decision is not None:
                check_decision(c.decision)
            if c.decision is None and c.tags is None:
                raise ReviewError(f"a change to {c.crop_id!r} carries neither a decision nor tags")
            tags = None if c.tags is None else json.dumps(sorted({check_tag(t) for t in c.tags}), ensure_ascii=False)
            rows.append((batch, c.crop_id, c.decision, tags, reviewer, origin, at))
        if not rows:
            raise ReviewError("an empty batch: nothing to record")
        return rows

    def record_many(self, batches: list[list[Change]], reviewer: str, origin: str = "human") -> list[str]:
        """Several batches (key presses) in one transaction, each still its own undo step: all are
        written or none, so a page that sends them again after a refusal never writes one twice."""
        rows = [self._rows(changes, reviewer, origin) for changes in batches]
        if not rows:
            raise ReviewError("no batch: nothing to record")
        self._write(lambda db: [db.executemany(_INSERT, r) for r in rows], "record decisions in")
        return [r[0][0] for r in rows]

    def _write(self, work: Callable[[sqlite3.Connection], object], doing: str) -> object:
        """Run `work` in one write transaction; a full disk becomes StoreUnavailable, nothing half-written."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    out = work(self._db)
                    self._db.execute("COMMIT")
                    return out
                except BaseException:
                    # On SQLITE_FULL or an I/O error SQLite has already rolled back by itself, and a
                    # second ROLLBACK would fail and hide the cause.
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                trouble = _disk_trouble(exc, self.path, doing)
                if trouble is None:
                    raise
                raise trouble from None

    def undo(self, reviewer: str) -> list[str]:
        """Undo the reviewer's latest batch that still stands; returns its crop ids (empty: nothing to undo)."""
        reviewer = check_reviewer(reviewer)

        def work(db: sqlite3.Connection) -> list[str]:
            row = db.execute("SELECT batch FROM decisions WHERE reviewer = ? AND undone_at IS NULL "
                             "ORDER BY seq DESC LIMIT 1", (reviewer,)).fetchone()
            if not row:
                return []
            ids = [r[0] for r in db.execute("SELECT crop_id FROM decisions WHERE batch = ?", (row[0],))]
            db.execute("UPDATE decisions SET undone_at = ? WHERE batch = ?", (utcnow().isoformat(), row[0]))
            return ids

        return self._write(work, "undo in")

    def set_tag(self, key: int, name: str | None) -> None:
        """Give number key 1-9 a tag name (None clears it)."""
        if not 1 <= int(key) <= 9:
            raise ReviewError(f"tag key {key} is not between 1 and 9")
        name = None if name is None else check_tag(name)

        def work(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM tags WHERE key = ?", (int(key),))
            if name is not None:
                db.execute("DELETE FROM tags WHERE name = ?", (name,))
                db.execute("INSERT INTO tags VALUES (?, ?)", (int(key), name))

        self._write(work, "name a tag in")

    # -- reading -------------------------------------------------------------------------
    def tags(self) -> dict[int, str]:
        with self._lock:
            return {k: n for k, n in self._db.execute("SELECT key, name FROM tags ORDER BY key")}

    def _version(self) -> tuple[int, int]:
        """Changes by any connection, this one included, move this pair."""
        data_version = self._db.execute("PRAGMA data_version").fetchone()[0]
        changes = self._db.execute("SELECT total_changes()").fetchone()[0]
        return data_version, changes

    def current(self) -> dict[str, State]:
        """crop id -> its present state; read again only when the database changed."""
        with self._lock:
            version = self._version()
            if self._cache is not None and version == self._seen_version:
                return self._cache
            state: dict[str, list] = {}
            for crop, decision, tags, reviewer, origin, at in self._db.execute(
                    "SELECT crop_id, decision, tags, reviewer, origin, at FROM decisions "
                    "WHERE undone_at IS NULL ORDER BY seq"):
                s = state.setdefault(crop, [None, (), reviewer, origin, at])
                if decision is not None:
                    s[0], s[2], s[3], s[4] = decision, reviewer, origin, at
                if tags is not None:
                    s[1] = tuple(json.loads(tags))
            self._cache = {c: State(*v) for c, v in state.items()}
            self._seen_version = version
            return self._cache

    def history(self, crop_id: str) -> list[dict]:
        with self._lock:
            cur = self._db.execute(
                "SELECT seq, batch, decision, tags, reviewer, origin, at, undone_at FROM decisions "
                "WHERE crop_id = ? ORDER BY seq", (crop_id,))
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r)) for r in cur]

    def counts(self) -> dict[str, int]:
        out = {d: 0 for d in DECISIONS}
        for s in self.current().values():
            if s.decision:
                out[s.decision] += 1
        return out

    def reviews(self) -> list[Review]:
        """The present decision of every decided crop, as Review records."""
        return [Review(crop_id=c, decision=s.decision, reviewer=s.reviewer, at=datetime.fromisoformat(s.at),
                       origin=s.origin, tags=s.tags)
                for c, s in sorted(self.current().items()) if s.decision is not None]
