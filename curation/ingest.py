"""The ingest stage: folders, files and URL lists -> blobs + ScrapedImage and StoredImage rows.

Every input becomes one ScrapedImage row (where it came from, whether its bytes could be
read) and every distinct content one StoredImage row (what the bytes are). Decoding runs on
all cores; rows are written in whole Parquet parts as the run goes, so a run killed at any
point resumes without duplicates: content already stored is recognised by its sha256 and is
not decoded again.
"""

from __future__ import annotations

import concurrent.futures as cf
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
from manifests.stage import COMMIT_WAIT, RowBuffer, StageReport, call_in_worker, worker_pool, write_rows
from manifests.workspace import Workspace, new_run_id, utcnow
from media import store as media_store
from media.decode import DecodeConfig
from media.web import recorded_text

from .fetch import FetchConfig, Fetcher, FetchResult, recorded_url


class IngestInputError(ValueError):
    """The command line named something that cannot be ingested at all."""


@dataclass(frozen=True)
class IngestConfig:
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    fetch: FetchConfig = field(default_factory=FetchConfig)
    workers: int = 0  # decoding processes; 0 = one per core
    download_threads: int = 4  # hosts fetched in parallel (each host stays one-at-a-time)
    chunk_files: int = 32  # files per task handed to a decoding process
    part_rows: int = 500  # rows per manifest part written during the run
    part_seconds: float = 10.0  # ... or this often, whichever comes first

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Input:
    kind: str  # file | url | fetched (a URL whose bytes were downloaded already)
    uri: str  # absolute path or URL
    data: bytes | None = field(default=None, repr=False, compare=False)


@dataclass
class IngestReport:
    run_id: str
    inputs: int = 0
    new_images: int = 0
    already_stored: int = 0
    stored_status: Counter = field(default_factory=Counter)  # of the new StoredImage rows
    input_status: Counter = field(default_factory=Counter)  # of every input's ScrapedImage row
    stage: StageReport = None  # type: ignore[assignment]  # set in __post_init__

    def __post_init__(self) -> None:
        if self.stage is None:
            self.stage = StageReport("ingest", self.run_id)


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


# --- worker side: `run(item, context)`, pure ------------------------------------------------


@dataclass(frozen=True)
class IngestContext:
    """What every input of one run needs besides itself: picklable, handed to each worker once."""

    home: str
    decode: DecodeConfig
    fetch: FetchConfig
    known: frozenset = frozenset()  # contents already stored when the run was planned: not decoded again


@dataclass(frozen=True)
class Read:
    """What became of one input: its status and reason, its content's sha256 when its bytes
    were read, and the StoredImage row when that content is new."""

    status: str
    reason: str = ""
    sha: str = ""
    stored: StoredImage | None = None


def _store(data: bytes, sha: str, ctx: IngestContext) -> StoredImage | None:
    if sha in ctx.known:
        return None
    return media_store.store_bytes(BlobStore(Path(ctx.home)), data, ctx.decode, sha)


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


def store_bytes(data: bytes, ctx: IngestContext) -> Read:
    """Bytes obtained for an input (read or downloaded) -> their blob and StoredImage row."""
    sha = sha256_hex(data)
    return Read("ok", "", sha, _store(data, sha, ctx))


def _read_file(path: str, ctx: IngestContext) -> Read:
    status, reason, data = read_regular(path, ctx.decode.max_bytes)
    if data is None:
        return Read(status, reason)
    return store_bytes(data, ctx)


def run(item: Input, ctx: IngestContext) -> Read:
    """One input: a file is read, a URL downloaded (on its own, with this call's own politeness
    state: the local executor shares one downloader across its threads instead), then stored.
    Never raises for the input's own faults (a full disk does raise)."""
    try:
        if item.kind == "file":
            return _read_file(item.uri, ctx)
        if item.kind == "fetched" and item.data is not None:
            return store_bytes(item.data, ctx)
        res: FetchResult = Fetcher(ctx.fetch).fetch(item.uri)
        if res.status != "ok" or res.data is None:
            return Read(res.status, res.reason)
        return store_bytes(res.data, ctx)
    except DiskFull:
        raise  # not this input's fault: every later write would fail the same way
    except Exception as exc:  # one input's failure must not end the run
        return Read("unreadable", f"{type(exc).__name__}: {exc}")


def run_files(items: list[Input], ctx: IngestContext) -> list[Read]:
    """Several files per task: one round trip to the driver per chunk, not per file."""
    return [run(item, ctx) for item in items]


# --- driver side --------------------------------------------------------------------------


def _input_row(inp: Input, status: str, reason: str, sha: str, run_id: str) -> ScrapedImage:
    if inp.kind == "file":
        p = Path(inp.uri)
        # A name that is not UTF-8 is kept exactly in image_url (percent-encoded bytes) and
        # readably in source_id and title (backslash escapes).
        return ScrapedImage(source="local", source_id=escape_text(inp.uri), image_url=p.as_uri(), status=status,
                            reason=reason, title=escape_text(p.name), fetched_at=utcnow(), crawl_run_id=run_id,
                            image_sha256=sha)
    url = recorded_url(inp.uri)  # a user:pass@ or ?token= in a list is used for the request, never recorded
    # A reason may quote a URL (an exception's text, a redirect's target): recorded the same way.
    return ScrapedImage(source="url", source_id=url, image_url=url, status=status, reason=recorded_text(reason),
                        fetched_at=utcnow(), crawl_run_id=run_id, opted_out=status == "opted_out", image_sha256=sha)


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="file", desc="ingest", disable=None if enabled else True, smoothing=0.1)


