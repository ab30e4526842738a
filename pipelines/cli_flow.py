"""`headshot flow build|train`: run a Prefect flow once and print its summary.

With PREFECT_API_URL unset the flow runs on a temporary Prefect server that dies with the
command, whatever ends it; with it set, on that server, checked first. Registered on
`pipelines.cli_app.app` when pipelines/cli.py imports this module at its end; Prefect is
imported inside the commands so that `headshot --help` stays instant.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable, Optional

import typer

from pipelines.cli_app import _config, _fail, _fail_config, _home, _project_path, _State, app

flow_app = typer.Typer(help="Prefect flows: the whole build, and training once a new dataset version is ready.",
                       no_args_is_help=True)
app.add_typer(flow_app, name="flow")

CONFIG_HELP = "Project config, TOML (as the global --config; this one wins)."


def _project(config: Optional[str]):
    """The project config with [ingest] paths made absolute (they are relative to its file), and the home."""
    if config is not None:
        path = Path(config).expanduser()
        if not path.is_file():
            _fail(f"--config {config}: no such file" + (" (it is a folder)" if path.is_dir() else ""))
        _State.config_path, _State.config = path, None
    cfg = _config()
    cfg = replace(cfg, ingest=replace(cfg.ingest, paths=tuple(_project_path(p) for p in cfg.ingest.paths)))
    from manifests.workspace import resolve_home

    return cfg, str(resolve_home(_home()))


def _run(runner: Callable, config: Optional[str], lines: Callable[[dict], list[str]], failed: Callable[[dict], bool]):
    from pipelines.flow_runtime import ApiUnreachable, prefect_api

    cfg, home = _project(config)
    try:
        with prefect_api():
            summary = runner(cfg, home)
    except ApiUnreachable as exc:
        _fail(str(exc), 2)
    except KeyboardInterrupt:
        # Typer turns a KeyboardInterrupt into exit code 130 without a word: say what is kept.
        typer.echo("interrupted: the crawls stopped cleanly and what was committed is kept; run the same "
                   "command again to go on (finished tasks are skipped)", err=True)
        raise typer.Exit(130)
    except Exception as exc:  # a stage that crashed the flow: one line, the rows written so far are kept
        _fail(f"the flow failed: {type(exc).__name__}: {exc}; what was committed is kept, run it again to go on", 1)
    for line in lines(summary):
        typer.echo(line)
    return summary, failed(summary)


@flow_app.command("build")
def flow_build(config: Optional[str] = typer.Option(None, "--config", metavar="FILE", help=CONFIG_HELP)) -> None:
    """Crawl every [[sources]] table, ingest [ingest] paths, process what is new, refresh the
    review queue and write a dataset version when the [dataset] rules hold: once, as a Prefect flow.

    Finished tasks are cached in <home>/flows/results: a build stopped or killed half way and run
    again skips them. Exit code 1 when a source or a stage failed (the others still ran).

    Example: headshot flow build --config headshot.toml
    """
    from pipelines.flow_report import build_lines
    from pipelines.flows import run_build
    from pipelines.report import format_status

    summary, failed = _run(run_build, config, build_lines, lambda s: bool(s["failed"]))
    typer.echo(format_status(summary["status"]))
    if failed:
        raise typer.Exit(1)


@flow_app.command("train")
def flow_train(config: Optional[str] = typer.Option(None, "--config", metavar="FILE", help=CONFIG_HELP)) -> None:
    """Train the newest version of [dataset] name with the [train] settings, evaluate it and keep
    the run, unless a run trained that content already: once, as a Prefect flow.

    <home>/flows/trained.json records each version trained (never twice, even for two triggers
    at once); a training that crashed or was stopped is resumed by the next one.

    Example: headshot flow train
    """
    from pipelines.flow_report import train_lines
    from pipelines.flows import run_train

    summary, failed = _run(run_train, config, train_lines, lambda s: bool(s.get("error")))
    if failed:
        raise typer.Exit(1)
    if (summary.get("training") or {}).get("interrupted"):
        raise typer.Exit(130)


@flow_app.command("serve")
def flow_serve(
    config: Optional[str] = typer.Option(None, "--config", metavar="FILE", help=CONFIG_HELP),
    port: int = typer.Option(4200, "--port", help="Port of the Prefect server (and UI) serve starts; 0 for any "
                                                  "free one. Not used when PREFECT_API_URL names a server."),
) -> None:
    """Serve the [schedule] cron lines until Ctrl-C or SIGTERM: `build` runs the build flow,
    `train` the train-when-ready flow (without a train line: after each completed build). Both
    can also be started by hand from the Prefect UI.

    Unless PREFECT_API_URL names a server, starts `prefect server start` on 127.0.0.1 (its
    database in <home>/flows/prefect-server/), prints the UI's address, and stops it on exit.
    A cron line that never fires, a schedule of no flow or an unreachable PREFECT_API_URL is one
    line and exit code 2.

    Example: headshot flow serve --config headshot.toml   (then open http://127.0.0.1:4200)
    """
    from pipelines.serve import ServeError, serve

    cfg, home = _project(config)
    try:
        serve(cfg, home, port=port, echo=lambda line: typer.echo(line))
    except ServeError as exc:
        _fail_config(exc)


__all__ = ["flow_app", "flow_build", "flow_serve", "flow_train"]
