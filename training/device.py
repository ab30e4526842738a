"""The device a run trains on, and the speed settings that measured fastest there.

bf16 autocast, channels_last and torch.compile each help or hurt depending on the device and
the batch (../shared/STACK.md): on this project's 2-core Xeon, bf16 autocast with
channels_last ran DCGAN-64 at 2.4x fp32 (the CPU has AMX), while channels_last alone gave
1.1x. So "auto" measures the candidates on the run's own model and batch for a few steps,
once per machine and setting, and remembers the answer in the user cache.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .config import TrainConfig


class DeviceError(ValueError):
    pass


@dataclass(frozen=True)
class Speed:
    precision: str  # fp32 | bf16
    channels_last: bool
    compile: bool
    measured: dict | None = None  # img/s per candidate, when measured

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return torch.bfloat16 if self.precision == "bf16" else None


def pick_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError("--device cuda: no CUDA GPU is visible to PyTorch here (try --device auto or cpu)")
    if name == "mps" and not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
        raise DeviceError("--device mps: Apple's Metal backend is not available here (try --device auto or cpu)")
    return torch.device(name)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        model = ""
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        return f"{model or platform.processor() or 'cpu'} x{torch.get_num_threads()}"
    return device.type


def _cache_file() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "headshot" / "train-speed.json"


def _bf16_ok(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu"


def choose(cfg: TrainConfig, device: torch.device, measure=None) -> Speed:
    """Explicit settings win; "auto" ones are measured (or read from the cache)."""
    want_p, want_cl, want_c = cfg.precision, cfg.channels_last, cfg.compile
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    fixed = {"precision": want_p if want_p != "auto" else None,
             "channels_last": {"on": True, "off": False}.get(want_cl),
             "compile": {"on": True, "off": False}.get(want_c)}
    if want_c == "auto" and device.type != "cuda":
        # On a CPU a cold compile costs ~30 s on 2 cores and measured no faster than bf16 with
        # channels_last (../shared/STACK.md): only a GPU gets it measured.
        fixed["compile"] = False
    if want_p == "bf16" and not _bf16_ok(device):
        raise DeviceError(f"precision bf16 is not supported on {device_name(device)}")
    if all(v is not None for v in fixed.values()):
        return Speed(fixed["precision"], fixed["channels_last"], fixed["compile"])
    key = json.dumps({"device": device_name(device), "torch": torch.__version__, "size": cfg.size,
                      "batch": cfg.batch_size, "ngf": cfg.ngf, "ndf": cfg.ndf, "sn": cfg.spectral_norm,
                      "fixed": fixed}, sort_keys=True)
    cache = _read_cache()
    if key in cache:
        c = cache[key]
        return Speed(c["precision"], c["channels_last"], c["compile"], c.get("measured"))
    candidates = [Speed(p, cl, cp)
                  for p in ([fixed["precision"]] if fixed["precision"] else
                            ["fp32"] + (["bf16"] if _bf16_ok(device) else []))
                  for cl in ([fixed["channels_last"]] if fixed["channels_last"] is not None else [False, True])
                  for cp in ([fixed["compile"]] if fixed["compile"] is not None else [False, True])]
    rates = {f"{s.precision}{'+cl' if s.channels_last else ''}{'+compile' if s.compile else ''}":
             (measure or measure_rate)(cfg, device, s) for s in candidates}
    best = max(zip(rates.values(), candidates), key=lambda t: t[0])[1]
    chosen = Speed(best.precision, best.channels_last, best.compile, rates)
    cache[key] = asdict(chosen)
    _write_cache(cache)
    return chosen


def _read_cache() -> dict:
    try:
        return json.loads(_cache_file().read_text())
    except (OSError, ValueError):
        return {}


def _write_cache(cache: dict) -> None:
    path = _cache_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
        tmp.write_text(json.dumps(cache, indent=1, sort_keys=True))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home: measured again next time, nothing lost


def measure_rate(cfg: TrainConfig, device: torch.device, speed: Speed, steps: int = 4, warmup: int = 2) -> float:
    """Pictures per second of full training steps (D real + fake, G) on random data."""
    from .loop import Trainer

    trainer = Trainer(cfg, device, speed)
    real = torch.rand(cfg.batch_size, 3, cfg.size, cfg.size, device=device) * 2 - 1
    for i in range(warmup + steps):
        if i == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
        trainer.step(real)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return cfg.batch_size * steps / (time.perf_counter() - t)
