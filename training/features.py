"""Image features for the quality metrics: pooled EfficientNet-Lite0 activations (1280 numbers).

The definition lives in media/features.py, so that the curation stages (crop embeddings for
the review queue) compute the very same numbers without importing training; this module
re-exports it for the metrics, the encoder and the commands that already import it here.
"""

from __future__ import annotations

from media.features import (  # noqa: F401  (re-exported)
    FEATURE_DIM, FEATURE_MODEL, FEATURE_VERSION, IMAGE_SIZE, FeatureExtractor, cached_features, check_images,
    clear_model_cache, feature_key, preprocess,
)

__all__ = ["FEATURE_DIM", "FEATURE_MODEL", "FEATURE_VERSION", "IMAGE_SIZE", "FeatureExtractor", "cached_features",
           "check_images", "clear_model_cache", "feature_key", "preprocess"]
