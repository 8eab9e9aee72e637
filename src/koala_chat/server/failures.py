"""Errors in the OpenAI shape: `{"error": {"message", "type", "param", "code"}}`.

`STATUSES` is the one table that maps our errors to HTTP statuses, looked up
along the error class's MRO (`koala_chat._mro.lookup`) by `failure_for`:

    UsageError                  400 invalid_request_error
    ModelNotFoundError          404 invalid_request_error / model_not_found
    RateLimitError (upstream)   429 rate_limit_error, with Retry-After
    CreditsExhaustedError       402 insufficient_quota / insufficient_quota
    AuthenticationError         502 upstream_error / upstream_auth
    PlanError                   403 permission_error / model_not_in_plan
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

The message a client reads about an upstream failure says what went wrong but
not where: the upstream's URL and aiohttp's details (host, port, address) go
to the server's log only (`public_message`). When the request upstream
carried the server's API key (`KoalaError.key_sent`), the client reads nothing
the upstream wrote, not even a scrubbed excerpt: an upstream that echoes the
request's headers could quote the key in a spelling no scrubber knows. It
reads the status and what it means, in our words; the excerpt, scrubbed of
the key, goes to the log only.
"""

from __future__ import annotations

import http
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

import msgspec
from aiohttp import web

from .. import defaults
from .._http.status import MAX_RETRY_AFTER
from .._mro import lookup
from ..errors import (
    AuthenticationError,
    CloudflareChallengeError,
    ConnectError,
    CreditsExhaustedError,
    EmulationError,
    EventTooLargeError,
    IncompleteEventError,
    InvalidJSONError,
    KoalaError,
    KoalaTimeoutError,
    ModelNotFoundError,
    NotEventStreamError,
    PlanError,
    ProtocolError,
    ProxyError,
    RateLimitError,
    StatusError,
    TransportError,
    UnexpectedReplyError,
    UsageError,
)

__all__ = [
    "DONE_EVENT",
    "STATUSES",
    "ErrorDetail",
    "ErrorResponse",
    "Failure",
    "FailureError",
    "bad_request",
    "failure_for",
    "public_message",
    "unavailable_choice",
]

logger = logging.getLogger("koala_chat.server")

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
    # The upstream plan lacks a model the client chose: another model works.
    PlanError: (403, "permission_error", "model_not_in_plan"),
    KoalaTimeoutError: (504, "upstream_error", "upstream_timeout"),
    CloudflareChallengeError: (502, "upstream_error", "upstream_challenge"),
    ConnectError: (502, "upstream_error", "upstream_unreachable"),
    ProtocolError: (502, "upstream_error", "upstream_protocol_error"),
    # Any other error of ours: the upstream misbehaved.
    KoalaError: (502, "upstream_error", "upstream_error"),
}


class ErrorDetail(msgspec.Struct):
    """What went wrong: a message to show, OpenAI's error type, and a code."""

    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(msgspec.Struct):
    """An error reply, whole or as the event that ends a broken stream."""

    error: ErrorDetail


