"""DCGAN generator and discriminator (Radford, Metz and Chintala 2016), at 64 px as in the paper
and at 128 px with one more layer on each side.

G: z (nz x 1 x 1) -> fractionally-strided convolutions, BatchNorm and ReLU, tanh at the end.
D: strided convolutions with LeakyReLU(0.2), BatchNorm after every layer but the first, and a
logit at the end (the sigmoid lives in the loss: BCEWithLogits is stable where sigmoid + BCE
saturates). No pooling, no fully connected hidden layers. With spectral_norm, D's convolutions
are spectrally normalised and its BatchNorms dropped (SNGAN's D has none).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .config import TrainConfig


def _up(cin: int, cout: int) -> list[nn.Module]:
    # A 4x4 kernel, stride 2, padding 1 doubles the side exactly.
    return [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)]


def _down(cin: int, cout: int, norm: bool, sn: bool) -> list[nn.Module]:
    conv = nn.Conv2d(cin, cout, 4, 2, 1, bias=sn)
    layers: list[nn.Module] = [nn.utils.parametrizations.spectral_norm(conv) if sn else conv]
    if norm and not sn:
        layers.append(nn.BatchNorm2d(cout))
    return layers + [nn.LeakyReLU(0.2, True)]


def one_hot(labels: torch.Tensor, classes: tuple[int, ...]) -> torch.Tensor:
    """B x A class indices (one column per attribute) -> B x sum(classes) one-hot codes."""
    return torch.cat([nn.functional.one_hot(labels[:, a].long(), n).float() for a, n in enumerate(classes)], dim=1)


class Generator(nn.Module):
    """With `classes` (values per attribute, ACGAN), z is joined by the one-hot code of each
    attribute's value: G(z, y)."""

    def __init__(self, nz: int = 100, ngf: int = 64, size: int = 64, nc: int = 3, classes: tuple[int, ...] = ()):
        super().__init__()
        self.nz, self.size, self.classes = nz, size, tuple(classes)
        k = 16 if size == 128 else 8  # feature maps of the first layer, in units of ngf
        nin = nz + sum(self.classes)
        layers: list[nn.Module] = [
            # z (+ the attributes' codes): nin x 1 x 1 -> (ngf*k) x 4 x 4
            nn.ConvTranspose2d(nin, ngf * k, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * k), nn.ReLU(True),
        ]
        side = 4
        while k > 1:
            # (ngf*k) x side x side -> (ngf*k/2) x 2side x 2side: 8x8, 16x16, 32x32 (and 64x64 at 128 px)
            layers += _up(ngf * k, ngf * k // 2)
            k //= 2
            side *= 2
        # ngf x (size/2) x (size/2) -> nc x size x size, in [-1, 1]
        layers += [nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        z = z.view(z.shape[0], self.nz)
        if self.classes:
            if y is None:
                raise ValueError("this generator is conditional: give the attributes' values (y)")
            z = torch.cat([z, one_hot(y, self.classes).to(z.dtype)], dim=1)
        return self.main(z.view(z.shape[0], -1, 1, 1))


class Discriminator(nn.Module):
    """With `classes` (ACGAN), the last layer also gives each attribute's class logits: the
    output is B x (1 + sum(classes)), the real/fake logit first; without, B logits."""

    def __init__(self, ndf: int = 64, size: int = 64, nc: int = 3, spectral_norm: bool = False,
                 classes: tuple[int, ...] = ()):
        super().__init__()
        self.classes = tuple(classes)
        sn = spectral_norm
        # nc x size x size -> ndf x size/2 x size/2 (no BatchNorm on D's input layer, as in the paper)
        layers = _down(nc, ndf, norm=False, sn=sn)
        m, side = 1, size // 2
        while side > 4:
            # (ndf*m) x side -> (ndf*2m) x side/2: 16x16, 8x8, 4x4 at 64 px (one more at 128 px)
            layers += _down(ndf * m, ndf * m * 2, norm=True, sn=sn)
            m *= 2
            side //= 2
        # (ndf*m) x 4 x 4 -> 1 x 1 x 1: the logit (and the class logits)
        last = nn.Conv2d(ndf * m, 1 + sum(self.classes), 4, 1, 0, bias=sn or bool(self.classes))
        layers.append(nn.utils.parametrizations.spectral_norm(last) if sn else last)
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.main(x)
        return out.flatten(1) if self.classes else out.view(-1)


def init_weights(m: nn.Module) -> None:
    """The paper: every weight from N(0, 0.02); BatchNorm scales from N(1, 0.02), shifts 0."""
    name = type(m).__name__
    if "Conv" in name and hasattr(m, "weight"):
        w = m.parametrizations.weight.original if hasattr(m, "parametrizations") else m.weight
        nn.init.normal_(w, 0.0, 0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif "BatchNorm" in name:
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def build(cfg: TrainConfig, classes: tuple[int, ...] = ()) -> tuple[Generator, Discriminator]:
    g = Generator(cfg.nz, cfg.ngf, cfg.size, classes=classes)
    d = Discriminator(cfg.ndf, cfg.size, spectral_norm=cfg.spectral_norm, classes=classes)
    g.apply(init_weights)
    d.apply(init_weights)
    return g, d


class EMA:
    """An exponential moving average of G's weights (and its BatchNorm statistics), used for
    samples, evaluation and export: it is steadier than G itself at every step."""

    def __init__(self, g: Generator, decay: float, start: int = 0, rampup: float = 0.0):
        self.model = copy.deepcopy(g).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.decay, self.start, self.rampup = decay, start, rampup

    def decay_at(self, step: int) -> float:
        """The average's decay after `step` steps. With a ramp-up its half-life is at most
        rampup x step steps: a fixed 0.999 keeps half of G's random start in G_ema for the
        first 700 steps, and early samples come out as flat grey."""
        if step < self.start:
            return 0.0
        if self.rampup > 0:
            return min(self.decay, 0.5 ** (1.0 / max(self.rampup * step, 1e-8)))
        return self.decay

    @torch.no_grad()
    def update(self, g: Generator, step: int) -> None:
        d = self.decay_at(step)
        for e, p in zip(self.model.parameters(), g.parameters()):
            e.lerp_(p.detach(), 1.0 - d)
        for e, b in zip(self.model.buffers(), g.buffers()):
            if e.dtype.is_floating_point:
                e.lerp_(b, 1.0 - d)
            else:
                e.copy_(b)


def count_parameters(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())
