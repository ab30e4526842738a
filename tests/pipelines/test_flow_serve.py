"""`headshot flow serve` and the Dask task runner.

serve: the real command in a subprocess starts a real `prefect server start` of its own, whose
cron schedule creates a run that a build completes, a train run follows it, and SIGTERM leaves
no process behind (checked in /proc). Dask: the process stage on a local cluster of two worker
processes writes the rows the local pool writes, and a scheduler that is gone fails the stage
with its address before a row is written.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from curation.ingest import ingest
from curation.process import ProcessConfig, process
from manifests import tables
from manifests.records import FaceCrop, FilterResult, HashRecord
from manifests.workspace import Workspace
from pipelines.cli import app
from pipelines.config import FlowSection, HeadshotConfig
from tests.curation.test_stage import _draw, snapshot
from tests.pipelines.conftest import ENV

REPO = Path(__file__).resolve().parents[2]
CFG = ProcessConfig(detector=replace(ProcessConfig().detector, detector="animeface"), workers=2)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- refused before anything starts ---------------------------------------------------------------


def test_a_cron_line_that_never_fires_is_refused_naming_the_key(tmp_path):
    cfg = tmp_path / "headshot.toml"
    cfg.write_text('[schedule]\nbuild = "0 3 * * *"\ntrain = "0 0 31 2 *"\n')
    result = CliRunner().invoke(app, ["--home", str(tmp_path / "ws"), "flow", "serve", "--config", str(cfg)])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        'headshot: error: schedule.train = "0 0 31 2 *": this cron line never fires (no such date in any year), '
        "so nothing would ever run"]
    assert not (tmp_path / "ws" / "flows" / "prefect-server").exists()  # no server was started


def test_a_schedule_of_no_flow_is_refused_naming_the_key(tmp_path):
    cfg = tmp_path / "headshot.toml"
    cfg.write_text('[schedule]\nnightly = "0 3 * * *"\n')
    result = CliRunner().invoke(app, ["--home", str(tmp_path / "ws"), "flow", "serve", "--config", str(cfg)])
    assert result.exit_code == 2
    assert "schedule.nightly: no flow of that name; the schedules are build and train" in result.output


def test_an_unreachable_prefect_api_url_is_one_line_and_exit_2(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/api"
    env = {**os.environ, **ENV, "PREFECT_HOME": str(tmp_path / "ph"), "PREFECT_API_URL": url}
    out = subprocess.run([sys.executable, "-m", "pipelines.cli", "--home", str(tmp_path / "ws"), "flow", "serve"],
                         env=env, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 2, out.stderr[-2000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"headshot: error: PREFECT_API_URL={url}: no Prefect server "
                                                   "answers there"), lines
    assert not (tmp_path / "ws" / "flows" / "prefect-server").exists()


# --- serve, for real ------------------------------------------------------------------------------


def _children(pid: int) -> dict[int, int]:
    """ppid of every process (Linux /proc)."""
    out = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            out[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return out


def descendants(pid: int) -> set[int]:
    parents = _children(pid)
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class Lines:
    """A subprocess's stdout, read in a thread, kept."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self.thread.start()

    def _read(self, proc) -> None:
        for line in proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, prefix: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hit = next((line for line in self.lines if line.startswith(prefix)), None)
            if hit:
                return hit
            time.sleep(0.2)
        raise AssertionError(f"no line {prefix!r} within {timeout} s; output:\n" + "\n".join(self.lines[-40:]))


def flow_runs(api: str, deployment_id) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        return client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])))


def read_deployments(api: str) -> dict:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        return {d.name: d for d in client.read_deployments()}


def wait_completed(api: str, deployment_id, timeout: float) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = flow_runs(api, deployment_id)
        done = [r for r in runs if r.state and r.state.is_final()]
        if done:
            return done
        time.sleep(1)
    raise AssertionError(f"no run of {deployment_id} finished within {timeout} s")


