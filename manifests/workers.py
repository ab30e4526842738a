"""Worker processes that die with the process that started them, whatever kills it.

A pool's workers wait on pipes whose write ends they hold themselves, so they never see the
end of a driver killed with SIGKILL (or by the OOM killer): without help they live on for
good, each holding hundreds of MB. Linux ends them when asked (PR_SET_PDEATHSIG).

With the fork server, the workers are the fork server's children, not the driver's, and the
fork server waits for the workers (they hold its "alive" pipe): each must die with its own
parent, so the fork server imports `manifests._forkserver_guard` first, which asks for it.
"""

from __future__ import annotations

import multiprocessing
import os


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent ends (elsewhere: nothing happens)."""
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:  # the parent died before the request took effect
            os._exit(1)
    except (OSError, AttributeError):
        pass


def forkserver_context(preload: list[str]) -> multiprocessing.context.BaseContext:
    """A fork-server context whose server dies with this process and preloads `preload`.

    Not "fork" for work that runs OpenCV: a process that has already run it holds its thread
    pool's locks, and a forked copy can hang on them. The preload applies when the server
    starts (the first pool of this process)."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["manifests._forkserver_guard", *preload])
    return ctx
