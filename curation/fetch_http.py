"""The sockets under curation/fetch.py: a deadline for one URL that no server can stretch.

urllib's timeout bounds each socket read, so a server that sends a byte every 29 s holds a
download as long as it likes. Here every connection a fetch opens registers its socket with
that fetch's `Deadline`, found through a thread-local because urllib builds connections deep
inside `opener.open`; a timer shuts the sockets down when the time is up, which ends the read
in progress, be it of the status line, the headers, the body or a TLS handshake.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
import urllib.parse
import urllib.request
from contextlib import contextmanager

DEFAULT_PORTS = {"http": 80, "https": 443}

_local = threading.local()


class DeadlineExceeded(Exception):
    """The URL's time ran out; raised between body chunks and before a connection is opened."""


class ConnectTimedOut(TimeoutError):
    """No TCP connection within the connect timeout (a read timeout is a plain TimeoutError)."""


class IncompleteBody(http.client.HTTPException):
    """The server closed the connection before the bytes its Content-Length promised."""


def host_key(parts: urllib.parse.SplitResult) -> str:
    """'host:port' with the default port filled in and no userinfo: the key for per-host state.
    Raises ValueError on a port that is not a number."""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{parts.port or DEFAULT_PORTS.get(parts.scheme, 0)}"


class Deadline:
    """Seconds of network time for one URL, spent across its attempts and redirects. The
    waits between attempts (per-host delay, backoff, Retry-After) are not counted: their own
    settings bound them, and Retry-After is the server's own request."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.host = ""  # host:port of the request in flight; a redirect changes it
        self.received = 0  # body bytes read in the attempt in flight
        self.expired = False
        self._left = seconds
        self._ends: float | None = None  # set while an attempt runs
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()

    @contextmanager
    def running(self):
        """One attempt: the clock runs, and this thread's connections register with it."""
        timer = threading.Timer(max(0.0, self._left), self._expire)
        timer.daemon = True
        with self._lock:
            self._ends = time.monotonic() + self._left
            self.received = 0
        previous, _local.deadline = getattr(_local, "deadline", None), self
        timer.start()
        try:
            yield self
        finally:
            _local.deadline = previous
            timer.cancel()
            with self._lock:
                self._left = max(0.0, self._ends - time.monotonic())
                self._ends = None
                self._socks.clear()

    def left(self) -> float:
        ends = self._ends
        return self._left if ends is None else max(0.0, ends - time.monotonic())

    def passed(self) -> bool:
        return self.expired or self.left() <= 0

    def register(self, sock: socket.socket) -> None:
        with self._lock:
            self._socks.append(sock)
            if self.expired:
                _shutdown(sock)

    def _expire(self) -> None:
        with self._lock:
            if self._ends is None:  # the attempt ended as the timer fired
                return
            self.expired = True
            for sock in self._socks:
                _shutdown(sock)


def _shutdown(sock: socket.socket) -> None:
    # socket.socket's own shutdown, also on an SSLSocket: SSLSocket.shutdown drops its SSL
    # object, which the owning thread may be reading through at this moment. Shut down, not
    # closed: that ends a blocked read at once and leaves the one close to the owner. (Were the
    # owner closing it in the same instant, a socket reusing the number could be shut down
    # instead; the window is one system call, once, when a deadline passes.)
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass  # closed already, or detached by an SSL wrap (the wrapped socket is registered too)


def current() -> Deadline | None:
    return getattr(_local, "deadline", None)


class _DeadlineConnect:
    """Connect within min(connect timeout, per-read timeout, time left), then register the socket."""

    def __init__(self, host, *, connect_timeout: float, **kw) -> None:
        super().__init__(host, **kw)
        self.connect_timeout = connect_timeout
        self._create_connection = self._open_socket

    def _open_socket(self, address, timeout, source_address):
        dl = current()
        limit = self.connect_timeout
        if isinstance(timeout, (int, float)):
            limit = min(limit, timeout)
        if dl is not None:
            if dl.passed():
                raise DeadlineExceeded()
            limit = min(limit, dl.left())
        try:
            sock = socket.create_connection(address, limit, source_address)
        except TimeoutError as exc:
            raise ConnectTimedOut(f"timed out after {limit:g} s connecting") from exc
        sock.settimeout(timeout)  # each read from now on; the deadline bounds them all
        if dl is not None:
            dl.register(sock)
        return sock


class HTTPConnection(_DeadlineConnect, http.client.HTTPConnection):
    pass


class HTTPSConnection(_DeadlineConnect, http.client.HTTPSConnection):
    def connect(self) -> None:
        # http.client's own, with the handshake after registering the TLS socket: wrap_socket
        # detaches the plain socket it wraps, and a server can drip its handshake too.
        http.client.HTTPConnection.connect(self)  # TCP, and a proxy tunnel when there is one
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self._tunnel_host or self.host,
                                              do_handshake_on_connect=False)
        if (dl := current()) is not None:
            dl.register(self.sock)
        self.sock.do_handshake()


def _note_host(req: urllib.request.Request) -> None:
    """Which host the request in flight goes to: a redirect's target, not the URL's, may be dead."""
    if (dl := current()) is not None:
        dl.host = host_key(urllib.parse.urlsplit(req.full_url))


class HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, connect_timeout: float) -> None:
        super().__init__()
        self.connect_timeout = connect_timeout

    def http_open(self, req):
        _note_host(req)
        return self.do_open(HTTPConnection, req, connect_timeout=self.connect_timeout)


class HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, connect_timeout: float) -> None:
        super().__init__()
        self.connect_timeout = connect_timeout

    def https_open(self, req):
        _note_host(req)
        return self.do_open(HTTPSConnection, req, context=self._context, connect_timeout=self.connect_timeout)


def read_body(resp: http.client.HTTPResponse, limit: int, dl: Deadline, chunk: int = 64 * 1024) -> bytes:
    """At most limit + 1 bytes (one more says 'over the cap', whatever Content-Length claims),
    checking the deadline between reads."""
    chunks, got = [], 0
    while got <= limit:
        if dl.passed():
            raise DeadlineExceeded()
        data = resp.read1(min(chunk, limit + 1 - got))
        if not data:
            break
        chunks.append(data)
        got += len(data)
        dl.received = got
    if dl.expired:  # the timer's shutdown looks like the end of the body: it is not one
        raise DeadlineExceeded()
    missing = getattr(resp, "length", None)  # http.client counts down what Content-Length promised
    if got <= limit and missing:
        raise IncompleteBody(f"the connection closed after {got:,} bytes of the {got + missing:,} "
                             "that Content-Length declared")
    return b"".join(chunks)
