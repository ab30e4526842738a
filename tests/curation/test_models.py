"""Model files: where they are looked up, sha256 checks, and `headshot models fetch` against a
local HTTP server (never the real upstream: tests do not download)."""

from __future__ import annotations

import hashlib
import os

import pytest

from curation import models
from curation.models import (ANIME_CASCADE, ModelChecksumError, ModelFetchError, ModelMissing, cascade_dir,
                             cascade_path, fetch_cascade, haar_path)
from tests.conftest import shared_path

SHARED_CASCADES = shared_path("data", "cascades")


@pytest.fixture
def cascade_bytes() -> bytes:
    path = SHARED_CASCADES / ANIME_CASCADE.name
    if not path.is_file():
        pytest.skip(f"../shared is absent ({path}): the cascade tests read the real file from it")
    return path.read_bytes()


@pytest.fixture(autouse=True)
def fresh_verification(monkeypatch):
    monkeypatch.setattr(models, "_verified", set())


def test_pinned_spec():
    assert ANIME_CASCADE.name == "lbpcascade_animeface.xml"
    assert "/4433ab1ae1166ea75acfe99eb0f18709dac329a0/" in ANIME_CASCADE.url
    assert ANIME_CASCADE.sha256 == "9376d30ac38db6bda2a68b88b3b76bbd7e6aa33af47f7f5c76bc88ca75f1ce30"


