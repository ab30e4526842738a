"""A run's generator, loaded for sampling (what is in `runs/` is listed by runs_index.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from . import checkpoint as ckpt
from .config import TrainConfig
from .model import Generator
from .run_folder import RunFolder, TrainError
from .runs_index import list_runs


def run_folder(runs_dir: Path, run: str) -> RunFolder:
    rf = RunFolder(runs_dir / run)
    if not rf.config.is_file():
        names = [r["run"] for r in list_runs(runs_dir)]
        raise TrainError(f"no training run {run!r} in {runs_dir} (runs: {', '.join(names) or 'none yet'})")
    return rf


def load_generator(rf: RunFolder, which: str = "best", device: str | torch.device = "cpu") -> tuple[Generator, TrainConfig, dict]:
    """The run's EMA generator from best.pt (or last.pt), in eval mode, and its config."""
    path = rf.best if which == "best" and rf.best.is_file() else rf.last
    state = ckpt.load(path, map_location=device)
    cfg = TrainConfig.from_dict(state["config"])
    vocab = attributes_of(state)
    g = Generator(cfg.nz, cfg.ngf, cfg.size, classes=tuple(len(v) for v in vocab.values()))
    try:
        g.load_state_dict(state["G_ema"])
    except RuntimeError as exc:
        raise ckpt.CheckpointError(f"{path}: its generator does not fit the model its config names ({exc})") from None
    return g.to(device).eval(), cfg, state


def attributes_of(state: dict) -> dict[str, list[str]]:
    """The attributes a run was trained on and their values ({} for an unconditional run)."""
    return {str(k): [str(v) for v in vs] for k, vs in dict(state.get("attributes") or {}).items()}


def attribute_labels(vocab: dict[str, list[str]], asked: dict[str, str], n: int, seed: int) -> torch.Tensor:
    """n x len(vocab) class indices: the asked value of each attribute, a seeded random one for
    the others. TrainError for an attribute or value the run does not know (listing those it does)."""
    if asked and not vocab:
        raise TrainError("this run was trained without attributes (not with --conditional): it cannot be asked "
                         f"for {', '.join(f'{k}={v}' for k, v in asked.items())}")
    for k, v in asked.items():
        if k not in vocab:
            raise TrainError(f"--attr {k}={v}: the run knows the attributes {', '.join(vocab)}")
        if v not in vocab[k]:
            raise TrainError(f"--attr {k}={v}: the run was trained on {k} = {', '.join(vocab[k])}")
    gen = torch.Generator().manual_seed(seed + 1)
    cols = []
    for k, values in vocab.items():
        if k in asked:
            cols.append(torch.full((n,), values.index(asked[k]), dtype=torch.long))
        else:
            cols.append(torch.randint(len(values), (n,), generator=gen))
    return torch.stack(cols, dim=1)


@torch.no_grad()
def generate(g: Generator, z: torch.Tensor, batch: int = 64, labels: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 N x 3 x H x W pictures of G for latents z (N x nz), and for a conditional G the
    attributes' values (N x A class indices)."""
    out = []
    dev = next(g.parameters()).device
    if g.classes and labels is None:
        raise TrainError("this run is conditional: give the attributes' values")
    for i in range(0, z.shape[0], batch):
        x = g(z[i:i + batch].to(dev), labels[i:i + batch].to(dev)) if g.classes else g(z[i:i + batch].to(dev))
        out.append(((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu())
    return torch.cat(out)


def latents(n: int, nz: int, seed: int) -> torch.Tensor:
    """The same n latents for the same seed, on every machine (drawn on the CPU)."""
    return torch.randn(n, nz, generator=torch.Generator().manual_seed(seed))
