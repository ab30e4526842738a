"""`headshot dataset export`: a dataset version as files other tools read as they are.

- folder: `out/<split>/<class>/<crop_id>.<ext>`, which torchvision's ImageFolder reads per
  split (`ImageFolder("out/train")`); the class is the crop's first tag (sorted), or "face".
  Beside them `metadata.parquet` and `metadata.csv`: one row per file with its lineage.
- hf: a folder Hugging Face's `datasets.load_dataset("imagefolder", data_dir=out)` reads, with
  every crop's lineage and attributes as columns and a dataset card (curation/dataset_hf.py).
- parquet: one file with the DatasetRow columns plus `image` (the crop file's bytes) and
  `format`; pandas, DuckDB and Spark read it as it is. `out` is that file when it ends in
  .parquet or .pq, else a folder that receives `<name>-v<N>.parquet`.

A URL (s3://..., file://...) with parquet is a different layout: curation/dataset_publish.py.

Either is built under a temp name beside `out` and renamed into place at the end, so `out` is
the whole export or absent (a killed export leaves a `.tmp-*` entry beside it, never a half
`out`). Crop files are hard-linked when the workspace is on the same filesystem (the workspace
never edits a crop in place; pass link=False for independent copies), else copied.
"""

from __future__ import annotations

import csv
import json
import os
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from manifests.atomic import encode_metadata, read_metadata, space_for
from manifests.datasets import DatasetError, VersionInfo, read_version, resolve
from manifests.records import DatasetRow
from manifests.storage import is_url, redact
from manifests.workspace import Workspace

FORMATS = ("folder", "parquet", "hf")
DEFAULT_CLASS = "face"
MARKER = "headshot.export"  # key-value metadata that marks a folder as a headshot export
PARQUET_SUFFIXES = (".parquet", ".pq")  # --out naming a file; any other path is a folder to put it in
ROWS_PER_GROUP = 512  # crops per Parquet row group: bounded memory on any dataset size

_META_SCHEMA = pa.schema([
    ("crop_id", pa.string()), ("file", pa.string()), ("split", pa.string()), ("class", pa.string()),
    ("tags", pa.list_(pa.string())), ("image_sha256", pa.string()), ("source", pa.string()),
    ("page_url", pa.string()), ("image_url", pa.string()), ("artist", pa.string()), ("title", pa.string()),
    ("crop_path", pa.string()), ("attributes", pa.list_(pa.string())),
])
_IMAGE_SCHEMA = pa.schema(list(DatasetRow.SCHEMA) + [pa.field("image", pa.binary(), nullable=False),
                                                     pa.field("format", pa.string(), nullable=False)])


class ExportError(DatasetError):
    pass


@dataclass
class ExportResult:
    path: Path | str  # a published version's manifest URL (credentials taken out) is a str
    fmt: str
    version: VersionInfo
    rows: int
    splits: dict[str, int]
    classes: list[str] = field(default_factory=list)
    linked: int = 0
    copied: int = 0


def class_folder(tags: tuple[str, ...]) -> str:
    """The crop's class: its first tag in sorted order, made safe as one folder name."""
    if not tags:
        return DEFAULT_CLASS
    name = "".join("_" if ch in '/\\:*?"<>|' else ch for ch in sorted(tags)[0]).strip()
    return "_" + name if name in ("", ".", "..") or name.startswith(".") else name


def sniff_format(data: bytes, suffix: str) -> str:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return suffix.lstrip(".").upper()


def _sources(ws: Workspace, rows: list[DatasetRow]) -> list[Path]:
    """Each row's crop file, checked before anything is written."""
    paths = []
    for r in rows:
        try:
            p = ws.crop_file(r.crop_path)
        except ValueError:
            raise ExportError(f"crop {r.crop_id}: its path {r.crop_path!r} is not in the workspace's crops folder") from None
        if not p.is_file():
            raise ExportError(f"crop {r.crop_id}: file {r.crop_path} is missing from the workspace {ws.home}; "
                              "nothing was exported (rerun `headshot process` to crop it again)")
        paths.append(p)
    return paths