@pytest.mark.slow
def test_serve_registers_the_schedule_a_cron_run_completes_a_train_follows_and_sigterm_leaves_nothing(tmp_path):
    home = tmp_path / "ws"
    cfg = tmp_path / "headshot.toml"
    cfg.write_text('[schedule]\nbuild = "* * * * *"\n[dataset]\nname = "faces"\n')
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(ENV, PREFECT_HOME=str(tmp_path / "prefect-client"), PREFECT_RUNNER_POLL_FREQUENCY="2",
               PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "--home", str(home), "flow", "serve",
                             "--config", str(cfg), "--port", "0"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = Lines(proc)
    family: set[int] = set()
    try:
        ui = out.wait_for("Prefect UI: ", 150).split()[2]
        api = ui + "/api"
        assert (home / "flows" / "prefect-server" / "prefect.db").exists()  # the server's database, in the workspace
        out.wait_for("Ctrl-C stops serving", 30)
        assert "  build: build_flow at '* * * * *'" in "\n".join(out.lines)
        assert "  train: train_when_ready_flow after each completed build" in out.lines
        family = descendants(proc.pid)
        assert family, "serve started no server"

        deps = {}
        deadline = time.monotonic() + 30
        while set(deps) != {"build", "train"} and time.monotonic() < deadline:
            deps = read_deployments(api)
            time.sleep(0.5)
        assert set(deps) == {"build", "train"}
        build, train = deps["build"], deps["train"]
        assert [s.schedule.cron for s in build.schedules] == ["* * * * *"] and not train.schedules
        assert build.parameters["home"] == str(home) and build.parameters["config"]["dataset"]["name"] == "faces"

        built = wait_completed(api, build.id, 150)  # the next minute's run, created by the server's scheduler
        assert built[0].state.is_completed(), built[0].state
        assert built[0].auto_scheduled  # it came from the schedule, not from a person
        trained = wait_completed(api, train.id, 60)  # asked for by the finished build
        assert trained[0].state.is_completed(), trained[0].state
        family |= descendants(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError("serve did not stop on SIGTERM:\n" + "\n".join(out.lines[-40:]))
    assert proc.returncode == 0, "\n".join(out.lines[-40:])
    deadline = time.monotonic() + 15
    while any(alive(p) for p in family) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [p for p in family if alive(p)], "processes left behind"


# --- Dask -----------------------------------------------------------------------------------------


def _ingested(root: Path, names: list[str], seeds) -> list[Workspace]:
    art = _draw(root / "art", seeds, size=256)
    out = []
    for name in names:
        ws = Workspace.open(root / name)
        ingest([str(art)], ws, progress=False)
        out.append(ws)
    return out


@pytest.mark.slow
def test_the_process_stage_on_a_two_worker_dask_cluster_writes_the_local_pools_rows(prefect_api, tmp_path):
    from prefect import flow

    from pipelines import flows
    from pipelines.flow_dask import process_runner

    local, on_dask = _ingested(tmp_path, ["local", "dask"], range(1, 11))
    process(local, CFG, progress=False)

    @flow
    def dask_process(home: str) -> dict:
        runner = process_runner(FlowSection("dask", "", 2))
        assert runner.cluster_kwargs["env"]["PREFECT_API_URL"] == prefect_api  # the workers share our API
        return flows._process(Workspace.open(home), CFG, runner)  # the build flow's own process step

    out = dask_process(str(on_dask.home))
    assert out["jobs"] == 11 and out["failed"] == 0 and out["crops_new"] > 0
    assert snapshot(on_dask) == snapshot(local)


@pytest.mark.slow
def test_a_gone_dask_scheduler_fails_the_stage_with_its_address_and_writes_no_row(prefect_api, tmp_path, monkeypatch):
    from pipelines import flow_dask
    from pipelines.flows import build_flow

    monkeypatch.setattr(flow_dask, "CONNECT_TIMEOUT", 3)
    (ws,) = _ingested(tmp_path, ["ws"], (1, 2))
    address = f"tcp://127.0.0.1:{closed_port()}"
    config = HeadshotConfig(process=CFG, flow=FlowSection("dask", address))
    summary = build_flow(config, str(ws.home))
    error = summary["process"]["error"]
    assert error.startswith(f"DaskUnreachable: the Dask scheduler at {address} (flow.dask_address) does not answer")
    assert any(f.startswith("process: DaskUnreachable") for f in summary["failed"])
    assert summary["dataset"]["version"] is None and "process stage failed" in summary["dataset"]["why"]
    for cls in (FaceCrop, FilterResult, HashRecord):
        assert tables.read_table(ws, cls).num_rows == 0
    assert not [p for p in ws.home.rglob(".tmp-*")]  # no half-written file either (manifests/atomic.py)
