"""TrainConfig: every setting of a training run, saved into its config.json and every checkpoint.

The defaults are the DCGAN paper's (Radford et al. 2016: nz 100, ngf = ndf = 64, Adam 2e-4 with
betas 0.5/0.999, batch 64, 64 x 64 pictures). A preset is a named set of changes on top of them;
`--set KEY=VALUE` changes one field after the preset and the config file.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

SIZES = (64, 128)
LOSSES = ("bce", "hinge")
PENALTIES = ("none", "r1", "dragan")
AUGMENTS = ("diff", "baked", "none")
DIFF_POLICIES = ("translation", "color", "cutout", "swap")
DEVICES = ("auto", "cpu", "cuda", "mps")
TRISTATE = ("auto", "on", "off")
PRECISIONS = ("auto", "fp32", "bf16")


class ConfigError(ValueError):
    """A setting that is unknown, of the wrong type or out of range; the message names it."""


@dataclass(frozen=True)
class TrainConfig:
    preset: str = "dcgan"
    # The model (paper names).
    size: int = 64  # 64 (the paper's) or 128 (one more layer each side)
    nz: int = 100  # length of the latent vector z
    ngf: int = 64  # generator feature maps at the last layer
    ndf: int = 64  # discriminator feature maps at the first layer
    spectral_norm: bool = False  # on D's convolutions (SNGAN)
    # Optimisation.
    steps: int = 20_000  # generator updates; a run counts steps, not epochs
    batch_size: int = 64
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    loss: str = "bce"  # "bce": the paper's, on logits (BCEWithLogits); "hinge": SNGAN's
    penalty: str = "none"  # "r1" (on real pictures) or "dragan" (around real pictures)
    penalty_weight: float = 10.0
    penalty_every: int = 1  # lazy regularisation: the penalty every N steps, scaled by N
    label_smoothing: float = 0.0  # D's target for real pictures is 1 - this (one-sided)
    ema_decay: float = 0.999  # G_ema <- decay * G_ema + (1 - decay) * G, every step
    ema_start: int = 0  # steps of plain copying before the average starts
    ema_rampup: float = 0.05  # G_ema's half-life is at most this share of the steps so far (0 = off)
    # Augmentation.
    mirror: bool = True  # the real set is doubled by its mirror images (safe: faces are symmetric enough)
    augment: str = "diff"  # "diff": on real and fake batches before D; "baked": into the real set only
    diff_policy: tuple[str, ...] = ("translation", "color", "cutout", "swap")
    translation: float = 0.125  # largest shift, a fraction of the side
    cutout: float = 0.25  # side of the cut square, a fraction of the side
    swap_p: float = 0.25  # probability of the green/blue channel swap (below 0.5: see check() below)
    # Evaluation, samples, checkpoints (every N steps; 0 = never).
    sample_every: int = 500
    eval_every: int = 2000
    checkpoint_every: int = 1000
    eval_samples: int = 500
    best_metric: str = "kid"  # lower is better; the best checkpoint is kept by it
    # Device and speed.
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"  # "auto" measures fp32 against bf16 autocast on the device
    channels_last: str = "auto"
    compile: str = "auto"  # torch.compile: measured on a GPU; off on a CPU unless "on" (device.py says why)
    threads: int = 0  # torch threads on the CPU (0 = every core)
    # Conditional generation (ACGAN): the attributes G takes and D predicts, e.g. ("hair", "eyes")
    # from a dataset version's rows (`headshot attributes`); () is the plain DCGAN.
    conditional: tuple[str, ...] = ()
    ac_weight: float = 1.0  # the auxiliary classifier's loss against the adversarial one
    # Data beyond memory: above this many MB of pictures the set is streamed in shards.
    max_memory_mb: int = 2048
    shard_images: int = 8192

    def __post_init__(self) -> None:
        check(self)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["diff_policy"] = list(self.diff_policy)
        d["conditional"] = list(self.conditional)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ConfigError(f"unknown training setting {unknown[0]!r}; known: {', '.join(sorted(known))}")
        return cls(**{k: _coerce(known[k], v) for k, v in d.items()})

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=1, sort_keys=True)

    # What a resumed run must share with the run it continues: its weights only fit these.
    MODEL_KEYS = ("size", "nz", "ngf", "ndf", "spectral_norm", "conditional")

    def model_differences(self, other: "TrainConfig") -> list[str]:
        return [f"{k}: {getattr(other, k)!r} -> {getattr(self, k)!r}" for k in self.MODEL_KEYS
                if getattr(self, k) != getattr(other, k)]


def _range(name: str, value: Any, lo: float, hi: float | None = None) -> None:
    if value < lo or (hi is not None and value > hi):
        where = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
        raise ConfigError(f"training setting {name} = {value!r} is out of range: it must be {where}")


def _choice(name: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ConfigError(f"training setting {name} = {value!r}: choose one of {', '.join(map(str, allowed))}")


def check(c: TrainConfig) -> None:
    _choice("preset", c.preset, tuple(PRESETS))
    _choice("size", c.size, SIZES)
    _choice("loss", c.loss, LOSSES)
    _choice("penalty", c.penalty, PENALTIES)
    _choice("augment", c.augment, AUGMENTS)
    _choice("device", c.device, DEVICES)
    _choice("precision", c.precision, PRECISIONS)
    _choice("channels_last", c.channels_last, TRISTATE)
    _choice("compile", c.compile, TRISTATE)
    _choice("best_metric", c.best_metric, ("kid", "none"))
    for p in c.diff_policy:
        _choice("diff_policy", p, DIFF_POLICIES)
    for name in ("nz", "ngf", "ndf", "steps", "batch_size", "penalty_every", "eval_samples", "shard_images"):
        _range(name, getattr(c, name), 1)
    for name in ("sample_every", "eval_every", "checkpoint_every", "ema_start", "seed", "threads", "max_memory_mb"):
        _range(name, getattr(c, name), 0)
    for name in ("lr_g", "lr_d"):
        _range(name, getattr(c, name), 1e-7, 1.0)
    _range("beta1", c.beta1, 0.0, 0.999)
    _range("beta2", c.beta2, 0.0, 0.9999)
    _range("penalty_weight", c.penalty_weight, 0.0, 1e4)
    _range("label_smoothing", c.label_smoothing, 0.0, 0.5)
    _range("ema_decay", c.ema_decay, 0.0, 1.0)
    _range("ema_rampup", c.ema_rampup, 0.0, 1.0)
    _range("translation", c.translation, 0.0, 0.5)
    _range("cutout", c.cutout, 0.0, 1.0)
    # The swap is its own inverse. At p = 0.5 D sees the same mixture (half swapped, half not)
    # whether G draws the real colours or the swapped ones, so nothing stops G drifting to
    # blue skin: measured, 100% of samples after 1,500 steps (bench/train_leak.py). Below 0.5 the
    # real colours stay the commoner ones among what D sees, and G is pushed back to them.
    _range("swap_p", c.swap_p, 0.0, 0.45)
    _range("ac_weight", c.ac_weight, 0.0, 100.0)
    if len(set(c.conditional)) != len(c.conditional) or any(not a or "=" in a for a in c.conditional):
        raise ConfigError(f"training setting conditional = {list(c.conditional)!r}: distinct attribute names "
                          "such as hair,eyes")


def _coerce(f: dataclasses.Field, value: Any) -> Any:
    """A value from TOML, JSON or `--set` (a string) as the field's type; ConfigError otherwise."""
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    try:
        if kind == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
                return value.lower() in ("true", "1", "yes", "on")
            raise ValueError
        if kind == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if kind == "float":
            if isinstance(value, bool):
                raise ValueError
            out = float(value)
            if out != out or out in (float("inf"), float("-inf")):
                raise ValueError
            return out
        if kind.startswith("tuple"):
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            return tuple(str(v) for v in value)
        if kind == "str":
            if not isinstance(value, str):
                raise ValueError
            return value
    except (TypeError, ValueError):
        raise ConfigError(f"training setting {f.name} = {value!r} is not a valid {kind.split('[')[0]}") from None
    return value


