"""Where a flow runs the process stage's items: its own threads, or a Dask cluster ([flow] table).

    [flow]
    task_runner = "dask"
    dask_address = ""            # "": a local cluster of dask_workers processes, one thread each
    # dask_address = "tcp://10.0.0.5:8786"   # or a running scheduler

Every Dask worker must report to the flow's Prefect API: a worker with no PREFECT_API_URL starts
a temporary Prefect server of its own (the process stage on 96 images took 24.0 s that way,
12.4 s sharing the flow's; bench/flow_overhead.py). The local cluster's workers are handed the
flow's API URL; the workers of a cluster given by address are someone else's processes, so they
need PREFECT_API_URL set where they run, and the workspace on a path they share (the README,
"From one laptop to a cluster"). prefect-dask is imported only when dask is chosen: it brings
all of distributed.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pipelines.config import FlowSection

CONNECT_TIMEOUT = 15  # seconds to reach a scheduler: a gone one fails the stage this soon, not after 30 s


class DaskUnreachable(RuntimeError):
    """The scheduler of [flow] dask_address does not answer; nothing of the stage ran."""


def flow_api_url() -> str | None:
    """The Prefect API the running flow reports to, as a URL another process can reach, or None."""
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if url:
        return url
    try:  # Prefect's temporary server: its client knows the port
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            url = str(client.api_url)
    except Exception:  # no API at all: the workers fall back to servers of their own
        return None
    return url if url.startswith(("http://127.", "http://localhost", "https://")) else None


@lru_cache(maxsize=1)
def _runner_class() -> type:
    from prefect_dask import DaskTaskRunner

    class HeadshotDaskRunner(DaskTaskRunner):
        """DaskTaskRunner whose client, made on first use, names the address when it cannot connect."""

        @property
        def client(self):  # type: ignore[override]
            try:
                return super().client
            except (OSError, TimeoutError) as exc:
                raise DaskUnreachable(f"the Dask scheduler at {self.address} (flow.dask_address) does not "
                                      f"answer: {exc}; start it, or set [flow] dask_address = \"\" for a "
                                      "local cluster") from None

    HeadshotDaskRunner.__qualname__ = HeadshotDaskRunner.__name__
    return HeadshotDaskRunner


def local_cluster_kwargs(workers: int, api_url: str | None) -> dict[str, Any]:
    """LocalCluster settings: processes (the work is CPU-bound Python and OpenCV), one thread
    each, its dashboard on any free port (8787 may be taken), and the flow's Prefect API in
    every worker's environment."""
    env = {"DASK_LOGGING__DISTRIBUTED": "warning"}  # not a screen of INFO lines per worker in a build's log
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return {"n_workers": workers, "processes": True, "threads_per_worker": 1, "dashboard_address": ":0", "env": env}


def process_runner(section: FlowSection | None):
    """The task runner map_process gets: None (the flow's own threads) or a Dask one, not started."""
    if section is None or section.task_runner != "dask":
        return None
    cls = _runner_class()
    if section.dask_address:
        return cls(address=section.dask_address, client_kwargs={"timeout": CONNECT_TIMEOUT})
    return cls(cluster_kwargs=local_cluster_kwargs(section.dask_workers, flow_api_url()))


__all__ = ["CONNECT_TIMEOUT", "DaskUnreachable", "flow_api_url", "local_cluster_kwargs", "process_runner"]
