"""A training run's folder, `runs/<run>/` (its layout: training/run.py), what a finished run
reports, and the files the loop keeps there: config.json written whole, metrics.jsonl cut back
to a checkpoint's step on resuming."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .data import Source
from .device import Speed


class TrainError(ValueError):
    """The run cannot start or go on; the message says why and what to do."""


@dataclass
class RunFolder:
    root: Path

    config = property(lambda self: self.root / "config.json")
    checkpoints = property(lambda self: self.root / "checkpoints")
    last = property(lambda self: self.root / "checkpoints" / "last.pt")
    best = property(lambda self: self.root / "checkpoints" / "best.pt")
    samples = property(lambda self: self.root / "samples")
    gif = property(lambda self: self.root / "progress.gif")
    metrics = property(lambda self: self.root / "metrics.jsonl")
    tb = property(lambda self: self.root / "tb")

    def read_config(self) -> dict[str, Any]:
        try:
            return json.loads(self.config.read_text())
        except (OSError, ValueError) as exc:
            raise TrainError(f"{self.root} is not a training run ({exc})") from None


@dataclass
class RunResult:
    run: str
    folder: Path
    step: int
    steps: int
    interrupted: bool = False
    best: dict[str, Any] = field(default_factory=dict)
    last_losses: dict[str, float] = field(default_factory=dict)
    speed: Speed | None = None
    images_per_s: float = 0.0


def write_json(path: Path, doc: dict[str, Any]) -> None:
    from manifests.atomic import write_bytes_atomic

    write_bytes_atomic(path, json.dumps(doc, indent=1, sort_keys=True, default=str).encode())


def new_run_name(src: Source) -> str:
    from manifests.workspace import utcnow

    stem = f"{src.name}-v{src.version}" if src.kind == "dataset" else "images"
    return f"{stem}-{utcnow().strftime('%Y%m%d-%H%M%S')}"


def truncate_metrics(path: Path, step: int) -> None:
    """Rows logged after the checkpoint a run resumes from were never kept: drop them."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                keep.append(line)
        except ValueError:
            pass  # a line cut by a kill
    from manifests.atomic import write_bytes_atomic

    write_bytes_atomic(path, ("\n".join(keep) + "\n" if keep else "").encode())
