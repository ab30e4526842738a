"""Checkpoints: everything a run needs to go on exactly where it stopped, written atomically.

A checkpoint holds G, D and G_ema, both optimizers, the step, every random state (Python,
NumPy, torch on the CPU and the device, the run's own generators, the batch order), the
config, the fixed noise of the sample grids and the dataset's content hash. It is written to
a temp file beside its place, flushed to disk and renamed, so a kill at any moment leaves the
previous checkpoint whole and loadable.
"""

from __future__ import annotations

import os
import random
import secrets
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

FORMAT = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be used (missing, damaged, or of another model)."""


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(path: Path, state: dict[str, Any]) -> None:
    """torch.save, atomically: temp file, fsync, rename, fsync of the folder."""
    from manifests.atomic import space_for

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}-{secrets.token_hex(4)}")
    with space_for(path.parent, 50 * 2**20):
        try:
            with open(tmp, "wb") as f:
                torch.save({"format": FORMAT, **state}, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def copy(src: Path, dst: Path) -> None:
    """dst becomes a copy of src, atomically (best.pt from last.pt)."""
    tmp = dst.with_name(f".tmp-{dst.name}-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        shutil.copyfile(src, tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


def load(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # a damaged or foreign file: say which, not how pickle failed
        raise CheckpointError(f"{path} is not a readable headshot checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a headshot checkpoint of format {FORMAT}")
    return state


def clean_temps(folder: Path) -> None:
    """Temp files of a writer that was killed (the run holds its folder alone)."""
    for p in folder.glob(".tmp-*"):
        p.unlink(missing_ok=True)
