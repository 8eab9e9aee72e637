"""A reply's status becomes our error; error bodies become short excerpts.

Also the two bounded readers of a body: `read_excerpt` (the first bytes, as
text) and `read_capped` (all of it, or nothing past a cap).
"""

from __future__ import annotations

import email.utils
import http
import re
import time
from collections.abc import Mapping
from typing import Final, TypedDict

from aiohttp import ClientResponse

from .._secrets import Scrubber
from .._urls import redact_url
from ..errors import (
    AuthenticationError,
    CloudflareChallengeError,
    CreditsExhaustedError,
    ProxyError,
    RateLimitError,
    ServerError,
    StatusError,
)

__all__ = [
    "MAX_RETRY_AFTER",
    "is_cloudflare_challenge",
    "parse_retry_after",
    "raise_for_redirect",
    "raise_for_status",
    "read_capped",
    "read_excerpt",
    "reply_scrubber",
    "status_text",
    "text_excerpt",
]

#: How much of an error body is read to classify it, and how much is kept.
_ERROR_BODY_LIMIT: Final = 256 * 1024
_EXCERPT_LENGTH: Final = 200
#: The longest wait a `Retry-After` header is taken to ask for: a day.
MAX_RETRY_AFTER: Final = 24 * 60 * 60
_SECONDS: Final = re.compile(r"[0-9]+", re.ASCII)


class _StatusDetails(TypedDict):
    """What every StatusError carries, as keyword arguments."""

    status: int
    url: str
    body: str
    request_id: str | None


async def raise_for_status(response: ClientResponse) -> None:
    """Raise our error for a non-2xx `response`; return quietly for 2xx.

    Always a coroutine. The body of an error reply is read (up to 256 KiB) to
    recognise a Cloudflare challenge before it is cut to a short excerpt.

    A request that carried a key (an `Authorization` header) is answered with
    the key errors of docs/protocol.md, "The official API", and the key is
    masked in every spelling (see `koala_chat._secrets`) out of everything the
    error quotes of the reply (body excerpt, reason phrase, request id),
    should the server echo it; the error's `key_sent` is then True.

    Raises:
        AuthenticationError: 401, or 403 without Cloudflare's marks, to a key.
        CreditsExhaustedError: 402 to a key.
        RateLimitError: 402 or 429 (docs/protocol.md: the free quota is used up).
        CloudflareChallengeError: a Cloudflare challenge, by header or page markers.
        ProxyError: 407, an HTTP proxy refused the credentials (or their absence).
        ServerError: any other 5xx.
        StatusError: any other non-2xx status.
    """
    if 200 <= response.status < 300:
        return
    body = await read_excerpt(response, _ERROR_BODY_LIMIT)
    url = redact_url(response.url)
    scrub = reply_scrubber(response)
    excerpt = text_excerpt(body, scrub=scrub)
    reason = _reason(response, scrub)
    details: _StatusDetails = {
        "status": response.status,
        "url": url,
        "body": excerpt,
        "request_id": _request_id(response, scrub),
    }
    if response.status == 407:
        # RFC 9110, section 15.5.8: the proxy, not the server, wants credentials.
        # aiohttp sends a plain-HTTP request to the proxy itself, so its 407 comes
        # back as a response here (for HTTPS it fails the CONNECT instead).
        raise ProxyError(f"the proxy refused the request to {url} ({reason})")
    if is_cloudflare_challenge(response.headers, body):
        raise CloudflareChallengeError(
            f"Cloudflare blocked the request to {url} with a challenge ({reason}); "
            "the Koala API cannot be used from here right now",
            **details,
        )
    suffix = _adding(reason, excerpt)
    keyed = bool(scrub)
    error: StatusError
    if keyed and response.status in (401, 403):
        error = AuthenticationError(
            f"{url} refused the API key ({reason}){suffix}; check KOALA_API_KEY",
            **details,
        )
    elif keyed and response.status == 402:
        error = CreditsExhaustedError(
            f"the account behind the API key is out of credits ({reason} from "
            f"{url}){suffix}",
            **details,
        )
    elif response.status in (402, 429):
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        wait = f", retry after {retry_after:g} s" if retry_after is not None else ""
        error = RateLimitError(
            f"rate limited by {url} ({reason}{wait}){suffix}",
            retry_after=retry_after,
            **details,
        )
    else:
        kind = ServerError if response.status >= 500 else StatusError
        error = kind(f"{url} answered {reason}{suffix}", **details)
    error.key_sent = keyed
    raise error


def status_text(status: int, body: str = "") -> str:
    """Return `status phrase` and the body's excerpt, unless it only repeats them.

    aiohttp's own error pages say `404: Not Found`; quoting that after the
    status would print it twice ("404 Not Found: 404: Not Found").
    """
    try:
        reason = f"{status} {http.HTTPStatus(status).phrase}"
    except ValueError:
        reason = str(status)
    return reason + _adding(reason, body)


def _adding(reason: str, excerpt: str) -> str:
    """Return `: excerpt`, or nothing when it only repeats `reason`."""
    said = _words(reason)
    words = _words(excerpt)
    if not words or words == said or words == said[1:]:
        return ""
    return f": {excerpt}"


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def reply_scrubber(response: ClientResponse) -> Scrubber:
    """Return the scrubber of the credentials the request of `response` sent.

    Everything the reply says (body, reason phrase, headers) is the
    upstream's text, and an upstream may echo the request's headers: each
    piece of it that goes into an error goes through this scrubber first.
    """
    request_info = getattr(response, "request_info", None)
    return Scrubber.for_headers(request_info.headers if request_info else None)


