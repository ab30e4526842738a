"""Hair and eye colour estimates: against faces drawn in code with known colours (found and
cropped as `headshot process` does, by animeface, whose model ships in its wheel), on named
reference colours, and on crops with nothing to find."""

from __future__ import annotations

import re
from dataclasses import replace

import cv2
import numpy as np
import pytest
from PIL import Image

from curation.colours import EYE_NAMES, HAIR_NAMES, colour_names, estimate_colours
from curation.ingest import ingest
from curation.process import ProcessConfig, process
from curation.review.items import load_items
from replicas.drawn import HAIR, HAIR_NAMES as DRAWN_HAIR, IRIS_NAMES, face_colours, write_faces


def _name(rgb) -> str:
    lab = cv2.cvtColor(np.array([[rgb]], np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    L, a, b = lab[..., 0], lab[..., 1], lab[..., 2]
    return str(colour_names(L, np.hypot(a, b), np.degrees(np.arctan2(b, a)) % 360)[0, 0])


@pytest.mark.parametrize("rgb,name", [
    ((20, 20, 25), "black"), ((128, 128, 130), "grey"), ((245, 245, 250), "white"), ((110, 65, 35), "brown"),
    ((200, 40, 50), "red"), ((240, 150, 180), "pink"), ((240, 140, 40), "orange"), ((240, 220, 60), "yellow"),
    ((60, 160, 70), "green"), ((80, 200, 210), "aqua"), ((60, 90, 210), "blue"), ((140, 70, 180), "purple"),
])
def test_reference_colours_get_their_names(rgb, name):
    assert _name(rgb) == name


def test_the_drawn_palette_is_named_as_a_person_would():
    assert [_name(c) for c in HAIR] == [n if n != "blonde" else "yellow" for n in DRAWN_HAIR]
    assert set(DRAWN_HAIR) <= set(HAIR_NAMES) and set(IRIS_NAMES) <= set(EYE_NAMES)


def test_drawn_faces_hair_and_eyes_are_estimated_right(ws, tmp_path):
    write_faces(tmp_path / "art", 28, size=384)
    ingest([str(tmp_path / "art")], ws, progress=False)
    process(ws, replace(ProcessConfig(), detector=replace(ProcessConfig().detector, detector="animeface"), workers=2),
            progress=False)
    right = {"hair": 0, "eyes": 0}
    seen = set()
    items = load_items(ws)
    for it in items:
        seed = int(re.search(r"face_(\d+)", it.image_url).group(1))
        seen.add(seed)
        hair, eyes = face_colours(seed)
        est = estimate_colours(Image.open(ws.home / it.crop_path))
        right["hair"] += est["hair"].name == hair
        right["eyes"] += est.get("eyes") is not None and est["eyes"].name == eyes
        assert 0 < est["hair"].confidence <= 1
    assert len(seen) >= 24, "animeface finds the drawn faces"
    assert len({face_colours(s)[0] for s in seen}) >= 5 and len({face_colours(s)[1] for s in seen}) >= 4
    assert right["hair"] >= 0.9 * len(items) and right["eyes"] >= 0.9 * len(items), (right, len(items))


def test_crops_with_nothing_to_find_give_nothing_not_an_error():
    assert estimate_colours(Image.new("RGB", (1, 1), (250, 220, 200))) == {}  # all skin, one pixel
    assert estimate_colours(Image.new("RGB", (128, 128), (250, 220, 200))) == {}  # no hair around it
    grey = estimate_colours(Image.new("L", (64, 64), 128))  # converted: a mode Pillow gives
    assert isinstance(grey, dict)
    with pytest.raises(ValueError, match="RGB"):
        estimate_colours(np.zeros((8, 8), np.uint8))