def test_cascade_dir_env_then_xdg_then_home(monkeypatch, tmp_path):
    monkeypatch.setenv("HEADSHOT_CASCADE_DIR", str(tmp_path / "mine"))
    assert cascade_dir() == tmp_path / "mine"
    monkeypatch.delenv("HEADSHOT_CASCADE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cascade_dir() == tmp_path / "xdg" / "headshot" / "cascades"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # invalid per the XDG spec: ignored
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cascade_dir() == tmp_path / "home" / ".cache" / "headshot" / "cascades"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cascade_dir() == tmp_path / "home" / ".cache" / "headshot" / "cascades"


def test_missing_cascade_says_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setenv("HEADSHOT_CASCADE_DIR", str(tmp_path))
    with pytest.raises(ModelMissing) as err:
        cascade_path()
    msg = str(err.value)
    assert "headshot models fetch" in msg and "HEADSHOT_CASCADE_DIR" in msg and str(tmp_path) in msg
    assert isinstance(err.value, FileNotFoundError)
    with pytest.raises(ValueError, match="unknown cascade"):
        cascade_path("nope.xml")


def test_cascade_path_verifies_once_per_process(monkeypatch, tmp_path, cascade_bytes):
    (tmp_path / ANIME_CASCADE.name).write_bytes(cascade_bytes)
    monkeypatch.setenv("HEADSHOT_CASCADE_DIR", str(tmp_path))
    calls = []
    real = models._sha256_file
    monkeypatch.setattr(models, "_sha256_file", lambda p: calls.append(p) or real(p))
    assert cascade_path() == tmp_path / ANIME_CASCADE.name
    assert cascade_path(folder=tmp_path) == tmp_path / ANIME_CASCADE.name
    assert len(calls) == 1


def test_corrupted_cascade_is_refused(tmp_path, cascade_bytes):
    bad = bytearray(cascade_bytes)
    bad[1000] ^= 0xFF
    (tmp_path / ANIME_CASCADE.name).write_bytes(bytes(bad))
    with pytest.raises(ModelChecksumError, match="headshot models fetch"):
        cascade_path(folder=tmp_path)


def test_replaced_file_is_checked_again(tmp_path, cascade_bytes):
    path = tmp_path / ANIME_CASCADE.name
    path.write_bytes(cascade_bytes)
    cascade_path(folder=tmp_path)
    path.write_bytes(cascade_bytes[:-10])
    os.utime(path, ns=(1, 1))
    with pytest.raises(ModelChecksumError):
        cascade_path(folder=tmp_path)


def test_haar_ships_with_opencv():
    path = haar_path()
    assert path.name == "haarcascade_frontalface_default.xml" and path.is_file()
    shared = SHARED_CASCADES / path.name
    if shared.is_file():  # ../shared keeps a byte-identical copy of the 4.x wheel's file
        assert path.read_bytes() == shared.read_bytes()


# ---------------------------------------------------------------- fetching from a local server

XML = {"Content-Type": "application/xml"}


def test_fetch_writes_the_checked_file(site, tmp_path, cascade_bytes):
    url = site.add("/cascade.xml", (200, XML, cascade_bytes))
    path = fetch_cascade(tmp_path / "cache", url=url, timeout=10)
    assert path == tmp_path / "cache" / ANIME_CASCADE.name
    assert hashlib.sha256(path.read_bytes()).hexdigest() == ANIME_CASCADE.sha256
    agent = site.log[0][2].get("User-Agent", "")
    assert agent.startswith("headshot/") and "Python-urllib" not in agent
    assert cascade_path(folder=tmp_path / "cache") == path
    # A good file already there: no second download.
    assert fetch_cascade(tmp_path / "cache", url=url) == path
    assert len(site.hits("/cascade.xml")) == 1
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [ANIME_CASCADE.name]


def test_fetch_to_a_file_path_and_the_default_folder(site, tmp_path, monkeypatch, cascade_bytes):
    url = site.add("/c.xml", (200, XML, cascade_bytes))
    target = tmp_path / "elsewhere" / "anime.xml"
    assert fetch_cascade(target, url=url) == target and target.read_bytes() == cascade_bytes
    monkeypatch.setenv("HEADSHOT_CASCADE_DIR", str(tmp_path / "env"))
    assert fetch_cascade(url=url) == tmp_path / "env" / ANIME_CASCADE.name


def test_checksum_mismatch_leaves_nothing(site, tmp_path, cascade_bytes):
    corrupted = cascade_bytes.replace(b"<stages>", b"<stages >", 1)
    assert corrupted != cascade_bytes
    url = site.add("/bad.xml", (200, XML, corrupted))
    with pytest.raises(ModelChecksumError, match="sha256") as err:
        fetch_cascade(tmp_path, url=url)
    assert ANIME_CASCADE.sha256 in str(err.value)
    assert list(tmp_path.iterdir()) == []  # no file, no temp file


def test_bad_existing_file_is_replaced(site, tmp_path, cascade_bytes):
    (tmp_path / ANIME_CASCADE.name).write_bytes(b"<html>captive portal</html>")
    url = site.add("/c.xml", (200, XML, cascade_bytes))
    fetch_cascade(tmp_path, url=url)
    assert (tmp_path / ANIME_CASCADE.name).read_bytes() == cascade_bytes


def test_a_failed_fetch_keeps_a_good_file_out_of_harm(site, tmp_path, cascade_bytes):
    (tmp_path / ANIME_CASCADE.name).write_bytes(b"old")
    url = site.add("/bad.xml", (200, XML, b"not the cascade"))
    with pytest.raises(ModelChecksumError):
        fetch_cascade(tmp_path, url=url)
    assert (tmp_path / ANIME_CASCADE.name).read_bytes() == b"old"


@pytest.mark.parametrize("status", [404, 500])
def test_http_errors_are_clear(site, tmp_path, status):
    url = site.add("/gone.xml", (status, {"Content-Type": "text/plain"}, b"nope"))
    with pytest.raises(ModelFetchError, match=f"HTTP {status}"):
        fetch_cascade(tmp_path, url=url, timeout=10)
    assert list(tmp_path.iterdir()) == []


def test_unreachable_server_is_clear(tmp_path):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens here now
    with pytest.raises(ModelFetchError, match="failed"):
        fetch_cascade(tmp_path, url=f"http://127.0.0.1:{port}/c.xml", timeout=5)
