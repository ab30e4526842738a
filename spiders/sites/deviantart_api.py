"""DeviantArt's OAuth2 API: the client-credentials token, /browse/tags pages and the API's
error bodies. Split from deviantart.py (the RSS search), which re-exports every public name
here; the checks both share are in deviantart_common.py."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from spiders.parsing import ImageItem, NotFound, PageError, Parsed, Truncated, Unavailable

from .deviantart_common import (
    API_MAX_LIMIT,
    RATE_LIMIT_WAIT,
    SOURCE,
    TokenExpired,
    _collect,
    _html_error,
    _id_from_url,
    _int,
    _looks_like_html,
    is_block_page,
)


# ---------------------------------------------------------------- OAuth2 token


def token_url(api_base_or_site: str) -> str:
    """The token endpoint lives at the site root, not under the API base."""
    parts = urlsplit(api_base_or_site)
    if not parts.scheme or not parts.netloc:
        raise ValueError(f"not an absolute URL: {api_base_or_site!r}")
    return f"{parts.scheme}://{parts.netloc}/oauth2/token"


def parse_token(text: str) -> dict[str, Any]:
    """{"access_token", "expires_in", "token_type"} from a client-credentials token response."""
    body = _api_body(text)
    token = body.get("access_token")
    if not isinstance(token, str) or not token:
        raise PageError("token response without access_token")
    return {"access_token": token, "expires_in": _int(body.get("expires_in")) or 0,
            "token_type": str(body.get("token_type", "Bearer"))}


# ---------------------------------------------------------------- API /browse/tags


def browse_tags_url(api_base: str, tag: str, offset: int = 0, limit: int = 50, mature: bool = False) -> str:
    if not tag or any(ch.isspace() for ch in tag):
        raise ValueError(f"/browse/tags takes one tag without spaces, got {tag!r}")
    if not 1 <= limit <= API_MAX_LIMIT:
        raise ValueError(f"limit must be 1..{API_MAX_LIMIT}, got {limit}")
    return (f"{api_base.rstrip('/')}/browse/tags?tag={quote(tag, safe='')}&offset={offset}"
            f"&limit={limit}&mature_content={'true' if mature else 'false'}")


def parse_browse_tags(text: str, url: str) -> Parsed:
    body = _api_body(text)
    results = body.get("results")
    if not isinstance(results, list):
        raise Truncated("API page without a results list")
    items, skipped = _collect([r if isinstance(r, dict) else {} for r in results], _api_item)
    has_more, next_offset = bool(body.get("has_more")), _int(body.get("next_offset"))
    info = {"has_more": has_more, "next_offset": next_offset,
            "estimated_total": _int(body.get("estimated_total")), "skipped": skipped}
    return Parsed(items=items, next_page=_api_next(url, has_more, next_offset), info=info)


def _api_item(obj: dict) -> tuple[ImageItem | None, str]:
    if obj.get("is_deleted"):
        return None, "deleted"
    if obj.get("tier_access") or obj.get("premium_folder_data"):
        return None, "paywalled"
    # A flash deviation's "content" is only its small preview GIF; a video has no content at all.
    if obj.get("flash"):
        return None, "flash"
    if obj.get("videos"):
        return None, "video"
    content = obj.get("content") or {}
    if not content.get("src"):
        return None, "no_content"
    page_url = str(obj.get("url", ""))
    numeric = _id_from_url(page_url)
    uuid = str(obj.get("deviationid", ""))
    extra = {
        "deviation_id": int(numeric) if numeric else None,
        "uuid": uuid,
        "category": str(obj.get("category_path", "")),
        "is_downloadable": bool(obj.get("is_downloadable")),
        "width": _int(content.get("width")),
        "height": _int(content.get("height")),
        "filesize": _int(content.get("filesize")),
        "transparency": content.get("transparency"),
    }
    item = ImageItem(
        source=SOURCE,
        source_id=numeric or uuid,
        page_url=page_url,
        image_url=content["src"],
        title=str(obj.get("title", "")),
        artist=str((obj.get("author") or {}).get("username", "")),
        rating="adult" if obj.get("is_mature") else "nonadult",
        published_at=_epoch_to_iso(obj.get("published_time")),
        extra=extra,
    )
    return item, ""


def _epoch_to_iso(value: Any) -> str:
    seconds = _int(value)  # a string in most objects, an int in some
    return datetime.fromtimestamp(seconds, tz=timezone.utc).isoformat() if seconds is not None else ""


def _api_next(url: str, has_more: bool, next_offset: int | None) -> str | None:
    if not has_more or next_offset is None:
        return None
    base = url.partition("/browse/tags")[0]
    params = parse_qs(urlsplit(url).query)
    offset = _int(params.get("offset", ["0"])[0]) or 0
    if next_offset <= offset:
        return None  # an offset that does not move would page forever
    return browse_tags_url(base, params["tag"][0], next_offset, _int(params.get("limit", ["50"])[0]) or 50,
                           params.get("mature_content", ["false"])[0] == "true")


def api_error(text: str, *, retry_after: float | None = None) -> PageError | None:
    """The exception for an API error body, None for a normal one. `retry_after` is the
    response's Retry-After header when the caller has one."""
    try:
        body = _json_body(text, "the API response")
    except PageError as exc:
        return exc
    return _body_error(body, retry_after)


def _api_body(text: str) -> dict:
    body = _json_body(text, "the API response")
    error = _body_error(body, None)
    if error is not None:
        raise error
    return body


def _body_error(body: dict, retry_after: float | None) -> PageError | None:
    if "error" not in body and body.get("status") != "error":
        return None
    code, desc = str(body.get("error", "")), str(body.get("error_description", ""))
    message = f"DeviantArt API error {code or '?'}: {desc}"
    if body.get("error_details"):
        message += f" {json.dumps(body['error_details'], sort_keys=True)}"
    low = desc.lower()
    if code == "invalid_token" or ("token" in low and "expired" in low):
        return TokenExpired(message)
    if code == "user_api_threshold" or body.get("error_code") == 429 or re.search(r"(rate|request) limit", low):
        return Unavailable(message, retry_after=retry_after or RATE_LIMIT_WAIT)
    if low.endswith("not found."):
        return NotFound(message)
    if code in ("server_error", "temporarily_unavailable"):
        return Unavailable(message, retry_after=retry_after)
    if code in ("invalid_client", "unauthorized_client"):
        # Wrong credentials: no retry will fix them, so the spider should stop and say so.
        return PageError(f"{message}; check DEVIANTART_CLIENT_ID / DEVIANTART_CLIENT_SECRET")
    return PageError(message)


def _json_body(text: str, where: str) -> dict:
    if not text.strip():
        raise Truncated(f"empty body where {where} was expected")
    if is_block_page(text) or _looks_like_html(text):
        raise _html_error(text, where)
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise Truncated(f"{where} is not valid JSON (cut short?): {exc}") from None
    if not isinstance(body, dict):
        raise PageError(f"{where} is JSON but not an object")
    return body
