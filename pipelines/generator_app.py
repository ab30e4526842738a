"""`headshot serve-generator`: a page on 127.0.0.1 for one training run. A control per attribute
the run was trained on, a seed (and a random one), a style picker over the paintings of a
folder, an interpolation slider between two seeds, and a download link for what is shown.

The same rules as the review queue (curation/review/guard.py): loopback unless --host, and
then an access token on every request; the Host header checked; a Content-Security-Policy
with no inline script; every name from disk (the run's, the paintings') put in the page as
text. A picture is a GET of /api/image.png with its settings in the query, so the image, its
download and a reload all show the same picture; every setting is checked against what the
run and the folder hold (a style is named by its listing, never by a path).
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request  # at the top: the routes' annotations name them
from fastapi.responses import JSONResponse, Response

from curation.review.guard import SECURITY_HEADERS, Guard
from curation.review.server import LOOPBACK, AppServer, is_loopback

PAINTING_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
STATIC = {"generator.html": "text/html; charset=utf-8", "generator.js": "text/javascript; charset=utf-8",
          "generator.css": "text/css; charset=utf-8"}
MAX_SEED = 2**31 - 1
# The review page's policy, but pictures may also come from blob: URLs (the fetched PNG, so
# an error can be read from the same request); still no inline script, no other origin.
PAGE_CSP = SECURITY_HEADERS["content-security-policy"].replace("img-src 'self'", "img-src 'self' blob:")
STYLE_STEPS = 120  # the page's style transfer: a few seconds at the run's size on 2 cores


class GeneratorError(ValueError):
    """A setting the run or the folder does not hold: the message lists what they do."""


def paintings(folder: Path | None) -> dict[str, Path]:
    """name -> file of every picture in `folder` (not recursive), by name."""
    if folder is None:
        return {}
    if not folder.is_dir():
        raise GeneratorError(f"--styles {folder}: not a folder")
    return {p.name: p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in PAINTING_SUFFIXES}


class Generator:
    """The run's EMA generator and what it can be asked for, thread-safe."""

    def __init__(self, runs_dir: Path, run: str, styles: Path | None = None, device: str = "cpu"):
        from training.runs import attributes_of, load_generator, run_folder

        self.rf = run_folder(runs_dir, run)
        self.run = run
        self.g, self.cfg, state = load_generator(self.rf, "best", device)
        self.step = int(state["step"])
        self.vocab = attributes_of(state)
        self.styles = paintings(styles)
        self._lock = threading.Lock()
        self._painted: dict[str, Any] = {}

    def info(self) -> dict[str, Any]:
        return {"run": self.run, "step": self.step, "size": self.cfg.size, "attributes": self.vocab,
                "styles": list(self.styles), "max_seed": MAX_SEED}

    def _labels(self, attrs: dict[str, str], seed: int):
        from training.run import TrainError
        from training.runs import attribute_labels

        try:
            return attribute_labels(self.vocab, attrs, 1, seed) if (self.vocab or attrs) else None
        except TrainError as exc:
            raise GeneratorError(str(exc)) from None

    def picture(self, seed: int, attrs: dict[str, str], style: str = "", seed2: int | None = None,
                t: float = 0.0) -> bytes:
        """PNG bytes of one picture: the latent of `seed` (slerped towards that of `seed2` by
        `t`), the attributes asked (the others drawn from `seed`), repainted in `style`."""
        from training.runs import generate, latents
        from training.samples import png_bytes, slerp, to_pil

        if not 0 <= seed <= MAX_SEED or (seed2 is not None and not 0 <= seed2 <= MAX_SEED):
            raise GeneratorError(f"a seed is a whole number from 0 to {MAX_SEED}")
        if not 0.0 <= t <= 1.0:
            raise GeneratorError(f"the interpolation is between 0 and 1, not {t}")
        if style and style not in self.styles:
            known = ", ".join(self.styles) or "none (start with --styles DIR)"
            raise GeneratorError(f"no painting {style!r} among the styles: {known}")
        labels = self._labels(attrs, seed)
        z = latents(1, self.cfg.nz, seed)
        if seed2 is not None and t > 0:
            z = slerp(z[0], latents(1, self.cfg.nz, seed2)[0], t).unsqueeze(0)
        with self._lock:
            image = to_pil(generate(self.g, z, labels=labels))[0]
            if style:
                image = self._style(image, style)
        return png_bytes(image)

    def _style(self, image, style: str):
        from training.style import StyleConfig, load_picture, transfer

        if style not in self._painted:
            self._painted[style] = load_picture(self.styles[style], "style")
        size = max(128, self.cfg.size * 2)
        out, _ = transfer(image, self._painted[style], StyleConfig(steps=STYLE_STEPS, size=size))
        return out


