"""The errors koala_chat raises: one tree under `KoalaError`.

    KoalaError
    ├── TransportError             the request did not get a reply
    │   ├── ConnectError           the server could not be reached
    │   │   └── ProxyError         the proxy failed (down, refused, bad credentials)
    │   └── KoalaTimeoutError      a time limit ran out (also the builtin TimeoutError)
    ├── StatusError                the server answered with a non-2xx status
    │   ├── RateLimitError         402 or 429: the free quota is used up (`retry_after`)
    │   ├── CloudflareChallengeError  403 with a Cloudflare challenge page
    │   ├── AuthenticationError    401, or 403 without Cloudflare's marks, to a key
    │   ├── CreditsExhaustedError  402 to a key: the account is out of credits
    │   ├── PlanError              403 to an image request: the plan lacks the model
    │   └── ServerError            5xx
    ├── ProtocolError              the reply is not the Koala event stream it should be
    │   ├── NotEventStreamError    a 2xx reply of another content type (an HTML page)
    │   │   └── UnexpectedReplyError  a 2xx JSON reply without a string `output`
    │   ├── InvalidJSONError       a complete event whose data is not JSON
    │   ├── IncompleteEventError   the stream ended inside an event
    │   ├── EventTooLargeError     one event exceeds the size limit
    │   └── EmulationError         no valid JSON or tool call in the reply, asked twice
    └── UsageError                 bad input from the caller (also ValueError)
        └── ModelNotFoundError     a model the provider does not know

Every error prints as one readable line and carries its facts in typed attributes.
Each takes its message as the only positional argument and everything else by
keyword with a default, so the default exception pickling (`cls(*args)` followed by
restoring `__dict__`) round-trips them. Messages never hold secrets: URLs are
redacted before they reach an error (see `koala_chat._urls.redact_url`), and
whatever an error quotes of a reply to a request that carried a key is
scrubbed of the key in every spelling (`koala_chat._secrets`).
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "CloudflareChallengeError",
    "ConnectError",
    "CreditsExhaustedError",
    "EmulationError",
    "EventTooLargeError",
    "IncompleteEventError",
    "InvalidJSONError",
    "KoalaError",
    "KoalaTimeoutError",
    "ModelNotFoundError",
    "NotEventStreamError",
    "PlanError",
    "ProtocolError",
    "ProxyError",
    "RateLimitError",
    "ServerError",
    "StatusError",
    "TransportError",
    "UnexpectedReplyError",
    "UsageError",
]


class KoalaError(Exception):
    """The root of every error koala_chat raises.

    `attempts` is how many times the request was sent before giving up: 1,
    plus the retries (a different request, such as `auto`'s second dialect,
    is not a retry; its error counts the attempts of either request, the most).
    `key_sent` is True when the request that failed carried an API key (an
    `Authorization` header): the key was then masked out of everything the
    error quotes of the reply, and `koala serve` quotes none of it to its
    clients.
    """

    #: Set where the error is made; a class default, so pickling keeps it.
    key_sent: bool = False

    def __init__(self, message: str = "", *, attempts: int = 1) -> None:
        super().__init__(message)
        self.attempts = attempts

    @property
    def message(self) -> str:
        """The message without the attempt count."""
        return str(self.args[0]) if self.args else ""

    def __str__(self) -> str:
        if self.attempts > 1:
            return f"{self.message} (after {self.attempts} attempts)"
        return self.message


class TransportError(KoalaError):
    """The request failed before a complete reply arrived."""


class ConnectError(TransportError):
    """The server could not be reached (refused, reset, DNS, TLS)."""


class ProxyError(ConnectError):
    """The proxy failed: it is down, refused the target or the credentials."""


class KoalaTimeoutError(TransportError, TimeoutError):
    """A time limit ran out: connecting, a silence between chunks, or the total.

    `limit` names which one (`"connect"`, `"idle"`, `"total"`) and `seconds` its value.
    """

    def __init__(
        self,
        message: str = "",
        *,
        limit: str = "total",
        seconds: float | None = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(message, attempts=attempts)
        self.limit = limit
        self.seconds = seconds


class StatusError(KoalaError):
    """The server answered with an error status.

    `status` is the HTTP status, `url` the request URL without credentials, `body`
    a short text excerpt of the reply and `request_id` the server's id for the
    request (Cloudflare's `cf-ray`) when it sent one.
    """

    def __init__(
        self,
        message: str = "",
        *,
        status: int = 0,
        url: str = "",
        body: str = "",
        request_id: str | None = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(message, attempts=attempts)
        self.status = status
        self.url = url
        self.body = body
        self.request_id = request_id


class RateLimitError(StatusError):
    """402 or 429: the free quota is used up.

    docs/protocol.md, "Errors seen in the wild".

    `retry_after` is the server's `Retry-After` in seconds, or None.
    """

    def __init__(
        self,
        message: str = "",
        *,
        status: int = 429,
        url: str = "",
        body: str = "",
        request_id: str | None = None,
        retry_after: float | None = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(
            message,
            status=status,
            url=url,
            body=body,
            request_id=request_id,
            attempts=attempts,
        )
        self.retry_after = retry_after


class CloudflareChallengeError(StatusError):
    """Cloudflare answered with a bot challenge instead of the API."""


class AuthenticationError(StatusError):
    """The API refused the key: 401, or 403 without Cloudflare's marks.

    Raised only for a request that carried a key (docs/protocol.md, "The
    official API"); the message says to check `KOALA_API_KEY` and never holds
    the key itself.
    """


class CreditsExhaustedError(StatusError):
    """402 to a request with a key: the account has no credits left.

    Not a rate limit: waiting does not help before the plan renews, so it is
    never retried (docs/protocol.md, "The official API").
    """


class PlanError(StatusError):
    """403 to a KoalaImages request: the account's plan lacks what was asked.

    A model (or gpt-image-2's medium and high quality) that needs a higher
    plan (docs/images.md, "Errors"). The message quotes the service's own,
    scrubbed of the key; `body` holds it. Never retried.
    """


class ServerError(StatusError):
    """A 5xx status."""


class ProtocolError(KoalaError):
    """The reply broke the Koala event-stream protocol."""


class NotEventStreamError(ProtocolError):
    """A 2xx reply that is not `text/event-stream` (an HTML page, JSON).

    `content_type` is what the server sent and `body` a short excerpt.
    """

    def __init__(
        self,
        message: str = "",
        *,
        content_type: str = "",
        body: str = "",
        attempts: int = 1,
    ) -> None:
        super().__init__(message, attempts=attempts)
        self.content_type = content_type
        self.body = body


class UnexpectedReplyError(NotEventStreamError):
    """A 2xx JSON reply that is neither an event stream nor `{"output": "..."}`.

    Usually an error object sent with a success status; `body` is an excerpt.
    """


class InvalidJSONError(ProtocolError):
    """A complete event whose data is not JSON; `data` is a short excerpt."""

    def __init__(self, message: str = "", *, data: str = "", attempts: int = 1) -> None:
        super().__init__(message, attempts=attempts)
        self.data = data


class IncompleteEventError(ProtocolError):
    """The stream ended inside an event; `data` is a short excerpt of what came."""

    def __init__(self, message: str = "", *, data: str = "", attempts: int = 1) -> None:
        super().__init__(message, attempts=attempts)
        self.data = data


class EventTooLargeError(ProtocolError):
    """One event (or line) grew past `limit` characters."""

    def __init__(self, message: str = "", *, limit: int = 0, attempts: int = 1) -> None:
        super().__init__(message, attempts=attempts)
        self.limit = limit


class EmulationError(ProtocolError):
    """The model's reply gave no valid JSON or tool call, even when asked again.

    JSON mode and tool calls are emulated on our side (the Koala models take and
    give text only); the message says what was wrong with the second reply.
    """


class UsageError(KoalaError, ValueError):
    """The caller asked for something impossible: bad messages, options, models."""


class ModelNotFoundError(UsageError):
    """A model the provider does not know; `models` lists the valid ones."""

    def __init__(
        self,
        message: str = "",
        *,
        provider: str = "",
        model: str = "",
        models: tuple[str, ...] = (),
        attempts: int = 1,
    ) -> None:
        super().__init__(message, attempts=attempts)
        self.provider = provider
        self.model = model
        self.models = models
