"""Running the review queue: the store, the queue, the learner thread and uvicorn on one socket."""

from __future__ import annotations

import ipaddress
import re
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from manifests.workspace import Workspace

from .app import AppConfig, create_app
from .queue import Queue
from .store import ReviewStore

LOOPBACK = ("127.0.0.1", "localhost", "::1")
TOKEN_MIN = 16  # new_token() gives 32; a short one could be guessed over the network
_TOKEN = re.compile(r"^[A-Za-z0-9._~-]+$")  # travels in a URL, a header and a cookie unquoted


class ReviewServerError(ValueError):
    pass


def is_wildcard(host: str) -> bool:
    """0.0.0.0, :: or '': every interface, an address to listen on but not one to open."""
    try:
        return host == "" or ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def check_token(token: str | None) -> None:
    if token is None:
        return
    if len(token) < TOKEN_MIN:
        raise ReviewServerError(f"the access token must be at least {TOKEN_MIN} characters long, not {len(token)} "
                                "(leave --token out and headshot review makes one)")
    if not _TOKEN.match(token):
        raise ReviewServerError("the access token may hold only letters, digits and . _ ~ - "
                                "(it travels in a URL and a cookie)")


def _primary_address(family: int, probe: str) -> str | None:
    """This machine's address on its default route. connect() on a UDP socket only picks a
    route, it sends no packet; None when there is no route (offline)."""
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect((probe, 9))
            addr = s.getsockname()[0]
    except OSError:
        return None
    return None if ipaddress.ip_address(addr).is_loopback or ipaddress.ip_address(addr).is_unspecified else addr


def other_addresses(host: str) -> list[str]:
    """Where other machines reach a server listening on the wildcard `host` (URL-ready hosts)."""
    found = []
    v4 = _primary_address(socket.AF_INET, "10.254.254.254")
    if v4:
        found.append(v4)
    if ":" in host:
        v6 = _primary_address(socket.AF_INET6, "fd00::1")
        if v6:
            found.append(f"[{v6}]")
    if not found:
        name = socket.gethostname()  # no route: the name may still resolve on the local network
        if name and name != "localhost":
            found.append(name)
    return found


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class LearnerThread:
    """Retrains the active learner and the tags' classifiers in the background after labels
    arrive, and fills the caches they read (pixel features, crop embeddings) a slice at a time;
    the page never waits for it."""

    EMBED_SLICE = 512  # crops embedded per turn (~5 s on 2 cores): the loop works half the time

    def __init__(self, ws: Workspace, store: ReviewStore, queue_ref: list, embeddings: Any = None):
        from curation.embeddings import Embeddings

        from .learner import ActiveLearner, LearnerConfig
        from .tags import TagConfig

        self.ws = ws
        self.config = LearnerConfig()
        self.tag_config = TagConfig()
        self.embeddings = embeddings if embeddings is not None else Embeddings(ws)
        self.learner = ActiveLearner(ws, self.config, embeddings=self.embeddings)
        self.store = store
        self.queue_ref = queue_ref
        self.report: Any = None
        self.tag_report: Any = None
        self.error = ""
        self.embed_error = ""  # embeddings failed once: the learner goes on without them
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="headshot-learner", daemon=True)

    def start(self) -> "LearnerThread":
        self._thread.start()
        self._wake.set()
        return self

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)

    def needs(self) -> dict:
        human = [s for s in self.store.current().values() if s.decision in ("accept", "reject") and s.origin == "human"]
        out = {"needs": max(0, self.config.min_labels - len(human)), "error": self.error}
        if self.embed_error:
            out["embed_error"] = self.embed_error
        return out

    def _embedding(self, items: list) -> list:
        """The items still without an embedding, when embeddings are to be computed here."""
        if self.embed_error or not items:
            return []
        self.embeddings.refresh()  # another process (a flow's review refresh) may have written some
        return [it for it in items if not self.embeddings.known(it.crop_id)]

    def _embed_slice(self, todo: list) -> bool:
        """Embed the next slice: the crops someone decided or tagged first (the learners train on
        them), then the queue's order; True once none is left."""
        from curation.embeddings import update_embeddings

        from .items import queue_order

        states = self.store.current()
        order = sorted(queue_order(todo), key=lambda it: it.crop_id not in states)  # stable
        try:
            r = update_embeddings(self.ws, [(it.crop_id, it.crop_path) for it in order],
                                  limit=self.EMBED_SLICE, stop=self._stop)
        except Exception as exc:  # the queue and the learner work without embeddings; say why
            self.embed_error = f"crop embeddings: {type(exc).__name__}: {exc}"
            return False
        if r.busy:  # another process computes them: look again later, not in a tight loop
            self._wake.wait(timeout=5)
            return False
        self.embeddings.refresh()
        return r.left == 0

    def _loop(self) -> None:
        from .items import queue_order
        from .tags import learn_tags

        dirty = True  # labels changed (or features were completed) since the last training
        while not self._stop.is_set():
            items = self.queue_ref[0].items if self.queue_ref else []
            filling = bool(items) and bool(self.learner.cache.missing(items))
            embedding = self._embedding(items)
            if not dirty and not filling and not embedding:
                self._wake.wait()
            if self._stop.is_set():
                break
            if self._wake.is_set():
                self._wake.clear()
                dirty = True
            started = time.monotonic()
            try:
                items = self.queue_ref[0].items if self.queue_ref else []
                if dirty and items:
                    dirty = False
                    states = self.store.current()
                    report = self.learner.update(items, states)
                    if report is not None:
                        self.report = report
                    self.tag_report = learn_tags([it.crop_id for it in items], states, self.embeddings,
                                                 self.tag_config)
                # Pixel features for the rest, most doubtful first, a slice at a time (cached in
                # the workspace); the crops they cover are scored at the next training, or once
                # all are done, not after every slice.
                if filling and self.learner.cache.ensure(queue_order(items), limit=2000, stop=self._stop):
                    dirty = dirty or not self.learner.cache.missing(items)
                elif embedding and self._embed_slice(embedding):
                    dirty = True  # every crop has its embedding: train on them all at once
                self.error = ""
            except Exception as exc:  # the queue works without the learner; say why it stopped
                self.error = f"{type(exc).__name__}: {exc}"
                dirty = False
                self._wake.wait(timeout=30)  # not in a tight loop: again at the next label, or in 30 s
            # Labels arrive in bursts: work at most half the time, so the page's requests never wait long.
            time.sleep(max(0.2, time.monotonic() - started))


