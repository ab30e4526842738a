"""The ingest stage: folders, files and URL lists -> blobs + ScrapedImage and StoredImage rows.

Every input becomes one ScrapedImage row (where it came from, whether its bytes could be
read) and every distinct content one StoredImage row (what the bytes are). Decoding runs on
all cores; rows are written in whole Parquet parts as the run goes, so a run killed at any
point resumes without duplicates: content already stored is recognised by its sha256 and is
not decoded again.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import stat
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

from manifests import tables
from manifests.atomic import DiskFull
from manifests.blobs import BlobStore, sha256_hex
from manifests.records import ScrapedImage, StoredImage, escape_text
from manifests.workspace import Workspace, new_run_id, utcnow
from media import store as media_store
from media.decode import DecodeConfig

from .fetch import FetchConfig, Fetcher, FetchResult, redact_url
from .workers import die_with_parent


class IngestInputError(ValueError):
    """The command line named something that cannot be ingested at all."""


@dataclass(frozen=True)
class IngestConfig:
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    fetch: FetchConfig = field(default_factory=FetchConfig)
    workers: int = 0  # decoding processes; 0 = one per core
    download_threads: int = 4  # hosts fetched in parallel (each host stays one-at-a-time)
    chunk_files: int = 16  # files per task handed to a decoding process
    part_rows: int = 500  # rows per manifest part written during the run
    part_seconds: float = 10.0  # ... or this often, whichever comes first

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Input:
    kind: str  # file | url
    uri: str  # absolute path or URL


@dataclass
class IngestReport:
    run_id: str
    inputs: int = 0
    new_images: int = 0
    already_stored: int = 0
    stored_status: Counter = field(default_factory=Counter)  # of the new StoredImage rows
    input_status: Counter = field(default_factory=Counter)  # of every input's ScrapedImage row


URL_LIST_MAX_BYTES = 64 * 1024 * 1024


def read_url_list(path: Path) -> list[str]:
    """One URL per line; blank lines and lines starting with # are skipped."""
    status, reason, data = read_regular(str(path), URL_LIST_MAX_BYTES)
    if data is None:
        raise IngestInputError(f"{escape_text(str(path))}: {reason} (a URL list is a text file, one URL per line)")
    text = data.decode("utf-8-sig", errors="replace")
    return [s for line in text.splitlines() if (s := line.strip()) and not s.startswith("#")]


def expand_inputs(paths: list[str], exclude: Path | None = None) -> list[Input]:
    """Folders are walked recursively; a .txt named on the command line is a list of URLs."""
    missing = [p for p in paths if not os.path.lexists(p)]
    if missing:
        raise IngestInputError("no such file or folder: " + ", ".join(map(escape_text, missing)))
    out: list[Input] = []
    seen: set[str] = set()

    def add(kind: str, uri: str) -> None:
        if uri not in seen:
            seen.add(uri)
            out.append(Input(kind, uri))

    for raw in paths:
        p = Path(raw).resolve()
        if p.is_dir():
            for root, dirs, files in os.walk(p):
                r = Path(root)
                # Never ingest the workspace itself (e.g. `headshot ingest .` with ./workspace).
                dirs[:] = sorted(d for d in dirs if exclude is None or (r / d).resolve() != exclude)
                for name in sorted(files):
                    add("file", str(r / name))
        elif ".txt" in (p.suffix.lower(), Path(raw).suffix.lower()):  # the name given, or what it links to
            for url in read_url_list(p):
                add("url", url)
        else:
            add("file", str(p))
    return out


# --- worker side (runs in the decoding processes) -------------------------------------------

_W: dict = {}


def _init_worker(known: frozenset, decode: DecodeConfig, home: str) -> None:
    die_with_parent()
    _W.update(known=known, decode=decode, blobs=BlobStore(Path(home)))


def _store(data: bytes, sha: str) -> StoredImage | None:
    if sha in _W["known"]:
        return None
    return media_store.store_bytes(_W["blobs"], data, _W["decode"], sha)


def _special_kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "not a regular file"


