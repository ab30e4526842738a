"""Folders a careless user or an attacker hands to ingest: names that are not UTF-8, FIFOs,
devices behind symlinks, sockets. Each becomes a row with its reason, within a bounded time,
and every table stays readable."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from curation.ingest import IngestConfig, IngestInputError, ingest, read_regular
from manifests import tables
from manifests.records import ScrapedImage, StoredImage
from replicas.drawn import write_faces


def _cli(home, *args, timeout=60):
    cmd = [sys.executable, "-m", "pipelines.cli", "--home", str(home), "ingest", "--workers", "1", "--no-progress",
           *map(str, args)]
    return subprocess.run(cmd, capture_output=True, timeout=timeout)


def _every_table_reads(ws) -> None:
    for path in ws.manifests.glob("*.parquet"):
        pq.read_table(path)


def test_a_name_that_is_not_utf8_is_a_row_escaped_and_lossless(ws, tmp_path):
    art = tmp_path / "art"
    [good] = write_faces(art, 1, size=96)
    raw = os.fsencode(art) + b"/bad\xff name.png"
    with open(raw, "wb") as f:
        f.write(write_faces(tmp_path / "other", 2, size=96)[1].read_bytes())
    report = ingest([str(art)], ws, IngestConfig(workers=1), progress=False)
    assert report.input_status == {"ok": 2} and report.new_images == 2
    rows = {r.title: r for r in tables.read_records(ws, ScrapedImage)}
    assert set(rows) == {good.name, "bad\\xff name.png"}
    odd = rows["bad\\xff name.png"]
    assert odd.source_id.endswith("/bad\\xff name.png")
    # The URI keeps the exact bytes: it names the file again, percent-encoded.
    assert odd.image_url.endswith("/bad%FF%20name.png")
    from urllib.parse import unquote_to_bytes

    assert unquote_to_bytes(odd.image_url[len("file://"):]) == raw
    # A rerun sees the same rows (nothing new, nothing duplicated).
    again = ingest([str(art)], ws, IngestConfig(workers=1), progress=False)
    assert again.new_images == 0 and len(tables.read_records(ws, ScrapedImage)) == 2
    _every_table_reads(ws)


def test_a_non_utf8_name_through_the_cli(tmp_path):
    art = tmp_path / "art"
    write_faces(art, 1, size=96)
    with open(os.fsencode(art) + b"/bad\xff.jpg", "wb") as f:
        f.write(b"not really a jpeg")
    out = _cli(tmp_path / "ws", art)
    assert out.returncode == 0, out.stderr.decode(errors="replace")
    assert b"Traceback" not in out.stderr
    assert b"ingested 2 inputs" in out.stdout


def test_fifo_devices_and_a_socket_are_rows_and_nothing_hangs(ws, tmp_path):
    art = tmp_path / "art"
    write_faces(art, 2, size=96)
    os.mkfifo(art / "pipe.png")
    (art / "zero.png").symlink_to("/dev/zero")
    (art / "random.jpg").symlink_to("/dev/urandom")
    (art / "null.png").symlink_to("/dev/null")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(art / "sock.png"))
    try:
        started = time.monotonic()
        report = ingest([str(art)], ws, IngestConfig(workers=1), progress=False)
        took = time.monotonic() - started
    finally:
        sock.close()
    assert took < 30, f"ingest took {took:.0f} s"
    assert report.input_status == {"ok": 2, "special_file": 5}
    reasons = {Path(r.source_id).name: r.reason for r in tables.read_records(ws, ScrapedImage)}
    assert reasons["pipe.png"].startswith("a FIFO (named pipe), not a regular file")
    assert reasons["zero.png"].startswith("a character device")
    assert reasons["random.jpg"].startswith("a character device")
    assert reasons["sock.png"].startswith("a socket")
    assert len(tables.read_records(ws, StoredImage)) == 2
    _every_table_reads(ws)


def test_the_read_is_capped_whatever_the_size_claims(tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * 5000)
    status, reason, data = read_regular(str(big), 1000)
    assert (status, data) == ("too_large", None) and "1,000-byte cap" in reason
    # /proc files claim a size of 0 and hold more: the read stops at cap + 1.
    status, reason, data = read_regular("/proc/self/maps", 10)
    assert (status, data) == ("too_large", None) and "grew past" in reason
    assert read_regular(str(tmp_path / "nothing"), 10)[0] == "unreadable"


def test_a_url_list_that_is_a_fifo_or_a_device_is_a_clear_error(ws, tmp_path):
    os.mkfifo(tmp_path / "urls.txt")
    (tmp_path / "zero.txt").symlink_to("/dev/zero")
    for name in ("urls.txt", "zero.txt"):
        with pytest.raises(IngestInputError, match="not a regular file"):
            ingest([str(tmp_path / name)], ws, progress=False)
    started = time.monotonic()
    out = _cli(tmp_path / "ws2", tmp_path / "urls.txt", timeout=30)
    assert time.monotonic() - started < 30
    assert out.returncode == 2
    lines = out.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "a FIFO (named pipe), not a regular file" in lines[0]
