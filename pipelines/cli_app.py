"""The `headshot` app itself: the Typer apps, the global --home/--config options and what every
command shares (the project config, the workspace, how a command fails).

pipelines/cli.py and the cli_* modules register their commands on these apps; this module
imports none of them, and nothing heavy (`headshot --help` stays instant).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(
    name="headshot",
    help="Build curated face datasets from artwork on the web, and train GANs on them.\n\n"
    "Settings come from the project config: ./headshot.toml when it exists, or --config FILE "
    "(headshot init writes one); flags on the command line win over it.\n\n"
    "Example: headshot ingest ~/Pictures/art && headshot status",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
models_app = typer.Typer(help="Detector models that are downloaded, not shipped.", no_args_is_help=True)
dataset_app = typer.Typer(help="Dataset versions: build, list, compare and export them.", no_args_is_help=True)
app.add_typer(dataset_app, name="dataset")
app.add_typer(models_app, name="models")


DEFAULT_CONFIG = "headshot.toml"  # pipelines.config.DEFAULT_FILE, which is not imported here (it is heavy)


class _State:
    home: Optional[str] = None
    config_path: Optional[Path] = None  # the project config file, None for the built-in defaults
    config = None  # its HeadshotConfig, read on first use


@app.callback()
def _main(
    home: Optional[str] = typer.Option(
        None, "--home", envvar="HEADSHOT_HOME", show_envvar=True,
        help="Workspace folder (default: the config's home, else ./workspace).",
    ),
    config: Optional[str] = typer.Option(
        None, "--config", metavar="FILE",
        help="Project config, TOML (headshot init writes one). Default: ./headshot.toml when it exists, "
             "else the built-in defaults. Flags win over it.",
    ),
) -> None:
    # Set on every call: tests run many commands in one process.
    _State.home, _State.config = home, None
    if config is not None:
        path = Path(config).expanduser()
        if not path.is_file():
            _fail(f"--config {config}: no such file" + (" (it is a folder)" if path.is_dir() else ""))
        _State.config_path = path
    else:
        _State.config_path = Path(DEFAULT_CONFIG) if Path(DEFAULT_CONFIG).is_file() else None


def _config():
    """The project's HeadshotConfig; a bad file ends the command with one line per problem, exit 2."""
    if _State.config is None:
        from pipelines.config import ConfigError, HeadshotConfig

        try:
            _State.config = HeadshotConfig.from_toml(_State.config_path) if _State.config_path else HeadshotConfig()
        except ConfigError as exc:
            _fail_config(exc)
    return _State.config


def _fail_config(exc) -> None:
    for line in exc.problems:
        typer.echo(f"headshot: error: {line}", err=True)
    raise typer.Exit(2)


def _project_path(p: str) -> str:
    """A path from the config file, relative to the file's folder."""
    if "://" in p or _State.config_path is None:
        return p
    q = Path(p).expanduser()
    return str(q if q.is_absolute() else _State.config_path.parent / q)


def _home() -> Optional[str]:
    """--home (or HEADSHOT_HOME), then the config file's home; None: the workspace's own default."""
    if _State.home or _State.config_path is None:
        return _State.home
    return _project_path(_config().home)


def _workspace(create: bool = True):
    from manifests.workspace import Workspace

    return Workspace.open(_home(), create=create)


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"headshot: error: {message}", err=True)
    raise typer.Exit(code)
