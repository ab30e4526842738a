"""Process throughput: `headshot process` with the anime LBP cascade alone (decode, detect,
crop, five filters, hashes, dedup, rows) against a plain loop of the same OpenCV detector with
the same parameters on the same images (decode with Pillow, grey, detectMultiScale), in one
process and in a pool of one process per core, all in the same run."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from curation.detect import prepare
from curation.ingest import ingest
from curation.process import ProcessConfig, process
from manifests.workspace import Workspace
from replicas.drawn import write_faces

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
_CASCADE: list = []


def _detect_plain(path: str) -> int:
    if not _CASCADE:
        _CASCADE.append(cv2.CascadeClassifier(str(Path(os.environ["HEADSHOT_CASCADE_DIR"]) / "lbpcascade_animeface.xml")))
    grey = cv2.cvtColor(np.asarray(prepare(Path(path).read_bytes())), cv2.COLOR_RGB2GRAY)
    return len(_CASCADE[0].detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(24, 24)))


def main(generated: int = 150, repeats: int = 3) -> dict:
    os.environ.setdefault("HEADSHOT_CASCADE_DIR", str(SHARED / "cascades"))
    if not (Path(os.environ["HEADSHOT_CASCADE_DIR"]) / "lbpcascade_animeface.xml").exists():
        print("## process throughput: skipped (no lbpcascade_animeface.xml; run headshot models fetch)")
        return {}
    # The plain loop's detector exactly: one upright pass, stock parameters, no extra passes.
    cfg = ProcessConfig(detector=replace(ProcessConfig().detector, detector="lbp", rotations=(), upscale_below=0,
                                         max_side=0, scale_factor=1.1, min_neighbors=5, min_size=24, equalize=False))
    with tempfile.TemporaryDirectory(prefix="headshot-process-bench-") as tmp:
        corpus = Path(tmp) / "corpus"
        write_faces(corpus / "generated", generated, size=512)
        if (SHARED / "anime").is_dir():
            shutil.copytree(SHARED / "anime", corpus / "anime")
        files = sorted(str(p) for p in corpus.rglob("*") if p.is_file())
        one, pool, ours = [], [], []
        ctx = multiprocessing.get_context("forkserver")  # fork after OpenCV has run can hang
        for i in range(repeats):
            t = time.perf_counter()
            found = sum(map(_detect_plain, files))
            one.append(time.perf_counter() - t)
            t = time.perf_counter()
            with ctx.Pool(os.cpu_count(), initializer=cv2.setNumThreads, initargs=(1,)) as p:
                assert sum(p.map(_detect_plain, files, chunksize=4)) == found
            pool.append(time.perf_counter() - t)
            ws = Workspace.open(Path(tmp) / f"ws{i}")
            ingest([str(corpus)], ws, progress=False)  # not timed: the stage under test is process
            t = time.perf_counter()
            report = process(ws, cfg, progress=False)
            ours.append(time.perf_counter() - t)
            assert report.images_detected == len(files) and report.crops_new >= found * 0.9, (report, found)
    n = len(files)
    o, s1, s2 = statistics.median(ours), statistics.median(one), statistics.median(pool)
    result = {"images": n, "faces": found, "plain_1proc_per_s": round(n / s1, 1), "plain_pool_per_s": round(n / s2, 1),
              "headshot_per_s": round(n / o, 1), "ratio_vs_1proc": round(s1 / o, 2), "ratio_vs_pool": round(s2 / o, 2)}
    print("## process throughput")
    print(f"{n} images ({generated} generated 512 px + shared/data/anime), LBP cascade (1.1, 5, 24x24), "
          f"{os.cpu_count()} cores, median of {repeats}")
    print("| | images/s |\n|---|---|")
    print(f"| plain loop, 1 process (decode, grey, detectMultiScale) | {result['plain_1proc_per_s']} |")
    print(f"| plain loop, {os.cpu_count()} processes | {result['plain_pool_per_s']} |")
    print(f"| headshot process (detect, crop, 5 filters, hashes, dedup, rows) | {result['headshot_per_s']} |")
    print(f"| ratio headshot / plain 1 process | {result['ratio_vs_1proc']}x |")
    print(f"| ratio headshot / plain pool | {result['ratio_vs_pool']}x |")
    return result


if __name__ == "__main__":
    main()
