"""Content-addressed store of originals: `images/ab/<sha256>.<ext>`, kept byte for byte."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from .atomic import write_bytes_atomic

_SHA = re.compile(r"^[0-9a-f]{64}$")
_EXT = re.compile(r"^[a-z0-9]{1,5}$")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class BlobStore:
    def __init__(self, root: Path, prefix: str = "images") -> None:
        self.root = root  # the workspace home; paths handed out are relative to it
        self.prefix = prefix

    def relpath(self, sha256: str, ext: str) -> str:
        if not _SHA.match(sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        if not _EXT.match(ext):
            raise ValueError(f"bad file extension: {ext!r}")
        return f"{self.prefix}/{sha256[:2]}/{sha256}.{ext}"

    def put(self, data: bytes, ext: str, sha256: str | None = None) -> str:
        """Store `data` (once) and return its path relative to the workspace."""
        digest = sha256 or sha256_hex(data)
        rel = self.relpath(digest, ext)
        path = self.root / rel
        if not path.exists():
            # Same name, same bytes: a concurrent writer's rename is harmless, so no exclusive
            # link is needed. The name is the checksum, so a blob damaged by a power cut is
            # detectable and re-fetchable: no fsync per image (it halved ingest throughput).
            write_bytes_atomic(path, data, durable=False, mode=0o444)  # originals are never edited
        return rel

    def path(self, rel: str) -> Path:
        return self.root / rel

    def read(self, rel: str) -> bytes:
        return (self.root / rel).read_bytes()
