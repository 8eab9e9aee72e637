"""Middlewares: OpenAI-shaped errors for everything, and the API key check."""

from __future__ import annotations

import hmac
import logging

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from ..errors import KoalaError
from .failures import Failure, FailureError, failure_for

__all__ = ["auth_middleware", "error_middleware"]

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
    """Turn every error into the OpenAI error shape.

    Our errors map as `failure_for` says; aiohttp's own (no such route, method
    not allowed, body too large) keep their status; anything unexpected is
    logged with its traceback and answered 500 without details.
    """
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return Failure(
            exc.status,
            _TYPES.get(exc.status, "invalid_request_error"),
            _CODES.get(exc.status),
            exc.reason,
            {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else {},
        ).response()
    except FailureError as exc:
        return exc.failure.response()
    except KoalaError as exc:
        return failure_for(exc).response()
    except Exception as exc:
        logger.exception("unexpected error in %s %s", request.method, request.path)
        return failure_for(exc).response()


def auth_middleware(api_key: str) -> Middleware:
    """Return a middleware that requires `Authorization: Bearer <api_key>` on /v1.

    The key is compared in constant time (`hmac.compare_digest`); it is never
    logged and never forwarded upstream (the provider builds its own headers).
    """
    expected = api_key.encode()

    @web.middleware
    async def check_key(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == "/v1" or request.path.startswith("/v1/"):
            scheme, _, token = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                token.strip().encode(), expected
            ):
                return Failure(
                    401,
                    "authentication_error",
                    "invalid_api_key",
                    "missing or wrong API key: send Authorization: Bearer <key>",
                    {"WWW-Authenticate": 'Bearer realm="koala serve"'},
                ).response()
        return await handler(request)

    return check_key
