"""The stage contract, and the local executor that `headshot ingest` and `headshot process` are.

A stage is three functions over typed records:

- `plan(ws, config) -> items`: the work that is new, or affected by a changed setting. It
  only reads the tables and takes no lock.
- `run(item, context) -> outcome`: the work for one item. Pure: all it needs is in the item
  and the context, both picklable, and so is the outcome, so a process pool, a Prefect task
  or a Dask worker can call it. It may write content-addressed files (blobs, crops), which
  are the same whoever writes them.
- `commit(ws, outcomes, run_id, ...) -> rows`: writes the outcomes' rows under the writer
  lock, briefly. Rows already in the tables (another run did the same work meanwhile) are
  not written again, so two runs at once on one workspace neither wait on each other while
  they compute nor write a row twice.

The local executor below runs items on every core in workers that die with their parent,
and commits in parts as it goes (a killed run keeps what it committed and resumes).
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

from . import tables
from .records import Record
from .workers import die_with_parent, forkserver_context
from .workspace import Workspace

# How long a commit waits for another writer (a commit, a compaction, a dataset build): long
# enough for any of those, short enough that a stuck writer is reported, not waited on forever.
COMMIT_WAIT = 600.0


@dataclass
class StageReport:
    """What one stage run did: items by outcome status, rows written per table, the time."""

    stage: str
    run_id: str
    items: int = 0
    status: Counter = field(default_factory=Counter)
    rows: Counter = field(default_factory=Counter)  # table -> rows written
    skipped_rows: Counter = field(default_factory=Counter)  # table -> rows another run had written
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {"stage": self.stage, "run_id": self.run_id, "items": self.items, "status": dict(self.status),
                "rows": dict(self.rows), "skipped_rows": dict(self.skipped_rows), "seconds": round(self.seconds, 3)}


class RowBuffer:
    """Rows waiting to be committed, per record class; `due()` once a part's worth is waiting."""

    def __init__(self, part_rows: int = 2000, part_seconds: float = 10.0) -> None:
        self.part_rows, self.part_seconds = part_rows, part_seconds
        self.rows: dict[type[Record], list[Record]] = {}
        self.last = time.monotonic()

    def add(self, rows: Iterable[Record]) -> None:
        for r in rows:
            self.rows.setdefault(type(r), []).append(r)

    def __len__(self) -> int:
        return sum(map(len, self.rows.values()))

    def due(self) -> bool:
        return len(self) >= self.part_rows or (len(self) > 0 and time.monotonic() - self.last > self.part_seconds)

    def take(self) -> dict[type[Record], list[Record]]:
        out, self.rows, self.last = self.rows, {}, time.monotonic()
        return out


def write_rows(ws: Workspace, rows: dict[type[Record], list[Record]], order: tuple[type[Record], ...],
               run_id: str, config: Any, report: StageReport | None = None, what: str = "commit",
               wait: float = COMMIT_WAIT, always: tuple[type[Record], ...] = ()) -> dict[type[Record], list[Record]]:
    """Append the rows not already in their tables, one part per table in `order` (the one that
    marks an item done last), under the writer lock. Returns the rows written, per class.
    `always`: classes whose rows are written even when the same row is there (the last wins)."""
    written: dict[type[Record], list[Record]] = {}
    if not any(rows.values()):
        return written
    with ws.writer_lock(f"{what} {run_id}", wait=wait, clean=False):  # the run's last lock cleans
        for cls in order:
            batch = rows.get(cls, [])
            fresh = list(batch) if cls in always else tables.new_rows(ws, cls, batch)
            tables.append(ws, cls, fresh, run_id, config)
            written[cls] = fresh
            if report is not None:
                report.rows[cls.TABLE] += len(fresh)
                report.skipped_rows[cls.TABLE] += len(batch) - len(fresh)
    return written


# --- workers ---------------------------------------------------------------------------------

# Set once in each worker process by the pool's initializer: the executor hands the context
# over once per worker instead of once per item. The stage's `run` never reads this.
_WORKER: dict = {}


def _init_worker(fn: Callable, context: Any, setup: Callable | None) -> None:
    die_with_parent()
    if setup is not None:
        setup()
    _WORKER.update(fn=fn, context=context)


def _call(item: Any) -> Any:
    return _WORKER["fn"](item, _WORKER["context"])


def call_in_worker(item: Any) -> Any:
    """`run(item, context)` with the worker's context: what to submit to `worker_pool`."""
    return _call(item)


def worker_pool(fn: Callable, context: Any, workers: int = 0, start: str = "forkserver",
                preload: tuple[str, ...] = (), setup: Callable | None = None) -> cf.ProcessPoolExecutor:
    """A pool whose workers call `fn(item, context)` and die with this process, whatever kills it.

    start "forkserver" for work that runs OpenCV (a forked copy of a process that has run it
    can hang on its thread pool's locks); "fork" starts faster where nothing such has run."""
    n = workers or os.cpu_count() or 1
    ctx = forkserver_context(list(preload)) if start == "forkserver" else multiprocessing.get_context(start)
    return cf.ProcessPoolExecutor(n, mp_context=ctx, initializer=_init_worker, initargs=(fn, context, setup))


def run_items(items: list, fn: Callable, context: Any, *, workers: int = 0, start: str = "forkserver",
              preload: tuple[str, ...] = (), setup: Callable | None = None, chunksize: int = 4,
              progress: bool = True, desc: str = "", unit: str = "item") -> Iterator[Any]:
    """`fn(item, context)` for every item on every core, outcomes in the items' order."""
    if not items:
        return
    from tqdm import tqdm

    pool = worker_pool(fn, context, min(workers or os.cpu_count() or 1, len(items)), start, preload, setup)
    try:
        with tqdm(total=len(items), unit=unit, desc=desc, disable=None if progress else True) as bar:
            for outcome in pool.map(_call, items, chunksize=chunksize):
                bar.update(1)
                yield outcome
    except BaseException:
        # A full disk, a Ctrl-C, or the caller giving up: the items not started are not
        # started (map queued them all), so the run ends in seconds, not after each failed.
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
