"""One call of an HTTP provider: its session, its deadline, its attempts.

A `Call` owns what every attempt of one call shares: the session (and so the
connection pool, borrowed or its own), the proxy, the checked options and the
deadline of the whole call. `async with call.attempt(request, reader)` makes
one request and gives an `Attempt`, the response beside its values;
`Call.batches` makes attempts until one succeeds or the retry policy
(`options.retry_wait`) gives up. A call may send several different requests,
one after the other, under one deadline.

The resource rules: a borrowed connector is never closed (the session does not
own it); a proxy is applied exactly once (SOCKS in the connector, HTTP per
request); every response is closed when its attempt ends, whichever way.
Redirects are never followed: a 3xx reply is a StatusError that says where it
pointed (`raise_for_redirect`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Mapping
from contextlib import aclosing
from dataclasses import dataclass, field
from types import TracebackType

from aiohttp import BaseConnector, ClientResponse, ClientSession

from .._http import (
    get_connector,
    http_proxy,
    raise_for_redirect,
    raise_for_status,
    remaining,
)
from .._http.mapping import ErrorTranslation
from .._urls import redact_url
from ..errors import ConnectError, KoalaError, KoalaTimeoutError, UsageError
from ..messages import JSONValue
from .options import RequestOptions, retry_wait

__all__ = ["Attempt", "Call", "HTTPRequest", "ReplyReader"]

#: Reads a 2xx response into lists of values (see `HTTPProvider.read_reply`).
ReplyReader = Callable[
    [ClientResponse, RequestOptions], AsyncGenerator[list[JSONValue], None]
]


@dataclass(frozen=True, slots=True)
class HTTPRequest:
    """What one attempt sends: the URL, the body bytes and the headers.

    `dialect` names the variant of the service's protocol the request speaks,
    when the provider has several (None otherwise); `fallback` is the request
    to send instead when this one's shape is refused (see
    `providers.negotiation`). The repr shows header names only, as a header
    may hold a key.
    """

    url: str
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    method: str = "POST"
    dialect: str | None = None
    fallback: HTTPRequest | None = None

    def __repr__(self) -> str:
        """Show the method, URL, dialect, body size and header names; no values."""
        return (
            f"HTTPRequest({self.method} {redact_url(self.url)}, "
            f"dialect={self.dialect!r}, body=<{len(self.body)} bytes>, "
            f"headers=[{', '.join(self.headers)}], "
            f"fallback={self.fallback.dialect if self.fallback else None!r})"
        )

    __str__ = __repr__


class Attempt:
    """One request's reply: `response` (its head read) beside its values.

    An async context manager, made by `Call.attempt`: entering sends the
    request and returns once the reply's head arrived; leaving closes the
    response. `response` is the aiohttp response, status and headers readable
    whatever the status. `values()` (or `batches()`) first raises our error for
    a non-2xx status, then reads the reply with the provider's reader.
    aiohttp's exceptions come out translated into ours, here and in `values()`.
    """

    __slots__ = ("_call", "_reader", "_sending", "request", "response")

    response: ClientResponse

    @property
    def dialect(self) -> str | None:
        """The dialect the request spoke (`HTTPRequest.dialect`), or None."""
        return self.request.dialect

    def __init__(self, call: Call, request: HTTPRequest, reader: ReplyReader) -> None:
        self._call = call
        self._reader = reader
        self.request = request

    async def __aenter__(self) -> Attempt:
        """Send the request; return once the reply's head arrived.

        Raises:
            KoalaTimeoutError: the call's deadline has passed, or a limit ran out.
            TransportError: the request could not be sent or got no reply.
        """
        call, request = self._call, self.request
        timeouts = call.options.timeouts
        left = remaining(call.deadline)
        if left is not None and left <= 0:
            raise KoalaTimeoutError(
                f"no time left for a request to {redact_url(request.url)}",
                limit="total",
                seconds=timeouts.total,
            )
        # Entered and left by hand rather than with `async with`, so that an
        # open stream holds no generator frame of ours (benchmarks/bench_load.py).
        self._sending = call.session.request(
            request.method,
            request.url,
            data=request.body,
            headers=request.headers,
            proxy=call.http_proxy,
            timeout=timeouts.client_timeout(left),
            # A redirect is reported, never followed: following one would send
            # the conversation (and any key) to wherever it points.
            allow_redirects=False,
        )
        with call.translating(request.url, request.headers):
            self.response = await self._sending.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close the response (the connection goes back to the pool if it can)."""
        with self._call.translating(self.request.url, self.request.headers):
            await self._sending.__aexit__(exc_type, exc, traceback)

    async def batches(self) -> AsyncGenerator[list[JSONValue], None]:
        """Yield the reply's values in non-empty lists, as chunks complete them.

        Raises:
            StatusError: the status is not 2xx (see `raise_for_status`).
            TransportError: the connection failed while reading.
            ProtocolError: the reply is not what the reader expects.
        """
        with self._call.translating(self.request.url, self.request.headers):
            await raise_for_redirect(self.response)
            await raise_for_status(self.response)
            async with aclosing(
                self._reader(self.response, self._call.options)
            ) as batches:
                async for batch in batches:
                    yield batch

    async def values(self) -> AsyncGenerator[JSONValue, None]:
        """Yield the reply's values one by one; raises as `batches` does."""
        async with aclosing(self.batches()) as batches:
            async for batch in batches:
                for value in batch:
                    yield value


