"""What a polite fetch reads from a server's answer, whoever fetches (ingest's downloader or
a spider's retry middleware), and how any of them records a URL: without its secrets."""

from __future__ import annotations

import email.utils
import re
import time
import urllib.parse


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (seconds, or an HTTP date; a past date is 0),
    or None when there is none or it cannot be read."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


# The authority is what follows "//" up to the first / ? or #, as urllib.parse splits it; the
# scheme may be anything (an ftp:// line is recorded too), and leading junk is allowed because
# urlsplit strips it before it reads the credentials.
_AUTHORITY = re.compile(r"([^:/?#]*:)?//([^/?#]*)")


def redact_url(url: str) -> str:
    """`url` without the `user:pass@` (or `user@`) of its authority; every other character kept.

    >>> redact_url("https://ann:s3cret@example.org:8443/a.jpg?x=1")
    'https://example.org:8443/a.jpg?x=1'
    """
    m = _AUTHORITY.match(url)
    if m is None or "@" not in m.group(2):
        return url
    start, end = m.span(2)
    return url[:start] + m.group(2).rpartition("@")[2] + url[end:]


# Query parameters whose value is a credential (signed-URL, API and session parameters): kept
# in the request, never in a row or a reason, since manifests and dataset cards get published.
SECRET_PARAMS = frozenset({
    "access_token", "api_key", "apikey", "auth", "authorization", "key", "password", "passwd", "pwd",
    "secret", "session", "sessionid", "sid", "sig", "signature", "token", "x-amz-credential",
    "x-amz-security-token", "x-amz-signature", "x-goog-credential", "x-goog-signature",
})
REDACTED = "REDACTED"
_QUERY = re.compile(r"([?&;])([^=&;#]*)=([^&;#]*)")


def recorded_url(url: str) -> str:
    """`url` as a row or a reason may keep it: no `user:pass@`, and the value of every query
    parameter named in `SECRET_PARAMS` (any case, percent-decoded name) replaced by REDACTED;
    every other character kept.

    >>> recorded_url("https://ann:pw@cdn.example.org/a.jpg?w=64&X-Amz-Signature=abc#f")
    'https://cdn.example.org/a.jpg?w=64&X-Amz-Signature=REDACTED#f'
    """
    url = redact_url(url)
    q = url.find("?")
    if q < 0:
        return url

    def hide(m: re.Match) -> str:
        name = urllib.parse.unquote_plus(m.group(2)).strip().lower()
        return f"{m.group(1)}{m.group(2)}={REDACTED}" if name in SECRET_PARAMS and m.group(3) else m.group(0)

    return url[:q] + _QUERY.sub(hide, url[q:])


_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>()]+")


def recorded_text(text: str) -> str:
    """A reason or a page's field with every URL in it as `recorded_url` keeps it."""
    return _URL_IN_TEXT.sub(lambda m: recorded_url(m.group(0)), text) if "://" in text else text
