"""Crop embeddings: `update_embeddings` (read each crop PNG, decode, EfficientNet-Lite0, write
the float16 shards) on a review-ready workspace of drawn 128 px crops, against the floor any
embedding pays: the plain training-metrics call (`training.features.FeatureExtractor.features`)
on the same crops already decoded into one uint8 tensor, in the same run, on the same threads.

Each timed run starts from an empty cache; the model is loaded once before timing (both sides
share it). The ratio is headshot's crops/s over the reference's: 1.0 means reading, decoding
and storing cost nothing beside the model."""

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


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description="crop embeddings vs the plain feature call. Example: "
                                             "python -m bench embed_speed --crops 512")
    ap.add_argument("--crops", type=int, default=512)
    ap.add_argument("--size", type=int, default=128, help="crop side in px (the default crop size)")
    ap.add_argument("--batches", default="16,32,64", help="batch sizes to time, comma-separated")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]
    home = tempfile.mkdtemp(prefix="headshot-bench-embed-")
    try:
        ws = Workspace.open(home)
        make_review_workspace(ws, args.crops, seed=3, size=args.size, draw=draw_face)
        crops = present_crops(ws)
        pixels = _decoded(ws, crops)
        FeatureExtractor().features(pixels[:8])  # load the model once, outside every timing

        def fresh_run(bs: int) -> None:
            shutil.rmtree(embeddings_dir(ws), ignore_errors=True)
            report = update_embeddings(ws, config=EmbedConfig(batch_size=bs))
            assert report.computed == len(crops), report

        # Interleaved (each repeat times every variant, reference and headshot side by side): a
        # neighbour's load on a shared machine then weighs on all of them alike, not on one.
        times: dict[tuple[str, int], list[float]] = {}
        load_before = os.getloadavg()[0]
        for _ in range(args.repeats):
            for bs in batches:
                times.setdefault(("ref", bs), []).append(
                    _timed(lambda: FeatureExtractor(batch_size=bs).features(pixels)))
                times.setdefault(("ours", bs), []).append(_timed(lambda: fresh_run(bs)))
        load_after = os.getloadavg()[0]
        rows = []
        for bs in batches:
            ref, ours = statistics.median(times[("ref", bs)]), statistics.median(times[("ours", bs)])
            ratios = [r / o for r, o in zip(times[("ref", bs)], times[("ours", bs)])]
            rows.append({"batch": bs, "ref_per_s": len(crops) / ref, "ours_per_s": len(crops) / ours,
                         "ratio": statistics.median(ratios)})
        # Same vectors as the metrics' features for the same pixels (float16 storage aside).
        ids, got = load_embeddings(ws, [c for c, _ in crops])
        want = FeatureExtractor().features(pixels)
        want /= np.linalg.norm(want, axis=1, keepdims=True)
        max_diff = float(np.abs(got - want).max())
    finally:
        shutil.rmtree(home, ignore_errors=True)
    best = max(rows, key=lambda r: r["ours_per_s"])
    default = next((r for r in rows if r["batch"] == EmbedConfig().batch_size), best)
    print("## crop embeddings")
    print(f"{len(crops)} drawn {args.size} px crops (PNG), torch threads {torch.get_num_threads()}, "
          f"median of {args.repeats} interleaved repeats, each headshot run from an empty cache; "
          f"load average {load_before:.1f} before, {load_after:.1f} after")
    print("| batch | reference: FeatureExtractor.features on decoded pixels, crops/s | "
          "update_embeddings (read, decode, embed, store), crops/s | ratio (median per repeat) |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['batch']} | {r['ref_per_s']:.0f} | {r['ours_per_s']:.0f} | {r['ratio']:.2f} |")
    print(f"largest difference from the reference's L2-normalised vectors: {max_diff:.1e} (float16 storage)")
    return {"crops": len(crops), "rows": rows, "load": (load_before, load_after), "default": default, "best": best, "max_diff": max_diff}


if __name__ == "__main__":
    main()
