"""A training run: `runs/<run>/` with its config, checkpoints, sample grids, progress GIF,
metrics and TensorBoard events, and the loop that fills it.

    runs/<run>/config.json            every setting, the data (name, version, content hash), code version
    runs/<run>/checkpoints/last.pt    written every checkpoint_every steps, at the end and on Ctrl-C
    runs/<run>/checkpoints/best.pt    the checkpoint with the lowest KID so far
    runs/<run>/samples/step-NNNNNN.png  an 8 x 8 grid of the same fixed noise, every sample_every steps
    runs/<run>/progress.gif           those grids in order
    runs/<run>/metrics.jsonl          losses and speed every few steps, evaluations when they run
    runs/<run>/tb/                    the same for TensorBoard (`tensorboard --logdir runs`)

The loop counts generator steps. `--resume RUN` goes on from last.pt to the run's own number
of steps (or `steps`, a total): the result is the same, bit for bit on the CPU, as a run that
was never stopped.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import torch

from . import checkpoint as ckpt
from .config import TrainConfig
from .data import Batches, DataError, Source, dataset_source, folder_source, label_matrix, load_pictures, vocabulary
from .device import choose, device_name, pick_device
from .distributed import Ranks, start
from .loop import Diverged, Trainer
from .run_folder import RunFolder, RunResult, TrainError, new_run_name, truncate_metrics, write_json
from .samples import grid, progress_gif, save_png

log = logging.getLogger("headshot.train")
LOG_EVERY = 10
GRID = 64  # pictures in a sample grid (8 x 8)
COPY_SET = 2000  # training pictures the copy check compares samples with


class _StopFlag:
    """Ctrl-C (or SIGTERM) asks the loop to stop after the step in hand, with a checkpoint; a
    second Ctrl-C stops at once."""

    def __init__(self) -> None:
        self.set = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "_StopFlag":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.set:
            raise KeyboardInterrupt
        self.set = True

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def source_from_config(ws, saved: dict[str, Any]) -> Source:
    d = saved["data"]
    if d["kind"] == "dataset":
        return dataset_source(ws, f"{d['name']}@v{d['version']}")
    return folder_source(d["name"])


def train(runs_dir: Path, cfg: TrainConfig, source: Source | None = None, *, ws=None, name: str | None = None,
          resume: str | None = None, overrides: dict[str, Any] | None = None, progress: bool = True,
          echo: Callable[[str], None] = lambda s: None, evaluate: Callable | None = None) -> RunResult:
    """Train `cfg` on `source` into runs_dir/<name>, or go on with run `resume`."""
    if resume:
        folder = RunFolder(runs_dir / resume)
        if not folder.last.is_file():
            raise TrainError(f"--resume {resume}: no checkpoint in {folder.root} "
                             f"(runs: {', '.join(sorted(p.name for p in runs_dir.glob('*') if p.is_dir())) or 'none'})")
        saved = folder.read_config()
        saved_cfg = TrainConfig.from_dict(saved["config"])
        asked = TrainConfig.from_dict({**saved["config"], **(overrides or {})})
        diffs = asked.model_differences(saved_cfg)
        if diffs:
            raise TrainError(f"--resume {resume}: the model settings differ from the run's ({'; '.join(diffs)}); "
                             "start a new run to change them")
        src = source or source_from_config(ws, saved)
        if src.content_hash != saved["data"]["content_hash"]:
            raise TrainError(f"--resume {resume}: the data differs from the run's ({src.name} {src.version or ''} "
                             f"has content {src.content_hash[:12]}, the run trained on {saved['data']['content_hash'][:12]}); "
                             "start a new run for new data")
        cfg = asked
        run = resume
    else:
        if source is None:
            raise TrainError("nothing to train on: give --dataset NAME or --images DIR")
        run = name or new_run_name(source)
        folder = RunFolder(runs_dir / run)
        if folder.root.exists() and any(folder.root.iterdir()):
            raise TrainError(f"run {run} exists already in {runs_dir}: choose another --name, or --resume {run}")
        src = source
    ranks = start(pick_device(cfg.device), cfg.batch_size)  # under torchrun: after every rank's checks above
    try:
        if ranks.main:
            folder.checkpoints.mkdir(parents=True, exist_ok=True)
            ckpt.clean_temps(folder.checkpoints)
        r = _Run(folder, run, cfg, src, progress, echo, evaluate, resume is not None, ranks)
        r.cache_dir = ws.cache / "features" if ws is not None else None
        return r.go()
    finally:
        ranks.close()


class _Run:
    def __init__(self, folder: RunFolder, run: str, cfg: TrainConfig, src: Source, progress: bool,
                 echo: Callable[[str], None], evaluate: Callable | None, resuming: bool, ranks: Ranks | None = None):
        self.folder, self.run, self.cfg, self.src = folder, run, cfg, src
        self.progress, self.echo, self.resuming = progress, echo, resuming
        self.evaluate = evaluate
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        # One rank of one, or this process's place among torchrun's: only rank 0 writes the run folder.
        self.ranks = ranks or Ranks(pick_device(cfg.device))
        self.device = self.ranks.device
        self.best: dict[str, Any] = {}
        self.tb = None

    # -- set-up ------------------------------------------------------------------------------
    def _setup(self) -> None:
        cfg = self.cfg
        self.speed = self.ranks.from_main(lambda: choose(cfg, self.device))
        bake = None
        if cfg.augment == "baked":
            from .augment import bake as bake_fn

            bake = lambda images: bake_fn(images, cfg, cfg.seed + 4)  # noqa: E731
        state = ckpt.load(self.folder.last, map_location=self.device) if self.resuming else None
        # A conditional run's classes: from the data at the start, from the checkpoint on resuming.
        self.vocab: dict[str, list[str]] = {}
        labels = None
        if cfg.conditional:
            self.vocab = dict(state["attributes"]) if state is not None and "attributes" in state else \
                vocabulary(self.src, cfg.conditional)
            labels = label_matrix(self.src, self.vocab)
        classes = tuple(len(v) for v in self.vocab.values())
        self.batches = Batches(self.src, cfg, self.device, progress=self.progress, bake=bake, share=self.ranks.share,
                               labels=labels)
        self.trainer = Trainer(cfg, self.device, self.speed, classes=classes)
        g = torch.Generator().manual_seed(cfg.seed + 5)  # never the training streams: samples leave them alone
        self.fixed_noise = torch.randn(GRID, cfg.nz, 1, 1, generator=g)
        self.eval_noise = torch.randn(cfg.eval_samples, cfg.nz, 1, 1, generator=g)
        # A grid's rows go through the first attribute's values; the others, and the evaluation
        # samples', are drawn at random.
        self.fixed_labels = self.eval_labels = None
        if classes:
            self.fixed_labels = torch.stack([torch.randint(n, (GRID,), generator=g) for n in classes], dim=1)
            self.fixed_labels[:, 0] = (torch.arange(GRID) // 8) % classes[0]
            self.eval_labels = torch.stack([torch.randint(n, (cfg.eval_samples,), generator=g) for n in classes], dim=1)
        if state is not None:
            self.trainer.load_state_dict(state)
            self.batches.load_state_dict(state["batches"])
            ckpt.set_rng_state(state["rng"])
            self.fixed_noise, self.eval_noise = state["fixed_noise"].cpu(), state["eval_noise"].cpu()
            self.best = state.get("best", {})
        self.ranks.wrap(self.trainer)
        if not self.ranks.main:
            return
        if self.resuming:
            truncate_metrics(self.folder.metrics, self.trainer.step_no)
        write_json(self.folder.config, {
            "run": self.run, "config": cfg.as_dict(), "data": self.src.describe(), "device": device_name(self.device),
            "processes": self.ranks.world, **({"attributes": self.vocab} if self.vocab else {}),
            "speed": {"precision": self.speed.precision, "channels_last": self.speed.channels_last,
                      "compile": self.speed.compile, "measured": self.speed.measured},
            "code_version": _code_version()})

    def _state(self) -> dict[str, Any]:
        return {**self.trainer.state_dict(), "batches": self.batches.state_dict(), "rng": ckpt.rng_state(),
                **({"attributes": self.vocab} if self.vocab else {}),
                "config": self.cfg.as_dict(), "fixed_noise": self.fixed_noise, "eval_noise": self.eval_noise,
                "data": self.src.describe(), "best": self.best, "code_version": _code_version()}

    # -- the loop ----------------------------------------------------------------------------
    def go(self) -> RunResult:
        from tqdm import tqdm

        self._setup()
        cfg, t = self.cfg, self.trainer
        result = RunResult(self.run, self.folder.root, t.step_no, cfg.steps, speed=self.speed)
        if t.step_no >= cfg.steps:
            self.echo(f"run {self.run} is at step {t.step_no} of {cfg.steps}: nothing to do")
            return result
        main = self.ranks.main
        self.tb = _tensorboard(self.folder.tb, t.step_no) if main else None
        started, done_since = time.perf_counter(), 0
        losses: dict[str, float] = {}
        with _StopFlag() as stop, \
                open(self.folder.metrics, "a", encoding="utf-8") if main else contextlib.nullcontext() as metrics, \
                tqdm(total=cfg.steps, initial=t.step_no, unit="step", desc=f"train {self.run}",
                     disable=None if self.progress and main else True, dynamic_ncols=True) as bar:
            while t.step_no < cfg.steps:
                try:
                    losses = t.step(*self.batches.next_with_labels())
                except Diverged as exc:
                    self._write_log(metrics, {"step": exc.step, "diverged": exc.what})
                    raise TrainError(f"training diverged at step {exc.step + 1}: {exc.what}. The last good checkpoint "
                                     f"is {self._last_step()} ({self.folder.last}); resume from it with a lower "
                                     "learning rate, or try --preset sngan") from None
                except torch.cuda.OutOfMemoryError:
                    raise TrainError(f"CUDA ran out of memory at batch size {cfg.batch_size}: try "
                                     f"--batch-size {max(1, cfg.batch_size // 2)}") from None
                done_since += 1
                step = t.step_no
                rate = done_since * cfg.batch_size / max(1e-9, time.perf_counter() - started)
                bar.update(1)
                if step % LOG_EVERY == 0 or step == cfg.steps:
                    losses = self.ranks.mean(losses)
                    bar.set_postfix(loss_d=f"{losses['loss_d']:.3f}", loss_g=f"{losses['loss_g']:.3f}",
                                    img_s=f"{rate:.0f}")
                    self._write_log(metrics, {"step": step, **losses, "images_per_s": round(rate, 2)})
                if cfg.sample_every and (step % cfg.sample_every == 0 or step == cfg.steps):
                    self._sample(step)
                evaluated = cfg.best_metric != "none" and cfg.eval_every and step % cfg.eval_every == 0
                if evaluated or (step == cfg.steps and cfg.best_metric != "none"):
                    self._eval_and_keep_best(step, metrics)
                elif (cfg.checkpoint_every and step % cfg.checkpoint_every == 0) or step == cfg.steps:
                    self._save_last()
                if self.ranks.any(stop.set) and step < cfg.steps:
                    self._save_last()
                    result.interrupted = True
                    break
        if main and cfg.best_metric == "none" and t.step_no >= cfg.steps:
            ckpt.copy(self.folder.last, self.folder.best)  # nothing to judge by: the last is the best there is
        if main and cfg.sample_every:
            progress_gif(self.folder.samples, self.folder.gif)
        if self.tb is not None:
            self.tb.close()
        self.ranks.finish(t)
        result.step, result.best, result.last_losses = t.step_no, self.best, losses
        result.images_per_s = done_since * cfg.batch_size / max(1e-9, time.perf_counter() - started)
        return result

    def _last_step(self) -> str:
        try:
            return f"step {int(ckpt.load(self.folder.last)['step'])}"
        except ckpt.CheckpointError:
            return "none yet"

    def _save_last(self) -> None:
        if self.ranks.main:
            ckpt.save(self.folder.last, self._state())

    def _write_log(self, f, row: dict[str, Any]) -> None:
        if f is None:  # not rank 0
            return
        f.write(json.dumps(row, sort_keys=True) + "\n")
        f.flush()
        if self.tb is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)):
                    self.tb.add_scalar(k, v, row["step"])

    def _sample(self, step: int) -> None:
        if not self.ranks.main:
            return
        im = grid(self.trainer.sample(self.fixed_noise, labels=self.fixed_labels))
        save_png(im, self.folder.samples / f"step-{step:06d}.png")
        if self.tb is not None:
            import numpy as np

            self.tb.add_image("samples", np.asarray(im).transpose(2, 0, 1), step)

    def _eval_and_keep_best(self, step: int, metrics) -> None:
        if not self.ranks.main:
            return  # the others wait for rank 0 in the next step's all-reduce
        figures = self._evaluate()
        self._write_log(metrics, {"step": step, **{f"eval/{k}": v for k, v in figures.items()
                                                   if isinstance(v, (int, float))}})
        value = figures.get("kid_x1e3")
        better = value is not None and (not self.best or value < self.best["value"])
        if better:
            self.best = {"metric": "kid_x1e3", "value": value, "step": step}
        self._save_last()
        if better:
            ckpt.copy(self.folder.last, self.folder.best)

    def _evaluate(self) -> dict[str, Any]:
        if self.evaluate is not None:
            return self.evaluate(self)
        return evaluate_run_state(self)


def evaluate_run_state(r: "_Run") -> dict[str, Any]:
    """The run's G_ema against the val split (or, with none, the train pictures). The real
    sets' features are computed once per run, and cached in the workspace per dataset version."""
    from .evaluate import evaluate_sets
    from .features import FeatureExtractor, feature_key

    if not hasattr(r, "_real_eval"):
        from .data import val_images

        r._real_eval = val_images(r.src, r.cfg.size, r.cfg.eval_samples)
        r._train_sample = load_pictures(r.src.files[:COPY_SET], r.cfg.size)
        which = "val"
        if r._real_eval is None:
            r._real_eval, which = r._train_sample[:r.cfg.eval_samples], "train"
        r._extractor = FeatureExtractor(str(r.device) if r.device.type == "cuda" else "cpu")
        stem = (r.src.content_hash or "nohash")[:16]
        r._keys = (feature_key(stem, which, r.cfg.size, len(r._real_eval)),
                   feature_key(stem, "copyset", r.cfg.size, len(r._train_sample)))
    fake = r.trainer.sample(r.eval_noise, labels=r.eval_labels)
    cache = getattr(r, "cache_dir", None)
    return evaluate_sets(r._real_eval, fake, train=r._train_sample, extractor=r._extractor, cache_dir=cache,
                         real_key=r._keys[0] if cache else None, train_key=r._keys[1] if cache else None)


def _tensorboard(folder: Path, step: int):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard missing: metrics.jsonl has everything
        return None
    return SummaryWriter(log_dir=str(folder), purge_step=step or None)


def _code_version() -> str:
    from manifests.tables import code_version

    return code_version()


def with_steps(cfg: TrainConfig, steps: int | None) -> TrainConfig:
    return replace(cfg, steps=steps) if steps else cfg


__all__ = ["DataError", "RunFolder", "RunResult", "TrainError", "dataset_source", "folder_source", "train"]
