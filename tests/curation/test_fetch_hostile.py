"""Servers that drip, stay silent, refuse, redirect to other schemes or lie about their size,
and URLs that carry credentials: every fetch ends within a bounded time with its reason.

The servers are plain sockets on 127.0.0.1 so they can misbehave in ways http.server cannot.
Time bounds are generous: these are hang checks, not benchmarks."""

from __future__ import annotations

import base64
import concurrent.futures as cf
import socket
import threading
import time
from dataclasses import replace

import pytest

from curation.fetch import FetchConfig, Fetcher, redact_url
from tests.conftest import Site

JPEG_HEAD = b"\xff\xd8\xff\xe0"


def fast(**kw) -> FetchConfig:
    return replace(FetchConfig(), **{"per_host_delay": 0.0, "backoff": 0.05, "timeout": 5, **kw})


def within(limit: float, fn, *args):
    """(fn(*args), seconds it took); fails instead of hanging when it takes longer than `limit`."""
    out: list = []
    t = time.monotonic()
    worker = threading.Thread(target=lambda: out.append(fn(*args)), daemon=True)
    worker.start()
    worker.join(limit)
    assert not worker.is_alive(), f"still running after {limit} s"
    return out[0], time.monotonic() - t


class RawServer:
    """A TCP server on 127.0.0.1 that reads each request's head, records it, then hands the
    connection to `serve(conn, path)` in its own thread. `accept=False` listens and never accepts."""

    def __init__(self, serve=None, accept: bool = True) -> None:
        self.serve = serve
        self.stop = threading.Event()
        self.requests: list[bytes] = []
        self.conns: list[socket.socket] = []
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=16)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        if accept:
            threading.Thread(target=self._accept, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def accepted(self) -> int:
        return len(self.conns)

    def paths(self) -> list[str]:
        return [r.split(b" ")[1].decode() for r in self.requests if r.count(b" ") >= 2]

    def headers(self, path: str) -> list[dict[str, str]]:
        out = []
        for r in self.requests:
            lines = r.decode("latin-1").split("\r\n")
            if lines[0].split(" ")[1:2] == [path]:
                out.append({k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:] if h)})
        return out

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.conns.append(conn)
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        head = b""
        try:
            while b"\r\n\r\n" not in head:
                data = conn.recv(4096)
                if not data:
                    return
                head += data
            self.requests.append(head)
            if self.serve is not None:
                self.serve(self, conn, head.split(b" ")[1].decode())
        except OSError:
            pass  # the client went away: that is what these servers wait for

    def drip(self, conn: socket.socket, data: bytes, every: float = 0.2) -> None:
        """Send `data` a byte at a time, then a byte of body forever, until the client leaves."""
        for i in range(len(data)):
            conn.sendall(data[i:i + 1])
            if self.stop.wait(every):
                return
        while not self.stop.wait(every):
            conn.sendall(b"x")

    def close(self) -> None:
        self.stop.set()
        self.sock.close()
        for c in self.conns:
            c.close()


@pytest.fixture
def raw():
    servers: list[RawServer] = []

    def make(serve=None, accept: bool = True) -> RawServer:
        servers.append(RawServer(serve, accept))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def silent(server, conn, path) -> None:
    server.stop.wait()  # holds the connection open, says nothing


def answer(status: str, headers: dict[str, str], body: bytes):
    def serve(server, conn, path) -> None:
        head = f"HTTP/1.1 {status}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        conn.sendall(head.encode() + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
    return serve


@pytest.mark.parametrize("url,expected", [
    ("https://ann:s3cret@example.org:8443/a.jpg?x=1#f", "https://example.org:8443/a.jpg?x=1#f"),
    ("http://ann@example.org/a.jpg", "http://example.org/a.jpg"),
    ("http://ann:p@ss@example.org/", "http://example.org/"),  # urllib reads the host after the last @
    ("ftp://ann:s3cret@example.org/x", "ftp://example.org/x"),
    ("//ann:s3cret@example.org/x", "//example.org/x"),
    ("http://ann:s3cret@[::1]:8080/x", "http://[::1]:8080/x"),
    # No userinfo: the same string, byte for byte, @ in the path or query included.
    ("http://example.org/a@b.jpg?to=x@y&q=%zz", "http://example.org/a@b.jpg?to=x@y&q=%zz"),
    ("HTTP://Example.ORG:80//a b", "HTTP://Example.ORG:80//a b"),
    ("not a url", "not a url"),
])
def test_redact_url(url, expected):
    assert redact_url(url) == expected