def _is_export(folder: Path) -> bool:
    from .dataset_hf import is_hf_export

    if is_hf_export(folder):
        return True
    meta = folder / "metadata.parquet"
    try:
        return meta.is_file() and MARKER in read_metadata(meta)
    except (OSError, pa.ArrowException):
        return False


def _check_target(out: Path, fmt: str, overwrite: bool) -> None:
    if fmt in ("folder", "hf"):
        if out.exists() and not out.is_dir():
            raise ExportError(f"{out} is a file; a folder export needs a folder path")
        if out.is_dir() and any(out.iterdir()):
            if not overwrite:
                raise ExportError(f"{out} exists and is not empty; pass --overwrite to replace it, or choose another --out")
            if not _is_export(out):
                # --overwrite deletes the old tree: only ever one that headshot wrote.
                raise ExportError(f"{out} holds files that are not a headshot export; it is left alone, choose another --out")
    elif out.exists():
        if out.is_dir():
            raise ExportError(f"{out} is a folder")
        if not overwrite:
            raise ExportError(f"{out} exists; pass --overwrite to replace it, or choose another --out")


def _temp_beside(out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    return out.parent / f".tmp-{out.name}-{os.getpid()}-{secrets.token_hex(4)}"


def _place(src: Path, dst: Path, link: bool) -> bool:
    """Hard link when asked and possible, else copy. True when linked."""
    if link:
        try:
            os.link(src, dst)
            return True
        except OSError:  # another filesystem, or one without hard links
            pass
    shutil.copyfile(src, dst)
    return False


def _version_meta(info: VersionInfo, fmt: str) -> dict[bytes, bytes]:
    return encode_metadata({MARKER: fmt, "headshot.dataset": info.name, "headshot.version": str(info.version),
                            "headshot.content_hash": info.content_hash, "headshot.created_at": info.created_at})


def _write_folder(tmp: Path, rows: list[DatasetRow], sources: list[Path], info: VersionInfo,
                  link: bool, result: ExportResult) -> None:
    tmp.mkdir()
    meta: dict[str, list] = {name: [] for name in _META_SCHEMA.names}
    for r, src in zip(rows, sources):
        cls = class_folder(r.tags)
        rel = f"{r.split}/{cls}/{r.crop_id}{src.suffix.lower()}"
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        try:
            linked = _place(src, tmp / rel, link)
        except FileNotFoundError:
            raise ExportError(f"crop {r.crop_id}: file {r.crop_path} vanished during the export; nothing was exported") from None
        result.linked += linked
        result.copied += not linked
        for k, v in (("crop_id", r.crop_id), ("file", rel), ("split", r.split), ("class", cls), ("tags", list(r.tags)),
                     ("image_sha256", r.image_sha256), ("source", r.source), ("page_url", r.page_url),
                     ("image_url", r.image_url), ("artist", r.artist), ("title", r.title), ("crop_path", r.crop_path),
                     ("attributes", list(r.attributes))):
            meta[k].append(v)
    table = pa.Table.from_pydict(meta, schema=_META_SCHEMA).replace_schema_metadata(_version_meta(info, "folder"))
    pq.write_table(table, tmp / "metadata.parquet", compression="zstd")
    with open(tmp / "metadata.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(_META_SCHEMA.names)
        for i in range(len(rows)):  # tags and attributes as JSON lists: a tag may hold any separator
            w.writerow([json.dumps(meta[k][i], ensure_ascii=False) if k in ("tags", "attributes") else meta[k][i]
                        for k in _META_SCHEMA.names])
    result.classes = sorted(set(meta["class"]))


def _write_parquet(tmp: Path, rows: list[DatasetRow], sources: list[Path], info: VersionInfo) -> None:
    schema = _IMAGE_SCHEMA.with_metadata(_version_meta(info, "parquet"))
    with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
        for start in range(0, len(rows), ROWS_PER_GROUP):
            cols: dict[str, list] = {name: [] for name in schema.names}
            for r, src in zip(rows[start:start + ROWS_PER_GROUP], sources[start:start + ROWS_PER_GROUP]):
                try:
                    data = src.read_bytes()
                except FileNotFoundError:
                    raise ExportError(f"crop {r.crop_id}: file {r.crop_path} vanished during the export; "
                                      "nothing was exported") from None
                for name in DatasetRow.SCHEMA.names:
                    v = getattr(r, name)
                    cols[name].append(list(v) if isinstance(v, tuple) else v)
                cols["image"].append(data)
                cols["format"].append(sniff_format(data, src.suffix))
            writer.write_table(pa.Table.from_pydict(cols, schema=schema))


def _publish(tmp: Path, out: Path, overwrite: bool) -> None:
    if tmp.is_dir():
        if out.is_dir() and any(out.iterdir()):
            if not overwrite:
                raise ExportError(f"{out} was filled during the export; pass --overwrite to replace it")
            old = _temp_beside(out)
            os.rename(out, old)
            try:
                os.rename(tmp, out)
            except OSError:
                os.rename(old, out)  # put the previous export back
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            if out.is_dir():
                out.rmdir()
            os.rename(tmp, out)
    elif overwrite:
        os.replace(tmp, out)
    else:
        try:
            os.link(tmp, out)  # never replaces a file another process put there meanwhile
        except FileExistsError:
            raise ExportError(f"{out} appeared during the export; pass --overwrite to replace it") from None
        tmp.unlink()


def export_dataset(ws: Workspace, name: str, version: int | None, out: str | os.PathLike[str], fmt: str = "folder",
                   overwrite: bool = False, link: bool = False) -> ExportResult:
    """Export version `version` (None: the latest) of dataset `name` to `out` in `fmt`."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if is_url(str(out)):  # Path() would make s3://b/x a local folder "s3:/b/x"
        raise ExportError(f"{redact(out)} is a URL: --format {fmt} writes a local path; --format parquet publishes "
                          "the version there (curation/dataset_publish.py)")
    info = resolve(ws, name, version)
    rows = read_version(ws, name, info.version)
    out = Path(out).expanduser().absolute()
    if fmt == "parquet" and (out.is_dir() or out.suffix.lower() not in PARQUET_SUFFIXES):
        out = out / f"{name}-v{info.version}.parquet"  # a folder, existing or to be made
    _check_target(out, fmt, overwrite)
    sources = _sources(ws, rows)
    splits: dict[str, int] = {}
    for r in rows:
        splits[r.split] = splits.get(r.split, 0) + 1
    result = ExportResult(out, fmt, info, len(rows), splits)
    made = not out.parent.exists()
    needed = sum(p.stat().st_size for p in sources)
    tmp = out.parent / ".tmp-unset"
    try:
        with space_for(out.parent if out.parent.exists() else out.parent.parent, needed if not link else 0):
            tmp = _temp_beside(out)
            _write(tmp, fmt, rows, sources, info, link, result)
            _publish(tmp, out, overwrite)
    except BaseException:
        if made and out.parent.is_dir() and not any(p != tmp for p in out.parent.iterdir()):
            shutil.rmtree(out.parent, ignore_errors=True)  # the folder this export made for itself
        raise
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
    return result


def _write(tmp: Path, fmt: str, rows: list[DatasetRow], sources: list[Path], info: VersionInfo, link: bool,
           result: ExportResult) -> None:
    if fmt == "folder":
        _write_folder(tmp, rows, sources, info, link, result)
    elif fmt == "hf":
        from .dataset_hf import write_hf

        def place(src: Path, dst: Path) -> None:
            linked = _place(src, dst, link)
            result.linked += linked
            result.copied += not linked

        result.classes = write_hf(tmp, rows, sources, info, place)
    else:
        _write_parquet(tmp, rows, sources, info)
        result.classes = sorted({class_folder(r.tags) for r in rows})


__all__ = ["DEFAULT_CLASS", "ExportError", "ExportResult", "FORMATS", "class_folder", "export_dataset", "sniff_format"]
