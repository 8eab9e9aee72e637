"""Middlewares: errors in each format's shape, the API key check, the body.

In order: `error_middleware` shapes every error, `crosssite_middleware` (in
`koala_chat.server.crosssite`) refuses web pages of other sites,
`auth_middleware` checks the key, `body_middleware` refuses a compressed body
or one not sent as JSON and reads the body under its time limit. So a client
without the key never gets a byte of its body read.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from ..errors import KoalaError
from .apis import format_for
from .failures import Failure, FailureError, failure_for
from .logtext import loggable, shortened

__all__ = [
    "GUARDED",
    "KEY_NAME",
    "auth_middleware",
    "body_middleware",
    "error_middleware",
    "guarded",
    "key_name",
    "presented_key",
    "unauthorized",
]

logger = logging.getLogger("koala_chat.server")

_TYPES = {401: "authentication_error", 429: "rate_limit_error"}
_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
}


@web.middleware
async def error_middleware(
    request: web.Request, handler: Handler
) -> web.StreamResponse:
    """Turn every error into the error shape of the path's wire format.

    Our errors map as `failure_for` says; aiohttp's own (no such route, method
    not allowed, body too large) keep their status; anything unexpected is
    logged with its traceback and answered 500 without details. The shape is
    the one of the format the path belongs to (`apis.format_for`).
    """
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        failure = Failure(
            exc.status,
            _TYPES.get(exc.status, "invalid_request_error"),
            _CODES.get(exc.status),
            exc.reason,
            {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else {},
        )
    except FailureError as exc:
        failure = exc.failure
    except KoalaError as exc:
        failure = failure_for(exc)
    except Exception as exc:
        logger.exception(
            "unexpected error in %s %s",
            loggable(request.method),
            loggable(request.path),
        )
        failure = failure_for(exc)
    return format_for(request.path).error(failure)


#: The path prefixes behind the server's key: the OpenAI and Anthropic routes
#: under `/v1`, the two also served without it (as several clients call them),
#: the Ollama routes under `/api`, the Prometheus scrape.
GUARDED: Final = ("/v1", "/chat/completions", "/models", "/api", "/metrics")


def guarded(path: str) -> bool:
    """Tell whether `path` is behind the server's key (see `GUARDED`)."""
    return any(path == prefix or path.startswith(prefix + "/") for prefix in GUARDED)


#: Where a request keeps the name of the key it presented, once that key has
#: been checked: the name, never the key, is what logs and metrics may show.
#: A `RequestKey`: aiohttp warns when a request is given a plain string key.
KEY_NAME: Final = web.RequestKey("koala_chat.key_name", str)


def key_name(request: web.Request) -> str:
    """Return the name of the key `request` presented; "-" when none is named."""
    name = request.get(KEY_NAME)
    return name if isinstance(name, str) else "-"


def presented_key(request: web.Request) -> bytes | None:
    """Return the key a request presents, as bytes; None for none.

    As `Authorization: Bearer <key>` (the OpenAI and Ollama clients, and
    Prometheus) or as `x-api-key: <key>` (the Anthropic clients). A header
    that is not UTF-8 (aiohttp keeps its bytes as surrogate escapes) is
    returned byte for byte.
    """
    headers = request.headers
    scheme, _, token = headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        value = token.strip()
    elif "x-api-key" in headers:
        value = headers["x-api-key"].strip()
    else:
        return None
    return value.encode("utf-8", "surrogateescape")


def auth_middleware(api_key: str) -> Middleware:
    """Return a middleware that requires the server's key on the API routes.

    The key is presented as `presented_key` reads it and compared in constant
    time (`hmac.compare_digest`); it is never logged and never forwarded
    upstream (the provider builds its own headers). A wrong key is a 401 in
    the shape of the path's format.
    """
    expected = api_key.encode()

    @web.middleware
    async def check_key(request: web.Request, handler: Handler) -> web.StreamResponse:
        if guarded(request.path):
            key = presented_key(request)
            if key is None or not hmac.compare_digest(key, expected):
                raise FailureError(
                    unauthorized(
                        "missing or wrong API key: send Authorization: Bearer <key>"
                        " (or x-api-key: <key>)"
                    )
                )
        return await handler(request)

    return check_key


def unauthorized(message: str) -> Failure:
    """Return the 401 of a missing or refused key, which says `message`."""
    return Failure(
        401,
        "authentication_error",
        "invalid_api_key",
        message,
        {"WWW-Authenticate": 'Bearer realm="koala serve"'},
    )


def body_middleware(max_body: int, timeout: float) -> Middleware:
    """Return a middleware that reads each request body before its handler runs.

    A body with a `Content-Encoding` other than identity is refused with 415
    unread (aiohttp's own decompression is off: inflating happened before any
    limit), and so is a POST whose one `Content-Type` is not
    `application/json`: a web page can send `text/plain` or a form to any
    server without asking first, never JSON (`koala_chat.server.crosssite`).
    The rest is read within `timeout` seconds (else 408 and the
    connection closes) and `max_body` bytes (else 413); the handler then gets
    it from `request.read()` at once.
    """

    @web.middleware
    async def read_body(request: web.Request, handler: Handler) -> web.StreamResponse:
        encoding = request.headers.get("Content-Encoding", "").strip().lower()
        if encoding not in ("", "identity"):
            raise FailureError(
                Failure(
                    415,
                    "invalid_request_error",
                    "unsupported_content_encoding",
                    "compressed request bodies are not accepted: send the body "
                    "without Content-Encoding",
                    {"Accept-Encoding": "identity"},
                )
            )
        # No route (404, 405): nothing will read the body, so neither do we.
        routed = request.match_info.http_exception is None
        if routed and request.method == "POST":
            values = request.headers.getall("Content-Type", [])
            if len(values) != 1 or not _is_json(values[0]):
                raise FailureError(_not_json(values))
        if request.body_exists and routed:
            if request.content_length is not None and request.content_length > max_body:
                raise FailureError(_too_large(max_body))
            try:
                async with asyncio.timeout(timeout):
                    await request.read()
            except TimeoutError:
                raise FailureError(
                    Failure(
                        408,
                        "invalid_request_error",
                        "request_timeout",
                        f"the request body did not arrive within {timeout:g} s",
                        close=True,
                    )
                ) from None
            except web.HTTPRequestEntityTooLarge:
                raise FailureError(_too_large(max_body)) from None
        return await handler(request)

    return read_body


def _is_json(content_type: str) -> bool:
    """Tell whether `content_type` is `application/json`, in UTF-8 if it says.

    RFC 8259, section 8.1: JSON is UTF-8, and the body is read as such.
    """
    media_type, *parameters = content_type.split(";")
    if media_type.strip().lower() != "application/json":
        return False
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset" and (
            value.strip().strip('"').lower() not in ("utf-8", "utf8")
        ):
            return False
    return True


def _not_json(content_types: list[str]) -> Failure:
    """Return the 415 for a POST without one JSON `Content-Type`."""
    sent = ", ".join(repr(shortened(value, 64)) for value in content_types[:2])
    return Failure(
        415,
        "invalid_request_error",
        "unsupported_media_type",
        "the request body must be JSON, sent with Content-Type: "
        f"application/json (this one: {sent or 'none'})",
        {"Accept-Post": "application/json"},
    )


def _too_large(limit: int) -> Failure:
    # The rest of the body is not worth reading: close instead.
    return Failure(
        413,
        "invalid_request_error",
        "request_too_large",
        f"the request body is larger than the limit of {limit} bytes",
        close=True,
    )
