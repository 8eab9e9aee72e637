"""CORS, for chat front ends that run in a browser (off unless origins are given).

    add_cors(app, ("https://chat.example", "*"))

A preflight (`OPTIONS` with `Access-Control-Request-Method`, Fetch standard,
"CORS-preflight fetch") is answered at once with 204, before the API key check:
a browser never sends credentials on a preflight. Every other response gets the
CORS headers as it is prepared (`on_response_prepare`), so errors and streams
carry them too; every response, to an origin refused or to none, says
`Vary: Origin`. Requests from other origins are refused before any of this by
`koala_chat.server.crosssite`.
"""

from __future__ import annotations

from collections.abc import Collection

from aiohttp import web
from aiohttp.typedefs import Handler

__all__ = ["add_cors"]

_METHODS = "GET, POST, OPTIONS"
_ALLOWED_HEADERS = "Authorization, Content-Type"
#: The headers a page may read from a response (beyond the safe-listed ones).
_EXPOSED = "X-Koala-Ignored-Params, Retry-After, WWW-Authenticate"
#: How long a browser may cache a preflight's answer, in seconds.
_MAX_AGE = "600"


def add_cors(app: web.Application, origins: Collection[str]) -> None:
    """Answer preflights from `origins` and add CORS headers to every response.

    `*` allows any origin; no origins leave the app as it is. Call before
    the app starts.
    """
    if not origins:
        return
    allowed = frozenset(origin.rstrip("/") for origin in origins)

    def allow(request: web.Request) -> str | None:
        origin = request.headers.get("Origin")
        if origin is None:
            return None
        if "*" in allowed:
            return "*"
        return origin if origin in allowed else None

    @web.middleware
    async def preflight(request: web.Request, handler: Handler) -> web.StreamResponse:
        if (
            request.method == "OPTIONS"
            and "Access-Control-Request-Method" in request.headers
        ):
            origin = allow(request)
            response = web.Response(status=204)
            if origin is not None:
                response.headers.update(
                    {
                        "Access-Control-Allow-Methods": _METHODS,
                        "Access-Control-Allow-Headers": request.headers.get(
                            "Access-Control-Request-Headers", _ALLOWED_HEADERS
                        ),
                        "Access-Control-Max-Age": _MAX_AGE,
                    }
                )
            return response
        return await handler(request)

    async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
        # Whether the CORS headers come, and which, depends on the request's
        # origin, for a refused or absent one too: caches must know.
        _vary_on_origin(response)
        origin = allow(request)
        if origin is None:
            return
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = _EXPOSED

    app.middlewares.insert(0, preflight)
    app.on_response_prepare.append(add_headers)


def _vary_on_origin(response: web.StreamResponse) -> None:
    """Add `Origin` to the response's `Vary`, unless it is already there."""
    named = {
        name.strip().lower()
        for value in response.headers.getall("Vary", ())
        for name in value.split(",")
    }
    if "origin" not in named and "*" not in named:
        response.headers.add("Vary", "Origin")
