"""`headshot encode`: pictures into a run's latent space (GAN inversion), each beside its
reconstruction and the nearest training picture, with the figures that say which is closer.

Registered on `pipelines.cli_app.app` when pipelines/cli.py imports this module at its end; torch
is imported inside the command so that `headshot --help` stays instant.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import List, Optional

import typer

from pipelines.cli_app import _fail, _workspace, app


@app.command()
def encode(
    images: List[str] = typer.Argument(..., help="Pictures to encode (any size: the centre square is used)."),
    run: str = typer.Option(..., "--run", help="A training run under runs/."),
    out: Optional[str] = typer.Option(None, "--out", help="Folder for <stem>-encoded.png and <stem>-z.npy "
                                                           "(default: the run's encoded/ folder)."),
    steps: int = typer.Option(250, "--steps", help="Adam steps on z after the best of --candidates random latents."),
    candidates: int = typer.Option(64, "--candidates", help="Random latents tried for a start."),
    seed: int = typer.Option(0, "--seed", help="The same seed gives the same latents."),
    checkpoint: str = typer.Option("best", "--checkpoint", help="best | last."),
    no_features: bool = typer.Option(False, "--no-features", help="Pixels only: no EfficientNet-Lite0 perceptual "
                                                                  "term (several times faster on a CPU)."),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | mps | auto."),
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
    no_progress: bool = typer.Option(False, "--no-progress", help="Hide the progress bar."),
) -> None:
    """Find the latent z whose picture under a run's EMA generator is closest to each picture, and
    write [input | reconstruction | nearest training picture] side by side, with z in a .npy file.

    Per picture: the reconstruction's pixel MSE and feature distance to the input, and the same
    for the nearest training picture: the encoder is only worth it where it beats that lookup.
    The nearest one is searched among every train picture of the run (features are cached in
    the run's features/ folder). Exit code 2 if any input could not be encoded.

    Example: headshot encode me.jpg cat.png --run faces-v2-20261202-101500 --out encoded/
    """
    from training.checkpoint import CheckpointError
    from training.data import DataError
    from training.device import DeviceError, pick_device
    from training.encode import EncodeInputError, default_extractor, encode as run_encode, read_picture
    from training.run import TrainError
    from training.runs import load_generator, run_folder

    if steps < 0 or steps > 100_000:
        _fail(f"--steps {steps}: between 0 and 100,000")
    if candidates < 1 or candidates > 100_000:
        _fail(f"--candidates {candidates}: between 1 and 100,000")
    if checkpoint not in ("best", "last"):
        _fail(f"--checkpoint {checkpoint!r}: best or last")
    ws = _workspace(create=False)
    try:
        rf = run_folder(ws.runs, run)
        if not rf.best.is_file() and not rf.last.is_file():
            _fail(f"run {run} has no checkpoint yet ({rf.checkpoints} is empty): train it first, "
                  f"e.g. headshot train --resume {run}")
        dev = pick_device(device)
        g, cfg, state = load_generator(rf, checkpoint, dev)
    except (TrainError, CheckpointError, DeviceError) as exc:
        _fail(str(exc))

    pictures, names, failed = [], [], 0
    for path in images:
        try:
            pictures.append(read_picture(path, cfg.size))
            names.append(path)
        except EncodeInputError as exc:
            typer.echo(f"headshot: error: {exc}", err=True)  # one line each; the others are still encoded
            failed += 1
    if not pictures:
        _fail(f"none of the {len(images)} input(s) is a picture that can be encoded")

    import torch

    extractor = None if no_features else default_extractor(str(dev))
    try:
        train_set, train_files, train_feats = _train_pictures(ws, rf, cfg.size, extractor)
    except DataError as exc:
        _fail(f"the run's training pictures are needed for the nearest-picture baseline: {exc}")
    batch = torch.stack(pictures)
    z, recs, losses = run_encode(g, batch, steps=steps, seed=seed, extractor=extractor, candidates=candidates,
                                 progress=not no_progress)
    docs = _report(batch, recs, losses, train_set, train_files, train_feats, extractor)
    target = Path(out) if out else rf.root / "encoded"
    _write(target, names, batch, recs, z, train_set, docs)
    for name, doc in zip(names, docs):
        doc.update(input=name, run=run, step=int(state["step"]))
    if as_json:
        typer.echo(json.dumps({"run": run, "step": int(state["step"]), "steps": steps, "seed": seed,
                               "features": extractor is not None, "failed": failed, "pictures": docs},
                              indent=2, sort_keys=True))
    else:
        for doc in docs:
            typer.echo(_line(doc))
        typer.echo(f"wrote {len(docs)} strip(s) and latent(s) to {target}/ (run {run}, step {int(state['step'])})")
    if failed:
        raise typer.Exit(2)


def _train_pictures(ws, rf, size: int, extractor):
    """The run's train pictures at its size, their files, and their features (cached by content)."""
    from training.data import load_pictures
    from training.run import source_from_config

    src = source_from_config(ws, rf.read_config())
    bad: set[Path] = set()
    train_set = load_pictures(src.files, size, on_bad=lambda p, why: bad.add(p))
    kept = [p for p in src.files if p not in bad]
    if not kept:
        from training.data import DataError

        raise DataError(f"none of the {len(src.files)} train pictures of {src.name} can be read")
    feats = None
    if extractor is not None:
        from training.features import cached_features, feature_key

        key = feature_key("encode", src.content_hash[:16], f"{size}px", f"n{len(kept)}")
        try:
            feats = cached_features(train_set, rf.root / "features", key, extractor)
        except OSError:  # a read-only run folder: compute them, keep nothing
            feats = extractor.features(train_set)
    return train_set, kept, feats


def _report(batch, recs, losses, train_set, train_files, train_feats, extractor) -> list[dict]:
    from training.encode import measures, nearest

    f_in = extractor.features(batch) if extractor is not None else None
    idx, _ = nearest(batch, train_set, extractor, train_features=train_feats, image_features=f_in)
    rec = measures(batch, recs, extractor, f_a=f_in)
    near = measures(batch, train_set[idx], extractor, f_a=f_in,
                    f_b=train_feats[idx] if train_feats is not None else None)
    docs = []
    for i in range(len(batch)):
        r = {k: float(v[i]) for k, v in rec.items()}
        n = {k: float(v[i]) for k, v in near.items()}
        # The verdict goes by features where there are: pixel MSE rates a face of the right colours
        # above the right face in the wrong ones.
        key = "feature_distance" if "feature_distance" in r else "pixel_mse"
        docs.append({"reconstruction": r, "nearest": {**n, "index": int(idx[i]), "file": str(train_files[idx[i]])},
                     "loss_start": float(losses[0, i]), "loss_end": float(losses[:, i].min()),
                     "encoder_closer": r[key] < n[key], "judged_by": key})
    return docs


def _line(doc: dict) -> str:
    r, n = doc["reconstruction"], doc["nearest"]

    def fig(d):
        return f"pixel MSE {d['pixel_mse']:.4f}" + (f", feature distance {d['feature_distance']:.2f}"
                                                     if "feature_distance" in d else "")
    verdict = "the encoder is closer" if doc["encoder_closer"] else "the training picture is closer"
    return (f"{doc['strip']}: reconstruction {fig(r)}; nearest training picture {Path(n['file']).name} {fig(n)}: "
            f"{verdict} (by {doc['judged_by'].replace('_', ' ')})")


def _write(target: Path, names: list[str], batch, recs, z, train_set, docs: list[dict]) -> None:
    import numpy as np
    import torch

    from manifests.atomic import write_bytes_atomic
    from training.samples import grid, png_bytes

    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        stem = Path(name).stem
        seen[stem] = seen.get(stem, 0) + 1
        if seen[stem] > 1:  # a/face.png and b/face.jpg: neither overwrites the other
            stem = f"{stem}-{seen[stem]}"
        strip = grid(torch.stack([batch[i], recs[i], train_set[docs[i]["nearest"]["index"]]]), nrow=3)
        write_bytes_atomic(target / f"{stem}-encoded.png", png_bytes(strip))
        buf = io.BytesIO()
        # 1 x nz: what training.runs.generate takes, so np.load gives a batch of one.
        np.save(buf, z[i:i + 1].numpy().astype(np.float32), allow_pickle=False)
        write_bytes_atomic(target / f"{stem}-z.npy", buf.getvalue())
        docs[i].update(strip=str(target / f"{stem}-encoded.png"), z=str(target / f"{stem}-z.npy"))
