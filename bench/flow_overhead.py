"""Flow overhead: what Prefect adds per flow run and per task (an empty flow, N trivial tasks
called in turn and mapped, against plain function calls), and the process stage of the build
flow on a two-worker Dask local cluster against the local process pool (`headshot process`) on
the same images, with the flow's own threads beside them, and the Dask workers once without the
flow's Prefect API (each then starts a temporary server of its own: why the local cluster's
workers are handed it). One temporary Prefect server for the run, heartbeat off as in
`headshot flow build`; every timed stage run gets a new workspace, so no task result is cached."""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from prefect import flow, task

from curation.ingest import ingest
from curation.process import ProcessConfig, process
from manifests.workspace import Workspace
from pipelines.config import FlowSection

CFG = ProcessConfig(detector=replace(ProcessConfig().detector, detector="animeface"), workers=2)


def noop(i: int) -> int:
    return i


noop_task = task(noop, name="noop")


@flow(name="bench-empty")
def empty_flow() -> None:
    return None


@flow(name="bench-tasks")
def tasks_flow(n: int) -> int:
    return sum(noop_task(i) for i in range(n))


@flow(name="bench-map")
def map_flow(n: int) -> int:
    return sum(f.result() for f in noop_task.map(range(n)))


SETTLE = 4.0  # seconds between two timed flows: the temporary server still writes the last one's
# task runs, and on 2 cores (SQLite, "database is locked") that slows the next one 4-10x


def _timed(fn, *args, repeats: int = 5) -> float:
    fn(*args)  # warm: the server's first writes, imports
    runs = []
    for _ in range(repeats):
        time.sleep(SETTLE)
        t = time.perf_counter()
        fn(*args)
        runs.append(time.perf_counter() - t)
    return statistics.median(runs)


def _quiet() -> None:
    """Prefect's and Dask's console lines at WARNING: a line per task run is not what is measured."""
    import logging

    os.environ["DASK_LOGGING__DISTRIBUTED"] = "warning"
    for name in ("prefect", "prefect.flow_runs", "prefect.task_runs", "distributed"):
        logging.getLogger(name).setLevel(logging.WARNING)


def overhead(n: int) -> dict:
    t = time.perf_counter()
    for i in range(n):
        noop(i)
    plain = (time.perf_counter() - t) / n
    empty = _timed(empty_flow)
    seq = _timed(tasks_flow, n, repeats=3)
    mapped = _timed(map_flow, n, repeats=3)
    return {"plain_call_us": plain * 1e6, "empty_flow_ms": empty * 1e3,
            "task_ms": (seq - empty) / n * 1e3, "mapped_task_ms": (mapped - empty) / n * 1e3}


@flow(name="bench-process")
def process_flow(home: str, how: str) -> dict:
    from pipelines import flows
    from pipelines.flow_dask import _runner_class, local_cluster_kwargs, process_runner

    if how == "threads":
        runner = None
    elif how == "dask":
        runner = process_runner(FlowSection("dask", "", 2))
    else:  # dask workers not told where the flow's API is
        runner = _runner_class()(cluster_kwargs=local_cluster_kwargs(2, None))
    return flows._process(Workspace.open(home), CFG, runner)


def stage(root: Path, images: int, repeats: int) -> dict:
    from replicas.drawn import draw_character, encode

    art = root / "art"
    art.mkdir(parents=True)
    for i in range(images):
        (art / f"face{i}.png").write_bytes(encode(draw_character(i, 256), "PNG"))
    runs: dict[str, list[float]] = {how: [] for how in HOWS}
    crops = set()
    for r in range(repeats):
        for how in HOWS:
            ws = Workspace.open(root / f"{how}-{r}")
            ingest([str(art)], ws, progress=False)  # not timed
            time.sleep(SETTLE)
            t = time.perf_counter()
            if how == "pool":
                crops.add(process(ws, CFG, progress=False).crops_new)
            else:
                crops.add(process_flow(str(ws.home), how)["crops_new"])
            runs[how].append(time.perf_counter() - t)
    assert len(crops) == 1, crops  # the same work everywhere
    return {how: statistics.median(v) for how, v in runs.items()}


HOWS = ("pool", "threads", "dask", "dask_no_api")


def main(n: int = 100, images: int = 96, repeats: int = 3) -> dict:
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, PREFECT_HOME, temporary_settings

    for k, v in {"DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                 "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90"}.items():
        os.environ.setdefault(k, v)
    if os.environ.get("PREFECT_API_URL"):
        print("## flow overhead: unset PREFECT_API_URL (this bench runs on a temporary server of its own)")
        return {}
    with tempfile.TemporaryDirectory(prefix="headshot-flow-bench-") as tmp, temporary_settings(updates={
            PREFECT_HOME: str(Path(tmp) / "prefect"), PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        _quiet()
        o = overhead(n)
        s = stage(Path(tmp) / "stage", images, repeats)
    r = {**{k: round(v, 2) for k, v in o.items()}, **{f"{k}_s": round(v, 1) for k, v in s.items()},
         "dask_over_pool": round(s["dask"] / s["pool"], 2), "threads_over_pool": round(s["threads"] / s["pool"], 2)}
    print("## Flow overhead")
    print(f"Prefect 3.8.8 on its temporary server, heartbeat off, console logs at WARNING, {SETTLE:.0f} s "
          f"between timed flows, {os.cpu_count()} cores, Python {sys.version.split()[0]}; "
          "`python -m bench flow_overhead`")
    print("| | time |\n|---|---|")
    print(f"| plain function call | {r['plain_call_us']} us |")
    print(f"| empty flow run | {r['empty_flow_ms']} ms |")
    print(f"| task run, {n} called in turn in one flow | {r['task_ms']} ms each |")
    print(f"| task run, {n} by `.map` | {r['mapped_task_ms']} ms each |")
    print(f"\nThe process stage on {images} drawn 256 px faces (animeface), wall time including start-up, "
          f"median of {repeats}:")
    print("| | s | / local pool |\n|---|---|---|")
    print(f"| `headshot process`, local pool of 2 processes | {r['pool_s']} | 1.0 |")
    print(f"| build flow's process step, the flow's threads | {r['threads_s']} | {r['threads_over_pool']} |")
    print(f"| build flow's process step, Dask local cluster (2 workers x 1 thread) | {r['dask_s']} | "
          f"{r['dask_over_pool']} |")
    print(f"| the same, workers not handed the flow's API | {r['dask_no_api_s']} | "
          f"{round(s['dask_no_api'] / s['pool'], 2)} |")
    return r


if __name__ == "__main__":
    main()
