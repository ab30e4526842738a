"""Detector model files: where they live, checking them, and `headshot models fetch`.

The anime cascade cannot ship with headshot (it is not ours to redistribute inside a wheel and
tests must never download), so users fetch it once from a pinned upstream commit and every use
checks its sha256: a truncated download or a changed upstream file fails loudly instead of
silently finding fewer faces. OpenCV's Haar cascade ships inside opencv-python-headless 4.x.
"""

from __future__ import annotations

import hashlib
import os
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CascadeSpec:
    name: str
    url: str
    sha256: str


ANIME_CASCADE = CascadeSpec(
    name="lbpcascade_animeface.xml",
    # A commit, not a branch: the bytes behind a branch URL can change under the checksum.
    url="https://raw.githubusercontent.com/nagadomi/lbpcascade_animeface/"
    "4433ab1ae1166ea75acfe99eb0f18709dac329a0/lbpcascade_animeface.xml",
    sha256="9376d30ac38db6bda2a68b88b3b76bbd7e6aa33af47f7f5c76bc88ca75f1ce30",
)
KNOWN = {ANIME_CASCADE.name: ANIME_CASCADE}
ENV_DIR = "HEADSHOT_CASCADE_DIR"
MAX_BYTES = 16 * 1024 * 1024  # the cascade is ~250 kB; anything far larger is not it


class ModelMissing(FileNotFoundError):
    """A model file headshot needs is not on this machine."""


class ModelChecksumError(ValueError):
    """A model file's bytes are not the pinned ones."""


class ModelFetchError(RuntimeError):
    """`headshot models fetch` could not download a model."""


def cascade_dir() -> Path:
    """HEADSHOT_CASCADE_DIR when set, else the user cache where `headshot models fetch` writes."""
    env = os.environ.get(ENV_DIR)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    # The XDG spec says a relative XDG_CACHE_HOME is invalid and must be ignored.
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "headshot" / "cascades"


def _spec(name: str) -> CascadeSpec:
    try:
        return KNOWN[name]
    except KeyError:
        raise ValueError(f"unknown cascade {name!r}; headshot knows: {', '.join(sorted(KNOWN))}") from None


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# Hashing on every detection would cost more than detecting on small images, so a file is
# verified once per process. The key includes size and mtime so a file replaced while the
# process runs (a re-fetch) is checked again.
_verified: set[tuple[str, int, int]] = set()
_verified_lock = threading.Lock()


def cascade_path(name: str = ANIME_CASCADE.name, folder: Path | None = None) -> Path:
    """The verified cascade file, or ModelMissing / ModelChecksumError saying what to do."""
    spec = _spec(name)
    where = Path(folder) if folder is not None else cascade_dir()
    path = where / spec.name
    try:
        st = path.stat()
    except FileNotFoundError:
        hint = (f"{ENV_DIR} is set to {where}" if folder is None and os.environ.get(ENV_DIR)
                else f"looked in {where}")
        raise ModelMissing(
            f"the anime face cascade {spec.name} is not installed ({hint}). "
            f"Run `headshot models fetch` to download it (sha256-checked), "
            f"or set {ENV_DIR} to a folder that holds it."
        ) from None
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    with _verified_lock:
        if key in _verified:
            return path
    got = _sha256_file(path)
    if got != spec.sha256:
        raise ModelChecksumError(
            f"{path} is not the pinned {spec.name}: sha256 {got}, expected {spec.sha256}. "
            f"Delete it and run `headshot models fetch` again."
        )
    with _verified_lock:
        _verified.add(key)
    return path


def haar_path() -> Path:
    """OpenCV's frontal-face Haar cascade, shipped in the opencv-python-headless 4.x wheel."""
    import cv2  # kept local: `headshot --help` and model fetching do not need OpenCV loaded

    folder = getattr(getattr(cv2, "data", None), "haarcascades", "")
    path = Path(folder) / "haarcascade_frontalface_default.xml"
    if not folder or not path.is_file():
        # OpenCV 5 wheels ship no cascade files (and no CascadeClassifier): the pin is <5.
        raise ModelMissing(f"OpenCV {cv2.__version__} ships no haarcascade_frontalface_default.xml "
                           f"(cv2.data.haarcascades={folder!r}); install opencv-python-headless<5")
    return path


def fetch_cascade(dest: Path | None = None, url: str | None = None, timeout: float = 60) -> Path:
    """Download the anime cascade into `dest` (a folder, default cascade_dir(); or a path
    ending in .xml), check its sha256, and write it atomically. An existing good file is kept
    without a download. Raises ModelFetchError or ModelChecksumError; never leaves a bad file."""
    from curation.fetch import default_user_agent
    from manifests.atomic import write_bytes_atomic

    spec = ANIME_CASCADE
    dest = Path(dest) if dest is not None else cascade_dir()
    path = dest if dest.suffix == ".xml" else dest / spec.name
    if path.is_file() and _sha256_file(path) == spec.sha256:
        return path
    url = url or spec.url
    req = urllib.request.Request(url, headers={"User-Agent": default_user_agent()})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            data = resp.read(MAX_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise ModelFetchError(f"downloading {spec.name} from {url} failed: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ModelFetchError(f"downloading {spec.name} from {url} failed: {reason}") from None
    if len(data) > MAX_BYTES:
        raise ModelFetchError(f"{url} sent more than {MAX_BYTES:,} bytes; that is not {spec.name}")
    got = hashlib.sha256(data).hexdigest()
    if got != spec.sha256:
        raise ModelChecksumError(f"{url} sent {len(data):,} bytes with sha256 {got}, expected "
                                 f"{spec.sha256}; nothing was written (a proxy page, or the file changed)")
    # A temp file plus rename: a killed fetch leaves the old file or none, never half a cascade.
    write_bytes_atomic(path, data)
    return path