@dataclass(frozen=True, slots=True)
class Failure:
    """An error reply: status, OpenAI error type and code, message, headers."""

    status: int
    type: str
    code: str | None
    message: str
    headers: Mapping[str, str] = field(default_factory=dict)
    #: Close the connection after the response: the rest of the request's
    #: body is not worth reading.
    close: bool = False
    #: What the metrics and the trace call the failure when its code alone
    #: would not tell it apart (a key's own limit, beside the upstream's 429).
    cause: str | None = None

    def body(self) -> bytes:
        """Return the JSON body `{"error": {...}}`."""
        detail = ErrorDetail(self.message, self.type, None, self.code)
        return msgspec.json.encode(ErrorResponse(detail))

    def response(self) -> web.Response:
        """Return the error as a JSON response."""
        response = web.Response(
            status=self.status,
            body=self.body(),
            content_type="application/json",
            headers=self.headers,
        )
        if self.close:
            response.force_close()
        return response

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
    """Return the error reply for `exc` (see `STATUSES`).

    An upstream failure is logged here, with its full (redacted) message.
    """
    entry = lookup(STATUSES, exc, None)
    if entry is None:
        return Failure(
            500, "server_error", "internal_error", "internal server error (see its log)"
        )
    status, kind, code = entry
    if not isinstance(exc, UsageError):
        logger.warning("upstream failed: %s", exc)
    message = public_message(exc)
    if isinstance(exc, RateLimitError):
        # Pass the upstream's wait on, so that the client's backoff honours it.
        seconds = retry_after_seconds(exc.retry_after)
        return Failure(status, kind, code, message, {"Retry-After": str(seconds)})
    if isinstance(exc, EmulationError):
        # The reply was asked for twice already: the openai SDK honours this
        # and does not multiply the cost with retries of its own.
        return Failure(status, kind, code, message, {"x-should-retry": "false"})
    return Failure(status, kind, code, message)


def unavailable_choice(exc: UsageError, chosen: Mapping[str, object]) -> Failure:
    """Return the 403 for a dialect a client chose that this server cannot serve.

    The provider's message speaks to a Python caller ("pass api_key"); an
    HTTP client can only choose another dialect, and the operator can give
    the server a key.
    """
    protocol = chosen.get("protocol")
    if protocol == "api":
        message = (
            "this server has no key of Koala's official API, so it cannot use "
            "the api dialect: send another protocol, or none for the server's "
            f"own (its operator can set {defaults.API_KEY_VARIABLE})"
        )
    else:
        message = str(exc)
    return Failure(403, "permission_error", "protocol_unavailable", message)


def retry_after_seconds(wait: float | None) -> int:
    """Return the whole seconds of a `Retry-After` header for an upstream's wait.

    At least 1 and at most `MAX_RETRY_AFTER`; a missing or nonsensical wait
    (NaN, negative) gives the server's default.
    """
    if wait is None or not wait >= 0:
        return defaults.SERVER_RETRY_AFTER
    return max(1, math.ceil(min(wait, MAX_RETRY_AFTER)))


def public_message(exc: BaseException) -> str:
    """Return what a client may read about `exc`: no URL, no host, no address.

    Nothing the upstream wrote either, when the request carried a key.
    """
    if isinstance(exc, UsageError):
        return str(exc)
    if isinstance(exc, KoalaError) and exc.key_sent:
        return lookup(_KEYED_MESSAGES, exc, _internal)(exc)
    return lookup(_PUBLIC_MESSAGES, exc, _internal)(exc)


_LOGGED: Final = " (details in the server's log)"
_UNREADABLE: Final = "the Koala API sent a reply that cannot be read" + _LOGGED

_Message = Callable[[BaseException], str]


def _internal(exc: BaseException) -> str:
    return "internal server error (see its log)"


def _status(exc: BaseException) -> str:
    assert isinstance(exc, StatusError)
    body = f": {exc.body}" if exc.body else ""
    return f"the Koala API answered {exc.status}{body}"


def _rate_limited(exc: BaseException) -> str:
    assert isinstance(exc, RateLimitError)
    wait = exc.retry_after
    after = f", retry after {retry_after_seconds(wait)} s" if wait is not None else ""
    body = f": {exc.body}" if exc.body else ""
    return f"the Koala API is rate limiting us ({exc.status}{after}){body}"


def _challenged(exc: BaseException) -> str:
    assert isinstance(exc, StatusError)
    return (
        f"Cloudflare blocked the request to the Koala API with a challenge "
        f"({exc.status}); the Koala API cannot be used from here right now"
    )


def _timed_out(exc: BaseException) -> str:
    assert isinstance(exc, KoalaTimeoutError)
    seconds = f" of {exc.seconds:g} s" if exc.seconds is not None else ""
    return f"the Koala API did not answer in time (the {exc.limit} limit{seconds})"


