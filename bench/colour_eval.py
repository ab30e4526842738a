"""Colour estimates (curation.colours): against faces drawn in code with known hair and eye
colours, found and cropped as `headshot process` does (animeface), and what they say about
../shared/data/anime (no truth there: the table is for a person to look at beside the crops).

    python -m bench colour_eval
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

from PIL import Image

from curation.colours import estimate_colours
from curation.ingest import ingest
from curation.process import ProcessConfig, process
from curation.review.items import load_items
from manifests.workspace import Workspace
from replicas.drawn import face_colours, write_faces

SHARED_ANIME = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "anime"


def main(argv: list[str] | None = None, drawn: int = 150) -> dict:
    result: dict = {}
    # Before any worker starts: the forkserver keeps the environment it started with.
    os.environ.setdefault("HEADSHOT_CASCADE_DIR", str(SHARED_ANIME.parent / "cascades"))
    with tempfile.TemporaryDirectory(prefix="headshot-bench-colours-") as tmp:
        root = Path(tmp)
        ws = Workspace.open(root / "drawn")
        write_faces(root / "art", drawn, size=384)
        ingest([str(root / "art")], ws, progress=False)
        process(ws, replace(ProcessConfig(), detector=replace(ProcessConfig().detector, detector="animeface")),
                progress=False)
        items = [it for it in load_items(ws) if re.search(r"face_(\d+)", it.image_url)]
        right = Counter()
        confusion: Counter = Counter()
        t = time.perf_counter()
        for it in items:
            hair, eyes = face_colours(int(re.search(r"face_(\d+)", it.image_url).group(1)))
            est = estimate_colours(Image.open(ws.home / it.crop_path))
            for k, truth in (("hair", hair), ("eyes", eyes)):
                got = est[k].name if k in est else "-"
                right[k] += got == truth
                if got != truth:
                    confusion[(k, truth, got)] += 1
        per = (time.perf_counter() - t) / max(1, len(items)) * 1000
        result.update(drawn_crops=len(items), hair=right["hair"] / len(items), eyes=right["eyes"] / len(items),
                      ms_per_crop=per)
        print("## Colour estimates")
        print(f"{drawn} faces drawn in code (7 hair colours, 5 eye colours), {len(items)} crops found by animeface at "
              f"the default crop settings: hair right {result['hair']:.1%}, eyes right {result['eyes']:.1%}; "
              f"{per:.1f} ms per crop (decode included)")
        for (k, truth, got), n in confusion.most_common(8):
            print(f"  {k}: {truth} taken for {got} x{n}")
        if not SHARED_ANIME.is_dir():
            print("../shared/data/anime: skipped (not there)")
            return result
        ws2 = Workspace.open(root / "anime")
        ingest([str(SHARED_ANIME)], ws2, progress=False)
        process(ws2, ProcessConfig(), progress=False)
        rows = []
        for it in sorted(load_items(ws2), key=lambda it: it.image_url):
            est = estimate_colours(Image.open(ws2.home / it.crop_path))
            rows.append((Path(it.image_url).name, est.get("hair"), est.get("eyes")))
        hair = Counter(h.name for _, h, _ in rows if h)
        eyes = Counter(e.name for _, _, e in rows if e)
        result.update(anime_crops=len(rows), anime_hair=dict(hair), anime_eyes=dict(eyes))
        print(f"\n../shared/data/anime at the default settings: {len(rows)} crops")
        print("hair: " + ", ".join(f"{k} {v}" for k, v in hair.most_common()))
        print("eyes: " + ", ".join(f"{k} {v}" for k, v in eyes.most_common()))
        print("\n| picture | hair (confidence) | eyes (confidence) |\n|---|---|---|")
        for name, h, e in rows:
            cell = lambda x: f"{x.name} ({x.confidence:.2f})" if x else "-"  # noqa: E731
            print(f"| {name} | {cell(h)} | {cell(e)} |")
    return result


if __name__ == "__main__":
    main()
