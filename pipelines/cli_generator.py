"""`headshot serve-generator`: the generator page for one training run (pipelines/generator_app.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from pipelines.cli_app import _fail, _workspace, app


@app.command("serve-generator")
def serve_generator(
    run: str = typer.Option(..., "--run", help="A training run under runs/."),
    styles: Optional[str] = typer.Option(None, "--styles", help="A folder of paintings for the style picker."),
    host: str = typer.Option("127.0.0.1", "--host", help="The interface to listen on (anything but loopback "
                             "needs an access token)."),
    port: int = typer.Option(8766, "--port", help="The port (0: any free one)."),
    token: Optional[str] = typer.Option(None, "--token", help="The access token (16+ characters; made up for "
                                        "another --host when not given)."),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | mps | auto."),
) -> None:
    """A page to generate faces from a run: a control per attribute it was trained on, a seed
    and a random button, a style picker over a folder of paintings, an interpolation slider
    between two seeds, and a download link.

    Example: headshot serve-generator --run hair-20261203-120000 --styles ../shared/data/paintings
    """
    from curation.review.server import ReviewServerError, is_loopback, new_token
    from pipelines.generator_app import GeneratorError, GeneratorServer
    from training.checkpoint import CheckpointError
    from training.device import DeviceError, pick_device
    from training.run import TrainError

    if token is None and not is_loopback(host):
        token = new_token()
    try:
        server = GeneratorServer(_workspace(create=False).runs, run, Path(styles) if styles else None, host=host,
                                 port=port, token=token, device=str(pick_device(device)))
    except (GeneratorError, ReviewServerError, TrainError, CheckpointError, DeviceError) as exc:
        _fail(str(exc))
    try:
        server.serve_forever(announce=lambda url: typer.echo(f"the generator page: {url} (Ctrl-C stops it)"))
    except ReviewServerError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        typer.echo("stopped")
