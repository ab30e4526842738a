"""Bytes in, a stored original and its StoredImage row out: the one place where `headshot
ingest` (files and URLs) and a crawl's store pipeline turn what they read into rows, so an
image gets the same status and blob whichever way it arrived.
"""

from __future__ import annotations

from manifests.blobs import BlobStore, sha256_hex
from manifests.records import StoredImage
from manifests.workspace import utcnow

from .decode import DecodeConfig, inspect_image


def store_bytes(blobs: BlobStore, data: bytes, cfg: DecodeConfig, sha: str | None = None) -> StoredImage:
    """Decode `data` once and keep the bytes where they may be used (ok, or too_small for a
    later, looser setting); every other status is a row without a blob. `sha` saves hashing
    again when the caller has it. Raises only what the blob store raises (DiskFull)."""
    sha = sha or sha256_hex(data)
    insp = inspect_image(data, cfg)
    blob = blobs.put(data, insp.ext, sha) if insp.keep_bytes else ""
    return StoredImage(
        image_sha256=sha, status=insp.status, reason=insp.reason, blob_path=blob, bytes=len(data),
        format=insp.format, width=insp.width, height=insp.height, mode=insp.mode, frames=insp.frames,
        transparent=insp.transparent, ingested_at=utcnow(),
    )


def store_item(item: tuple[bytes, str], context: tuple[str, DecodeConfig]) -> StoredImage:
    """The image store's `run(item, context)` (manifests/stage.py): one image's bytes and
    sha256 -> its blob and row, in whichever process runs it (context: workspace home, decode settings)."""
    from pathlib import Path

    data, sha = item
    home, cfg = context
    return store_bytes(BlobStore(Path(home)), data, cfg, sha)
