"""The train-when-ready flow's tasks: train a dataset version with the [train] settings, and
evaluate the run's generator as `headshot evaluate --run` does. Wiring over training/ only."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from prefect import task

from manifests.workspace import Workspace

# Fewer real pictures than this and the quality figures are skipped with the reason
# (training.evaluate needs 6: precision/recall's k = 5 neighbours plus the picture itself).
MIN_EVAL = 6


def train_config(section) -> tuple[Any, dict[str, Any]]:
    """(TrainConfig, the overrides) from the [train] table, as `headshot train` reads it."""
    from training.config import resolve

    overrides = dict(section.settings())
    return resolve(overrides.pop("preset", "dcgan"), dict(overrides)), overrides


@task(name="train")
def train_version(home: str, ref: str, section, run: str, resume: bool) -> dict:
    """Train dataset version `ref` (NAME@vN) into runs/<run>/, or go on with that run."""
    from training.data import dataset_source
    from training.run import train

    ws = Workspace.open(home)
    cfg, overrides = train_config(section)
    source = dataset_source(ws, ref)
    result = train(ws.runs, cfg, None if resume else source, ws=ws, name=None if resume else run,
                   resume=run if resume else None, overrides=overrides, progress=False)
    return {"run": result.run, "folder": str(result.folder), "step": result.step, "steps": result.steps,
            "interrupted": result.interrupted, "best": result.best, "losses": result.last_losses,
            "images_per_s": round(result.images_per_s, 1)}


@task(name="evaluate")
def evaluate_run(home: str, run: str) -> dict:
    """The run's best EMA generator against its version's val split (the train split when the
    version has none): every figure of training.evaluate, or why there are none."""
    import torch  # noqa: F401  (training.runs needs it; imported here so a failed import names this task)

    from training.data import load_pictures, val_images
    from training.evaluate import evaluate_sets
    from training.features import feature_key
    from training.run import COPY_SET, source_from_config
    from training.runs import generate, latents, load_generator, run_folder

    ws = Workspace.open(home)
    rf = run_folder(ws.runs, run)
    g, cfg, state = load_generator(rf, "best")
    src = source_from_config(ws, rf.read_config())
    train_set = load_pictures(src.files[:COPY_SET], cfg.size)
    real = val_images(src, cfg.size, cfg.eval_samples)
    against = "val"
    if real is None or len(real) < MIN_EVAL:
        real, against = train_set[:cfg.eval_samples], "train"
    if len(real) < MIN_EVAL or len(train_set) < MIN_EVAL:
        return {"skipped": f"{len(real)} real pictures: evaluating needs at least {MIN_EVAL}",
                "step": int(state["step"])}
    fake = generate(g, latents(len(real), cfg.nz, 10_000 + cfg.seed))
    stem = (src.content_hash or "nohash")[:16]
    figures = evaluate_sets(real, fake, train=train_set, cache_dir=ws.cache / "features",
                            real_key=feature_key(stem, against, cfg.size, len(real)),
                            train_key=feature_key(stem, "copyset", cfg.size, len(train_set)))
    figures.update(step=int(state["step"]), against=f"{against} split")
    return figures


def sample_grid_url(folder: str | Path) -> str | None:
    """The run's latest sample grid as a data: URL, or None when it wrote none."""
    grids = sorted((Path(folder) / "samples").glob("step-*.png"))
    if not grids:
        return None
    return "data:image/png;base64," + base64.b64encode(grids[-1].read_bytes()).decode("ascii")
