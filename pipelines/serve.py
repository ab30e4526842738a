"""`headshot flow serve`: the config's [schedule] cron lines as deployments of the flows, served
until Ctrl-C or SIGTERM.

    [schedule]
    build = "0 3 * * *"     # build_flow every night at 3
    train = "0 5 * * 6"     # train_when_ready_flow on Saturdays; without it, after each completed build

Prefect's temporary server (what a flow talks to when PREFECT_API_URL is unset) cannot schedule,
so unless PREFECT_API_URL names a server, serve starts `prefect server start` as a child of its
own: its database in the workspace (flows/prefect-server/), healthy before anything registers,
stopped when serve stops, and dying with serve even on SIGKILL (PR_SET_PDEATHSIG).
Without a `train` line, a run of the train deployment is asked for after each completed build.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

from manifests.workers import die_with_parent
from pipelines.config import HeadshotConfig

FLOWS = {"build": "build_flow", "train": "train_when_ready_flow"}  # [schedule] key -> pipelines.flows name
DEFAULT_PORT = 4200  # Prefect's own default: the UI address people already know
STARTUP_TIMEOUT = 120.0  # healthy after ~13 s on 2 idle cores; far longer while the cores are busy


class ServeError(Exception):
    """Why serve cannot start, for a person: one line each (exit 2)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


# --- the schedules ----------------------------------------------------------------------------


def next_fire(line: str, after: datetime | None = None, tz: str = "UTC") -> datetime | None:
    """When the cron line fires next, as Prefect's scheduler reads it; None if it never does
    (`0 0 31 2 *`: 31 February). The config has already checked each field's range."""
    from zoneinfo import ZoneInfo

    from prefect._vendor.croniter import CroniterBadDateError, croniter  # the scheduler's own reading (3.8.8)

    start = (after or datetime.now(timezone.utc)).astimezone(ZoneInfo(tz))
    try:
        return croniter(line, start).get_next(datetime)
    except CroniterBadDateError:
        return None


def schedule_problems(schedule: dict[str, str], tz: str = "UTC") -> list[str]:
    """One line per [schedule] key that serve cannot honour, naming the key."""
    problems = []
    for key, line in schedule.items():
        if key not in FLOWS:
            problems.append(f"schedule.{key}: no flow of that name; the schedules are {' and '.join(FLOWS)}")
        elif next_fire(line, tz=tz) is None:
            problems.append(f'schedule.{key} = "{line}": this cron line never fires (no such date in any year), '
                            "so nothing would ever run")
    return problems


