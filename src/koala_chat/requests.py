"""HTTP helpers: status checks, proxies, time limits and error translation.

This is where aiohttp's and aiohttp-socks' exceptions enter our code and become
ours (`translate_errors`); nothing here parses the event stream.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import re
import socket
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final, TypedDict
from urllib.parse import unquote, urlsplit

import aiohttp
import aiohttp_socks
from aiohttp import BaseConnector, ClientResponse

from . import defaults
from .errors import (
    CloudflareChallengeError,
    ConnectError,
    KoalaError,
    KoalaTimeoutError,
    ProxyError,
    RateLimitError,
    ServerError,
    StatusError,
    TransportError,
    UsageError,
)
from .urls import redact_url

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_TOTAL_TIMEOUT",
    "Timeouts",
    "get_connector",
    "raise_for_status",
    "read_excerpt",
    "redact_url",
    "translate_error",
    "translate_errors",
]

DEFAULT_CONNECT_TIMEOUT: Final = defaults.CONNECT_TIMEOUT
DEFAULT_IDLE_TIMEOUT: Final = defaults.IDLE_TIMEOUT
DEFAULT_TOTAL_TIMEOUT: Final = defaults.TOTAL_TIMEOUT

#: How much of an error body is read to classify it, and how much is kept.
_ERROR_BODY_LIMIT: Final = 256 * 1024
_EXCERPT_LENGTH: Final = 200

_SOCKS_SCHEMES: Final = {
    # scheme: (proxy type, resolve the target host name on the proxy)
    "socks4": (aiohttp_socks.ProxyType.SOCKS4, False),
    "socks4a": (aiohttp_socks.ProxyType.SOCKS4, True),
    "socks5": (aiohttp_socks.ProxyType.SOCKS5, False),
    "socks5h": (aiohttp_socks.ProxyType.SOCKS5, True),
}
_HTTP_SCHEMES: Final = frozenset(("http", "https"))


def proxy_scheme(proxy: str) -> str:
    """Return the lower-case scheme of a proxy URL, checking that we support it.

    Raises:
        UsageError: the URL has no host or an unsupported scheme.
    """
    try:
        parts = urlsplit(proxy)
        port = parts.port
    except ValueError as exc:
        raise UsageError(f"invalid proxy URL {redact_url(proxy)}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in _SOCKS_SCHEMES and scheme not in _HTTP_SCHEMES:
        raise UsageError(
            f"unsupported proxy scheme in {redact_url(proxy)}: use http, https, "
            "socks4, socks4a, socks5 or socks5h"
        )
    if not parts.hostname or (scheme in _SOCKS_SCHEMES and port is None):
        raise UsageError(f"proxy URL {redact_url(proxy)} needs a host and a port")
    return scheme


def get_connector(
    connector: BaseConnector | None = None, proxy: str | None = None
) -> BaseConnector | None:
    """Return the connector a request should use.

    The caller's `connector` is returned untouched (it stays the caller's to
    close). Otherwise a SOCKS `proxy` gives a new aiohttp-socks connector, which
    the caller of this function owns. HTTP and HTTPS proxies need no connector:
    aiohttp applies them per request (`proxy=`), so this returns None for them,
    as it does without a proxy. `socks5h` and `socks4a` let the proxy resolve the
    target's host name; `socks5` and `socks4` resolve it locally.

    Raises:
        UsageError: the proxy URL is malformed or has an unsupported scheme.
    """
    if connector is not None:
        return connector
    if not proxy:
        return None
    scheme = proxy_scheme(proxy)
    if scheme not in _SOCKS_SCHEMES:
        return None
    proxy_type, remote_dns = _SOCKS_SCHEMES[scheme]
    parts = urlsplit(proxy)
    return aiohttp_socks.ProxyConnector(
        proxy_type=proxy_type,
        host=parts.hostname or "",
        port=parts.port or 1080,
        username=_unquote(parts.username),
        password=_unquote(parts.password),
        rdns=remote_dns,
    )


def _unquote(value: str | None) -> str | None:
    return unquote(value) if value is not None else None


@dataclass(frozen=True, slots=True)
class Timeouts:
    """The time limits of one request, in seconds (None: no limit)."""

    connect: float | None = DEFAULT_CONNECT_TIMEOUT
    idle: float | None = DEFAULT_IDLE_TIMEOUT
    total: float | None = DEFAULT_TOTAL_TIMEOUT

    def __post_init__(self) -> None:
        for name in ("connect", "idle", "total"):
            value = getattr(self, name)
            if value is not None and (
                not isinstance(value, int | float)
                or isinstance(value, bool)
                # aiohttp rounds limits up with math.ceil: infinity overflows.
                or not 0 < value < math.inf
            ):
                raise UsageError(
                    f"{name} timeout must be a positive number of seconds "
                    f"(None for no limit), not {value!r}"
                )

    def client_timeout(self, remaining: float | None) -> aiohttp.ClientTimeout:
        """Return the aiohttp limits for one attempt with `remaining` seconds left."""
        return aiohttp.ClientTimeout(
            total=remaining, sock_connect=self.connect, sock_read=self.idle
        )


@asynccontextmanager
async def translate_errors(
    url: str, timeouts: Timeouts, proxy: str | None = None
) -> AsyncIterator[None]:
    """Turn aiohttp and aiohttp-socks exceptions raised inside into our errors.

    Raises:
        ProxyError, ConnectError, TransportError, KoalaTimeoutError.
    """
    try:
        yield
    except (
        aiohttp.ClientError,
        aiohttp_socks.ProxyError,
        aiohttp_socks.ProxyConnectionError,
        aiohttp_socks.ProxyTimeoutError,
        asyncio.IncompleteReadError,
        TimeoutError,
    ) as exc:
        raise translate_error(exc, url, timeouts, proxy) from exc


def translate_error(
    exc: BaseException, url: str, timeouts: Timeouts, proxy: str | None = None
) -> KoalaError:
    """Return our error for an exception of aiohttp or aiohttp-socks.

    The URLs in the message are redacted; the work is done only on failure.
    """
    target = redact_url(url)
    via = f" via proxy {redact_url(proxy)}" if proxy else ""
    reason = _reason(exc, proxy)
    if isinstance(exc, aiohttp_socks.ProxyTimeoutError):
        return KoalaTimeoutError(
            f"the proxy {redact_url(proxy)} did not answer within {timeouts.connect} s",
            limit="connect",
            seconds=timeouts.connect,
        )
    if isinstance(
        exc,
        aiohttp_socks.ProxyError
        | aiohttp_socks.ProxyConnectionError
        | aiohttp.ClientProxyConnectionError
        | aiohttp.ClientHttpProxyError,
    ):
        return ProxyError(f"proxy {redact_url(proxy)} failed for {target}: {reason}")
    if isinstance(exc, asyncio.IncompleteReadError):
        # python-socks lets this through when a SOCKS proxy hangs up in the middle
        # of its handshake (pproxy does on wrong credentials); aiohttp itself
        # never raises it.
        who = f"proxy {redact_url(proxy)}" if proxy else "the SOCKS proxy"
        return ProxyError(
            f"{who} closed the connection during its handshake for {target}"
        )
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return KoalaTimeoutError(
            f"could not connect to {target}{via} within {timeouts.connect} s",
            limit="connect",
            seconds=timeouts.connect,
        )
    if isinstance(exc, aiohttp.ServerTimeoutError):
        # SocketTimeoutError, or an older aiohttp's plain read time-out.
        return KoalaTimeoutError(
            f"{target} sent nothing for {timeouts.idle} s",
            limit="idle",
            seconds=timeouts.idle,
        )
    if isinstance(exc, aiohttp.ClientConnectorError):
        return ConnectError(f"could not connect to {target}{via}: {reason}")
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return TransportError(
            f"{target} closed the connection before the reply ended: {reason}"
        )
    if isinstance(exc, aiohttp.ClientOSError) and isinstance(
        exc.__cause__, socket.gaierror
    ):
        # A connector that resolves names itself (aiohttp-socks for socks5, as
        # opposed to socks5h) reports a failed look-up as a bare OSError.
        return ConnectError(f"could not resolve the host of {target}{via}: {reason}")
    if isinstance(exc, aiohttp.ClientResponseError):
        # aiohttp's parser refused the status line or the headers (a header over
        # 8190 bytes, too many headers); its "400" is its own verdict, not the
        # server's status, so the message leaves it out.
        detail = " ".join(str(exc.message).split())
        return TransportError(
            f"{target} sent a reply head that cannot be parsed: {detail}"
        )
    if isinstance(exc, aiohttp.ClientError):
        return TransportError(f"request to {target} failed: {reason}")
    # aiohttp raises the builtin TimeoutError when ClientTimeout.total runs out.
    return KoalaTimeoutError(
        f"{target} did not finish the reply within the total time limit",
        limit="total",
        seconds=timeouts.total,
    )


def _reason(exc: BaseException, proxy: str | None) -> str:
    """Return a one-line description of `exc` with the proxy password removed."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if proxy:
        password = urlsplit(proxy).password
        if password:
            for secret in {password, unquote(password)}:
                text = text.replace(secret, "***")
    return text


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

    Raises:
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
    excerpt = text_excerpt(body)
    reason = f"{response.status} {response.reason or ''}".strip()
    details: _StatusDetails = {
        "status": response.status,
        "url": url,
        "body": excerpt,
        "request_id": (
            response.headers.get("cf-ray") or response.headers.get("x-request-id")
        ),
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
    suffix = f": {excerpt}" if excerpt else ""
    if response.status in (402, 429):
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        wait = f", retry after {retry_after:g} s" if retry_after is not None else ""
        raise RateLimitError(
            f"rate limited by {url} ({reason}{wait}){suffix}",
            retry_after=retry_after,
            **details,
        )
    error = ServerError if response.status >= 500 else StatusError
    raise error(
        f"{url} answered {reason}{suffix}",
        **details,
    )


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


_TAG = re.compile(r"<(script|style)\b.*?</\1\s*>|<[^>]*>", re.IGNORECASE | re.DOTALL)
_TITLE = re.compile(r"<title[^>]*>(.*?)</title\s*>", re.IGNORECASE | re.DOTALL)


def text_excerpt(body: str, length: int = _EXCERPT_LENGTH) -> str:
    """Return a short one-line excerpt of an error body (an HTML page's title)."""
    title = _TITLE.search(body)
    text = title.group(1) if title else _TAG.sub(" ", body)
    text = " ".join(text.split())
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
    """Return a `Retry-After` header (seconds or an HTTP date) as seconds from now."""
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


def remaining(deadline: float | None) -> float | None:
    """Return the seconds left before a loop-time `deadline` (None: no limit)."""
    if deadline is None:
        return None
    return deadline - asyncio.get_running_loop().time()
