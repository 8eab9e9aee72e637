"""Who may call the server from a browser: Host, Origin, Sec-Fetch-Site, Content-Type.

A keyless server on loopback spends the Koala quota of whoever runs it, and a
browser is the one client on this machine that any web page can steer. Two
ways in, and what closes them:

- **A cross-site request.** A page on another site may POST to
  `http://127.0.0.1:1337` without a preflight, if the body is a "simple" one
  (`text/plain`, a form; Fetch standard, "CORS-safelisted request-header").
  The server answers only requests whose `Origin` is the server itself or a
  configured CORS origin, whose `Sec-Fetch-Site` (Fetch Metadata) is
  `same-origin` or `none` unless that origin is a configured one. And
  `koala_chat.server.middleware` takes only a POST body declared
  `application/json`, which no simple request can be: a browser that strips
  `Origin` still asks first (a preflight), which fails.
- **DNS rebinding.** A page on `attacker.example` makes its name resolve to
  127.0.0.1; the browser then thinks the server is that site, sends
  `Host: attacker.example` and lets the page read the replies. The server
  answers only a `Host` that is a loopback name or address or a name given
  with `--allowed-host` (RFC 9110, section 7.2: the Host names the origin
  server the client meant).

`GET /health` is exempt, so that load balancers and probes reach it by any
name. Refusals are in the OpenAI error shape, and say what to change.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from .failures import Failure, FailureError, bad_request
from .hosts import ANY_HOST, is_loopback, split_host
from .logtext import shortened

__all__ = ["crosssite_middleware"]

#: `Sec-Fetch-Site` values of requests a page of this server (or a person,
#: typing the URL) made; `same-site` is another origin on the same site, such
#: as another port of localhost.
_OWN_FETCHES: Final = frozenset({"same-origin", "none"})
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
#: How much of a client's Host or Origin a refusal repeats.
_SHOWN: Final = 64


@dataclass(frozen=True, slots=True)
class _Guard:
    hosts: frozenset[str]
    cors_origins: frozenset[str]

    def refusal(self, request: web.Request) -> Failure | None:
        """Return why `request` is refused, or None to let it through."""
        return self._host(request) or self._origin(request)

    def _host(self, request: web.Request) -> Failure | None:
        host = request.headers.get("Host")
        if host is None:
            # aiohttp's parser already refuses an HTTP/1.1 request without a
            # Host, or with two (RFC 9112, section 3.2); HTTP/1.0 has none,
            # and no browser speaks it.
            return None
        parsed = split_host(host)
        if parsed is None:
            return bad_request(f"the Host header {_shown(host)} is malformed")
        name = parsed[0]
        if ANY_HOST in self.hosts or name in self.hosts or is_loopback(name):
            return None
        return _forbidden(
            "host_not_allowed",
            f"this server does not answer for the host {_shown(name)}, which "
            "may be a web page's DNS rebinding; if that name is yours, start "
            "koala serve with --allowed-host NAME",
        )

    def _origin(self, request: web.Request) -> Failure | None:
        origin = request.headers.get("Origin")
        if origin is not None:
            if self._cors_allows(origin):
                return None
            if not _same_origin(origin, request.headers.get("Host", "")):
                return _forbidden(
                    "origin_not_allowed",
                    f"requests from web pages at {_shown(origin)} are refused; "
                    "to let pages from that origin call this server, start "
                    "koala serve with --cors-origin ORIGIN",
                )
        site = request.headers.get("Sec-Fetch-Site")
        if site is None or site.strip().lower() in _OWN_FETCHES:
            return None
        return _forbidden(
            "cross_site_request",
            f"a browser request from another origin (Sec-Fetch-Site: "
            f"{_shown(site)}) is refused; to let a web page call this server, "
            "start koala serve with --cors-origin ORIGIN",
        )

    def _cors_allows(self, origin: str) -> bool:
        return "*" in self.cors_origins or origin in self.cors_origins


def crosssite_middleware(
    allowed_hosts: Collection[str], cors_origins: Collection[str]
) -> Middleware:
    """Return a middleware that refuses cross-site and rebound requests.

    A Host that is not loopback nor in `allowed_hosts` (`*`: any) gets 403
    `host_not_allowed`; an `Origin` that is neither the server's own (its
    Host) nor in `cors_origins` gets 403 `origin_not_allowed`; a
    `Sec-Fetch-Site` other than `same-origin` or `none`, from no allowed
    origin, gets 403 `cross_site_request`. Nothing of a refused request is
    read or sent upstream. `GET /health` passes always.
    """
    guard = _Guard(
        frozenset(allowed_hosts),
        frozenset(origin.rstrip("/") for origin in cors_origins),
    )

    @web.middleware
    async def check_site(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == "/health" and request.method in ("GET", "HEAD"):
            return await handler(request)
        failure = guard.refusal(request)
        if failure is not None:
            raise FailureError(failure)
        return await handler(request)

    return check_site


def _same_origin(origin: str, host: str) -> bool:
    """Tell whether `origin` (`scheme://host[:port]`) is the server at `host`.

    A Host without a port means the default port of the origin's scheme: the
    server may sit behind a proxy that speaks HTTPS.
    """
    scheme, separator, authority = origin.partition("://")
    default = _DEFAULT_PORTS.get(scheme.lower())
    ours, theirs = split_host(host), split_host(authority)
    if not separator or default is None or ours is None or theirs is None:
        return False
    return ours[0] == theirs[0] and (ours[1] or default) == (theirs[1] or default)


def _shown(text: str) -> str:
    return repr(shortened(text, _SHOWN))


def _forbidden(code: str, message: str) -> Failure:
    return Failure(403, "permission_error", code, message)
