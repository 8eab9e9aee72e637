"""Proxies: the schemes we support, and where each kind is applied.

A proxy is applied exactly once: a SOCKS proxy lives in the connector (aiohttp
cannot speak SOCKS per request), an HTTP or HTTPS proxy is passed with each
request (`proxy=`). Applying both ways at once was a bug of the provider's
history (docs/protocol.md, "History").
"""

from __future__ import annotations

from typing import Final
from urllib.parse import unquote, urlsplit

import aiohttp_socks
from aiohttp import BaseConnector

from .._urls import redact_url, url_problem
from ..errors import UsageError

__all__ = ["get_connector", "http_proxy", "proxy_scheme"]

_SOCKS_SCHEMES: Final = {
    # scheme: (proxy type, resolve the target host name on the proxy)
    "socks4": (aiohttp_socks.ProxyType.SOCKS4, False),
    "socks4a": (aiohttp_socks.ProxyType.SOCKS4, True),
    "socks5": (aiohttp_socks.ProxyType.SOCKS5, False),
    "socks5h": (aiohttp_socks.ProxyType.SOCKS5, True),
}
_HTTP_SCHEMES: Final = frozenset(("http", "https"))


def proxy_scheme(proxy: object) -> str:
    """Return the lower-case scheme of a proxy URL, checking that we support it.

    The URL is checked whole (`koala_chat._urls.url_problem`): aiohttp and
    aiohttp-socks would otherwise refuse it later with the password in their
    message.

    Raises:
        UsageError: the proxy is not a string, has an unsupported scheme, no
            host, a bad port or user information that does not parse.
    """
    if not isinstance(proxy, str):
        raise UsageError(f"proxy must be a URL string, not {type(proxy).__name__}")
    scheme = proxy.partition(":")[0].lower()
    if scheme not in _SOCKS_SCHEMES and scheme not in _HTTP_SCHEMES:
        raise UsageError(
            f"unsupported proxy scheme in {redact_url(proxy)}: use http, https, "
            "socks4, socks4a, socks5 or socks5h"
        )
    problem = url_problem(proxy)
    if problem:
        raise UsageError(f"invalid proxy URL {redact_url(proxy)}: {problem}")
    if scheme in _SOCKS_SCHEMES and urlsplit(proxy).port is None:
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


def http_proxy(proxy: str | None, connector: BaseConnector | None) -> str | None:
    """Return the proxy aiohttp applies per request (an HTTP proxy), if any.

    A SOCKS proxy gives None: it lives in the connector `get_connector` builds,
    so that each proxy is applied once.

    Raises:
        UsageError: the proxy URL is bad, or a SOCKS proxy comes with a borrowed
            connector (which cannot be made to go through it).
    """
    if not proxy:
        return None
    if proxy_scheme(proxy) in _SOCKS_SCHEMES:
        if connector is not None:
            raise UsageError(
                "a SOCKS proxy needs a connector of its own: pass either proxy= "
                "or a connector that goes through the proxy, not both"
            )
        return None
    return proxy


def _unquote(value: str | None) -> str | None:
    return unquote(value) if value is not None else None