def _reason(response: ClientResponse, scrub: Scrubber) -> str:
    """Return `status reason`, the upstream's reason phrase scrubbed."""
    phrase = " ".join((response.reason or "").split())
    return f"{response.status} {scrub(phrase)}".strip()


def _request_id(response: ClientResponse, scrub: Scrubber) -> str | None:
    """Return the upstream's id of the request (`cf-ray`, `x-request-id`)."""
    value = response.headers.get("cf-ray") or response.headers.get("x-request-id")
    return scrub(value[:_EXCERPT_LENGTH]) if value else None


async def raise_for_redirect(response: ClientResponse) -> None:
    """Raise StatusError for a 3xx `response`, saying where it pointed.

    Redirects are not followed (`allow_redirects=False`): a 307 or 308 would
    send the conversation again, to another host perhaps, and a loop would end
    in a reply head nobody can explain. The target is shown without its
    password.

    Raises:
        StatusError: the status is 3xx.
    """
    if not 300 <= response.status < 400:
        return
    url = redact_url(response.url)
    scrub = reply_scrubber(response)
    location = response.headers.get("Location")
    target = f" to {scrub(redact_url(location))}" if location else ""
    reason = _reason(response, scrub)
    body = await read_excerpt(response, _EXCERPT_LENGTH * 4)
    error = StatusError(
        f"{url} answered {reason}, a redirect{target}; redirects are not "
        "followed: set the API endpoint to the URL that answers",
        status=response.status,
        url=url,
        body=text_excerpt(body, scrub=scrub),
        request_id=_request_id(response, scrub),
    )
    error.key_sent = bool(scrub)
    raise error


async def read_excerpt(response: ClientResponse, limit: int) -> str:
    """Read at most `limit` bytes of the body and return them as text."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await response.content.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    data = b"".join(chunks)
    try:
        return data.decode(response.charset or "utf-8", "replace")
    except LookupError:
        return data.decode("utf-8", "replace")


async def read_capped(response: ClientResponse, limit: int) -> bytes | None:
    """Return the whole body, or None as soon as it grows past `limit` bytes.

    At most `limit` + 1 bytes are read: a larger body is never held.
    """
    chunks: list[bytes] = []
    size = 0
    while chunk := await response.content.read(limit + 1 - size):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


_TAG = re.compile(r"<(script|style)\b.*?</\1\s*>|<[^>]*>", re.IGNORECASE | re.DOTALL)
_TITLE = re.compile(r"<title[^>]*>(.*?)</title\s*>", re.IGNORECASE | re.DOTALL)


def text_excerpt(
    body: str, length: int = _EXCERPT_LENGTH, *, scrub: Scrubber | None = None
) -> str:
    """Return a short one-line excerpt of an error body (an HTML page's title).

    With `scrub`, the body is scrubbed before its tags are taken out and its
    spaces folded (a secret holding `<...>` or a space would be split by them
    and escape), and the excerpt again before it is cut to `length`, so a
    secret is masked whole (a secret the cut would split is masked too).
    """
    if scrub is not None:
        body = scrub(body)
    title = _TITLE.search(body)
    text = title.group(1) if title else _TAG.sub(" ", body)
    text = " ".join(text.split())
    if scrub is not None:
        # Only what can be kept is scrubbed: scrubbing only shortens text.
        window = text[: length * 4]
        cut = len(window) < len(text)
        text = scrub(window + "…" if cut else window)
        if cut and len(text) <= length:
            return text
    return text if len(text) <= length else text[: length - 1] + "…"


_CHALLENGE_MARKERS: Final = (
    "<title>just a moment...</title>",
    "cf-chl-",
    "challenge-platform",
    "cf_chl_opt",
)


def is_cloudflare_challenge(headers: Mapping[str, str], body: str) -> bool:
    """Tell whether a reply is a Cloudflare challenge (docs/protocol.md, errors)."""
    if headers.get("cf-mitigated", "").lower() == "challenge":
        return True
    lowered = body.lower()
    return any(marker in lowered for marker in _CHALLENGE_MARKERS)


def parse_retry_after(value: str | None) -> float | None:
    """Return a `Retry-After` header (seconds or an HTTP date) as seconds from now.

    RFC 9110, section 10.2.3: the value is a whole number of seconds in ASCII
    digits ("²" or "٣" are digits to `str.isdigit` but not to HTTP) or an HTTP
    date. Anything else gives None; a wait is at most `MAX_RETRY_AFTER`.
    """
    if not value:
        return None
    value = value.strip(" \t")
    if _SECONDS.fullmatch(value):
        # Compared as text: a 400-digit number would not fit in a float.
        digits = value.lstrip("0") or "0"
        if len(digits) > len(str(MAX_RETRY_AFTER)):
            return float(MAX_RETRY_AFTER)
        return float(min(int(digits), MAX_RETRY_AFTER))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
    try:
        wait = when.timestamp() - time.time()
    except (ValueError, OverflowError, OSError):
        return None
    return min(max(0.0, wait), float(MAX_RETRY_AFTER))
