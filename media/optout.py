"""The AI opt-out, one rule for every way in: an image whose response (X-Robots-Tag) or page
(robots meta) says `noai` or `noimageai` is recorded as opted out and never stored. Ingest's
downloader and every spider ask here.
"""

from __future__ import annotations

import re
from typing import Iterable

NOAI = frozenset({"noai", "noimageai"})
# "noai, noimageai", "noai noimageai" and "googlebot: noai" all split into the same tokens.
_TOKENS = re.compile(r"[\s,:]+")


def says_noai(directives: str) -> bool:
    """One X-Robots-Tag value or robots meta content, for any (or no) user agent, any case."""
    return bool(NOAI & {t.lower() for t in _TOKENS.split(directives)})


def header_opted_out(values: Iterable[str]) -> bool:
    """True when any of a response's X-Robots-Tag values says noai or noimageai."""
    return any(says_noai(v) for v in values)


def opted_out(headers) -> bool:
    """The same for a headers object with `get_all` (http.client's, email.message's)."""
    return header_opted_out(headers.get_all("X-Robots-Tag") or [])
