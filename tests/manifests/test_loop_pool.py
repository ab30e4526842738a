"""The crawl's image store feeds its workers from the event loop (manifests/loop_pool.py):
outcomes reach their callers, exceptions too, big items pass, and a worker that dies fails
what it held instead of leaving the crawl waiting."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from manifests.loop_pool import LoopPool, WorkerDied


def _work(item, context):
    kind, value = item
    if kind == "echo":
        return (os.getpid(), context, value)
    if kind == "fail":
        raise ValueError(f"bad item {value}")
    if kind == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    if kind == "size":
        return len(value)
    raise AssertionError(kind)


@pytest.mark.parametrize("start", ["fork", "forkserver"])
def test_outcomes_reach_their_callers_in_any_order(start, run_async):
    async def main():
        pool = LoopPool(_work, "ctx", workers=2, start=start)
        try:
            outs = await asyncio.gather(*(pool.run(("echo", i)) for i in range(50)))
        finally:
            pool.close()
        return outs

    outs = run_async(main)
    assert [v for _, _, v in outs] == list(range(50))
    assert {c for _, c, _ in outs} == {"ctx"}
    pids = {p for p, _, _ in outs}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2


def test_exceptions_and_big_items(run_async):
    async def main():
        pool = LoopPool(_work, None, workers=1)
        try:
            with pytest.raises(ValueError, match="bad item 7"):
                await pool.run(("fail", 7))
            # Items bigger than the pipe, several at once: none is lost or mixed up.
            sizes = [3 << 20, 10, 2 << 20, 1 << 19]
            got = await asyncio.gather(*(pool.run(("size", b"x" * n)) for n in sizes))
            assert got == sizes
            assert (await pool.run(("echo", "after")))[2] == "after"
        finally:
            pool.close()

    run_async(main)


def test_a_dead_worker_fails_its_item_and_is_replaced(run_async):
    async def main():
        pool = LoopPool(_work, None, workers=2)
        try:
            before = {w["proc"].pid for w in pool.workers}
            with pytest.raises(WorkerDied, match="exit code -9"):
                await asyncio.wait_for(pool.run(("die", 0)), 20)
            outs = await asyncio.wait_for(asyncio.gather(*(pool.run(("echo", i)) for i in range(20))), 20)
            assert [v for _, _, v in outs] == list(range(20))
            after = {w["proc"].pid for w in pool.workers}
            assert len(after) == 2 and len(after - before) == 1  # one new worker beside the one left
        finally:
            pool.close()
        assert all(w["proc"] is None for w in pool.workers)

    run_async(main)


def test_without_restarts_a_pool_whose_workers_all_died_says_so(run_async):
    async def main():
        pool = LoopPool(_work, None, workers=1, restarts=0)
        try:
            with pytest.raises(WorkerDied):
                await asyncio.wait_for(pool.run(("die", 0)), 20)
            with pytest.raises(WorkerDied, match="every worker"):
                await asyncio.wait_for(pool.run(("echo", "none left")), 20)
        finally:
            pool.close()

    run_async(main)
