"""Errors in the OpenAI shape: `{"error": {"message", "type", "param", "code"}}`.

`STATUSES` is the one table that maps our errors to HTTP statuses, looked up
along the error class's MRO (`koala_chat._mro.lookup`) by `failure_for`:

    UsageError                  400 invalid_request_error
    ModelNotFoundError          404 invalid_request_error / model_not_found
    RateLimitError (upstream)   429 rate_limit_error, with Retry-After
    CreditsExhaustedError       402 insufficient_quota / insufficient_quota
    AuthenticationError         502 upstream_error / upstream_auth
    CloudflareChallengeError    502 upstream_error / upstream_challenge
    ConnectError, ProxyError    502 upstream_error / upstream_unreachable
    KoalaTimeoutError           504 upstream_error / upstream_timeout
    any other KoalaError        502 upstream_error (the upstream misbehaved)
    anything else               500 server_error (details only in the log)

The OpenAI SDKs pick their exception class from the status (400
BadRequestError, 401 AuthenticationError, 404 NotFoundError, 429
RateLimitError, ...), and read a mid-stream error from an event whose data has an
`error` member.

The upstream's refusal of the server's own Koala key is the server's problem,
not the client's: a 401 would tell the client its own key is wrong, so it is a
502 (`upstream_auth`). An upstream account out of credits is a 402 with
OpenAI's `insufficient_quota`: the SDKs do not retry a 402 (they retry 408,
409, 429 and 5xx), and retrying cannot help before the plan renews, whereas a
429 would make every client retry in vain.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

import msgspec
from aiohttp import web

from .. import defaults
from .._mro import lookup
from ..errors import (
    AuthenticationError,
    CloudflareChallengeError,
    ConnectError,
    CreditsExhaustedError,
    KoalaError,
    KoalaTimeoutError,
    ModelNotFoundError,
    ProtocolError,
    RateLimitError,
    UsageError,
)

__all__ = [
    "DONE_EVENT",
    "STATUSES",
    "Failure",
    "FailureError",
    "bad_request",
    "failure_for",
]

DONE_EVENT: Final = b"data: [DONE]\n\n"

#: The HTTP status, OpenAI error type and code of each error class; a subclass
#: without an entry of its own takes its nearest ancestor's. An exception that
#: is not ours is a bug of the server: 500, with details only in the log.
STATUSES: Mapping[type[BaseException], tuple[int, str, str]] = {
    ModelNotFoundError: (404, "invalid_request_error", "model_not_found"),
    UsageError: (400, "invalid_request_error", "invalid_request"),
    RateLimitError: (429, "rate_limit_error", "rate_limit_exceeded"),
    CreditsExhaustedError: (402, "insufficient_quota", "insufficient_quota"),
    AuthenticationError: (502, "upstream_error", "upstream_auth"),
    KoalaTimeoutError: (504, "upstream_error", "upstream_timeout"),
    CloudflareChallengeError: (502, "upstream_error", "upstream_challenge"),
    ConnectError: (502, "upstream_error", "upstream_unreachable"),
    ProtocolError: (502, "upstream_error", "upstream_protocol_error"),
    # Any other error of ours: the upstream misbehaved.
    KoalaError: (502, "upstream_error", "upstream_error"),
}


@dataclass(frozen=True, slots=True)
class Failure:
    """An error reply: status, OpenAI error type and code, message, headers."""

    status: int
    type: str
    code: str | None
    message: str
    headers: Mapping[str, str] = field(default_factory=dict)

    def body(self) -> bytes:
        """Return the JSON body `{"error": {...}}`."""
        return msgspec.json.encode(
            {
                "error": {
                    "message": self.message,
                    "type": self.type,
                    "param": None,
                    "code": self.code,
                }
            }
        )

    def response(self) -> web.Response:
        """Return the error as a JSON response."""
        return web.Response(
            status=self.status,
            body=self.body(),
            content_type="application/json",
            headers=self.headers,
        )

    def event(self) -> bytes:
        """Return the error as an event for a stream already under way."""
        return b"data: " + self.body() + b"\n\n"


class FailureError(Exception):
    """Raised by a handler to answer with `failure` (error_middleware sends it)."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


def bad_request(message: str, code: str = "invalid_request") -> Failure:
    """Return a 400 failure."""
    return Failure(400, "invalid_request_error", code, message)


def failure_for(exc: BaseException) -> Failure:
    """Return the error reply for `exc` (see `STATUSES`)."""
    entry = lookup(STATUSES, exc, None)
    if entry is None:
        return Failure(
            500, "server_error", "internal_error", "internal server error (see its log)"
        )
    status, kind, code = entry
    if isinstance(exc, RateLimitError):
        # Pass the upstream's wait on, so that the client's backoff honours it.
        wait = exc.retry_after
        seconds = (
            defaults.SERVER_RETRY_AFTER if wait is None else max(1, math.ceil(wait))
        )
        return Failure(
            status,
            kind,
            code,
            f"the Koala API is rate limiting us: {exc}",
            {"Retry-After": str(seconds)},
        )
    return Failure(status, kind, code, str(exc))