def local_timezone() -> str:
    """The machine's IANA zone (the cron lines are read in it), else UTC."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    candidates = [os.environ.get("TZ", "").lstrip(":")]
    try:
        candidates.append(str(Path("/etc/localtime").resolve()).partition("zoneinfo/")[2])
    except OSError:
        pass
    for name in candidates:
        if name:
            try:
                ZoneInfo(name)
                return name
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return "UTC"


# --- the Prefect server -----------------------------------------------------------------------


def health_problem(api_url: str, timeout: float = 5.0) -> str | None:
    """None when a Prefect server answers GET <api>/health; else why not, in a few words."""
    try:
        with urllib.request.urlopen(api_url.rstrip("/") + "/health", timeout=timeout) as r:
            return None if r.status == 200 else f"HTTP {r.status}"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code} from /health: not a Prefect API"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return str(reason.strerror if isinstance(reason, OSError) and reason.strerror else reason)


def check_api(api_url: str) -> None:
    problem = health_problem(api_url)
    if problem:
        raise ServeError([f"PREFECT_API_URL={api_url}: no Prefect server answers there ({problem}); start one, "
                          "or unset PREFECT_API_URL and headshot flow serve starts its own"])


def server_home(home: str) -> Path:
    """The server's PREFECT_HOME (its SQLite database, UI build, logs): in the workspace when the
    workspace is a local folder, else in the user cache (a database cannot live on s3://)."""
    if "://" not in home or home.startswith("file://"):
        return Path(home.removeprefix("file://")).expanduser().resolve() / "flows" / "prefect-server"
    import hashlib

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "headshot" / "prefect-server" / hashlib.sha256(home.encode()).hexdigest()[:16]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_taken(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


@dataclass
class PrefectServer:
    """A `prefect server start` child: one uvicorn process, the API and the UI on 127.0.0.1."""

    process: subprocess.Popen
    port: int
    home: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return self.url + "/api"

    @property
    def log(self) -> Path:
        return self.home / "server.log"

    @classmethod
    def start(cls, home: Path, port: int = DEFAULT_PORT, timeout: float = STARTUP_TIMEOUT) -> "PrefectServer":
        """Start it and wait until /api/health answers; port 0 takes any free port."""
        if port == 0:
            port = free_port()
        elif _port_taken(port):
            raise ServeError([f"port {port} on 127.0.0.1 is taken (another Prefect server?): pass --port N, "
                              "--port 0 for any free one, or PREFECT_API_URL to use that server"])
        home.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
        env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1")
        prefect = Path(sys.executable).with_name("prefect")
        cmd = [str(prefect)] if prefect.exists() else [sys.executable, "-m", "prefect"]
        cmd += ["server", "start", "--host", "127.0.0.1", "--port", str(port)]
        with open(home / "server.log", "ab") as log:
            # A session of its own: a terminal's Ctrl-C reaches serve, which pauses its schedules on
            # this server before stopping it.
            proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    preexec_fn=die_with_parent, start_new_session=True)
        server = cls(proc, port, home)
        try:
            server._wait_healthy(timeout)
        except BaseException:
            server.stop()
            raise
        return server

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise ServeError([f"the Prefect server exited with code {self.process.returncode} before it was "
                                  f"healthy; its log, {self.log}, ends:", *self._log_tail()])
            if health_problem(self.api_url, timeout=2) is None:
                return
            if time.monotonic() > deadline:
                raise ServeError([f"the Prefect server on port {self.port} was not healthy after {timeout:.0f} s; "
                                  f"see {self.log}"])
            time.sleep(0.5)

    def _log_tail(self, n: int = 5) -> list[str]:
        try:
            return ["  " + line for line in self.log.read_text(errors="replace").splitlines()[-n:]]
        except OSError:
            return []

    def stop(self, grace: float = 20.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> "PrefectServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def api_env(api_url: str) -> Iterator[None]:
    """PREFECT_API_URL for this process (and the flow runs serve starts), for the block only."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    before = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = api_url
    try:
        with temporary_settings(updates={PREFECT_API_URL: api_url}):
            yield
    finally:
        if before is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = before


# --- the deployments ----------------------------------------------------------------------------


def train_after_build(flow, flow_run, state) -> None:
    """on_completion hook of the served build when [schedule] has no train line: ask for a run
    of the train deployment, which this serve picks up (train_when_ready decides whether a new
    version calls for training). Prefect 3.8.8 with SQLite does not load an automation created
    after the server started, so a deployment trigger would never fire here."""
    from prefect.deployments import run_deployment

    from pipelines.flows import train_when_ready_flow

    run_deployment(f"{train_when_ready_flow.name}/train", timeout=0, as_subflow=False)


def deployments(config: HeadshotConfig, home: str, tz: str = "UTC") -> list[tuple]:
    """(flow, Runner.add_flow options) for a deployment of build_flow ("build") and one of
    train_when_ready_flow ("train"), each on its [schedule] line when it has one; both can be run
    by hand from the UI. The project config travels as JSON parameters (HeadshotConfig.as_dict,
    read back by HeadshotConfig.of)."""
    from prefect.client.schemas.schedules import CronSchedule
    from prefect.types.entrypoint import EntrypointType

    from pipelines.flows import build_flow, train_when_ready_flow

    params = {"config": config.as_dict(), "home": home}
    build = build_flow if "train" in config.schedule else build_flow.with_options(on_completion=[train_after_build])
    out = []
    for key, flow, what in (("build", build, "headshot flow build"),
                            ("train", train_when_ready_flow, "headshot flow train")):
        line = config.schedule.get(key)
        out.append((flow, dict(
            name=key, schedules=[CronSchedule(cron=line, timezone=tz)] if line else None, parameters=params,
            description=f"{what} on the workspace {home}", tags=["headshot"],
            # The parameter schema would ask for HeadshotConfig's Python types; the flows read the JSON.
            enforce_parameter_schema=False, entrypoint_type=EntrypointType.MODULE_PATH)))
    return out


def _run_served(served: list[tuple]) -> None:
    """prefect.serve(*[flow.to_deployment(...)]), except that the runner keeps the flow objects
    themselves (Runner.add_flow): a deployment alone is run from its entrypoint, which would
    drop the build's on_completion hook. Returns on Ctrl-C or SIGTERM, the schedules paused."""
    import asyncio

    from prefect.exceptions import TerminationSignal
    from prefect.runner import Runner

    class QuietRunner(Runner):
        def handle_sigterm(self, *args: object) -> None:
            raise KeyboardInterrupt  # the way Ctrl-C stops it: Runner's own handler leaves coroutines unawaited

    runner = QuietRunner(pause_on_shutdown=True)
    for flow, options in served:
        runner.add_flow(flow, **options)
    try:
        asyncio.run(runner.start())
    except (KeyboardInterrupt, TerminationSignal):
        pass


def describe(config: HeadshotConfig, tz: str) -> list[str]:
    lines = []
    for key, flow in FLOWS.items():
        line = config.schedule.get(key)
        if line:
            lines.append(f"  {key}: {flow} at '{line}' ({tz}), next {next_fire(line, tz=tz):%Y-%m-%d %H:%M}")
        elif key == "train":
            lines.append(f"  train: {flow} after each completed build")
        else:
            lines.append(f"  {key}: {flow}, no [schedule] line: runs when started from the UI")
    return lines


# --- serve --------------------------------------------------------------------------------------


def _stop_on_sigterm(signum, frame) -> None:
    raise SystemExit(0)  # unwinds through the server's stop; the Runner installs its own later


def serve(config: HeadshotConfig, home: str, *, port: int = DEFAULT_PORT, echo: Callable[[str], None] = print,
          startup_timeout: float = STARTUP_TIMEOUT) -> None:
    """Serve the deployments until Ctrl-C or SIGTERM; ServeError (before anything starts) for a
    schedule it cannot honour, an unreachable PREFECT_API_URL, or a server that would not start."""
    from prefect.settings import PREFECT_API_URL

    tz = local_timezone()
    problems = schedule_problems(config.schedule, tz)
    if problems:
        raise ServeError(problems)
    configured = PREFECT_API_URL.value()
    server: PrefectServer | None = None
    old = signal.signal(signal.SIGTERM, _stop_on_sigterm) if _main_thread() else None
    try:
        if configured:
            check_api(configured)
            api, ui = configured, configured.rstrip("/").removesuffix("/api")
        else:
            where = server_home(home)
            echo(f"Starting a Prefect server (its database in {where}) ...")
            server = PrefectServer.start(where, port, startup_timeout)
            api, ui = server.api_url, server.url
        with api_env(api):
            served = deployments(config, home, tz)
            echo(f"Prefect UI: {ui}  (deployments: {ui}/deployments, runs: {ui}/runs)")
            echo(f"Serving the workspace {home}:")
            for line in describe(config, tz):
                echo(line)
            echo("Ctrl-C stops serving (the schedules are paused until serve runs again).")
            _run_served(served)
    finally:
        if server is not None:
            server.stop()
        if old is not None:
            signal.signal(signal.SIGTERM, old)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


__all__ = ["DEFAULT_PORT", "FLOWS", "PrefectServer", "ServeError", "check_api", "deployments", "describe",
           "health_problem", "local_timezone", "next_fire", "schedule_problems", "serve", "server_home"]
