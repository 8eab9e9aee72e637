"""One call of an HTTP provider: its session, its deadline, its attempts.

A `Call` owns what every attempt of one call shares: the session (and so the
connection pool, borrowed or its own), the proxy, the checked options and the
deadline of the whole call. `Call.attempt` makes one request and hands back an
`Attempt`, the response beside its values; `Call.batches` makes attempts until
one succeeds or the retry policy (`options.retry_wait`) gives up. A call may
send several different requests, one after the other, under one deadline.

The resource rules: a borrowed connector is never closed (the session does not
own it); a proxy is applied exactly once (SOCKS in the connector, HTTP per
request); every response is closed when its attempt ends, whichever way.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, aclosing, asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import BaseConnector, ClientResponse, ClientSession

from .._http import (
    get_connector,
    http_proxy,
    raise_for_status,
    remaining,
    translate_errors,
)
from ..errors import KoalaError, KoalaTimeoutError
from ..messages import JSONValue
from ..urls import redact_url
from .options import RequestOptions, retry_wait

__all__ = ["Attempt", "Call", "HTTPRequest", "ReplyReader"]

#: Reads a 2xx response into lists of values (see `HTTPProvider.read_reply`).
ReplyReader = Callable[
    [ClientResponse, RequestOptions], AsyncGenerator[list[JSONValue], None]
]


@dataclass(frozen=True, slots=True)
class HTTPRequest:
    """What one attempt sends: the URL, the body bytes and the headers."""

    url: str
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    method: str = "POST"


class Attempt:
    """One request's reply: `response` (its head read) beside its values.

    `response` is the aiohttp response: its status and headers are there as soon
    as the attempt is open, whatever the status. `values()` (or `batches()`)
    first raises our error for a non-2xx status, then reads the reply with the
    provider's reader; aiohttp's exceptions come out translated into ours.
    """

    __slots__ = ("_call", "_reader", "request", "response")

    def __init__(
        self,
        call: Call,
        request: HTTPRequest,
        response: ClientResponse,
        reader: ReplyReader,
    ) -> None:
        self._call = call
        self._reader = reader
        self.request = request
        self.response = response

    async def batches(self) -> AsyncGenerator[list[JSONValue], None]:
        """Yield the reply's values in non-empty lists, as chunks complete them.

        Raises:
            StatusError: the status is not 2xx (see `raise_for_status`).
            TransportError: the connection failed while reading.
            ProtocolError: the reply is not what the reader expects.
        """
        async with self._call.translating(self.request.url):
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


class Call:
    """The session, options and deadline shared by the attempts of one call."""

    __slots__ = ("deadline", "http_proxy", "options", "proxy", "session")

    def __init__(
        self,
        session: ClientSession,
        options: RequestOptions,
        proxy: str | None,
        per_request_proxy: str | None,
    ) -> None:
        self.session = session
        self.options = options
        self.proxy = proxy
        self.http_proxy = per_request_proxy
        self.deadline = options.timeouts.deadline()

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        options: RequestOptions,
        proxy: str | None = None,
        connector: BaseConnector | None = None,
    ) -> AsyncIterator[Call]:
        """Open a session for one call; close it (never a borrowed connector).

        Raises:
            UsageError: a bad proxy URL, or a SOCKS proxy with a borrowed connector.
        """
        per_request_proxy = http_proxy(proxy, connector)
        async with ClientSession(
            connector=get_connector(connector, proxy),
            connector_owner=connector is None,
        ) as session:
            yield cls(session, options, proxy, per_request_proxy)

    def translating(self, url: str) -> AbstractAsyncContextManager[None]:
        """Return a context that turns aiohttp's exceptions into ours."""
        return translate_errors(url, self.options.timeouts, self.proxy)

    @asynccontextmanager
    async def attempt(
        self, request: HTTPRequest, reader: ReplyReader
    ) -> AsyncIterator[Attempt]:
        """Send `request` once; yield the attempt once the reply's head arrived.

        The response is closed when the block ends.

        Raises:
            KoalaTimeoutError: the call's deadline has passed, or a limit ran out.
            TransportError: the request could not be sent or got no reply.
        """
        timeouts = self.options.timeouts
        left = remaining(self.deadline)
        if left is not None and left <= 0:
            raise KoalaTimeoutError(
                f"no time left for a request to {redact_url(request.url)}",
                limit="total",
                seconds=timeouts.total,
            )
        async with (
            self.translating(request.url),
            self.session.request(
                request.method,
                request.url,
                data=request.body,
                headers=request.headers,
                proxy=self.http_proxy,
                timeout=timeouts.client_timeout(left),
            ) as response,
        ):
            yield Attempt(self, request, response, reader)

    async def batches(
        self, request: HTTPRequest, reader: ReplyReader
    ) -> AsyncGenerator[list[JSONValue], None]:
        """Yield the reply's values in lists, retrying failures before the first.

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
                wait = retry_wait(
                    exc, attempt, self.options, delivered, remaining(self.deadline)
                )
                if wait is None:
                    exc.attempts = attempt
                    raise
            await asyncio.sleep(wait)
