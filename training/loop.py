"""One training step, as in the DCGAN paper: D on a real batch and a generated batch, then G.

Trainer holds what changes as the run goes (G, D, G_ema, both Adam optimizers, the noise and
augmentation generators) and is the only thing a checkpoint has to restore.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
import torch.nn.functional as F

from .augment import diff_augment, mirror
from .config import TrainConfig
from .distributed import step_seed
from .model import EMA, build


class Diverged(RuntimeError):
    """A loss became NaN or infinite: the step is not applied."""

    def __init__(self, step: int, what: str):
        super().__init__(step, what)
        self.step, self.what = step, what


class Trainer:
    """`classes`: values per attribute of a conditional run (ACGAN: G(z, y), D also classifies
    y, with cfg.ac_weight), () for the plain DCGAN."""

    def __init__(self, cfg: TrainConfig, device: torch.device, speed, seed_offset: int = 0,
                 classes: tuple[int, ...] = ()):
        self.cfg, self.device, self.speed = cfg, device, speed
        self.classes = tuple(classes)
        torch.manual_seed(cfg.seed + seed_offset)
        self.g, self.d = build(cfg, self.classes)
        self.g.to(device)
        self.d.to(device)
        if speed.channels_last:
            self.g.to(memory_format=torch.channels_last)
            self.d.to(memory_format=torch.channels_last)
        self.ema = EMA(self.g, cfg.ema_decay, cfg.ema_start, cfg.ema_rampup)
        self.opt_g = torch.optim.Adam(self.g.parameters(), cfg.lr_g, betas=(cfg.beta1, cfg.beta2))
        self.opt_d = torch.optim.Adam(self.d.parameters(), cfg.lr_d, betas=(cfg.beta1, cfg.beta2))
        # The run's own random streams, on the device: noise for G, draws for augmentation.
        self.noise_gen = torch.Generator(device=device).manual_seed(cfg.seed + 2)
        self.aug_gen = torch.Generator(device=device).manual_seed(cfg.seed + 3)
        self.step_no = 0
        self.share = (0, 1)  # (rank, processes): distributed.Ranks.wrap sets both lines under torchrun
        self.keep_ema = True
        self._g_run = torch.compile(self.g) if speed.compile else self.g
        self._d_run = torch.compile(self.d) if speed.compile else self.d

    # -- the step ----------------------------------------------------------------------------
    def _autocast(self):
        dtype = self.speed.autocast_dtype
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    def _aug(self, x: torch.Tensor) -> torch.Tensor:
        return diff_augment(x, self.cfg, self.aug_gen)

    def _d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        if self.cfg.loss == "hinge":
            return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()
        target = torch.full_like(real_logits, 1.0 - self.cfg.label_smoothing)
        return (F.binary_cross_entropy_with_logits(real_logits, target)
                + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))

    def _g_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        if self.cfg.loss == "hinge":
            return -fake_logits.mean()
        # Non-saturating: G maximises log D(G(z)) instead of minimising log(1 - D(G(z))).
        return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))

    def _split(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """D's output -> (the real/fake logits, the class logits or None)."""
        if not self.classes:
            return out, None
        return out[:, 0], out[:, 1:]

    def _class_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over the attributes, on the pictures whose value is known (>= 0)."""
        total, off = logits.new_zeros(()), 0
        for a, n in enumerate(self.classes):
            known = labels[:, a] >= 0
            if bool(known.any()):
                total = total + F.cross_entropy(logits[known, off:off + n].float(), labels[known, a].long())
            off += n
        return total / max(1, len(self.classes))

    def fake_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """Values for the generated half: the real batch's own, shuffled (so G sees the data's
        mixture of values), an unknown one replaced by a uniform draw."""
        perm = torch.randperm(labels.shape[0], generator=self.noise_gen, device=self.device)
        out = labels[perm].clone()
        for a, n in enumerate(self.classes):
            unknown = out[:, a] < 0
            if bool(unknown.any()):
                out[unknown, a] = torch.randint(n, (int(unknown.sum()),), generator=self.noise_gen,
                                                device=self.device)
        return out

    def _penalty(self, real: torch.Tensor) -> torch.Tensor:
        """R1 (the gradient's squared norm on real pictures) or DRAGAN (the gradient's norm kept
        near 1 in a noisy neighbourhood of the real pictures), in fp32."""
        cfg = self.cfg
        if cfg.penalty == "dragan":
            noise = torch.rand(real.shape, generator=self.aug_gen, device=real.device, dtype=real.dtype)
            x = real + 0.5 * real.std() * noise
            alpha = torch.rand(real.shape[0], 1, 1, 1, generator=self.aug_gen, device=real.device)
            x = (real + alpha * (x - real)).detach().requires_grad_(True)
        else:
            x = real.detach().requires_grad_(True)
        out, _ = self._split(self._d_run(self._aug(x)))
        (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
        norm2 = grad.pow(2).flatten(1).sum(1)
        if cfg.penalty == "dragan":
            return (norm2.add(1e-12).sqrt() - 1.0).pow(2).mean() * cfg.penalty_weight
        return norm2.mean() * (cfg.penalty_weight / 2)

    def step(self, real: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, float]:
        """One update of D then G on `real` (a batch in [-1, 1] on the device); `labels`: B x A
        class indices of a conditional run (-1 where a picture's value is not known)."""
        cfg = self.cfg
        if self.classes and labels is None:
            raise ValueError("a conditional run trains on labelled batches")
        b = real.shape[0]
        rank, world = self.share
        if world > 1:
            # Each rank its own augmentation draws, from (seed, step, rank): no state per rank to checkpoint.
            self.aug_gen.manual_seed(step_seed(cfg.seed, self.step_no, rank))
        if cfg.mirror:
            real = mirror(real, self.aug_gen)
        if self.speed.channels_last:
            real = real.contiguous(memory_format=torch.channels_last)
        # The whole batch's noise on every rank (one stream, the same everywhere), this rank's share of it.
        z = torch.randn(b * world, cfg.nz, 1, 1, generator=self.noise_gen, device=self.device)[rank * b:(rank + 1) * b]
        y_fake = None
        if self.classes:
            labels = labels.to(self.device)
            y_fake = self.fake_labels(labels)

        self.opt_d.zero_grad(set_to_none=True)
        extra: dict[str, float] = {}
        with self._autocast():
            fake = self._g_run(z, y_fake) if self.classes else self._g_run(z)
            real_logits, real_cls = self._split(self._d_run(self._aug(real)))
            fake_logits, fake_cls = self._split(self._d_run(self._aug(fake.detach())))
            real_logits, fake_logits = real_logits.float(), fake_logits.float()
            loss_d = self._d_loss(real_logits, fake_logits)
        total_d = loss_d
        if self.classes:
            loss_cls = self._class_loss(real_cls, labels) + self._class_loss(fake_cls, y_fake)
            total_d = total_d + cfg.ac_weight * loss_cls
            extra["loss_cls_d"] = float(loss_cls.detach())
        if cfg.penalty != "none" and self.step_no % cfg.penalty_every == 0:
            penalty = self._penalty(real) * cfg.penalty_every
            total_d = total_d + penalty
        if not torch.isfinite(total_d):
            raise Diverged(self.step_no, f"D's loss is {total_d.item()}")
        total_d.backward()
        self.opt_d.step()

        self.opt_g.zero_grad(set_to_none=True)
        with self._autocast():
            fake_logits_g, fake_cls_g = self._split(self._d_run(self._aug(fake)))
            loss_g = self._g_loss(fake_logits_g.float())
        if self.classes:
            loss_cls_g = self._class_loss(fake_cls_g, y_fake)
            loss_g = loss_g + cfg.ac_weight * loss_cls_g
            extra["loss_cls_g"] = float(loss_cls_g.detach())
        if not torch.isfinite(loss_g):
            raise Diverged(self.step_no, f"G's loss is {loss_g.item()}")
        loss_g.backward()
        self.opt_g.step()
        self.step_no += 1
        if self.keep_ema:
            self.ema.update(self.g, self.step_no)
        return {"loss_d": float(loss_d.detach()), "loss_g": float(loss_g.detach()),
                "d_real": float(real_logits.detach().mean()), "d_fake": float(fake_logits.detach().mean()), **extra}

    # -- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"G": self.g.state_dict(), "D": self.d.state_dict(), "G_ema": self.ema.model.state_dict(),
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(), "step": self.step_no,
                "noise_gen": self.noise_gen.get_state(), "aug_gen": self.aug_gen.get_state()}

    def load_state_dict(self, s: dict[str, Any]) -> None:
        self.g.load_state_dict(s["G"])
        self.d.load_state_dict(s["D"])
        self.ema.model.load_state_dict(s["G_ema"])
        self.opt_g.load_state_dict(s["opt_g"])
        self.opt_d.load_state_dict(s["opt_d"])
        self.step_no = int(s["step"])
        self.noise_gen.set_state(s["noise_gen"].cpu() if hasattr(s["noise_gen"], "cpu") else s["noise_gen"])
        self.aug_gen.set_state(s["aug_gen"].cpu() if hasattr(s["aug_gen"], "cpu") else s["aug_gen"])

    @torch.no_grad()
    def sample(self, z: torch.Tensor, batch: int = 64, labels: torch.Tensor | None = None) -> torch.Tensor:
        """G_ema's pictures for z (and, for a conditional run, the attributes' values), as
        uint8 N x 3 x H x W on the CPU."""
        out = []
        g = self.ema.model.eval()
        for i in range(0, z.shape[0], batch):
            with self._autocast():
                y = labels[i:i + batch].to(self.device) if labels is not None else None
                x = g(z[i:i + batch].to(self.device), y) if self.classes else g(z[i:i + batch].to(self.device))
            out.append(((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu())
        return torch.cat(out) if out else torch.empty(0, 3, self.cfg.size, self.cfg.size, dtype=torch.uint8)
