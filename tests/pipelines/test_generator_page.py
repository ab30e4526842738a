"""The generator page (`headshot serve-generator`) in real headless Chromium: set an attribute,
generate and see a new picture, apply a style, download the file; a painting with a hostile
file name shows as text; the API refuses what the run or the folder does not hold; another
interface needs a token. The run: a tiny conditional model trained here for two steps."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from PIL import Image

from replicas.drawn import draw_face
from training.config import TrainConfig
from training.data import Source
from training.run import train

pytestmark = pytest.mark.slow
HOSTILE = '<b id="pwn">bold<b><img src=x onerror=alert(1)>.png'  # no slash: a file name


@pytest.fixture(scope="module")
def run_and_styles(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen")
    files = []
    for i in range(8):
        p = root / "faces" / f"{i}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        draw_face(i, 64).save(p)
        files.append(p)
    src = Source("dataset", "drawn", 1, "hash-of-drawn", files, [], attributes=[
        (f"hair={'blue' if i % 2 else 'red'}",) for i in range(8)])
    cfg = TrainConfig(steps=2, batch_size=4, ngf=8, ndf=8, conditional=("hair",), sample_every=0, eval_every=0,
                      best_metric="none", precision="fp32", channels_last="off", device="cpu")
    train(root / "runs", cfg, src, name="g", progress=False)
    styles = root / "paintings"
    styles.mkdir()
    Image.merge("RGB", [Image.linear_gradient("L").rotate(a) for a in (0, 60, 120)]).resize((96, 96)).save(
        styles / "stripes.png")
    Image.new("RGB", (64, 64), (200, 40, 40)).save(styles / HOSTILE)
    (styles / "notes.txt").write_text("not a painting")
    return root / "runs", styles


@pytest.fixture
def server(run_and_styles):
    from pipelines.generator_app import GeneratorServer

    runs, styles = run_and_styles
    with GeneratorServer(runs, "g", styles, port=0) as s:
        yield s


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_set_an_attribute_generate_style_and_download(browser, server, tmp_path):
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("dialog", lambda d: (errors.append(f"dialog: {d.message}"), d.dismiss()))
    page.goto(server.url)
    page.wait_for_selector("body[data-ready='1']")
    page.wait_for_selector("body[data-generated='1']", state="attached")
    assert page.locator("#attr-hair option").all_text_contents() == ["any", "blue", "red"]
    first = page.get_attribute("#picture", "data-source")

    page.select_option("#attr-hair", "blue")
    page.fill("#seed", "5")
    page.click("#generate")
    page.wait_for_selector("body[data-generated='2']", state="attached")
    src = page.get_attribute("#picture", "data-source")
    assert src != first and "attr=hair%3Dblue" in src and "seed=5" in src
    assert page.evaluate("document.getElementById('picture').naturalWidth") == 64

    page.select_option("#style", "stripes.png")
    page.click("#generate")
    page.wait_for_selector("body[data-generated='3']", state="attached", timeout=120_000)
    assert page.evaluate("document.getElementById('picture').naturalWidth") == 128  # the portrait's size
    assert "style=stripes.png" in page.get_attribute("#picture", "data-source")

    with page.expect_download() as dl:
        page.click("#download")
    saved = tmp_path / "face.png"
    dl.value.save_as(saved)
    assert saved.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and Image.open(saved).size == (128, 128)
    assert dl.value.suggested_filename == "g-seed5-styled.png"

    # The hostile painting name is an option's text, never markup; the .txt is no painting.
    names = page.locator("#style option").all_text_contents()
    assert names == ["none", HOSTILE, "stripes.png"]
    assert page.locator("#pwn").count() == 0 and not errors, errors

    # The interpolation slider: another picture between the two seeds.
    page.select_option("#style", "")
    page.fill("#seed2", "9")
    page.locator("#mix").fill("0.5")
    page.click("#generate")
    page.wait_for_selector("body[data-generated='4']", state="attached")
    assert "seed2=9" in page.get_attribute("#picture", "data-source") and "t=0.50" in page.get_attribute(
        "#picture", "data-source")
    ctx.close()


def test_the_api_refuses_what_the_run_and_the_folder_do_not_hold(server):
    base = server.url.rstrip("/")
    info = json.loads(_get(base + "/api/info")[1])
    assert info["attributes"] == {"hair": ["blue", "red"]} and info["styles"] == [HOSTILE, "stripes.png"]
    code, body = _get(base + "/api/image.png?seed=1&attr=hair%3Dplaid")
    assert code == 400 and "trained on hair = blue, red" in json.loads(body)["detail"]
    code, body = _get(base + "/api/image.png?style=..%2Fpaintings%2Fstripes.png")
    assert code == 400 and "no painting" in json.loads(body)["detail"]
    code, body = _get(base + "/api/image.png?seed=-4")
    assert code == 400 and "whole number from 0" in json.loads(body)["detail"]
    code, body = _get(base + "/api/image.png?seed=1&evil=1")
    assert code == 400 and "unknown setting 'evil'" in json.loads(body)["detail"]
    code, body = _get(base + "/api/image.png?seed=3&attr=hair%3Dred")
    assert code == 200 and body[:4] == b"\x89PNG"
    with urllib.request.urlopen(base + "/", timeout=30) as r:
        csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "img-src 'self' blob:" in csp


def test_another_interface_needs_a_token(run_and_styles):
    from curation.review.server import ReviewServerError
    from pipelines.generator_app import GeneratorServer

    runs, styles = run_and_styles
    with pytest.raises(ReviewServerError, match="needs an access token"):
        GeneratorServer(runs, "g", styles, host="0.0.0.0", port=0)
    with GeneratorServer(runs, "g", styles, host="127.0.0.1", port=0, token="t" * 20) as s:
        assert _get(s.url.split("?")[0] + "api/info")[0] == 401
        assert _get(s.url.split("?")[0] + "api/info?token=" + "t" * 20)[0] == 200
