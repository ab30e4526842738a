"""Crop embeddings: `update_embeddings` (read each crop PNG, decode, EfficientNet-Lite0, write
the float16 shards) on a review-ready workspace of drawn 128 px crops, against the floor any
embedding pays: the plain training-metrics call (`training.features.FeatureExtractor.features`)
on the same crops already decoded into one uint8 tensor, in the same run, on the same threads.

Each timed run starts from an empty cache; the model is loaded once before timing (both sides
share it). The ratio is headshot's crops/s over the reference's: 1.0 means reading, decoding
and storing cost nothing beside the model; above 1, headshot's way of running the model (a
worker per core) beats the plain call's."""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time

import numpy as np
import torch
from PIL import Image

from curation.embeddings import EmbedConfig, embeddings_dir, load_embeddings, present_crops, update_embeddings
from curation.review.sample import make_review_workspace
from manifests.workspace import Workspace
from replicas.drawn import draw_face
from training.features import FeatureExtractor


def _decoded(ws: Workspace, crops) -> torch.Tensor:
    arrays = [np.asarray(Image.open(ws.crop_file(p)).convert("RGB")) for _, p in crops]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


VARIANTS = {  # label -> EmbedConfig: the default first
    "default: 1 worker per core x 1 torch thread, batch 16": EmbedConfig(),
    "the same, batch 32": EmbedConfig(batch_size=32),
    "the same, batch 64": EmbedConfig(batch_size=64),
    "1 worker x 2 torch threads (one batch at a time), batch 16": EmbedConfig(workers=1, threads=2),
}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description="crop embeddings vs the plain feature call. Example: "
                                             "python -m bench embed_speed --crops 512")
    ap.add_argument("--crops", type=int, default=512)
    ap.add_argument("--size", type=int, default=128, help="crop side in px (the default crop size)")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    home = tempfile.mkdtemp(prefix="headshot-bench-embed-")
    try:
        ws = Workspace.open(home)
        make_review_workspace(ws, args.crops, seed=3, size=args.size, draw=draw_face)
        crops = present_crops(ws)
        pixels = _decoded(ws, crops)
        reference = FeatureExtractor()  # the metrics' call as training makes it: batch 16, torch's threads
        reference.features(pixels[:8])  # load the model once, outside every timing

        def fresh_run(cfg: EmbedConfig) -> None:
            shutil.rmtree(embeddings_dir(ws), ignore_errors=True)
            report = update_embeddings(ws, config=cfg)
            assert report.computed == len(crops), report

        # Interleaved: each repeat times the reference and every variant side by side, so a
        # neighbour's load on a shared machine weighs on all of them alike; the ratio is taken
        # per repeat (reference time / variant time), then its median.
        ref_s: list[float] = []
        times: dict[str, list[float]] = {label: [] for label in VARIANTS}
        load_before = os.getloadavg()[0]
        for _ in range(args.repeats):
            for label, cfg in VARIANTS.items():
                ref_s.append(_timed(lambda: reference.features(pixels)))
                times[label].append(_timed(lambda: fresh_run(cfg)))
        load_after = os.getloadavg()[0]
        per = len(VARIANTS)
        rows = []
        for j, (label, ts) in enumerate(times.items()):
            refs = ref_s[j::per]
            rows.append({"variant": label, "ref_per_s": len(crops) / statistics.median(refs),
                         "ours_per_s": len(crops) / statistics.median(ts),
                         "ratio": statistics.median(r / t for r, t in zip(refs, ts))})
        # Same vectors as the metrics' features for the same pixels (float16 storage aside).
        fresh_run(EmbedConfig())
        ids, got = load_embeddings(ws, [c for c, _ in crops])
        want = reference.features(pixels)
        want /= np.linalg.norm(want, axis=1, keepdims=True)
        max_diff = float(np.abs(got - want).max())
    finally:
        shutil.rmtree(home, ignore_errors=True)
    print("## crop embeddings")
    print(f"{len(crops)} drawn {args.size} px crops (PNG) on {len(os.sched_getaffinity(0))} cores, median of "
          f"{args.repeats} interleaved repeats, each headshot run from an empty cache; load average "
          f"{load_before:.1f} before, {load_after:.1f} after")
    print("| update_embeddings (read, decode, embed, store) | crops/s | reference beside it: "
          "FeatureExtractor.features on the decoded pixels, crops/s | ratio (median per repeat) |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['variant']} | {r['ours_per_s']:.0f} | {r['ref_per_s']:.0f} | {r['ratio']:.2f} |")
    print(f"largest difference from the reference's L2-normalised vectors: {max_diff:.1e} (float16 storage)")
    return {"crops": len(crops), "rows": rows, "load": (load_before, load_after), "max_diff": max_diff}


if __name__ == "__main__":
    main()