def create_app(gen: Generator, token: str | None, allowed_hosts: tuple[str, ...]):
    from training.style import StyleError

    api = FastAPI(title="headshot generator", docs_url=None, redoc_url=None, openapi_url=None)

    def static(name: str) -> Response:
        body = resources.files("pipelines").joinpath("static", name).read_bytes()
        headers = {"cache-control": "no-store"}
        if name.endswith(".html"):  # the picture is shown from a blob: URL of the fetched PNG
            headers["content-security-policy"] = PAGE_CSP
        return Response(body, media_type=STATIC[name], headers=headers)

    @api.get("/")
    def index() -> Response:
        return static("generator.html")

    @api.get("/generator.js")
    def script() -> Response:
        return static("generator.js")

    @api.get("/generator.css")
    def css() -> Response:
        return static("generator.css")

    @api.get("/favicon.ico")
    def favicon() -> Response:
        return Response(status_code=204)

    @api.get("/api/info")
    def info() -> JSONResponse:
        return JSONResponse(gen.info())

    @api.get("/api/image.png")
    def image(request: Request) -> Response:
        q = request.query_params
        unknown = sorted(set(q) - {"seed", "seed2", "t", "style", "attr", "token"})
        if unknown:
            raise HTTPException(400, f"unknown setting {unknown[0]!r}")
        try:
            seed = int(q.get("seed", "0"))
            seed2 = int(q["seed2"]) if q.get("seed2") else None
            t = float(q.get("t", "0"))
        except ValueError:
            raise HTTPException(400, "seed and seed2 are whole numbers, t a number from 0 to 1") from None
        attrs: dict[str, str] = {}
        for a in q.getlist("attr"):
            k, sep, v = a.partition("=")
            if not sep or not k or not v:
                raise HTTPException(400, f"attr {a[:80]!r}: NAME=VALUE")
            attrs[k] = v
        try:
            body = gen.picture(seed, attrs, q.get("style", ""), seed2, t)
        except (GeneratorError, StyleError) as exc:
            raise HTTPException(400, str(exc)) from None
        name = f"{gen.run}-seed{seed}" + (f"-{seed2}-{t:.2f}" if seed2 is not None else "") + ".png"
        return Response(body, media_type="image/png", headers={
            "cache-control": "no-store", "content-disposition": f'inline; filename="{_ascii(name)}"'})

    return Guard(api, token, allowed_hosts)


def _ascii(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:120]


@dataclass
class GeneratorServer(AppServer):
    """`with GeneratorServer(runs_dir, run) as s: s.url` serves the page until the block ends."""

    runs_dir: Path
    run: str
    styles: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8766
    token: str | None = None
    device: str = "cpu"
    what = "the generator page"

    def __post_init__(self) -> None:
        self._check_host(self.host, self.token)
        self.generator = Generator(self.runs_dir, self.run, self.styles, self.device)
        hosts = ("*",) if not is_loopback(self.host) else LOOPBACK
        self._serve_init(create_app(self.generator, self.token, hosts), self.host, self.port, self.token)


__all__ = ["Generator", "GeneratorError", "GeneratorServer", "create_app", "paintings"]
