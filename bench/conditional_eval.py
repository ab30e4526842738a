"""Conditional generation: does a conditional model put the asked hair colour in its samples?

Faces drawn in code (7 hair colours, known by construction) are ingested, processed (animeface),
given their attributes (`headshot attributes`: the colour estimator's hair and eyes) and built
into a dataset version; `headshot train --conditional --attributes hair` trains a small ACGAN
(DRAGAN penalty) on it; then for each hair colour the run knows, `generate --attr hair=C`
samples are judged by the same colour estimator. Chance is one over the number of colours.

    python -m bench conditional_eval [--steps 1500] [--faces 700]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import torch

from curation.attributes import update_attributes
from curation.colours import estimate_colours
from curation.dataset_build import build_dataset
from curation.ingest import ingest
from curation.process import ProcessConfig, process
from manifests.workspace import Workspace
from replicas.drawn import write_faces
from training.runs import attribute_labels, attributes_of, generate, latents, load_generator, run_folder
from training.samples import to_pil


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--faces", type=int, default=1400)
    ap.add_argument("--per-colour", type=int, default=64)
    args = ap.parse_args(argv or [])
    with tempfile.TemporaryDirectory(prefix="headshot-bench-cond-") as tmp:
        root = Path(tmp)
        ws = Workspace.open(root / "ws")
        t = time.perf_counter()
        write_faces(root / "art", args.faces, size=256)
        ingest([str(root / "art")], ws, progress=False)
        process(ws, replace(ProcessConfig(), detector=replace(ProcessConfig().detector, detector="animeface")),
                progress=False)
        update_attributes(ws)
        built = build_dataset(ws, "drawn")
        prep = time.perf_counter() - t
        train_hair = Counter(a.partition("=")[2] for r in built.rows for a in r.attributes if a.startswith("hair="))
        cmd = [str(Path(sys.executable).with_name("headshot")), "--home", str(ws.home), "train", "--dataset", "drawn",
               "--conditional", "--attributes", "hair", "--steps", str(args.steps), "--batch-size", "32",
               "--name", "cond", "--no-progress", "--set", "ngf=32", "--set", "ndf=32", "--set", "eval_every=0",
               "--set", "best_metric=none", "--set", "sample_every=500"]
        t = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        train_s = time.perf_counter() - t
        if done.returncode != 0:
            raise SystemExit(done.stderr[-3000:])
        g, cfg, state = load_generator(run_folder(ws.runs, "cond"), "last")
        vocab = attributes_of(state)["hair"]
        rows, right, judged = [], 0, 0
        for k, colour in enumerate(vocab):
            labels = attribute_labels({"hair": vocab}, {"hair": colour}, args.per_colour, k)
            pics = to_pil(generate(g, latents(args.per_colour, cfg.nz, 1000 + k), labels=labels))
            said = Counter((estimate_colours(im.resize((128, 128))).get("hair") or type("x", (), {"name": "-"})).name
                           for im in pics)
            hit = said[colour]
            found = args.per_colour - said["-"]
            rows.append((colour, train_hair.get(colour, 0), hit, found, said.most_common(3)))
            right += hit
            judged += args.per_colour
        chance = 1 / len(vocab)
        share = right / judged
        print("## Conditional generation (hair colour asked, judged by the colour estimator)")
        print(f"{args.faces} faces drawn in code -> {len(built.rows)} crops in the dataset ({prep:.0f} s to prepare); "
              f"`train --conditional --attributes hair`, {args.steps} steps at batch 32, ngf = ndf = 32, DRAGAN: "
              f"{train_s:.0f} s; {args.per_colour} samples per colour")
        print("\n| asked hair | training crops with it | samples judged that colour | with a hair colour found | "
              "the estimator's commonest answers |\n|---|---|---|---|---|")
        for colour, n_train, hit, found, common in rows:
            print(f"| {colour} | {n_train} | {hit} / {args.per_colour} | {found} | "
                  + ", ".join(f"{c} {n}" for c, n in common) + " |")
        print(f"\nright: {share:.1%} of all samples against chance {chance:.1%} ({len(vocab)} colours): "
              f"{share / chance:.1f}x chance")
        return {"share": share, "chance": chance, "train_s": train_s, "colours": len(vocab)}


if __name__ == "__main__":
    torch.set_num_threads(os.cpu_count() or 1)
    main(sys.argv[1:])
