"""Object storage through fsspec, and the layout of a dataset version published there.

A published version is what another machine trains from with nothing else:

    URL/NAME-vN.parquet          the DatasetRow columns plus crop_sha256 (of the crop file's bytes)
    URL/NAME-vN/crops/ab/...     the crop files, which crop_path names relative to the manifest's folder

The crops go up first and the manifest last (through a temp key), so a reader that finds the
manifest finds every crop it names. Credentials and endpoints come from where the filesystem
looks for them (AWS_* environment, ~/.aws, fsspec's config) plus explicit storage options;
nothing printed ever shows a secret (`redact`).
"""

from __future__ import annotations

import os
import re
from typing import Any, Iterable

import pyarrow as pa

from .records import DatasetRow

PUBLISHED = "published"  # the headshot.export marker of a published version
CROPS_ROOT = "headshot.crops_root"  # key-value metadata: the folder beside the manifest that holds the crops
CROP_SHA = "crop_sha256"
PUBLISHED_SCHEMA = pa.schema(list(DatasetRow.SCHEMA) + [pa.field(CROP_SHA, pa.string(), nullable=False)])

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")  # two letters at least: C:\ is a drive, not a scheme
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]+://)[^/@\s]+@")
_SECRET_WORDS = ("key", "secret", "token", "password", "passwd", "credential", "signature")
_SECRET_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")
_SHORTEST_SECRET = 4  # shorter values ("us", "1") would blank unrelated text and hide nothing


class StorageError(ValueError):
    pass


def is_url(s: str) -> bool:
    """`s3://b/x`, `file:///x`, `memory://x`: anything fsspec opens by its scheme."""
    return bool(_SCHEME.match(str(s)))


def parse_options(pairs: Iterable[str], flag: str = "--storage-option") -> dict[str, Any]:
    """KEY=VALUE strings as fsspec storage options. true/false become booleans and whole
    numbers ints (s3fs reads anon="false" as true); a dotted key nests, so
    client_kwargs.region_name=eu-west-1 gives {"client_kwargs": {"region_name": "eu-west-1"}}."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise StorageError(f"{flag} {redact(pair)!r}: write KEY=VALUE, e.g. {flag} endpoint_url=http://127.0.0.1:9000")
        low = value.strip().lower()
        typed: Any = True if low == "true" else False if low == "false" else int(low) if re.fullmatch(r"-?\d+", low) \
            else value
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise StorageError(f"{flag} {key}: {part} is given a value and keys below it")
        node[leaf] = typed
    return out


def _secrets(options: dict[str, Any] | None) -> list[str]:
    found = [os.environ[k] for k in _SECRET_ENV if os.environ.get(k)]
    stack = [options or {}]
    while stack:
        for k, v in stack.pop().items():
            if isinstance(v, dict):
                stack.append(v)
            elif isinstance(v, str) and any(w in k.lower() for w in _SECRET_WORDS):
                found.append(v)
    return sorted((s for s in found if len(s) >= _SHORTEST_SECRET), key=len, reverse=True)


def redact(text: object, options: dict[str, Any] | None = None) -> str:
    """`text` with user:password@ taken out of URLs and every credential value (from `options`
    and the AWS_* environment) replaced by ***."""
    s = _USERINFO.sub(lambda m: m.group("scheme") + "***@", str(text))
    for secret in _secrets(options):
        s = s.replace(secret, "***")
    return s


def open_url(url: str, options: dict[str, Any] | None = None):
    """(filesystem, path inside it) for `url`; a plain path is the local filesystem."""
    from fsspec.core import url_to_fs

    try:
        return url_to_fs(url, **(options or {}))
    except (ImportError, ValueError, TypeError) as exc:  # an unknown scheme, a missing driver, a bad option
        raise StorageError(f"{redact(url, options)}: cannot open it ({redact(exc, options)})") from None


def is_local(fs) -> bool:
    """A filesystem with real folders (that must exist before a file is put in them)."""
    protocol = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return "file" in protocol or "local" in protocol


def safe_relative(rel: str) -> bool:
    """A crop_path a manifest may hold: relative, inside the manifest's folder, no scheme."""
    parts = rel.replace("\\", "/").split("/")
    return bool(rel) and not is_url(rel) and not rel.startswith(("/", "\\")) and ":" not in parts[0] \
        and all(p not in ("", ".", "..") for p in parts)


__all__ = ["CROPS_ROOT", "CROP_SHA", "PUBLISHED", "PUBLISHED_SCHEMA", "StorageError", "is_local", "is_url",
           "open_url", "parse_options", "redact", "safe_relative"]
