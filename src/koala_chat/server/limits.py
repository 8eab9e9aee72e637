"""What one client may hold of `koala serve`, and how aiohttp's own errors look.

The limits (per process; options of `koala serve`):

    --head-timeout     10 s   to send a request's head (request line and
                              headers), counted from the connection or from
                              the end of the previous response; it is also the
                              longest a kept-alive connection may stay idle
    --body-timeout     30 s   to send the body once the head arrived
                              (`body_middleware`): 408, then the connection
                              closes
    --max-connections  1000   open connections; one more is answered 503 and
                              closed at once
    --max-body         1 MiB  the body (413)
    Content-Encoding   none   a compressed body is refused with 415 before a
                              byte of it is read, so no request can make the
                              server inflate a bomb

`ServerRunner` is aiohttp's `AppRunner` with those limits and with
`GuardedHandler` as the connection protocol. aiohttp answers requests it cannot
parse (a bad request line, method or header, a header too long) itself, before
any middleware runs, through the protocol's `handle_error` (aiohttp has no
other hook for them); `GuardedHandler.handle_error` gives them the OpenAI error
shape and logs one line that quotes nothing the client sent (aiohttp's own log
line carries the offending header, which may be the server's API key).

None of this is public API of aiohttp (it has no connection cap and no hook for
the requests its parser refuses): `GuardedHandler` overrides `RequestHandler`'s
protocol methods and `handle_error`, `GuardedServer` reads `Server._kwargs`
and `_loop`, `ServerRunner` overrides `AppRunner._make_server`. pyproject.toml
pins the aiohttp versions this was tested with, and
`tests/test_aiohttp_internals.py` fails, naming the version and what moved,
when an upgrade changes any of it.

When the process runs out of file descriptors, asyncio logs a traceback for
every failed `accept()`; `ResourceShortageLog` turns that into one line, then one
a minute while the shortage lasts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Final

from aiohttp import http_exceptions, web
from aiohttp.web_protocol import RequestHandler

from .._mro import lookup
from .failures import Failure
from .logtext import loggable

__all__ = ["GuardedHandler", "GuardedServer", "ResourceShortageLog", "ServerRunner"]

logger = logging.getLogger("koala_chat.server")

#: The answer to a connection over the cap: written raw, since no request was read.
_BUSY_BODY: Final = Failure(
    503,
    "server_error",
    "too_many_connections",
    "this server is at its limit of open connections; retry shortly",
).body()
_BUSY: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: application/json\r\n"
    b"Retry-After: 1\r\n"
    b"Connection: close\r\n"
    b"Content-Length: %d\r\n\r\n" % len(_BUSY_BODY)
) + _BUSY_BODY

#: What to tell a client whose request aiohttp could not parse. The exception's
#: own text is never used: it quotes the offending bytes.
_PARSE_ERRORS: Final[dict[type[BaseException], tuple[str, str]]] = {
    http_exceptions.BadHttpMethod: (
        "invalid_method",
        "the request method is not valid",
    ),
    http_exceptions.BadStatusLine: (
        "invalid_request_line",
        "the request line is not valid HTTP/1.1",
    ),
    http_exceptions.LineTooLong: (
        "header_too_large",
        "the request line or a header is too long",
    ),
    http_exceptions.InvalidHeader: ("invalid_header", "a request header is not valid"),
    http_exceptions.InvalidURLError: ("invalid_url", "the request target is not valid"),
    http_exceptions.TransferEncodingError: (
        "invalid_transfer_encoding",
        "the chunked body framing is not valid",
    ),
    http_exceptions.ContentLengthError: (
        "invalid_content_length",
        "the body does not match its Content-Length",
    ),
}
_PARSE_ERROR: Final = ("invalid_request", "the request is not valid HTTP/1.1")


class GuardedHandler(RequestHandler):
    """aiohttp's connection protocol with a connection cap and OpenAI-shaped errors."""

    __slots__ = ("_refused", "_server")

    def __init__(self, manager: GuardedServer, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._server = manager
        self._refused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Serve the connection, or answer 503 and close it when at the cap."""
        if self._server.open_connections >= self._server.max_connections:
            self._refused = True
            assert isinstance(transport, asyncio.Transport)
            transport.write(_BUSY)
            transport.close()
            self._server.note_refused()
            return
        self._server.open_connections += 1
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        """Forget the connection (a refused one was never counted)."""
        if self._refused:
            return
        self._server.open_connections -= 1
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Ignore whatever a refused connection still sends."""
        if not self._refused:
            super().data_received(data)

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """Return aiohttp's error for `request` in the OpenAI error shape.

        A request aiohttp could not parse is the client's fault: logged at
        debug level, by kind only. Anything else is a fault of ours and is
        logged with its traceback.

        Raises:
            ConnectionError: part of a response was sent already.
        """
        if isinstance(exc, http_exceptions.HttpProcessingError):
            code, text = lookup(_PARSE_ERRORS, exc, _PARSE_ERROR)
            self.logger.debug(
                "refused a request from %s: %s (%d)",
                loggable(request.remote or "-"),
                code,
                status,
            )
            failure = Failure(status, "invalid_request_error", code, text)
        else:
            if status >= 500:
                self.logger.error(
                    "error handling a request from %s",
                    loggable(request.remote or "-"),
                    exc_info=exc,
                )
            failure = _status_failure(status)
        if request.writer.output_size > 0:
            raise ConnectionError("a response was sent already; cannot send an error")
        response = failure.response()
        response.force_close()
        return response


def _status_failure(status: int) -> Failure:
    if status == 504:
        return Failure(504, "server_error", "timeout", "the request handler timed out")
    if status >= 500:
        return Failure(
            status, "server_error", "internal_error", "the server had an error"
        )
    return Failure(status, "invalid_request_error", None, "the request is not valid")


class GuardedServer(web.Server):
    """aiohttp's server making `GuardedHandler`s and counting open connections."""

    def __init__(self, *args: Any, max_connections: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_connections = max_connections
        self.open_connections = 0
        self._refusals = _Throttle()

    def __call__(self) -> GuardedHandler:
        """Return the protocol of a new connection."""
        # Server keeps RequestHandler's settings (timeouts, limits, the access
        # log class) in `_kwargs`; pass them on as its own `__call__` does.
        return GuardedHandler(self, loop=self._loop, **self._kwargs)

    def note_refused(self) -> None:
        """Log that a connection was refused: once, then once a minute."""
        skipped = self._refusals.ready()
        if skipped is not None:
            logger.warning(
                "at the limit of %d open connections: refusing more with 503%s",
                self.max_connections,
                f" ({skipped} more since the last report)" if skipped else "",
            )


class ServerRunner(web.AppRunner):
    """An `AppRunner` whose server is a `GuardedServer`."""

    __slots__ = ("_max_connections",)

    def __init__(
        self, app: web.Application, *, max_connections: int, **kwargs: Any
    ) -> None:
        super().__init__(app, **kwargs)
        self._max_connections = max_connections

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()
        # The app fills in the request handler and factory; keep them and the
        # settings, and change only the class that makes connections.
        return GuardedServer(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=asyncio.get_running_loop(),
            max_connections=self._max_connections,
            **plain._kwargs,
        )


class ResourceShortageLog:
    """An event-loop exception handler that reports a descriptor shortage briefly.

    asyncio reports each `accept()` failing for want of file descriptors or
    memory with a traceback; this logs one line instead, then at most one a
    minute (with the number left out). Everything else goes to the handler
    that was there before (or the loop's default).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._previous = loop.get_exception_handler()
        self._throttle = _Throttle()

    def __enter__(self) -> ResourceShortageLog:
        self._loop.set_exception_handler(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._loop.set_exception_handler(self._previous)

    def __call__(
        self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]
    ) -> None:
        """Handle one exception the loop reports."""
        exc = context.get("exception")
        if isinstance(exc, OSError) and "out of system resource" in str(
            context.get("message", "")
        ):
            skipped = self._throttle.ready()
            if skipped is not None:
                logger.error(
                    "cannot accept connections: %s; raise the file limit "
                    "(ulimit -n) or lower --max-connections%s",
                    exc.strerror or exc,
                    f" ({skipped} more failures since the last report)"
                    if skipped
                    else "",
                )
            return
        if self._previous is not None:
            self._previous(loop, context)
        else:
            loop.default_exception_handler(context)


class _Throttle:
    """Say when an event may be reported: the first time, then once a `period`."""

    def __init__(self, period: float = 60.0) -> None:
        self._period = period
        self._last: float | None = None
        self._skipped = 0

    def ready(self) -> int | None:
        """Return how many events went unreported before this one, or None."""
        now = time.monotonic()
        if self._last is not None and now - self._last < self._period:
            self._skipped += 1
            return None
        skipped, self._skipped, self._last = self._skipped, 0, now
        return skipped
