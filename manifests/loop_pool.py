"""Worker processes driven from an asyncio event loop without a thread in the driver.

A crawl's reactor is the one thread that downloads: a `ProcessPoolExecutor` beside it adds a
manager thread and a queue feeder thread that pickle and write every image, and the reactor
waits for the interpreter lock each time they run (about a millisecond per image on 2
cores). Here each worker has its own pipe; the loop writes an item to an idle worker and
reads the outcome when the pipe is readable (`loop.add_reader`), so nothing in the driver
runs but the loop. Items wait in the driver while every worker is busy.

`run(item, context)` is the stage's run (manifests/stage.py); an exception it raises reaches
the awaiting caller. A worker that dies fails the items it held with `WorkerDied` and is
replaced (up to `restarts` times).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import multiprocessing
import os
import pickle
import signal
from typing import Any, Callable

from .workers import die_with_parent

PIPE_BYTES = 1 << 20  # most images fit whole in the pipe, so writing one never waits on the worker
IN_FLIGHT = 2  # items per worker: the next is already waiting when one is done


class WorkerDied(RuntimeError):
    pass


def _worker(conn, fn: Callable, context: Any, setup: Callable | None, others: list[int]) -> None:
    for fd in others:  # the driver's ends of the other workers' pipes, inherited by a fork
        with contextlib.suppress(OSError):
            os.close(fd)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver decides when its workers stop
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    die_with_parent()
    if setup is not None:
        setup()
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg is None:
            return
        key, item = msg
        try:
            out = (key, True, fn(item, context))
        except Exception as exc:  # the caller gets it, as from a pool
            out = (key, False, exc)
        try:
            conn.send(out)
        except Exception as exc:  # an outcome that cannot be pickled
            conn.send((key, False, RuntimeError(f"the worker's outcome could not be sent back: {exc!r}")))


def _grow_pipe(fd: int) -> None:
    try:
        import fcntl

        fcntl.fcntl(fd, 1031, PIPE_BYTES)  # F_SETPIPE_SZ (Linux); elsewhere the default size
    except (ImportError, OSError):
        pass


class LoopPool:
    """`await pool.run(item)` -> `fn(item, context)` in one of `workers` processes.

    start "auto" (for a driver that runs no OpenCV, such as a crawl): "fork" (fast: nothing is
    imported again) while the driver has no other Python thread, the fork server once it has;
    the same choice is made again for each worker that replaces a dead one."""

    def __init__(self, fn: Callable, context: Any, workers: int = 1, start: str = "auto",
                 setup: Callable | None = None, restarts: int = 10) -> None:
        self.fn, self.context, self.setup, self.start = fn, context, setup, start
        self.restarts = restarts  # dead workers replaced before the pool gives up on one
        self.workers: list[dict] = []
        for _ in range(max(1, workers)):
            self.workers.append(self._spawn(start))
        self.waiting: collections.deque = collections.deque()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.next_key = 0
        self.closed = False

    def _spawn(self, start: str) -> dict:
        if start == "auto":
            import threading

            start = "fork" if threading.active_count() == 1 else "forkserver"
        ctx = multiprocessing.get_context(start)
        mine, theirs = ctx.Pipe(duplex=True)
        others = [w["conn"].fileno() for w in self.workers if w["proc"] is not None] if start == "fork" else []
        proc = ctx.Process(target=_worker, args=(theirs, self.fn, self.context, self.setup, others), daemon=True)
        proc.start()
        theirs.close()
        _grow_pipe(mine.fileno())
        return {"proc": proc, "conn": mine, "held": {}}

    def _replace(self, w: dict) -> None:
        """A worker that died (a decoder's crash, the OOM killer) is replaced, so that one bad
        image costs its own row, not every later one. Forked while this is the only thread."""
        if self.closed or self.restarts <= 0:
            return
        self.restarts -= 1
        try:
            fresh = self._spawn(self.start)
        except OSError:
            return
        w.update(fresh)
        if self.loop is not None:
            self.loop.add_reader(w["conn"].fileno(), self._readable, w)

    def _attach(self) -> None:
        self.loop = asyncio.get_running_loop()
        for w in self.workers:
            self.loop.add_reader(w["conn"].fileno(), self._readable, w)

    async def run(self, item: Any) -> Any:
        if self.closed:
            raise WorkerDied("the pool is closed")
        if self.loop is None:
            self._attach()
        fut = self.loop.create_future()
        self.next_key += 1
        self.waiting.append((self.next_key, pickle.dumps((self.next_key, item), protocol=pickle.HIGHEST_PROTOCOL), fut))
        self._dispatch()
        return await fut

    def _dispatch(self) -> None:
        while self.waiting:
            if not any(w["proc"] is not None for w in self.workers):
                self._fail_waiting()
                return
            key, data, fut = self.waiting[0]
            if fut.cancelled():
                self.waiting.popleft()
                continue
            # An item bigger than half a pipe goes only to an idle worker, which reads it at once.
            room = IN_FLIGHT if len(data) <= PIPE_BYTES // 2 else 1
            live = [w for w in self.workers if w["proc"] is not None and len(w["held"]) < room]
            if not live:
                return
            w = min(live, key=lambda w: len(w["held"]))
            self.waiting.popleft()
            try:
                w["conn"].send_bytes(data)
            except (OSError, EOFError):
                self.waiting.appendleft((key, data, fut))
                self._lost(w)
                continue
            w["held"][key] = fut

    def _readable(self, w: dict) -> None:
        try:
            key, ok, value = w["conn"].recv()
        except (EOFError, OSError):
            self._lost(w)
            self._dispatch()
            return
        fut = w["held"].pop(key, None)
        if fut is not None and not fut.done():
            fut.set_result(value) if ok else fut.set_exception(value)
        self._dispatch()

    def _lost(self, w: dict) -> None:
        code = None
        if w["proc"] is not None:
            w["proc"].join(0.5)
            code = w["proc"].exitcode
        if self.loop is not None:
            self.loop.remove_reader(w["conn"].fileno())
        for fut in w["held"].values():
            if not fut.done():
                fut.set_exception(WorkerDied(f"a worker process ended (exit code {code}) before its image was stored"))
        w["held"].clear()
        w["conn"].close()
        w["proc"] = None
        self._replace(w)

    def _fail_waiting(self) -> None:
        while self.waiting:
            _, _, fut = self.waiting.popleft()
            if not fut.done():
                fut.set_exception(WorkerDied("every worker process has ended"))

    def close(self, timeout: float = 10.0) -> None:
        """Let the workers finish what they hold, then end them."""
        self.closed = True
        for w in self.workers:
            if w["proc"] is None:
                continue
            if self.loop is not None:
                self.loop.remove_reader(w["conn"].fileno())
            try:
                w["conn"].send(None)
            except (OSError, EOFError):
                pass
        for w in self.workers:
            proc = w["proc"]
            if proc is None:
                continue
            proc.join(timeout)
            if proc.is_alive():
                proc.kill()
                proc.join(1)
            w["conn"].close()
            w["proc"] = None
        for w in self.workers:
            for fut in w["held"].values():
                if not fut.done():
                    fut.cancel()
            w["held"].clear()
        self._fail_waiting()


def cpu_workers(reserve: int = 1) -> int:
    """Cores left once `reserve` are kept for the driver (at least one worker)."""
    return max(1, (os.cpu_count() or 2) - reserve)