def read_regular(path: str, cap: int) -> tuple[str, str, bytes | None]:
    """(status, reason, bytes) of a regular file, reading at most `cap` + 1 bytes.

    Only regular files are opened: reading a FIFO waits for a writer forever, and /dev/zero
    or /dev/urandom (say, behind a symlink) never end while their size reads 0. The size is
    not trusted either (it can grow, and /proc files claim 0), so the read itself is capped.
    """
    try:
        st = os.stat(path)  # follows symlinks: what a link points at is what would be read
    except OSError as exc:
        return "unreadable", f"cannot read the file: {exc.strerror or exc}", None
    if not stat.S_ISREG(st.st_mode):
        return "special_file", f"{_special_kind(st.st_mode)}, not a regular file: not read", None
    if st.st_size > cap:
        return "too_large", f"{st.st_size:,} bytes is over the {cap:,}-byte cap", None
    try:
        # O_NONBLOCK: should the path have become a FIFO since the stat, opening it cannot hang.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        return "unreadable", f"cannot read the file: {exc.strerror or exc}", None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            return "special_file", f"{_special_kind(st.st_mode)}, not a regular file: not read", None
        data = f.read(cap + 1)
    if len(data) > cap:
        return "too_large", f"the file grew past the {cap:,}-byte cap while it was read", None
    return "ok", "", data


def _work_file(path: str) -> tuple[str, str, str, StoredImage | None]:
    """-> (input status, reason, sha256, new StoredImage or None when the content is known)."""
    status, reason, data = read_regular(path, _W["decode"].max_bytes)
    if data is None:
        return status, reason, "", None
    sha = sha256_hex(data)
    return "ok", "", sha, _store(data, sha)


def _work_files(paths: list[str]) -> list[tuple[str, str, str, StoredImage | None]]:
    """Several files per task: one round trip to the driver per chunk, not per file."""
    out = []
    for p in paths:
        try:
            out.append(_work_file(p))
        except DiskFull:
            raise  # not this input's fault: every later write would fail the same way
        except Exception as exc:  # one input's failure must not end the run
            out.append(("unreadable", f"{type(exc).__name__}: {exc}", "", None))
    return out


def _work_bytes(data: bytes) -> tuple[str, str, str, StoredImage | None]:
    sha = sha256_hex(data)
    return "ok", "", sha, _store(data, sha)


# --- driver side --------------------------------------------------------------------------


class _Writer:
    """Buffers rows and writes them as whole parts: stored first, so that an input row never
    points at content whose row was lost."""

    def __init__(self, ws: Workspace, run_id: str, cfg: IngestConfig) -> None:
        self.ws, self.run_id, self.cfg = ws, run_id, cfg
        self.stored: list[StoredImage] = []
        self.scraped: list[ScrapedImage] = []
        self.last = time.monotonic()

    def add(self, scraped: ScrapedImage | None, stored: StoredImage | None) -> None:
        if stored is not None:
            self.stored.append(stored)
        if scraped is not None:
            self.scraped.append(scraped)
        if len(self.stored) + len(self.scraped) >= self.cfg.part_rows or time.monotonic() - self.last > self.cfg.part_seconds:
            self.flush()

    def flush(self) -> None:
        config = self.cfg.as_dict()
        tables.append(self.ws, StoredImage, self.stored, self.run_id, config)
        tables.append(self.ws, ScrapedImage, self.scraped, self.run_id, config)
        self.stored, self.scraped, self.last = [], [], time.monotonic()


def _input_row(inp: Input, status: str, reason: str, sha: str, run_id: str) -> ScrapedImage:
    if inp.kind == "file":
        p = Path(inp.uri)
        # A name that is not UTF-8 is kept exactly in image_url (percent-encoded bytes) and
        # readably in source_id and title (backslash escapes).
        return ScrapedImage(source="local", source_id=escape_text(inp.uri), image_url=p.as_uri(), status=status,
                            reason=reason, title=escape_text(p.name), fetched_at=utcnow(), crawl_run_id=run_id,
                            image_sha256=sha)
    url = redact_url(inp.uri)  # a user:pass@ in a list is used for the request, never recorded
    return ScrapedImage(source="url", source_id=url, image_url=url, status=status, reason=reason,
                        fetched_at=utcnow(), crawl_run_id=run_id, opted_out=status == "opted_out", image_sha256=sha)


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="file", desc="ingest", disable=None if enabled else True, smoothing=0.1)