def test_a_server_dripping_the_body_is_cut_at_the_deadline(raw):
    head = b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: 100000\r\n\r\n"
    srv = raw(lambda s, conn, path: (conn.sendall(head), s.drip(conn, b"")))  # then a byte every 0.2 s
    f = Fetcher(fast(obey_robots=False, deadline=1.5, retries=3))
    res, took = within(15, f.fetch, srv.url("/slow.jpg"))
    assert res.status == "http_error"
    assert res.reason.startswith("the download took longer than the 1.5 s deadline (")
    assert res.reason.endswith(" bytes of the body received)")
    assert 1.4 <= took < 1.5 + 3
    assert srv.accepted == 1  # the deadline covers all attempts: no retry


@pytest.mark.parametrize("head", [
    b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\n\r\n",  # the status line itself, a byte at a time
    b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-Slow-%d: yes\r\n" % i for i in range(200)),
], ids=["status line", "headers"])
def test_a_server_dripping_its_head_is_cut_at_the_deadline_and_given_up_on(raw, head):
    if head.count(b"\r\n") > 10:  # the status line at once, then the headers dripped
        srv = raw(lambda s, conn, path: (conn.sendall(head[:17]), s.drip(conn, head[17:])))
    else:
        srv = raw(lambda s, conn, path: s.drip(conn, head))
    f = Fetcher(fast(obey_robots=False, deadline=1.5, timeout=1))  # no single read waits 1 s
    res, took = within(15, f.fetch, srv.url("/a.jpg"))
    assert res.status == "http_error" and took < 1.5 + 3
    assert res.reason == ("the download took longer than the 1.5 s deadline "
                          "(its status line and headers had not all arrived)")
    # No complete answer in the time a whole download gets: the host is not asked again.
    again, took = within(5, f.fetch, srv.url("/b.jpg"))
    assert took < 0.5 and again.reason == (f"host 127.0.0.1:{srv.port} did not answer earlier in this run "
                                           "(no complete answer within the 1.5 s deadline); not tried again")
    assert srv.accepted == 1


@pytest.mark.parametrize("accept", [True, False], ids=["accepts, never answers", "never accepts"])
@pytest.mark.parametrize("robots", [True, False], ids=["robots.txt first", "no robots.txt"])
def test_a_silent_host_costs_one_timeout_not_one_per_url(raw, accept, robots):
    srv = raw(silent, accept=accept)
    f = Fetcher(fast(timeout=0.5, retries=3, backoff=1.0, obey_robots=robots))
    urls = [srv.url(f"/{i}.jpg") for i in range(20)]

    def run_all():
        with cf.ThreadPoolExecutor(4) as pool:  # as ingest does: threads queue on the host's lock
            return list(pool.map(f.fetch, urls))

    results, took = within(30, run_all)
    assert took < 3.0  # one 0.5 s timeout; twenty would be 10 s, with retries over a minute
    assert {r.status for r in results} == {"http_error"}
    host = f"127.0.0.1:{srv.port}"
    why = "timed out after 0.5 s waiting for an answer"
    asked = " when asked for robots.txt" if robots else ""
    first = [r for r in results if "earlier in this run" not in r.reason]
    assert [r.reason for r in first] == [f"network error: host {host} did not answer{asked} ({why}); "
                                         "not tried again in this run"]
    later = {r.reason for r in results} - {first[0].reason}
    assert later == {f"host {host} did not answer earlier in this run ({why}); not tried again"}
    assert srv.accepted <= 1


@pytest.mark.parametrize("robots", [True, False], ids=["robots.txt first", "no robots.txt"])
def test_a_refused_port_is_given_up_on_at_once(robots):
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    f = Fetcher(fast(retries=3, backoff=1.0, obey_robots=robots))  # a single retry would cost 1 s
    results, took = within(10, lambda: [f.fetch(f"http://127.0.0.1:{port}/{i}.jpg") for i in range(5)])
    assert took < 0.9
    asked = " when asked for robots.txt" if robots else ""
    assert results[0].status == "http_error"
    assert results[0].reason == (f"network error: host 127.0.0.1:{port} did not answer{asked} (connection refused); "
                                 "not tried again in this run")
    assert {r.reason for r in results[1:]} == {
        f"host 127.0.0.1:{port} did not answer earlier in this run (connection refused); not tried again"}


@pytest.mark.parametrize("scheme", ["ftp", "file", "data", "FTP"])
def test_a_redirect_to_another_scheme_is_not_followed(site, raw, scheme):
    ftp = raw(silent)  # would see a connection if the ftp:// target were opened
    target = {"ftp": f"ftp://127.0.0.1:{ftp.port}/x.jpg", "FTP": f"FTP://127.0.0.1:{ftp.port}/x.jpg",
              "file": "file:///etc/passwd", "data": "data:image/jpeg;base64,/9j/4AAQ"}[scheme]
    url = site.add("/r.jpg", (302, {"Location": target}, b""))
    res, _ = within(10, Fetcher(fast()).fetch, url)
    assert res.status == "invalid" and res.http_status == 302 and res.data is None
    assert res.reason == f"redirected to {target}; only http(s) is followed"
    time.sleep(0.2)
    assert ftp.accepted == 0
    assert len(site.hits("/r.jpg")) == 1  # refused, not retried


