"""A huge flat picture: what `process` costs on one 9000 x 9000 PNG of one colour (258 KB on
disk, 243 MB decoded), against a normal picture in the same run; and a 9000 x 9000 drawn
character (JPEG), which takes the detectors' whole path at the working size.

Per picture: the stage's own work for one image (`curation.process.work`: decode, image
filters, detection with the default ensemble, crops, hashes), in this process on one core,
median of 3; the reference is the median over ../shared/data/anime (or drawn faces without
../shared). With `--unbounded` also the same picture at max_side=0, the cost before pictures
were judged at a working size (one run: about a minute). And `headshot process` on the big
picture alone, the whole command (start-up, pool, rows, dedup) in a subprocess.

    .venv/bin/python -m bench.big_picture [--unbounded]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def _timed_work(ws, cfg, rows, repeats: int = 3) -> list[float]:
    from curation import process as P

    P._W.update(home=ws.home, cfg=cfg, det_key=P.detection_key(cfg.detector), det_version="bench")
    times = []
    for r in rows:
        job = P.Job(r.image_sha256, r.blob_path, None, size=(r.width, r.height))
        best = []
        for _ in range(repeats):
            t = time.perf_counter()
            out = P.work(job)
            best.append(time.perf_counter() - t)
            assert not out.error, out.error
        times.append(statistics.median(best))
    return times


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--unbounded", action="store_true", help="also time the picture at max_side=0 (about a minute)")
    args = ap.parse_args(argv)
    os.environ.setdefault("HEADSHOT_CASCADE_DIR", str(SHARED / "cascades"))
    if not (Path(os.environ["HEADSHOT_CASCADE_DIR"]) / "lbpcascade_animeface.xml").exists():
        print("## big picture: skipped (no lbpcascade_animeface.xml; run headshot models fetch)")
        return {}
    import cv2

    cv2.setNumThreads(1)  # as in a process worker
    from curation.ingest import IngestConfig, ingest
    from curation.process import ProcessConfig
    from manifests import tables
    from manifests.records import StoredImage
    from manifests.workspace import Workspace
    from replicas.drawn import write_faces

    root = Path(tempfile.mkdtemp(prefix="headshot-bench-big-"))
    try:
        big = root / "big" / "flat.png"
        big.parent.mkdir()
        Image.new("RGB", (9000, 9000), (200, 180, 160)).save(big, optimize=True)
        from replicas.drawn import draw_character

        drawn = root / "drawn-big" / "character.jpg"
        drawn.parent.mkdir()
        draw_character(1, 9000).save(drawn, quality=90)
        normal = SHARED / "anime" if (SHARED / "anime").is_dir() else write_faces(root / "drawn", 20, size=512)[0].parent
        ws_big, ws_normal = Workspace.open(root / "ws-big"), Workspace.open(root / "ws-normal")
        ws_drawn = Workspace.open(root / "ws-drawn")
        ingest([str(big)], ws_big, IngestConfig(workers=1), progress=False)
        ingest([str(drawn)], ws_drawn, IngestConfig(workers=1), progress=False)
        drawn_rows = [r for r in tables.read_records(ws_drawn, StoredImage) if r.status == "ok"]
        ingest([str(normal)], ws_normal, IngestConfig(workers=1), progress=False)
        big_rows = [r for r in tables.read_records(ws_big, StoredImage) if r.status == "ok"]
        normal_rows = [r for r in tables.read_records(ws_normal, StoredImage) if r.status == "ok"]
        cfg = ProcessConfig()
        from curation import detect

        [t_big] = _timed_work(ws_big, cfg, big_rows)
        [t_drawn] = _timed_work(ws_drawn, cfg, drawn_rows)
        t_normal = statistics.median(_timed_work(ws_normal, cfg, normal_rows, repeats=1))
        flat_range, detect.FLAT_RANGE = detect.FLAT_RANGE, 0  # the one-colour shortcut off
        try:
            [t_bounded_only] = _timed_work(ws_big, cfg, big_rows)
            t_unbounded = None
            if args.unbounded:  # as before both: no working size, no shortcut
                [t_unbounded] = _timed_work(ws_big, replace(cfg, detector=replace(cfg.detector, max_side=0)), big_rows, 1)
        finally:
            detect.FLAT_RANGE = flat_range
        exe = REPO / ".venv" / "bin" / "headshot"
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "pipelines.cli"]
        t = time.perf_counter()
        out = subprocess.run([*cmd, "--home", str(ws_big.home), "process", "--no-progress", "--workers", "1"],
                             capture_output=True, text=True, timeout=600)
        t_cli = time.perf_counter() - t
        assert out.returncode == 0, out.stderr[-2000:]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print("## big picture\n")
    print(f"One 9000 x 9000 flat PNG ({big_rows[0].bytes:,} bytes) against the median picture of {normal} "
          f"({len(normal_rows)} pictures), default process settings, one core.\n")
    print("| what | seconds | x the normal picture |\n|---|---|---|")
    print(f"| a normal picture, per picture | {t_normal:.2f} | 1.00 |")
    print(f"| the 9000 px flat picture, per picture | {t_big:.2f} | {t_big / t_normal:.1f} |")
    print(f"| the same, working size only (one-colour shortcut off) | {t_bounded_only:.2f} | "
          f"{t_bounded_only / t_normal:.1f} |")
    print(f"| a 9000 px drawn character, JPEG ({drawn_rows[0].bytes:,} bytes), per picture | {t_drawn:.2f} | "
          f"{t_drawn / t_normal:.1f} |")
    if t_unbounded is not None:
        print(f"| the same, as before: unbounded (max_side=0), no shortcut | {t_unbounded:.1f} | "
              f"{t_unbounded / t_normal:.0f} |")
    print(f"| `headshot process` on it alone, whole command | {t_cli:.1f} | - |")
    return {"normal": t_normal, "big": t_big, "bounded_only": t_bounded_only, "drawn": t_drawn,
            "unbounded": t_unbounded, "cli": t_cli}


if __name__ == "__main__":
    main()
