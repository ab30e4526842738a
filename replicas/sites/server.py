"""A local replica of a site on 127.0.0.1: routes, faults on demand, and a log of what was asked.

Used by the end-to-end tests (pages built from the real captures in ../shared/sites) and by
`headshot demo` (pages generated in code). It serves only loopback.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str  # without the query
    query: dict[str, list[str]]
    headers: dict[str, str]
    raw_path: str

    def cookie(self, name: str) -> str | None:
        for part in self.headers.get("Cookie", "").split(";"):
            k, _, v = part.strip().partition("=")
            if k == name:
                return v
        return None


@dataclass
class Response:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    truncate_to: int | None = None  # send only this many bytes of the body, then close


Handler = Callable[[Request], Response]


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)  # a crawler hanging up is not news


class Replica:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.routes: dict[str, Handler] = {}
        self.faults: dict[str, list[Response]] = {}  # raw path -> responses served first, in order
        self.log: list[tuple[float, Request, int]] = []
        self._lock = threading.Lock()
        self.server = _QuietServer((host, port), self._handler_class())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="replica", daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def route(self, path: str, handler: Handler) -> None:
        self.routes[path] = handler

    def fault(self, raw_path: str, *responses: Response) -> None:
        """Serve these responses to the next requests of `raw_path` (path + query) first."""
        self.faults.setdefault(raw_path, []).extend(responses)

    def hits(self, path: str) -> list[tuple[float, Request, int]]:
        return [e for e in self.log if e[1].path == path or e[1].raw_path == path]

    def start(self) -> "Replica":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "Replica":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _answer(self, req: Request) -> Response:
        with self._lock:
            queued = self.faults.get(req.raw_path)
            if queued:
                return queued.pop(0)
        handler = self.routes.get(req.path)
        if handler is None:
            for prefix, h in self.routes.items():
                if prefix.endswith("*") and req.path.startswith(prefix[:-1]):
                    handler = h
                    break
        if handler is None:
            return Response(404, {"Content-Type": "text/plain"}, b"not found")
        return handler(req)

    def _handler_class(self):
        replica = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                req = Request("GET", parts.path, parse_qs(parts.query), dict(self.headers), self.path)
                resp = replica._answer(req)
                with replica._lock:
                    replica.log.append((time.monotonic(), req, resp.status))
                body = resp.body if resp.truncate_to is None else resp.body[: resp.truncate_to]
                self.send_response(resp.status)
                for k, v in resp.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return H