def ingest(paths: list[str], ws: Workspace, cfg: IngestConfig | None = None, progress: bool = True) -> IngestReport:
    """Ingest `paths` into `ws`. Takes the workspace's writer lock for the whole run."""
    cfg = cfg or IngestConfig()
    inputs = expand_inputs(paths, exclude=ws.home)
    run_id = new_run_id("ingest")
    report = IngestReport(run_id=run_id, inputs=len(inputs))
    with ws.writer_lock(f"ingest {run_id}"):
        known = set(tables.read_table(ws, StoredImage, ["image_sha256"]).column("image_sha256").to_pylist())
        previous = {
            (r["source"], r["source_id"], r["image_url"]): (r["image_sha256"], r["status"])
            for r in tables.read_table(ws, ScrapedImage, ["source", "source_id", "image_url", "image_sha256", "status"]).to_pylist()
        }
        writer = _Writer(ws, run_id, cfg)
        done: set[str] = set()
        full: DiskFull | None = None
        try:
            for inp, (status, reason, sha, stored) in _run(inputs, ws, cfg, frozenset(known), progress):
                done.add(inp.uri)
                if stored is not None and stored.image_sha256 in known:
                    stored = None  # the same bytes came twice in this run
                if stored is not None:
                    known.add(stored.image_sha256)
                    report.new_images += 1
                    report.stored_status[stored.status] += 1
                elif sha:
                    report.already_stored += 1
                report.input_status[status] += 1
                row = _input_row(inp, status, reason, sha, run_id)
                unchanged = previous.get((row.source, row.source_id, row.image_url)) == (sha, status)
                writer.add(None if unchanged else row, stored)
        except DiskFull as exc:
            full = exc.needing(_bytes_left(inputs, done))
        finally:
            try:
                writer.flush()  # what was decoded is kept, as far as it fits
            except DiskFull:
                if full is None:
                    raise
        if full is not None:
            raise full
        tables.compact(ws, StoredImage, run_id)
        tables.compact(ws, ScrapedImage, run_id)
    return report


def _bytes_left(inputs: list[Input], done: set[str]) -> int:
    """What the inputs not yet stored would take (files by their size; manifests about 5% more)."""
    total = 0
    for inp in inputs:
        if inp.kind == "file" and inp.uri not in done:
            try:
                total += os.stat(inp.uri).st_size
            except OSError:
                pass
    return int(total * 1.05)


def _run(inputs: list[Input], ws: Workspace, cfg: IngestConfig, known: frozenset, progress: bool
         ) -> Iterator[tuple[Input, tuple[str, str, str, StoredImage | None]]]:
    workers = cfg.workers or os.cpu_count() or 1
    ctx = multiprocessing.get_context("fork")
    with cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                                initargs=(known, cfg.decode, str(ws.home))) as procs:
        # With fork, every worker starts on the first submit: do it now, before any thread exists.
        procs.submit(int).result()
        fetcher = Fetcher(cfg.fetch)

        def fetch_then_decode(url: str) -> tuple[str, str, str, StoredImage | None]:
            res: FetchResult = fetcher.fetch(url)
            if res.status != "ok" or res.data is None:
                return res.status, res.reason, "", None
            return procs.submit(_work_bytes, res.data).result()

        with cf.ThreadPoolExecutor(max(1, cfg.download_threads), thread_name_prefix="fetch") as threads, \
                _progress(len(inputs), progress) as bar:
            window = 3 * workers + cfg.download_threads
            todo = _jobs(inputs, cfg.chunk_files)
            pending: dict[cf.Future, list[Input]] = {}
            while True:
                while len(pending) < window and (job := next(todo, None)) is not None:
                    if job[0].kind == "file":
                        fut = procs.submit(_work_files, [inp.uri for inp in job])
                    else:
                        fut = threads.submit(lambda url: [fetch_then_decode(url)], job[0].uri)
                    pending[fut] = job
                if not pending:
                    break
                done, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                for fut in done:
                    job = pending.pop(fut)
                    bar.update(len(job))
                    try:
                        results = fut.result()
                    except (cf.process.BrokenProcessPool, DiskFull):
                        # A decoder crashed its process, or the disk is full: rows so far are
                        # kept and a rerun resumes; what is queued is not started.
                        for other in pending:
                            other.cancel()
                        raise
                    except Exception as exc:  # one input's failure must not end the run
                        results = [("unreadable", f"{type(exc).__name__}: {exc}", "", None)] * len(job)
                    yield from zip(job, results)


def _jobs(inputs: list[Input], chunk: int) -> Iterator[list[Input]]:
    """Files in chunks (cheap to hand out), URLs one by one (each waits on its host)."""
    files: list[Input] = []
    for inp in inputs:
        if inp.kind == "url":
            yield [inp]
            continue
        files.append(inp)
        if len(files) >= chunk:
            yield files
            files = []
    if files:
        yield files
