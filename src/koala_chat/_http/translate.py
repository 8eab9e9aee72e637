"""Where aiohttp's and aiohttp-socks' exceptions enter our code and become ours.

One table keyed by exception class, looked up along the class's method
resolution order (`koala_chat._mro.lookup`): a subclass without an entry of its
own is translated as its nearest ancestor is.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote, unquote

import aiohttp
import aiohttp_socks
from multidict import CIMultiDict, CIMultiDictProxy

from .._mro import lookup
from .._secrets import Scrubber, scrub_error, sent_credentials
from .._urls import redact_url
from ..errors import (
    ConnectError,
    KoalaError,
    KoalaTimeoutError,
    ProxyError,
    TransportError,
)
from .timeouts import Timeouts

__all__ = ["FOREIGN_ERRORS", "safe_cause", "translate_error", "translate_errors"]

#: What `translate_errors` catches: everything aiohttp and aiohttp-socks raise.
FOREIGN_ERRORS: Final = (
    aiohttp.ClientError,
    aiohttp_socks.ProxyError,
    aiohttp_socks.ProxyConnectionError,
    aiohttp_socks.ProxyTimeoutError,
    asyncio.IncompleteReadError,
    TimeoutError,
)


@asynccontextmanager
async def translate_errors(
    url: str,
    timeouts: Timeouts,
    proxy: str | None = None,
    *,
    headers: Mapping[str, str] | None = None,
) -> AsyncIterator[None]:
    """Turn aiohttp and aiohttp-socks exceptions raised inside into our errors.

    Raises:
        ProxyError, ConnectError, TransportError, KoalaTimeoutError.
    """
    try:
        yield
    except KoalaError:
        # Already ours: our KoalaTimeoutError is also a builtin TimeoutError.
        raise
    except FOREIGN_ERRORS as exc:
        raise translate_error(exc, url, timeouts, proxy, headers=headers) from (
            safe_cause(exc, url, proxy, headers=headers)
        )


def safe_cause(
    exc: BaseException,
    url: str,
    proxy: str | None = None,
    *,
    headers: Mapping[str, str] | None = None,
) -> BaseException | None:
    """Return `exc` to chain as the cause of our error, or None if it would leak.

    A traceback prints the cause's message and aiohttp puts URLs there (yarl
    shows passwords), the bytes its parser refused (which may echo the
    request's key) and, in a `ClientResponseError`'s repr, the request's
    headers: such a cause is left out, our message says what it said. `exc`
    is scrubbed in place all the same (see `disarm`), as it stays reachable as
    our error's `__context__`.
    """
    scrub = _scrubber(exc, url, proxy, headers)
    text = f"{exc} {exc!r}"
    leaks = scrub.found(text) or any(
        redact_url(token) != token for token in text.split() if "@" in token
    )
    disarm(exc, scrub)
    return None if leaks else exc


def translate_error(
    exc: BaseException,
    url: str,
    timeouts: Timeouts,
    proxy: str | None = None,
    *,
    headers: Mapping[str, str] | None = None,
) -> KoalaError:
    """Return our error for an exception of aiohttp or aiohttp-socks.

    The URLs in the message are redacted, and the passwords of `url` and
    `proxy` and the credentials of the request's `headers` (an API key) are
    masked in every spelling (`koala_chat._secrets`). `safe_cause` scrubs
    `exc` itself. The work is done only on failure.
    """
    scrub = _scrubber(exc, url, proxy, headers)
    failure = _Failure(exc, redact_url(url), url, timeouts, proxy, scrub)
    error = lookup(_TRANSLATIONS, exc, _total_timeout)(failure)
    error.key_sent = bool(_credentials(exc, headers))
    return error


def disarm(exc: BaseException, scrub: Scrubber) -> None:
    """Scrub a foreign exception and the exceptions it chains, in place.

    Its `args` and text attributes, and for aiohttp's `ClientResponseError`
    the request headers and reply headers its repr shows. Does nothing when
    there is nothing to mask.
    """
    if not scrub:
        return
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        if isinstance(link, aiohttp.ClientResponseError):
            info = link.request_info
            link.request_info = aiohttp.RequestInfo(
                info.url, info.method, _scrubbed(info.headers, scrub), info.real_url
            )
            if link.headers is not None:
                link.headers = _scrubbed(link.headers, scrub)
            link.args = (link.request_info, link.history)
        scrub_error(link, scrub)
        link = link.__cause__ or link.__context__


def _scrubbed(headers: Mapping[str, str], scrub: Scrubber) -> CIMultiDictProxy[str]:
    """Return a read-only copy of `headers`, each value scrubbed."""
    return CIMultiDictProxy(
        CIMultiDict((name, scrub(value)) for name, value in headers.items())
    )


def _sent(exc: BaseException) -> Mapping[str, str] | None:
    """Return the request headers an aiohttp exception carries, if any."""
    info = getattr(exc, "request_info", None)
    return info.headers if isinstance(info, aiohttp.RequestInfo) else None


def _credentials(exc: BaseException, headers: Mapping[str, str] | None) -> set[str]:
    """Return the credentials of `headers` and of the request an aiohttp
    `ClientResponseError` describes."""
    return sent_credentials(headers) | sent_credentials(_sent(exc))


def _scrubber(
    exc: BaseException,
    url: str,
    proxy: str | None,
    headers: Mapping[str, str] | None,
) -> Scrubber:
    """Return the scrubber of the passwords and of the request's credentials."""
    sent = _credentials(exc, headers)
    passwords = _passwords(url) | _passwords(proxy)
    return Scrubber(sent | passwords, credentials=bool(sent))


@dataclass(frozen=True, slots=True)
class _Failure:
    """An exception and what its message needs: the target, limits, proxy.

    `target` is the URL redacted, `url` as given (for its password only),
    `scrub` the scrubber of every secret the message must not show.
    """

    exc: BaseException
    target: str
    url: str
    timeouts: Timeouts
    proxy: str | None
    scrub: Scrubber

    @property
    def via(self) -> str:
        return f" via proxy {redact_url(self.proxy)}" if self.proxy else ""

    @property
    def reason(self) -> str:
        """A one-line description of the exception, without any password.

        aiohttp and aiohttp-socks put URLs in their messages, as given or as
        yarl rewrote them: every token that looks like a URL with user
        information is redacted, and the passwords of the target and the
        proxy and the request's key are masked wherever they appear, in each
        of their spellings.
        """
        text = self.scrub(str(self.exc))
        tokens = text.split()
        return (
            " ".join(redact_url(token) if "@" in token else token for token in tokens)
            or type(self.exc).__name__
        )


def _passwords(url: str | None) -> set[str]:
    """Return the spellings of the password in `url`, however it parses."""
    if not url:
        return set()
    at = url.rfind("@")
    start = url.find("//")
    start = start + 2 if 0 <= start < at else 0
    password = url[start:at].partition(":")[2] if at >= 0 else ""
    if not password:
        return set()
    spellings = {password, unquote(password), quote(unquote(password), safe="")}
    spellings.add(quote(unquote(password), safe="!$&'()*+,;=:"))
    return {spelling for spelling in spellings if spelling}


def _proxy_timeout(f: _Failure) -> KoalaError:
    return KoalaTimeoutError(
        f"the proxy {redact_url(f.proxy)} did not answer within {f.timeouts.connect} s",
        limit="connect",
        seconds=f.timeouts.connect,
    )


def _proxy_failed(f: _Failure) -> KoalaError:
    return ProxyError(f"proxy {redact_url(f.proxy)} failed for {f.target}: {_why(f)}")


def _handshake_cut(f: _Failure) -> KoalaError:
    # python-socks lets this through when a SOCKS proxy hangs up in the middle
    # of its handshake (pproxy does on wrong credentials); aiohttp itself
    # never raises it.
    who = f"proxy {redact_url(f.proxy)}" if f.proxy else "the SOCKS proxy"
    return ProxyError(
        f"{who} closed the connection during its handshake for {f.target}"
    )


def _connect_timeout(f: _Failure) -> KoalaError:
    return KoalaTimeoutError(
        f"could not connect to {f.target}{f.via} within {f.timeouts.connect} s",
        limit="connect",
        seconds=f.timeouts.connect,
    )


def _idle_timeout(f: _Failure) -> KoalaError:
    # SocketTimeoutError, or an older aiohttp's plain read time-out.
    return KoalaTimeoutError(
        f"{f.target} sent nothing for {f.timeouts.idle} s",
        limit="idle",
        seconds=f.timeouts.idle,
    )


def _connect_failed(f: _Failure) -> KoalaError:
    return ConnectError(f"could not connect to {f.target}{f.via}: {_why(f)}")


def _why(f: _Failure) -> str:
    """Say why a connection could not be made, in the system's words.

    aiohttp's own message ("Cannot connect to host h:p ssl:default [...]")
    names a TLS setting even for an http:// URL; the operating system's
    reason (connection refused, no route to host, a failed look-up) is what
    a person needs. A TLS failure keeps aiohttp's message, which names it.
    """
    exc = f.exc
    cause = getattr(exc, "os_error", None)
    if isinstance(exc, aiohttp.ClientSSLError) or not isinstance(cause, OSError):
        return f.reason
    if isinstance(cause, socket.gaierror):
        return f"cannot resolve the host name ({cause.strerror or cause})"
    if cause.errno is not None and cause.errno > 0:
        return os.strerror(cause.errno).lower()
    return f.scrub(str(cause)) or f.reason


def _cut_off(f: _Failure) -> KoalaError:
    return TransportError(
        f"{f.target} closed the connection before the reply ended: {f.reason}"
    )


def _os_error(f: _Failure) -> KoalaError:
    if isinstance(f.exc.__cause__, socket.gaierror):
        # A connector that resolves names itself (aiohttp-socks for socks5, as
        # opposed to socks5h) reports a failed look-up as a bare OSError.
        return ConnectError(
            f"could not resolve the host of {f.target}{f.via}: {f.reason}"
        )
    return _client_error(f)


def _bad_head(f: _Failure) -> KoalaError:
    # aiohttp's parser refused the status line or the headers (a header over
    # 8190 bytes, too many headers); its "400" is its own verdict, not the
    # server's status, so the message leaves it out.
    assert isinstance(f.exc, aiohttp.ClientResponseError)
    detail = f.scrub(" ".join(str(f.exc.message).split()))
    return TransportError(
        f"{f.target} sent a reply head that cannot be parsed: {detail}"
    )


def _client_error(f: _Failure) -> KoalaError:
    return TransportError(f"request to {f.target} failed: {f.reason}")


def _total_timeout(f: _Failure) -> KoalaError:
    # aiohttp raises the builtin TimeoutError when ClientTimeout.total runs out.
    return KoalaTimeoutError(
        f"{f.target} did not finish the reply within the total time limit",
        limit="total",
        seconds=f.timeouts.total,
    )


_TRANSLATIONS: Final[Mapping[type[BaseException], Callable[[_Failure], KoalaError]]] = {
    aiohttp_socks.ProxyTimeoutError: _proxy_timeout,
    aiohttp_socks.ProxyError: _proxy_failed,
    aiohttp_socks.ProxyConnectionError: _proxy_failed,
    aiohttp.ClientProxyConnectionError: _proxy_failed,
    aiohttp.ClientHttpProxyError: _proxy_failed,
    asyncio.IncompleteReadError: _handshake_cut,
    aiohttp.ConnectionTimeoutError: _connect_timeout,
    aiohttp.ServerTimeoutError: _idle_timeout,
    aiohttp.ClientConnectorError: _connect_failed,
    aiohttp.ServerDisconnectedError: _cut_off,
    aiohttp.ClientPayloadError: _cut_off,
    aiohttp.ClientOSError: _os_error,
    aiohttp.ClientResponseError: _bad_head,
    aiohttp.ClientError: _client_error,
    TimeoutError: _total_timeout,
}
