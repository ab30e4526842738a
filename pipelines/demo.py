"""`headshot demo` / `make demo`: the whole pipeline, offline, through the Prefect flows.

It starts a getchu replica on 127.0.0.1 (pages from a template, faces drawn in code) and
writes a folder of generated art and broken files, then runs the `build` flow on a project
config naming both (crawl with the real spider in its own process, ingest, find and filter
faces, refresh the review queue, a dataset version of what passed every filter with the
doubtful rest left for a person), then the `train-when-ready` flow (a few minutes of DCGAN
training on that version, a sample grid, an evaluation), and ends with where everything is
and what to run next. Run again, it finds nothing new: no new version, no second training.
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from curation.models import ModelChecksumError, ModelMissing, cascade_path
from curation.process import ProcessConfig
from manifests.workspace import Workspace
from pipelines.config import HeadshotConfig
from pipelines.report import format_status
from pipelines.status import status
from replicas.drawn import write_bad_inputs, write_faces
from replicas.sites.getchu import GetchuReplica
from replicas.sites.server import Replica

DEMO_IDS = list(range(900001, 900007))
DEMO_DATASET = "demo-faces"
# The replica is ours and local: no politeness delay is needed to spare it.
FAST = {"DOWNLOAD_DELAY": "0", "AUTOTHROTTLE_ENABLED": "False", "LOG_LEVEL": "WARNING"}
# A few minutes of training on two cores (BENCHMARKS.md, "The demo"): the paper's model, a
# smaller batch for a set of a few dozen faces, samples four times along the way, and the
# evaluation done once at the end by the flow. Any [train] key of the project config or of
# `train=` changes these.
DEMO_TRAIN: dict[str, Any] = {"steps": 300, "batch_size": 32, "sample_every": 75, "checkpoint_every": 100,
                              "eval_every": 0, "best_metric": "none", "eval_samples": 200}


def demo_process_config(echo: Callable[[str], None], base: ProcessConfig | None = None) -> ProcessConfig:
    """The project's detectors (the default ensemble) when the anime cascade they use is installed;
    without it (a fresh machine that has not run `headshot models fetch`, offline) animeface
    alone, whose model ships in its wheel."""
    cfg = base or ProcessConfig()
    if "lbp" not in cfg.detector.used():
        return cfg
    try:
        cascade_path()
    except (ModelMissing, ModelChecksumError):
        echo("the anime cascade is not installed (headshot models fetch): the demo detects with animeface alone")
        cfg = replace(cfg, detector=replace(cfg.detector, detector="animeface"))
    return cfg


def demo_config(config: HeadshotConfig, home: str, site_base: str, art: Path, process: ProcessConfig,
                train: dict[str, Any] | None = None) -> HeadshotConfig:
    """The project config the demo's flows run on: its ingest, process, dataset and train
    settings, with the replica as the only source, the generated art as the only path, the
    demo's dataset (whose minimum is one crop: the project's is for real data) and the demo's
    training steps."""
    d = config.as_dict()
    d["home"] = home
    d["sources"] = [{"site": "getchu", "since": "2015-05", "until": "2015-06",
                     "settings": {"GETCHU_BASE_URL": site_base, **FAST}}]
    d["ingest"]["paths"] = [str(art)]
    d["dataset"].update(name=DEMO_DATASET, min_accepted=1, require_empty_queue=False)
    d["train"] = {**DEMO_TRAIN, **{k: v for k, v in d["train"].items() if _changed(config, k, v)}, **(train or {})}
    d["schedule"] = {}
    cfg = HeadshotConfig.from_dict(d)
    return replace(cfg, process=process)


def _changed(config: HeadshotConfig, key: str, value: Any) -> bool:
    """A [train] key the project config sets away from the default (those win over the demo's)."""
    default = HeadshotConfig().as_dict()["train"]
    return key not in default or default[key] != value


def run_demo(home: str, count: int = 48, echo: Callable[[str], None] = print,
             config: HeadshotConfig | None = None, train: dict[str, Any] | None = None) -> dict:
    """The build and train-when-ready flows on the demo's project config in workspace `home`;
    returns {"build": ..., "train": ..., "status": ...} (the flows' summaries)."""
    from pipelines.flow_report import build_lines, train_lines
    from pipelines.flow_runtime import prefect_api
    from pipelines.flows import run_build, run_train

    config = config or HeadshotConfig()
    ws = Workspace.open(home)
    home = str(ws.home)
    folder = ws.home / "demo-site" / "images"
    echo(f"generating {count} artworks and 6 broken files in {folder}")
    write_faces(folder, count)
    write_bad_inputs(folder / "broken")
    process = demo_process_config(echo, config.process)
    started = time.monotonic()
    with Replica() as site:
        GetchuReplica(site, None, months={(2015, 5): DEMO_IDS[:3], (2015, 6): DEMO_IDS[3:]}, synthetic_ids=DEMO_IDS)
        cfg = demo_config(config, home, site.base, folder, process, train)
        echo(f"a local getchu replica at {site.base} (2015-05 to 2015-06) is the demo's one source")
        with prefect_api() as api:
            echo(f"Prefect API: {api}")
            echo("flow build: crawl -> ingest -> process -> review queue -> dataset version")
            built = run_build(cfg, home)
            for line in build_lines(built):
                echo(line)
            t = cfg.train
            echo(f"flow train-when-ready: {t.steps} steps of DCGAN-{t.size}, batch {t.batch_size}, then an evaluation")
            trained = run_train(cfg, home)
            for line in train_lines(trained):
                echo(line)
    saved = save_project(ws, cfg)
    st = status(ws)
    echo("")
    echo(format_status(st))
    for line in where_things_are(ws, built, trained, saved, time.monotonic() - started):
        echo(line)
    return {"build": built, "train": trained, "status": st}


def save_project(ws: Workspace, cfg: HeadshotConfig) -> Path:
    """The demo's project config without its source (the replica is gone with the demo), for
    the flows run by hand afterwards: <home>/headshot.toml."""
    from manifests.atomic import write_bytes_atomic

    path = ws.home / "headshot.toml"
    text = ("# The demo's project config, less the replica it crawled (gone with the demo).\n"
            "# Add [[sources]] tables for real sites: `headshot init` writes every key with a comment.\n"
            + replace(cfg, sources=()).to_toml())
    write_bytes_atomic(path, text.encode("utf-8"))
    return path


def where_things_are(ws: Workspace, built: dict, trained: dict, config: Path, seconds: float) -> list[str]:
    """The demo's last words: what it made, where, and what to run next."""
    home = ws.home
    d = built["dataset"]
    version = d.get("version") or d.get("latest")
    lines = [f"\ndone in {seconds / 60:.1f} min. In {home}:"]
    if version:
        lines.append(f"  dataset   {DEMO_DATASET} v{version}: {ws.datasets / DEMO_DATASET}/")
    run = (trained.get("training") or {}).get("run") or (trained.get("last_trained") or {}).get("run")
    if run:
        folder = ws.runs / run
        grids = sorted((folder / "samples").glob("step-*.png"))
        lines.append(f"  run       {folder}/")
        if grids:
            lines.append(f"  samples   {grids[-1]}")
        if (folder / "progress.gif").is_file():
            lines.append(f"  progress  {folder / 'progress.gif'}")
    lines.append(f"  flows     {home / 'flows'}/ (build record, trained versions, cached task results)")
    lines.append(f"  config    {config} (the flows' settings, for the commands below)")
    r = built.get("review") or {}
    lines += ["", "next:",
              f"  label the {r.get('left', 0)} doubtful crops by keyboard:  headshot --home {home} review"
              "   (then open http://127.0.0.1:8765/)",
              f"  then rebuild and train what changed:  headshot flow build --config {config} && "
              f"headshot flow train --config {config}",
              f"  see what a new version changed:  headshot --home {home} dataset diff {DEMO_DATASET} "
              f"v{version or 1} v{(version or 1) + 1}",
              f"  more pictures from the generator:  headshot --home {home} generate --run {run or 'RUN'} -n 64",
              f"  every night, with the Prefect UI:  add a [schedule] build = \"0 3 * * *\" line to {config.name}, then "
              f"headshot flow serve --config {config}"]
    return lines


if __name__ == "__main__":
    run_demo(sys.argv[1] if len(sys.argv) > 1 else "demo-workspace")