class AppServer:
    """An ASGI app served by uvicorn on one socket of its own, in a thread (`start`, `with`) or
    in the foreground until Ctrl-C (`serve_forever`). Port 0: any free port. A host other than
    loopback needs an access token (the app's guard checks it on every request)."""

    what = "the server"  # in messages: "the review queue", "the generator page"

    def _check_host(self, host: str, token: str | None, flag: str = "--host") -> None:
        if not is_loopback(host) and not token:
            raise ReviewServerError(
                f"{flag} {host} makes {self.what} reachable from other machines: it needs an access token "
                "(--token, or let headshot make one)")
        check_token(token or None)

    def _serve_init(self, app, host: str, port: int, token: str | None) -> None:
        self.app, self.host, self.port, self.token = app, host, port, token
        self._server = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    def _url(self, host: str) -> str:
        host = f"[{host}]" if ":" in host and not host.startswith("[") else host
        return f"http://{host}:{self.port}/" + (f"?token={self.token}" if self.token else "")

    @property
    def url(self) -> str:
        """An address to open: a wildcard host (0.0.0.0, ::) is where to listen, not where to go."""
        return self._url("127.0.0.1" if is_wildcard(self.host) else self.host)

    def other_urls(self) -> list[str]:
        """For a wildcard host, the addresses other machines open (this one's on its networks)."""
        return [self._url(h) for h in other_addresses(self.host)] if is_wildcard(self.host) else []

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit this on Linux; without it every keep-alive answer waits
        # ~40 ms for a delayed ACK (Nagle), which caps labelling at ~20 requests a second.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if family == socket.AF_INET6 and is_wildcard(self.host):
            try:  # :: serves IPv4 too (where the system allows), so the printed 127.0.0.1 URL opens
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            except OSError:
                pass
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise ReviewServerError(f"cannot listen on {self.host}:{self.port}: {exc.strerror} (try --port)") from None
        sock.listen(128)  # connections wait in the backlog until uvicorn serves them
        self.port = sock.getsockname()[1]
        return sock

    def _uvicorn(self):
        import uvicorn

        config = uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="off")
        return uvicorn.Server(config)

    def _started(self) -> None:
        """Hook: the socket serves (start a background thread of one's own here)."""

    def _closed(self) -> None:
        """Hook: the server stopped (stop threads, close stores)."""

    def start(self):
        self._sock = self._bind()
        self._server = self._uvicorn()
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ReviewServerError(f"{self.what} did not start")
            time.sleep(0.02)
        self._started()
        return self

    def serve_forever(self, announce: Callable[[str], None] = print) -> None:
        """Block until Ctrl-C (the CLI); `announce` gets the URL once the port is bound."""
        self._sock = self._bind()
        announce(self.url)
        self._server = self._uvicorn()
        self._started()
        try:
            self._server.run(sockets=[self._sock])
        finally:
            self.close()

    def close(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._sock is not None:
            self._sock.close()
        self._closed()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class ReviewServer(AppServer):
    """`with ReviewServer(ws) as s: s.url` serves the queue until the block ends (port 0: any free port)."""

    ws: Workspace
    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None
    learner: bool = True
    what = "the queue"

    def __post_init__(self) -> None:
        self._check_host(self.host, self.token)
        # The queue first: a workspace with nothing to review is refused before review.sqlite is made.
        from curation.embeddings import Embeddings

        report = lambda: lt.report if lt else None  # noqa: E731
        tag_report = lambda: lt.tag_report if lt else None  # noqa: E731
        self.embeddings = Embeddings(self.ws)  # one copy in memory for the learner and "more like these"
        self.queue = Queue(self.ws, None, learner_report=report, tag_report=tag_report, embeddings=self.embeddings)
        self.store = self.queue.store = ReviewStore(self.ws.review_db)
        lt = self.learner_thread = LearnerThread(self.ws, self.store, [self.queue], self.embeddings) \
            if self.learner else None
        hosts = ("*",) if not is_loopback(self.host) else LOOPBACK
        cfg = AppConfig(token=self.token, allowed_hosts=hosts,
                        on_decided=lt.wake if lt else (lambda: None), learner_needs=lt.needs if lt else (lambda: {"off": True}))
        self._serve_init(create_app(self.queue, cfg), self.host, self.port, self.token)

    def _started(self) -> None:
        if self.learner_thread:
            self.learner_thread.start()

    def _closed(self) -> None:
        if self.learner_thread:
            self.learner_thread.stop()
        self.store.close()


def new_token() -> str:
    return secrets.token_urlsafe(24)
