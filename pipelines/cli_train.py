"""`headshot train`, `generate` and `evaluate`: the DCGAN stage on a dataset version.

Registered on `pipelines.cli_app.app` when pipelines/cli.py imports this module at its end; torch
is imported inside the commands so that `headshot --help` stays instant.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import List, Optional

import typer

from pipelines.cli_app import _config, _fail, _workspace, app


def _settings(sets: list[str]) -> dict[str, str]:
    from spiders.run import parse_assignments

    try:
        return parse_assignments(sets, "--set")
    except ValueError as exc:
        _fail(str(exc))
    return {}


def _storage_options(pairs: list[str]) -> dict:
    from manifests.storage import StorageError, parse_options

    try:
        return parse_options(pairs)
    except StorageError as exc:
        _fail(str(exc))
    return {}


def _dry_run_images(folder: Path) -> Path:
    from replicas.drawn import write_faces

    write_faces(folder, 16, size=64)
    return folder


def _command_line(ctx: typer.Context, drop: tuple[str, ...] = ()) -> list[str]:
    """The options given on this command line, again: what the processes torchrun starts read."""
    out: list[str] = []
    for p in ctx.command.params:  # Typer's own click: told apart by name, not by class
        source = ctx.get_parameter_source(p.name)
        if p.param_type_name != "option" or p.name in drop or getattr(source, "name", "") != "COMMANDLINE":
            continue
        value = ctx.params[p.name]
        if p.is_flag:
            out += [p.opts[0]] if value else p.secondary_opts[:1]
        else:
            out += [a for v in (value if p.multiple else [value]) for a in (p.opts[0], str(v))]
    return out


def _launch(ctx: typer.Context, nproc: int, cfg, runs_dir: Path, resume: Optional[str], overrides: dict) -> None:
    """--nproc N: this command again under torchrun, N processes; or, already one of them, go on."""
    from training.config import TrainConfig
    from training.distributed import check_launch, env_world, launch, under_torchrun
    from training.run import RunFolder

    if under_torchrun():
        if env_world() != nproc:
            _fail(f"--nproc {nproc}: this process is one of {env_world()} that torchrun started; drop --nproc")
        return
    if resume:  # the run's own batch size and device, as run.train will resolve them
        try:
            cfg = TrainConfig.from_dict({**RunFolder(runs_dir / resume).read_config()["config"], **overrides})
        except (ValueError, KeyError):
            pass  # no such run, or a damaged one: the first rank says so
    check_launch(nproc, cfg.batch_size, cfg.device)
    args = _command_line(ctx.parent) + [ctx.info_name] + _command_line(ctx, drop=("nproc",))
    raise typer.Exit(launch(nproc, ["-m", "pipelines.cli", *args]))


@app.command()
def train(
    ctx: typer.Context,
    dataset: Optional[str] = typer.Option(None, "--dataset", help="A dataset version, NAME or NAME@vN (its train split), "
                                          "or one published at a URL ending .parquet (s3://bucket/path/NAME-vN.parquet)."),
    storage_options: List[str] = typer.Option([], "--storage-option", help="For a --dataset URL: a fsspec storage "
                                              "option, KEY=VALUE (repeatable), e.g. endpoint_url=http://127.0.0.1:9000."),
    images: Optional[str] = typer.Option(None, "--images", help="Or a folder of pictures, for a quick experiment."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Generator steps in all (with --resume: the total to reach)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Pictures per step (default 64)."),
    size: Optional[int] = typer.Option(None, "--size", help="64 (the DCGAN paper's) or 128."),
    preset: Optional[str] = typer.Option(None, "--preset", help="dcgan (the paper; default) | sngan (spectral norm, "
                                         "hinge) | dragan (gradient penalty)."),
    config: Optional[str] = typer.Option(None, "--config", help="A TOML file; its [train] table is read, over the "
                                         "project config's [train]."),
    sets: List[str] = typer.Option([], "--set", help="Any training setting, KEY=VALUE (repeatable), e.g. ema_decay=0.999."),
    augment: Optional[str] = typer.Option(None, "--augment", help="diff (on real and fake, before D; default) | baked (into the real set) | none."),
    resume: Optional[str] = typer.Option(None, "--resume", help="Go on with this run from its last checkpoint."),
    device: Optional[str] = typer.Option(None, "--device", help="auto | cpu | cuda | mps (default auto)."),
    name: Optional[str] = typer.Option(None, "--name", help="The run's folder under runs/ (default: data name and time)."),
    nproc: Optional[int] = typer.Option(None, "--nproc", help="Train on N processes under torchrun (DDP): N GPUs with "
                                        "CUDA, else N CPU processes. Each takes 1/N of every batch."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    no_progress: bool = typer.Option(False, "--no-progress", help="Hide the progress bar."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Train a tiny model for 2 steps on pictures drawn in code, in a temp folder."),
    conditional: bool = typer.Option(False, "--conditional", help="ACGAN: G takes the attributes, D also predicts "
                                     "them; DRAGAN's penalty unless --preset or --set penalty= says otherwise. Needs a "
                                     "dataset version whose rows carry them (headshot attributes, then dataset build)."),
    attributes: str = typer.Option("hair,eyes", "--attributes", help="With --conditional: which attributes, "
                                   "comma-separated."),
) -> None:
    """Train a DCGAN on a dataset version into runs/<run>/ (checkpoints, sample grids, progress GIF, metrics).

    Ctrl-C writes a checkpoint and stops; --resume RUN goes on from it exactly. Settings: the
    preset, then what the project config's [train] changes, then this --config file's [train],
    then --set, then the named options.

    --nproc N re-launches the command under `torchrun --standalone --nproc_per_node N`; a
    torchrun of your own runs it as well (`torchrun ... -m pipelines.cli train ...`).

    Example: headshot train --dataset faces@v2 --steps 20000
    Example: headshot train --dataset faces@v3 --conditional --attributes hair,eyes
    """
    from training.config import ConfigError, load_file, resolve
    from training.data import DataError, dataset_source, folder_source
    from training.device import DeviceError
    from training.distributed import DistributedError, env_rank
    from training.run import TrainError, train as run_train

    overrides: dict = dict(_config().train.settings())
    try:
        if config:
            overrides.update(load_file(config))
        overrides.update(_settings(sets))
        for key, value in (("steps", steps), ("batch_size", batch_size), ("size", size), ("augment", augment),
                           ("device", device)):
            if value is not None:
                overrides[key] = value
        if preset is not None:
            overrides["preset"] = preset
        if conditional:
            overrides["conditional"] = tuple(a.strip() for a in attributes.split(",") if a.strip())
            if preset is None and "penalty" not in overrides:
                overrides["penalty"] = "dragan"  # as MakeGirls.moe trained its conditional model
            if "diff_policy" not in overrides:
                # Augmentation must keep the labels true: a colour jitter or a green/blue swap
                # turns a blue-haired face green before D is told it is blue.
                overrides["diff_policy"] = CONDITIONAL_POLICY
        tmp = None
        if dry_run:
            tmp = tempfile.TemporaryDirectory(prefix="headshot-dry-run-")
            images, dataset, resume = str(_dry_run_images(Path(tmp.name) / "faces")), None, None
            overrides.update(steps=2, batch_size=4, ngf=8, ndf=8, sample_every=1, eval_every=0, best_metric="none",
                             precision="fp32", channels_last="off", device=overrides.get("device", "cpu"))
        if not resume and bool(dataset) == bool(images):
            _fail("give --dataset NAME[@vN] or --images DIR (one of them), or --resume RUN")
        cfg = resolve(overrides.pop("preset", "dcgan"), overrides)
        ws = _workspace() if not dry_run else None
        runs_dir = Path(tmp.name) / "runs" if dry_run else ws.runs
        source = dataset_source(ws, dataset, _storage_options(storage_options)) if dataset else \
            folder_source(images) if images else None
        if nproc is not None:
            _launch(ctx, nproc, cfg, runs_dir, resume, overrides)
        main = env_rank() == 0  # under torchrun, rank 0 alone prints
        result = run_train(runs_dir, cfg, source, ws=ws, name=name, resume=resume, overrides=overrides,
                           progress=not no_progress and main, echo=typer.echo if main else lambda s: None)
    except (ConfigError, DataError, DeviceError, TrainError, DistributedError) as exc:
        # Every rank meets the same error alike and rank 0 says it, but a rank's own place (its GPU).
        if env_rank() == 0 or isinstance(exc, DistributedError):
            _fail(str(exc))
        raise typer.Exit(2)
    if not main:
        raise typer.Exit(130 if result.interrupted else 0)
    doc = {"run": result.run, "folder": str(result.folder), "step": result.step, "steps": result.steps,
           "interrupted": result.interrupted, "best": result.best, "losses": result.last_losses,
           "images_per_s": round(result.images_per_s, 1),
           "speed": {"precision": result.speed.precision, "channels_last": result.speed.channels_last,
                     "compile": result.speed.compile} if result.speed else None}
    if as_json:
        typer.echo(json.dumps(doc, indent=2, sort_keys=True))
    elif result.interrupted:
        typer.echo(f"stopped at step {result.step} of {result.steps} with a checkpoint; "
                   f"go on with: headshot train --resume {result.run}")
    else:
        best = (f"; best KID x1e3 {result.best['value']:.2f} at step {result.best['step']}" if result.best else "")
        typer.echo(f"run {result.run}: step {result.step} of {result.steps} ({result.images_per_s:.0f} img/s){best}")
        where = "a temp folder, removed now" if dry_run else str(result.folder)
        typer.echo(f"  {where}: checkpoints/, samples/, progress.gif, metrics.jsonl")
    if dry_run:
        tmp.cleanup()
    if result.interrupted:
        raise typer.Exit(130)


CONDITIONAL_POLICY = ("translation", "cutout")  # DiffAugment for --conditional: no colour changes


@app.command()
def generate(
    run: str = typer.Option(..., "--run", help="A training run under runs/."),
    n: int = typer.Option(64, "-n", help="How many pictures."),
    seed: int = typer.Option(0, "--seed", help="The same seed gives the same pictures."),
    out: Optional[str] = typer.Option(None, "--out", help="A .png file for a grid, a folder for separate files, "
                                                           "a .gif with --interpolate (default: in the run's folder)."),
    interpolate: bool = typer.Option(False, "--interpolate", help="A latent walk through n points, as a GIF."),
    checkpoint: str = typer.Option("best", "--checkpoint", help="best | last."),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | mps | auto."),
    attrs: List[str] = typer.Option([], "--attr", help="A conditional run: the value of an attribute, NAME=VALUE "
                                    "(repeatable), e.g. --attr hair=blue; the others are drawn at random."),
    painting: Optional[str] = typer.Option(None, "--style", help="Repaint each picture in this painting's style "
                                           "(see headshot style): portraits, --style-size px."),
    style_steps: int = typer.Option(200, "--style-steps", help="With --style: optimisation steps per picture."),
    style_size: int = typer.Option(256, "--style-size", help="With --style: the portraits' side in px."),
) -> None:
    """Pictures from a run's EMA generator: a grid, separate files, or a latent walk.

    Example: headshot generate --run faces-v2-20261202-101500 -n 16 --seed 3 --out grid.png
    Example: headshot generate --run faces-v2-20261202-101500 -n 4 --style starry_night.jpg --out portraits/
    Example: headshot generate --run hair-20261203-120000 --attr hair=blue --attr eyes=red -n 16
    """
    from training.checkpoint import CheckpointError
    from training.device import DeviceError, pick_device
    from training.run import TrainError
    from training.runs import attribute_labels, attributes_of, generate as gen, latents, load_generator, run_folder
    from training.samples import gif_bytes, latent_walk, pil_grid, png_bytes, to_pil

    from manifests.atomic import write_bytes_atomic

    if n < 1 or n > 10_000:
        _fail(f"-n {n}: between 1 and 10,000 pictures")
    if checkpoint not in ("best", "last"):
        _fail(f"--checkpoint {checkpoint!r}: best or last")
    if painting and interpolate:
        _fail("--style repaints pictures, not a latent walk: leave out --interpolate")
    styler = None
    if painting:
        from pipelines.cli_style import style_config
        from training.style import StyleError, load_picture

        scfg = style_config(style_steps, style_size, "effnet-lite0", None, 4.0)
        try:
            painted = load_picture(painting, "--style")
        except StyleError as exc:
            _fail(str(exc))
    try:
        rf = run_folder(_workspace(create=False).runs, run)
        g, cfg, state = load_generator(rf, checkpoint, pick_device(device))
    except (TrainError, CheckpointError, DeviceError) as exc:
        _fail(str(exc))
    step = int(state["step"])
    asked = {}
    for a in attrs:
        k, sep, v = a.partition("=")
        if not sep or not k.strip() or not v.strip():
            _fail(f"--attr {a!r}: NAME=VALUE, e.g. hair=blue")
        asked[k.strip()] = v.strip()
    vocab = attributes_of(state)
    try:
        labels = attribute_labels(vocab, asked, 1 if interpolate else n, seed) if (vocab or asked) else None
    except TrainError as exc:
        _fail(str(exc))
    if interpolate:
        z = latent_walk(latents(max(2, n), cfg.nz, seed), 16)
        frames = to_pil(gen(g, z, labels=labels.repeat(len(z), 1) if labels is not None else None))  # one look
        target = Path(out) if out else rf.root / "generated" / f"walk-seed{seed}.gif"
        write_bytes_atomic(target, gif_bytes(frames, ms=80, last_ms=80))
        typer.echo(f"wrote a latent walk through {max(2, n)} points ({len(frames)} frames) from step {step} to {target}")
        return
    pictures = gen(g, latents(n, cfg.nz, seed), labels=labels)
    images = to_pil(pictures)
    if painting:
        from training.style import transfer

        styled = []
        for i, im in enumerate(images):
            styled.append(transfer(im, painted, scfg, str(next(g.parameters()).device))[0])
            typer.echo(f"  styled {i + 1}/{len(images)}")
        images = styled
    kind = "portraits" if painting else "pictures"
    target = Path(out) if out else rf.root / "generated" / f"seed{seed}-n{n}{'-styled' if painting else ''}.png"
    if out and (target.is_dir() or out.endswith(("/", "\\")) or not target.suffix):
        for i, im in enumerate(images):
            write_bytes_atomic(target / f"{run}-seed{seed}-{i:04d}.png", png_bytes(im))
        typer.echo(f"wrote {n} {kind} from step {step} to {target}/")
    else:
        write_bytes_atomic(target, png_bytes(pil_grid(images)))
        typer.echo(f"wrote a grid of {n} {kind} from step {step} to {target}")


@app.command()
def evaluate(
    run: Optional[str] = typer.Option(None, "--run", help="A training run: its EMA generator against the val split."),
    real: Optional[str] = typer.Option(None, "--real", help="Or a folder of real pictures ..."),
    fake: Optional[str] = typer.Option(None, "--fake", help="... against a folder of generated ones."),
    samples: int = typer.Option(500, "--samples", help="Pictures generated for --run."),
    size: int = typer.Option(64, "--size", help="Side the folders' pictures are compared at."),
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
) -> None:
    """How good a generator is, and whether it copies: KID, precision/recall, a real-vs-fake
    classifier, the copy rate, colour histograms and border energy, on EfficientNet-Lite0 features.

    Example: headshot evaluate --run faces-v2-20261202-101500 --json
    """
    from training.evaluate import evaluate_sets, format_report, load_image_folder

    if run and (real or fake):
        _fail("give --run RUN, or --real DIR with --fake DIR, not both")
    if not run and not (real and fake):
        _fail("give --run RUN, or --real DIR and --fake DIR")
    try:
        if run:
            figures = _evaluate_run(run, samples)
        else:
            figures = evaluate_sets(load_image_folder(real, size), load_image_folder(fake, size))
    except ValueError as exc:
        _fail(str(exc))
    typer.echo(json.dumps(figures, indent=2, sort_keys=True) if as_json else format_report(figures))


def _evaluate_run(run: str, samples: int) -> dict:
    from training.data import load_pictures, val_images
    from training.evaluate import evaluate_sets
    from training.run import COPY_SET, source_from_config
    from training.runs import attribute_labels, attributes_of, generate as gen, latents, load_generator, run_folder

    ws = _workspace(create=False)
    rf = run_folder(ws.runs, run)
    g, cfg, state = load_generator(rf, "best")
    src = source_from_config(ws, rf.read_config())
    train_set = load_pictures(src.files[:COPY_SET], cfg.size)
    real = val_images(src, cfg.size, samples)
    against = "val split" if real is not None else "train split (the version has no val split)"
    if real is None:
        real = train_set[:samples]
    fake = gen(g, latents(samples, cfg.nz, 10_000 + cfg.seed))
    from training.features import feature_key

    stem = (src.content_hash or "nohash")[:16]
    figures = evaluate_sets(real, fake, train=train_set, cache_dir=ws.home / "cache" / "features",
                            real_key=feature_key(stem, "val" if against == "val split" else "train", cfg.size, len(real)),
                            train_key=feature_key(stem, "copyset", cfg.size, len(train_set)))
    figures.update({"run": run, "step": int(state["step"]), "against": against})
    return figures
