"""`headshot demo` / `make demo`: the pipeline, offline, on artwork generated in code.

It starts a getchu replica on 127.0.0.1 (pages from a template, faces drawn in code), crawls
it with the real spider in its own process, ingests a folder of generated art and broken
files, finds and filters faces (`headshot process`), and prints what was kept, why the rest
went, writes the first version of a dataset from what passed every filter, and says how to
open the review queue on the doubtful rest. Later stages extend this same command.
"""

from __future__ import annotations

import sys
from typing import Callable

from dataclasses import replace

from curation.dataset_build import build_dataset
from curation.ingest import ingest
from curation.models import ModelChecksumError, ModelMissing, cascade_path
from curation.process import ProcessConfig, process
from curation.process_dedup import summary
from manifests.workspace import Workspace
from pipelines.config import HeadshotConfig
from pipelines.status import status
from pipelines.report import format_status, format_summary
from replicas.drawn import write_bad_inputs, write_faces
from replicas.sites.getchu import GetchuReplica
from replicas.sites.server import Replica
from spiders.run import CrawlRequest, crawl

DEMO_IDS = list(range(900001, 900007))
DEMO_DATASET = "demo-faces"
# The replica is ours and local: no politeness delay is needed to spare it.
FAST = {"DOWNLOAD_DELAY": "0", "AUTOTHROTTLE_ENABLED": "False", "LOG_LEVEL": "WARNING"}


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


def run_demo(home: str, count: int = 48, echo: Callable[[str], None] = print,
             config: HeadshotConfig | None = None) -> dict:
    """The pipeline on the project config's ingest, process and dataset settings (the defaults
    without one), in its own workspace `home`."""
    config = config or HeadshotConfig()
    ws = Workspace.open(home)
    with Replica() as site:
        GetchuReplica(site, None, months={(2015, 5): DEMO_IDS[:3], (2015, 6): DEMO_IDS[3:]}, synthetic_ids=DEMO_IDS)
        echo(f"crawling a local getchu replica at {site.base} (2015-05 to 2015-06)")
        code = crawl(CrawlRequest("getchu", {"since": "2015-05", "until": "2015-06"},
                                  {"GETCHU_BASE_URL": site.base, **FAST}), ws, quiet=True)
        if code:
            raise RuntimeError(f"the demo crawl failed (scrapy exit code {code})")
    folder = ws.home / "demo-site" / "images"
    echo(f"generating {count} artworks and 6 broken files in {folder}")
    write_faces(folder, count)
    write_bad_inputs(folder / "broken")
    report = ingest([str(folder)], ws, config.ingest.stage(), progress=sys.stderr.isatty())
    echo(f"ingested {report.inputs} inputs: {report.new_images} new, {report.already_stored} already stored")
    cfg = demo_process_config(echo, config.process)
    done = process(ws, cfg, progress=sys.stderr.isatty())
    echo(f"processed: {done.images_detected} images, {done.crops_new} new face crops")
    echo(format_summary(summary(ws, cfg)))
    # A few dozen crops: the project's minimum is for its real data. The queue is left full on
    # purpose, to be opened next.
    built = build_dataset(ws, DEMO_DATASET, replace(config.dataset.build, min_accepted=1))
    c = built.counts
    version = built.written or built.latest
    echo(f"dataset {DEMO_DATASET} v{version.version}: {version.rows} crops accepted by rule "
         f"(passed every filter without doubt); {c['undecided']} doubtful ones wait for a person"
         + ("" if built.written else " (no new version: nothing changed since the last one)"))
    st = status(ws)
    echo(format_status(st))
    echo(f"\nnext: label the doubtful crops by keyboard:  headshot --home {home} review"
         f"   (then open http://127.0.0.1:8765/)")
    echo(f"      then: headshot --home {home} dataset build {DEMO_DATASET}   and   "
         f"headshot --home {home} dataset diff {DEMO_DATASET} v{version.version} v{version.version + 1}")
    return st


if __name__ == "__main__":
    run_demo(sys.argv[1] if len(sys.argv) > 1 else "demo-workspace")
