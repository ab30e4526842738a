"""Every quality figure of a generator in one call, for `headshot evaluate` and the train loop's
keep-the-best-checkpoint evaluations; plus the folder reader behind `--real DIR --fake DIR`.

The feature figures run on EfficientNet-Lite0 (training/features.py): "KID (EfficientNet-Lite0
features)" is comparable between runs of this project only, and is not FID.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from . import metrics
from .features import FEATURE_MODEL, FeatureExtractor, cached_features

MIN_PICTURES = 6


def _features(images: torch.Tensor, extractor: FeatureExtractor, cache_dir, key) -> np.ndarray:
    if cache_dir is not None and key is not None:
        return cached_features(images, Path(cache_dir), key, extractor)
    return extractor.features(images)


def _check_set(images, name: str) -> torch.Tensor:
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4 \
            or images.shape[1] != 3:
        got = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"{name}: expected a uint8 tensor N x 3 x H x W, got {got}")
    if len(images) < MIN_PICTURES:
        raise ValueError(f"{name}: {len(images)} pictures; evaluating needs at least {MIN_PICTURES} (precision/"
                         "recall's k = 5 neighbours plus the picture itself), and a few hundred for figures "
                         "worth comparing")
    return images


def evaluate_sets(real: torch.Tensor, fake: torch.Tensor, train: torch.Tensor | None = None,
                  extractor: FeatureExtractor | None = None, cache_dir: str | Path | None = None,
                  real_key: str | None = None, train_key: str | None = None) -> dict:
    """Every figure for `fake` against `real` (uint8 N x 3 x H x W; sizes may differ: features
    see everything at 128 px). With `train`, also the copy rate against it and its mirror
    images. `cache_dir` with `real_key` / `train_key` (see features.feature_key) reuses the
    features of sets that do not change between calls; the fake set's are always computed."""
    real, fake = _check_set(real, "real"), _check_set(fake, "fake")
    extractor = extractor or FeatureExtractor()
    f_real = _features(real, extractor, cache_dir, real_key)
    f_fake = extractor.features(fake)
    kid_mean, kid_std = metrics.kid(f_real, f_fake)
    precision, recall = metrics.precision_recall(f_real, f_fake)
    out = {
        "kid_x1e3": kid_mean * 1e3,
        "kid_x1e3_std": kid_std * 1e3,
        "precision": precision,
        "recall": recall,
        "c2st_accuracy": metrics.c2st_accuracy(f_real, f_fake),
    }
    if train is not None:
        train = _check_set(train, "train")
        f_train = _features(train, extractor, cache_dir, train_key)
        # Mirrored copies are the cheapest memorisation (mirror augmentation on the real side
        # shows G both), so they count as copies too.
        mirror_key = f"{train_key}-mirror" if train_key is not None else None
        f_mirror = _features(torch.flip(train, dims=[3]), extractor, cache_dir, mirror_key)
        out["copy_rate"] = metrics.copy_rate(f_train, f_fake, f_mirror)
        out["n_train"] = len(train)
    out.update({
        "colour_hist_distance": metrics.colour_histogram_distance(real, fake),
        "border_energy_fake": metrics.border_energy(fake),
        "border_energy_real": metrics.border_energy(real),
        "n_real": len(real),
        "n_fake": len(fake),
        "feature_model": FEATURE_MODEL,
    })
    return out


def _to_rgb(im: Image.Image) -> Image.Image:
    """RGB, upright, transparency flattened onto white. The same rules as curation's decoder
    (training imports nothing upstream of a dataset, so they are repeated here)."""
    im = ImageOps.exif_transpose(im)  # phone pictures and some scans are stored sideways
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # convert("RGB") clips 16-bit values at 255 instead of scaling them.
        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or arr.max() > 255 else 255.0
        im = Image.fromarray(np.clip(arr * (255.0 / top), 0, 255).astype(np.uint8))
    if im.has_transparency_data:
        rgba = im.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    return im.convert("RGB")


def _square(im: Image.Image, size: int) -> np.ndarray:
    w, h = im.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    im = im.crop((left, top, left + side, top + side)).resize((size, size), Image.LANCZOS)
    return np.asarray(im, dtype=np.uint8)


def load_image_folder(path: str | Path, size: int) -> torch.Tensor:
    """Every image file under `path` (recursive, sorted), RGB, centre-cropped to a square and
    resized to `size` px with LANCZOS, as uint8 N x 3 x size x size. Files Pillow cannot read
    are skipped, with one warning saying how many; a folder with no image at all is an error."""
    root = Path(path)
    if not root.is_dir():
        raise ValueError(f"{root} is not a folder")
    if size < 8:
        raise ValueError(f"size must be at least 8 px, got {size}")
    pictures, skipped = [], 0
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        try:
            with Image.open(file) as im:
                pictures.append(_square(_to_rgb(im), size))
        except (OSError, ValueError, Image.DecompressionBombError):  # not an image, truncated, huge
            skipped += 1
    if not pictures:
        raise ValueError(f"no readable image in {root}" + (f" ({skipped} other file{'s' if skipped != 1 else ''} skipped)" if skipped else ""))
    if skipped:
        warnings.warn(f"{root}: skipped {skipped} file{'s' if skipped != 1 else ''} that "
                      f"{'are' if skipped != 1 else 'is'} not a readable image", stacklevel=2)
    return torch.from_numpy(np.stack(pictures)).permute(0, 3, 1, 2).contiguous()


def format_report(d: dict) -> str:
    """A few readable lines from evaluate_sets' figures (missing figures are left out)."""
    lines = []
    if "run" in d:
        lines.append(f"run {d['run']}, step {d.get('step', '?')}, against the {d.get('against', 'real set')}")
    lines.append(f"{d.get('n_fake', '?')} generated vs {d.get('n_real', '?')} real pictures, "
                 f"features: {d.get('feature_model', FEATURE_MODEL)}")
    if "kid_x1e3" in d:
        lines.append(f"KID (EfficientNet-Lite0 features) x1e3: {d['kid_x1e3']:.2f} ± {d.get('kid_x1e3_std', 0.0):.2f}"
                     "   (lower is better, ~0 = same distribution; not FID)")
    if "precision" in d:
        lines.append(f"precision {d['precision']:.3f}, recall {d['recall']:.3f}"
                     "   (share of samples that look real / share of the real variety covered)")
    if "c2st_accuracy" in d:
        lines.append(f"real-vs-fake classifier accuracy: {d['c2st_accuracy']:.3f}"
                     "   (0.5 = indistinguishable, 1.0 = always told apart)")
    if "copy_rate" in d:
        lines.append(f"copy rate: {d['copy_rate']:.3f}   (share of samples nearer a training picture or its mirror "
                     f"than 95% of training pictures are to each other; ~0.05 = novel, ~1 = copies)")
    if "colour_hist_distance" in d:
        lines.append(f"colour histogram distance: {d['colour_hist_distance']:.3f}   (0 = same colours, 1 = none shared)")
    if "border_energy_fake" in d:
        lines.append(f"border energy: fake {d['border_energy_fake']:.3f}, real {d.get('border_energy_real', float('nan')):.3f}"
                     "   (edge/interior detail; far below real = bars or smeared edges, far above = lines)")
    return "\n".join(lines)
