"""Evaluation time: `evaluate_sets` on 500 generated pictures against 250 real ones (plus 250
training pictures for the copy rate), cold and with the real and training features cached,
against the floor any evaluation pays: EfficientNet-Lite0 feature extraction alone, on the
same pictures, in the same run.

The pictures are drawn in code at 64 px (replicas/drawn.py): real and training sets are
drawn faces (disjoint seeds); the generated stand-ins are other drawn faces, blurred (radius 1)
and with pixel noise (sigma 8), like a half-trained generator's soft, grainy faces."""

from __future__ import annotations

import statistics
import tempfile
import time

import numpy as np
import torch
from PIL import ImageFilter

from replicas.drawn import draw_character
from training.evaluate import evaluate_sets
from training.features import FeatureExtractor, clear_model_cache, feature_key


def _tensor(pictures) -> torch.Tensor:
    return torch.from_numpy(np.stack([np.asarray(p) for p in pictures])).permute(0, 3, 1, 2).contiguous()


def make_sets(n_real: int, n_fake: int, n_train: int, size: int = 64):
    real = _tensor([draw_character(i, size) for i in range(n_real)])
    train = _tensor([draw_character(20_000 + i, size) for i in range(n_train)])
    soft = _tensor([draw_character(10_000 + i, size).filter(ImageFilter.GaussianBlur(1)) for i in range(n_fake)])
    grain = np.random.default_rng(0).normal(0, 8, soft.shape)
    fake = torch.from_numpy(np.clip(soft.numpy() + grain, 0, 255).astype(np.uint8))
    return real, fake, train


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main(n_real: int = 250, n_fake: int = 500, n_train: int = 250, repeats: int = 3) -> dict:
    real, fake, train = make_sets(n_real, n_fake, n_train)
    with tempfile.TemporaryDirectory(prefix="headshot-bench-eval-") as cache:
        keys = {"cache_dir": cache, "real_key": feature_key("bench-real", 64), "train_key": feature_key("bench-train", 64)}
        clear_model_cache()  # cold: the model loads inside the timed call (weights file in the page cache)
        ex = FeatureExtractor()
        figures: dict = {}
        cold = _timed(lambda: figures.update(evaluate_sets(real, fake, train=train, extractor=ex, **keys)))
        cold_images = ex.images_seen
        cached = []
        for _ in range(repeats):
            cached.append(_timed(lambda: evaluate_sets(real, fake, train=train, extractor=ex, **keys)))
        cached_images = (ex.images_seen - cold_images) // repeats
        everything = torch.cat([real, fake, train, torch.flip(train, dims=[3])])
        floor_all = statistics.median(_timed(lambda: ex.features(everything)) for _ in range(repeats))
        floor_fake = statistics.median(_timed(lambda: ex.features(fake)) for _ in range(repeats))
    c = statistics.median(cached)
    result = {
        "threads": torch.get_num_threads(), "cold_s": round(cold, 2), "cached_s": round(c, 2),
        "features_all_s": round(floor_all, 2), "features_fake_s": round(floor_fake, 2),
        "metrics_s": round(c - floor_fake, 2), "cold_images": cold_images, "cached_images": cached_images,
        "kid_x1e3": round(figures["kid_x1e3"], 1), "copy_rate": round(figures["copy_rate"], 3),
    }
    print("## evaluation time")
    print(f"{n_fake} generated stand-ins (drawn faces, blurred, grainy) vs {n_real} real drawn faces, "
          f"copy rate against {n_train} training faces and their mirrors; 64 px pictures, features at 128 px; "
          f"torch threads {result['threads']}; cached rows median of {repeats}")
    print("| | s | pictures through the model |\n|---|---|---|")
    print(f"| evaluate_sets, cold (model load + features + every metric) | {result['cold_s']} | {cold_images} |")
    print(f"| evaluate_sets, real and training features cached | {result['cached_s']} | {cached_images} |")
    print(f"| reference: feature extraction alone, the same {len(everything)} pictures | "
          f"{result['features_all_s']} | {len(everything)} |")
    print(f"| reference: feature extraction alone, the {n_fake} generated | {result['features_fake_s']} | {n_fake} |")
    print(f"| every metric itself (cached run minus its extraction) | {result['metrics_s']} | |")
    return result


if __name__ == "__main__":
    main()