def test_a_redirect_to_http_on_another_port_is_followed(site, raw):
    other = raw(answer("200 OK", {"Content-Type": "image/jpeg"}, JPEG_HEAD + b"\0" * 100))
    url = site.add("/r.jpg", (301, {"Location": other.url("/img.jpg")}, b""))
    res, _ = within(10, Fetcher(fast()).fetch, url)
    assert res.status == "ok" and res.data == JPEG_HEAD + b"\0" * 100
    assert res.url == url and res.final_url == other.url("/img.jpg")


def test_a_dead_redirect_target_is_the_host_given_up_on(site):
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    site.add("/a.jpg", (302, {"Location": f"http://127.0.0.1:{port}/a.jpg"}, b""))
    site.add("/b.jpg", (200, {"Content-Type": "image/jpeg"}, JPEG_HEAD))
    f = Fetcher(fast(retries=3, backoff=1.0))
    res, took = within(10, f.fetch, site.url("/a.jpg"))
    # The hop is asked like any URL of that host: its robots.txt first, which finds it dead.
    assert took < 0.9 and res.reason == (f"redirected to http://127.0.0.1:{port}/a.jpg: network error: host "
                                         f"127.0.0.1:{port} did not answer when asked for robots.txt (connection "
                                         "refused); not tried again in this run")
    assert f.fetch(site.url("/b.jpg")).status == "ok"  # the host that redirected is alive
    assert "did not answer earlier in this run" in f.fetch(f"http://127.0.0.1:{port}/c.jpg").reason


@pytest.mark.parametrize("where", ["same host", "another host"])
def test_credentials_go_to_the_first_request_only_and_are_never_returned(site, raw, where):
    other = raw(answer("200 OK", {"Content-Type": "image/jpeg"}, JPEG_HEAD))
    site.add("/public.jpg", (200, {"Content-Type": "image/jpeg"}, JPEG_HEAD))
    target = site.url("/public.jpg") if where == "same host" else other.url("/public.jpg")
    site.add("/private.jpg", (302, {"Location": target}, b""))
    url = site.url("/private.jpg").replace("http://", "http://ann:s3cret@")
    res, _ = within(10, Fetcher(fast()).fetch, url)
    assert res.status == "ok" and res.data == JPEG_HEAD
    assert res.url == site.url("/private.jpg") and res.final_url == target
    assert "s3cret" not in repr(replace(res, data=None)) and "ann" not in repr(replace(res, data=None))
    sent = {path: h.get("Authorization") for _, path, h in site.log}
    assert sent["/private.jpg"] == "Basic " + base64.b64encode(b"ann:s3cret").decode()
    assert sent["/robots.txt"] is None  # robots.txt is public, and its origin has no userinfo
    if where == "same host":
        assert sent["/public.jpg"] is None
    else:
        assert [h.get("authorization") for h in other.headers("/public.jpg")] == [None]


def test_credentials_never_appear_in_a_failure_nor_come_from_a_location(site):
    refused = socket.create_server(("127.0.0.1", 0))
    port = refused.getsockname()[1]
    refused.close()
    f = Fetcher(fast(retries=0))
    for url in (f"http://ann:s3cret@127.0.0.1:{port}/a.jpg", "ftp://ann:s3cret@example.org/a.jpg",
                "http://ann:s3cret@127.0.0.1:notaport/a.jpg", site.url("/gone.jpg").replace("//", "//ann:s3cret@")):
        res = f.fetch(url)
        assert res.status in ("http_error", "invalid") and "s3cret" not in repr(res), res
    # A Location with userinfo: followed, without the credentials and without sending them.
    site.add("/public.jpg", (200, {"Content-Type": "image/jpeg"}, JPEG_HEAD))
    loc = site.url("/public.jpg").replace("//", "//bob:hunter2@")
    res = f.fetch(site.add("/r.jpg", (302, {"Location": loc}, b"")))
    assert res.status == "ok" and res.final_url == site.url("/public.jpg") and "hunter2" not in repr(res)
    assert [h.get("Authorization") for _, path, h in site.log if path == "/public.jpg"] == [None]


def endless(server, conn, path, head: bytes, chunk: bytes) -> None:
    conn.sendall(head)
    while not server.stop.is_set():
        conn.sendall(chunk)