def plan(ws: Workspace, paths: list[str], cfg: IngestConfig | None = None) -> tuple[list[Input], IngestContext]:
    """The inputs `paths` name, and the context to run them in. Takes no lock."""
    cfg = cfg or IngestConfig()
    inputs = expand_inputs(paths, exclude=ws.home)
    known = frozenset(tables.read_table(ws, StoredImage, ["image_sha256"]).column("image_sha256").to_pylist())
    return inputs, IngestContext(str(ws.home), cfg.decode, cfg.fetch, known)


# Stored rows first: an input row never points at content whose row was lost.
ORDER = (StoredImage, ScrapedImage)


def commit(ws: Workspace, outcomes: list[tuple[Input, Read]], run_id: str, cfg: IngestConfig | None = None, *,
           final: bool = True, report: IngestReport | None = None) -> IngestReport:
    """Write the inputs' rows under the writer lock: a content another run stored meanwhile,
    or an input whose row is unchanged, is not written again. `final`: compact the tables."""
    cfg = cfg or IngestConfig()
    report = report or IngestReport(run_id=run_id)
    buf = RowBuffer()
    stored_now: set[str] = set()
    for inp, res in outcomes:
        stored = res.stored
        if stored is not None and stored.image_sha256 in stored_now:
            stored = None  # the same bytes came twice in this batch
        if stored is not None:
            stored_now.add(stored.image_sha256)
            buf.add([stored])
        buf.add([_input_row(inp, res.status, res.reason, res.sha, run_id)])
        report.input_status[res.status] += 1
        report.stage.items += 1
        report.stage.status[res.status] += 1
    written = write_rows(ws, buf.take(), ORDER, run_id, cfg.as_dict(), report.stage, what="ingest")
    # New is what this run wrote: a content that another run beside it stored first is "already stored".
    fresh = written.get(StoredImage, [])
    report.stored_status.update(r.status for r in fresh)
    report.new_images += len(fresh)
    report.already_stored += sum(1 for _, res in outcomes if res.sha) - len(fresh)
    if final:
        with ws.writer_lock(f"ingest {run_id}", wait=COMMIT_WAIT):
            tables.compact(ws, StoredImage, run_id)
            tables.compact(ws, ScrapedImage, run_id)
    return report


def ingest(paths: list[str], ws: Workspace, cfg: IngestConfig | None = None, progress: bool = True) -> IngestReport:
    """Ingest `paths` into `ws`: plan, read and decode on every core, commit in parts.

    Takes the workspace's writer lock only to commit, briefly: another stage on the same
    workspace goes on meanwhile."""
    cfg = cfg or IngestConfig()
    started = time.monotonic()
    inputs, ctx = plan(ws, paths, cfg)
    run_id = new_run_id("ingest")
    report = IngestReport(run_id=run_id, inputs=len(inputs))
    batch: list[tuple[Input, Read]] = []
    last = time.monotonic()
    done: set[str] = set()
    full: DiskFull | None = None
    try:
        for inp, res in _run(inputs, cfg, ctx, progress):
            done.add(inp.uri)
            batch.append((inp, res))
            if 2 * len(batch) >= cfg.part_rows or time.monotonic() - last > cfg.part_seconds:
                commit(ws, batch, run_id, cfg, final=False, report=report)
                batch, last = [], time.monotonic()
    except DiskFull as exc:
        full = exc.needing(_bytes_left(inputs, done))
    finally:
        try:
            commit(ws, batch, run_id, cfg, final=False, report=report)  # what was decoded is kept, as far as it fits
        except DiskFull:
            if full is None:
                raise
    if full is not None:
        raise full
    commit(ws, [], run_id, cfg, final=True, report=report)
    report.stage.seconds = time.monotonic() - started
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


def _run(inputs: list[Input], cfg: IngestConfig, ctx: IngestContext, progress: bool) -> Iterator[tuple[Input, Read]]:
    """The local executor: files in chunks on every core; URLs downloaded in threads that share
    one downloader (per-host throttle, dead-host memory), their bytes stored on the cores."""
    workers = cfg.workers or os.cpu_count() or 1
    with worker_pool(run_files, ctx, workers, start="fork") as procs:
        # With fork, every worker starts on the first submit: do it now, before any thread exists.
        procs.submit(int).result()
        fetcher = Fetcher(cfg.fetch)

        def fetch_then_store(url: str) -> list[Read]:
            res: FetchResult = fetcher.fetch(url)
            if res.status != "ok" or res.data is None:
                return [Read(res.status, res.reason)]
            return procs.submit(call_in_worker, [Input("fetched", url, res.data)]).result()

        with cf.ThreadPoolExecutor(max(1, cfg.download_threads), thread_name_prefix="fetch") as threads, \
                _progress(len(inputs), progress) as bar:
            window = 3 * workers + cfg.download_threads
            todo = _jobs(inputs, cfg.chunk_files)
            pending: dict[cf.Future, list[Input]] = {}
            while True:
                while len(pending) < window and (job := next(todo, None)) is not None:
                    if job[0].kind == "file":
                        fut = procs.submit(call_in_worker, job)
                    else:
                        fut = threads.submit(fetch_then_store, job[0].uri)
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
                        results = [Read("unreadable", f"{type(exc).__name__}: {exc}")] * len(job)
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