def never_sent(exc: KoalaError) -> bool:
    """Tell whether `exc` says the request never reached the endpoint.

    No connection could be made (refused, no route, a failed look-up, the
    connect time limit): nothing was sent, so a retry costs the endpoint
    nothing.
    """
    if isinstance(exc, KoalaTimeoutError):
        return exc.limit == "connect"
    return isinstance(exc, ConnectError)


class Call:
    """The session, options and deadline shared by the attempts of one call.

    An async context manager: entering opens the session (over the borrowed
    connector, the SOCKS proxy's own, or a new pool) and starts the deadline;
    leaving closes it, never a borrowed connector.
    """

    __slots__ = ("_connector", "deadline", "http_proxy", "options", "proxy", "session")

    session: ClientSession
    deadline: float | None

    def __init__(
        self,
        options: RequestOptions,
        proxy: str | None = None,
        connector: BaseConnector | None = None,
    ) -> None:
        """Check the proxy rules; nothing is opened yet.

        Raises:
            UsageError: a bad proxy URL, a connector that is not an aiohttp
                connector, or a SOCKS proxy with a borrowed connector.
        """
        if connector is not None and not isinstance(connector, BaseConnector):
            raise UsageError(
                "connector must be an aiohttp connector, not "
                f"{type(connector).__name__}"
            )
        self.options = options
        self.proxy = proxy
        self.http_proxy = http_proxy(proxy, connector)
        self._connector = connector

    async def __aenter__(self) -> Call:
        connector = self._connector
        self.session = ClientSession(
            connector=get_connector(connector, self.proxy),
            connector_owner=connector is None,
            # aiohttp stops reading the socket past twice this unread: a consumer
            # that stops reading holds little (README, "Over HTTP: koala serve").
            read_bufsize=4 * 1024,
        )
        self.deadline = self.options.timeouts.deadline()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.session.close()

    def translating(
        self, url: str, headers: Mapping[str, str] | None = None
    ) -> ErrorTranslation:
        """Return a context manager that raises ours for aiohttp's exceptions.

        The one translation site of a call (see `_http.mapping`): around
        sending a request to `url` with `headers`, closing its response,
        reading its reply. No error leaves it quoting a credential of
        `headers` (an API key an upstream echoed).
        """
        return ErrorTranslation(url, self.options.timeouts, self.proxy, headers)

    def attempt(self, request: HTTPRequest, reader: ReplyReader) -> Attempt:
        """Return one attempt at `request`; `async with` it to send the request."""
        return Attempt(self, request, reader)

    async def batches(
        self, request: HTTPRequest, reader: ReplyReader, *, resend: bool = True
    ) -> AsyncGenerator[list[JSONValue], None]:
        """Yield the reply's values in lists, retrying failures before the first.

        `resend` False retries only the failures of requests that never went
        out (`never_sent`): the endpoint then sees the request at most once.

        Raises:
            KoalaError: the last attempt's error, with `attempts` set.
        """
        attempt = 0
        while True:
            attempt += 1
            delivered = False
            try:
                async with (
                    self.attempt(request, reader) as current,
                    aclosing(current.batches()) as batches,
                ):
                    async for batch in batches:
                        delivered = True
                        yield batch
                return
            except KoalaError as exc:
                wait = (
                    retry_wait(
                        exc, attempt, self.options, delivered, remaining(self.deadline)
                    )
                    if resend or never_sent(exc)
                    else None
                )
                if wait is None:
                    exc.attempts = attempt
                    raise
            await asyncio.sleep(wait)