def _not_event_stream(exc: BaseException) -> str:
    assert isinstance(exc, NotEventStreamError)
    kind = exc.content_type or "no content type"
    body = f": {exc.body}" if exc.body else ""
    return f"the Koala API answered with {kind} instead of an event stream{body}"


def _fixed(text: str) -> _Message:
    return lambda exc: text


def _own_words(exc: BaseException) -> str:
    # These messages are built from the reply's data alone, never a URL.
    return f"the Koala API sent a reply that cannot be read: {exc}"


def _status_words(exc: BaseException) -> str:
    """The status, its standard phrase (never the upstream's) and its meaning."""
    assert isinstance(exc, StatusError)
    try:
        phrase = f" {http.HTTPStatus(exc.status).phrase}"
    except ValueError:
        phrase = ""
    meaning = lookup(_MEANINGS, exc, "")
    if not meaning:
        if 300 <= exc.status < 400:
            meaning = "a redirect, which is not followed"
        elif exc.status >= 500:
            meaning = "an error on its side"
        else:
            meaning = "it refused the request"
    return f"the Koala API answered {exc.status}{phrase}: {meaning}{_LOGGED}"


def _keyed_rate_limit(exc: BaseException) -> str:
    assert isinstance(exc, RateLimitError)
    wait = exc.retry_after
    after = f", retry after {retry_after_seconds(wait)} s" if wait is not None else ""
    return f"the Koala API is rate limiting us ({exc.status}{after}){_LOGGED}"


#: The content types a keyed message names; any other is not quoted.
_PLAIN_TYPES: Final = frozenset(
    {"text/html", "text/plain", "text/xml", "application/json", "application/xml"}
)


def _keyed_not_event_stream(exc: BaseException) -> str:
    assert isinstance(exc, NotEventStreamError)
    if isinstance(exc, UnexpectedReplyError):
        return (
            f'the Koala API answered with JSON that is not {{"output": ...}}{_LOGGED}'
        )
    kind = exc.content_type if exc.content_type in _PLAIN_TYPES else "another type"
    return f"the Koala API answered with {kind} instead of an event stream{_LOGGED}"


_MEANINGS: Final[Mapping[type[BaseException], str]] = {
    AuthenticationError: "it refused the server's API key",
    CreditsExhaustedError: "the account behind the server's API key is out of credits",
    PlanError: "the plan of the account behind the server's API key lacks this "
    "model or quality; choose another",
}

#: The client's message for each error class, looked up along the MRO.
_PUBLIC_MESSAGES: Final[Mapping[type[BaseException], _Message]] = {
    StatusError: _status,
    RateLimitError: _rate_limited,
    CloudflareChallengeError: _challenged,
    ConnectError: _fixed("could not connect to the Koala API" + _LOGGED),
    ProxyError: _fixed("the proxy to the Koala API failed" + _LOGGED),
    KoalaTimeoutError: _timed_out,
    TransportError: _fixed("the connection to the Koala API failed" + _LOGGED),
    NotEventStreamError: _not_event_stream,
    InvalidJSONError: _own_words,
    IncompleteEventError: _own_words,
    EventTooLargeError: _own_words,
    # About the model's reply, not the upstream: nothing to hide.
    EmulationError: lambda exc: str(exc),
    ProtocolError: _fixed(_UNREADABLE),
    KoalaError: _fixed("the Koala API failed" + _LOGGED),
}

#: The client's message for a failure of a request that carried a key: as
#: above, but the upstream's own words (bodies, content types, the data of an
#: event) stay in the log.
_KEYED_MESSAGES: Final[Mapping[type[BaseException], _Message]] = {
    **_PUBLIC_MESSAGES,
    StatusError: _status_words,
    RateLimitError: _keyed_rate_limit,
    NotEventStreamError: _keyed_not_event_stream,
    InvalidJSONError: _fixed(_UNREADABLE),
    IncompleteEventError: _fixed(_UNREADABLE),
    EventTooLargeError: _fixed(_UNREADABLE),
}
