"""The review app's gate, as plain ASGI (no per-request task or stream, unlike an HTTP middleware):
the Host header must name this server (no DNS rebinding); with a token, every request must
carry it (header, cookie, or `?token=` once, which sets the cookie); a write must come from the
page itself (no cross-site request forgery); every answer gets the security headers."""

from __future__ import annotations

import json
import secrets
from http.cookies import SimpleCookie
from urllib.parse import parse_qs

COOKIE = "headshot_token"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
SAME_SITE = ("same-origin", "none")  # Sec-Fetch-Site: the page itself, or the user typing a URL
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self'; script-src 'self'; style-src 'self'; "
                               "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


class Guard:
    def __init__(self, app, token: str | None, allowed_hosts: tuple[str, ...]):
        self.app = app
        self.token = token
        self.allowed_hosts = allowed_hosts

    async def _refuse(self, send, status: int, detail: str) -> None:
        body = json.dumps({"detail": detail}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
                    + [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]})
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    def _cross_site(method: str, headers: dict[str, str]) -> str:
        """Why a write is another site's doing ('' when it is not). Browsers send Origin (and
        Sec-Fetch-Site) on every POST, so a form or fetch on another page, which carries the
        cookie and would pass the token check, is told apart here. A request with neither
        header (curl, a script) is no browser acting for another site and passes."""
        if method.upper() in SAFE_METHODS:
            return ""
        origin = headers.get("origin")
        own = "http://" + headers.get("host", "")
        if origin is not None and origin.lower() != own.lower():
            return f"Origin {origin[:100]!r} is not this page's {own[:100]!r}"
        site = headers.get("sec-fetch-site")
        if site is not None and site.strip().lower() not in SAME_SITE:
            return f"Sec-Fetch-Site is {site[:40]!r}, not same-origin"
        return ""

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "").rsplit(":", 1)[0].strip("[]")
        if "*" not in self.allowed_hosts and host not in self.allowed_hosts:
            return await self._refuse(send, 400, f"host {host!r} is not served here")
        why = self._cross_site(scope.get("method", "GET"), headers)
        if why:
            return await self._refuse(send, 403, f"cross-origin writes are refused: {why}")
        from_query = False
        if self.token:
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            cookie = SimpleCookie(headers.get("cookie", ""))
            given = (headers.get("x-headshot-token") or (cookie[COOKIE].value if COOKIE in cookie else "")
                     or (query.get("token") or [""])[0])
            if not secrets.compare_digest(given.encode(), self.token.encode()):
                return await self._refuse(send, 401, "an access token is required (open the URL headshot review printed)")
            from_query = "token" in query

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items() if k.encode() not in present]
                if from_query:
                    extra.append((b"set-cookie", f"{COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/".encode()))
                message = {**message, "headers": list(message.get("headers", [])) + extra}
            await send(message)

        await self.app(scope, receive, send_with_headers)