# Named starting points. "dcgan" is the paper as it stands; "sngan" puts spectral norm on D
# with the hinge loss (Miyato et al. 2018); "dragan" adds the DRAGAN gradient penalty around
# the real pictures (Kodali et al. 2017), which MakeGirls.moe trained with.
PRESETS: dict[str, dict[str, Any]] = {
    "dcgan": {},
    "sngan": {"spectral_norm": True, "loss": "hinge"},
    "dragan": {"penalty": "dragan", "penalty_weight": 10.0},
}


def resolve(preset: str = "dcgan", file: dict[str, Any] | None = None, sets: dict[str, str] | None = None,
            **flags: Any) -> TrainConfig:
    """The preset, then a config file's [train] table, then --set KEY=VALUE, then explicit flags."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}: choose one of {', '.join(PRESETS)}")
    merged: dict[str, Any] = {"preset": preset, **PRESETS[preset]}
    for layer in (file or {}, sets or {}, {k: v for k, v in flags.items() if v is not None}):
        merged.update(layer)
    return TrainConfig.from_dict(merged)


def load_file(path: str | Path) -> dict[str, Any]:
    """The training settings of a TOML file: its [train] table, or the whole file if it has none."""
    import tomllib

    p = Path(path)
    try:
        doc = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"no such config file: {p}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p} is not valid TOML: {exc}") from None
    table = doc.get("train", doc)
    if not isinstance(table, dict):
        raise ConfigError(f"{p}: [train] must be a table")
    return dict(table)


def with_changes(cfg: TrainConfig, **changes: Any) -> TrainConfig:
    return replace(cfg, **changes)


__all__ = ["AUGMENTS", "ConfigError", "DIFF_POLICIES", "LOSSES", "PENALTIES", "PRESETS", "SIZES", "TrainConfig",
           "load_file", "resolve", "with_changes"]