@pytest.mark.parametrize("head,chunk", [
    # Content-Length says 10, Transfer-Encoding (which wins) streams chunks forever.
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nTransfer-Encoding: chunked\r\n\r\n", b"3e8\r\n" + b"x" * 1000 + b"\r\n"),
    # No length at all: the body lasts until the server closes, which it never does.
    (b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nConnection: close\r\n\r\n", b"x" * 1000),
], ids=["lying Content-Length", "no Content-Length"])
def test_the_size_cap_holds_whatever_content_length_says(raw, head, chunk):
    srv = raw(lambda s, conn, path: endless(s, conn, path, head, chunk))
    res, took = within(15, Fetcher(fast(obey_robots=False, max_bytes=4000)).fetch, srv.url("/big.jpg"))
    assert res.status == "too_large" and res.reason == "the body is over the 4,000-byte cap"
    assert res.data is None and took < 3


def test_a_body_shorter_than_its_content_length_is_an_error_not_an_image(raw):
    srv = raw(lambda s, conn, path: (conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + b"x" * 100),
                                     conn.close()))
    res, _ = within(15, Fetcher(fast(obey_robots=False, retries=0)).fetch, srv.url("/cut.jpg"))
    assert res.status == "http_error" and res.data is None
    assert res.reason == "network error: the connection closed after 100 bytes of the 5,000 that Content-Length declared"


@pytest.fixture
def tls_site(tmp_path, monkeypatch):
    """An https server on 127.0.0.1 with a self-signed certificate the default context trusts."""
    import datetime
    import ipaddress
    import ssl
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    pem = tmp_path / "cert.pem"
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    monkeypatch.setenv("SSL_CERT_FILE", str(pem))

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(JPEG_HEAD)))
            self.end_headers()
            self.wfile.write(JPEG_HEAD)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pem)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_https_works_and_a_handshake_that_never_comes_is_cut_at_the_deadline(tls_site, raw):
    res, _ = within(10, Fetcher(fast()).fetch, tls_site + "/a.jpg")
    assert res.status == "ok" and res.data == JPEG_HEAD
    mute = raw(silent)  # TCP accepted, not a byte of TLS
    res, took = within(15, Fetcher(fast(obey_robots=False, deadline=1.5)).fetch, f"https://127.0.0.1:{mute.port}/a.jpg")
    assert took < 1.5 + 3  # the 5 s read timeout never came into it
    assert res.reason == ("the download took longer than the 1.5 s deadline "
                          "(its status line and headers had not all arrived)")


def test_a_redirect_hop_obeys_the_target_s_robots_and_the_throttle(site):
    other = Site()
    other.thread.start()
    try:
        other.add("/robots.txt", (200, {"Content-Type": "text/plain"}, b"User-agent: *\nDisallow: /private/\n"))
        other.add("/private/a.jpg", (200, {"Content-Type": "image/jpeg"}, JPEG_HEAD))
        other.add("/public/b.jpg", (200, {"Content-Type": "image/jpeg"}, JPEG_HEAD + b"\0"))
        site.add("/to-private.jpg", (302, {"Location": other.url("/private/a.jpg")}, b""))
        site.add("/to-public.jpg", (302, {"Location": other.url("/public/b.jpg")}, b""))
        site.add("/hop.jpg", (302, {"Location": site.url("/img.jpg")}, b""))
        site.add("/img.jpg", (200, {"Content-Type": "image/jpeg"}, JPEG_HEAD + b"\1"))
        f = Fetcher(fast(per_host_delay=0.4))
        # A redirect cannot launder a path the target's robots.txt disallows.
        res, _ = within(10, f.fetch, site.url("/to-private.jpg"))
        assert res.status == "robots_disallowed" and "robots.txt of 127.0.0.1" in res.reason
        assert other.hits("/private/a.jpg") == [] and len(other.hits("/robots.txt")) == 1
        assert f.fetch(site.url("/to-public.jpg")).data == JPEG_HEAD + b"\0"
        # A hop to the same host waits that host's turn like any other request.
        res, took = within(10, f.fetch, site.url("/hop.jpg"))
        assert res.status == "ok" and res.data == JPEG_HEAD + b"\1"
        (asked,), (hopped,) = site.hits("/hop.jpg"), site.hits("/img.jpg")
        assert hopped - asked >= 0.38
        # And every request to the target host was spaced too, robots.txt included.
        times = sorted(t for t, _, _ in other.log)
        assert len(times) == 2 and all(b - a >= 0.38 for a, b in zip(times, times[1:]))
    finally:
        other.server.shutdown()
        other.server.server_close()
