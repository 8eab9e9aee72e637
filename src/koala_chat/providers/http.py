"""The base class of providers that speak HTTP: the attempt loop lives here.

A subclass says only what differs between services: the request
(`build_request`: URL, body bytes, headers) and how to read a 2xx reply
(`read_reply`, by default an event stream of JSON values). Everything else is
done once, here and in `attempts.py`: checking the keyword options and the
endpoint, the session, connector and proxy rules, the time limits and the
deadline over retries, the retry decision, and the translation of aiohttp's
exceptions into ours.

Both hooks receive the checked options (whose `extra` holds a subclass's own
keywords) and `read_reply` the response itself, so a provider may choose its
request and its way of reading per call and per reply. A provider that sends
a second, different request when the first is refused (one dialect, then
another) opens one `Call` and sends both through `call.batches`: they share
the session, the proxy and the deadline.

    class Echo(HTTPProvider):
        api_endpoint = "http://127.0.0.1:8000/api/echo"

        @classmethod
        def build_request(cls, model, messages, options):
            body = msgspec.json.encode({"prompt": messages[-1]["content"]})
            return HTTPRequest(cls.resolve_endpoint(options.api_endpoint), body)
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import aclosing, asynccontextmanager
from dataclasses import replace
from typing import Any, ClassVar

from aiohttp import BaseConnector, ClientResponse

from .._contract.capabilities import Capabilities
from .._urls import check_endpoint
from ..messages import JSONValue, Messages, NormalizedMessage, normalize_messages
from .attempts import Attempt, Call, HTTPRequest, ReplyReader
from .base import AsyncGeneratorProvider, ProviderModelMixin, text_pieces
from .eventstream import event_batches
from .options import CHECKED_OPTIONS, RequestOptions

__all__ = ["HTTPProvider", "HTTPRequest"]


class HTTPProvider(AsyncGeneratorProvider, ProviderModelMixin):
    """A provider that sends one HTTP request per attempt and reads its reply.

    Subclasses set `api_endpoint` (and `endpoint_variable`, the environment
    variable that may name another endpoint) and implement `build_request`;
    they may override `read_reply`.
    """

    api_endpoint: ClassVar[str]
    endpoint_variable: ClassVar[str | None] = None

    #: The keyword options every HTTP provider takes (`create_async_generator`).
    OPTIONS: ClassVar[tuple[str, ...]] = (
        "proxy",
        "connector",
        *sorted(CHECKED_OPTIONS),
    )

    @classmethod
    def capabilities(cls, **options: Any) -> Capabilities:
        """Return the mixin's capabilities with the HTTP options named."""
        return replace(super().capabilities(**options), options=cls.OPTIONS)

    @classmethod
    def resolve_endpoint(cls, api_endpoint: str | None = None) -> str:
        """Return where to send: `api_endpoint`, else the environment, else the class's.

        The URL is not checked here; every request's URL is checked before it is
        sent (UsageError).
        """
        if api_endpoint:
            return api_endpoint
        if cls.endpoint_variable and (
            configured := os.environ.get(cls.endpoint_variable)
        ):
            return configured
        return cls.api_endpoint

    @classmethod
    def build_request(
        cls, model: str, messages: list[NormalizedMessage], options: RequestOptions
    ) -> HTTPRequest:
        """Return the request that sends `messages` to `model`.

        `model` is resolved (`get_model`), `messages` normalized and `options`
        checked; the URL is usually `cls.resolve_endpoint(options.api_endpoint)`.
        """
        raise NotImplementedError(f"{cls.__name__} does not build requests")

    @classmethod
    def prepare(
        cls, model: str, messages: Messages, options: RequestOptions
    ) -> HTTPRequest:
        """Return the request for the caller's `model` and `messages`.

        The default resolves the model (`get_model`), normalizes the messages
        and calls `build_request`. A provider whose default model depends on
        its options overrides this instead.

        Raises:
            UsageError: bad messages, model or options.
        """
        return cls.build_request(
            cls.get_model(model), normalize_messages(messages), options
        )

    @classmethod
    def send(
        cls, call: Call, request: HTTPRequest
    ) -> AsyncGenerator[list[JSONValue], None]:
        """Return the reply's batches for one call; the default retries `request`.

        A provider that may send another request when the first is refused
        overrides this, and sends both through `call.batches`.
        """
        return call.batches(request, cls.reader_for(request))

    @classmethod
    def reader_for(cls, request: HTTPRequest) -> ReplyReader:
        """Return how to read the reply to `request`; the default is `read_reply`.

        A provider whose requests speak different dialects reads each reply
        in its request's dialect.
        """
        return cls.read_reply

    @classmethod
    def read_reply(
        cls, response: ClientResponse, options: RequestOptions
    ) -> AsyncGenerator[list[JSONValue], None]:
        """Return the values of a 2xx `response`, in non-empty lists, as they come.

        The default reads an event stream of JSON values and refuses any other
        content type (NotEventStreamError). An override may look at the
        response (its content type, its headers) to decide how to read it.
        """
        return event_batches(response, options.max_event_size)

    @classmethod
    async def create_async_generator(
        cls,
        model: str,
        messages: Messages,
        proxy: str | None = None,
        connector: BaseConnector | None = None,
        **kwargs: Any,
    ) -> AsyncGenerator[JSONValue, None]:
        """Send `messages` and yield each value the server sends back, as it arrives.

        Keyword options:

        - `api_endpoint`: the URL to post to (else the environment variable
          `endpoint_variable` names, else `api_endpoint` of the class);
        - `timeout`: seconds for the whole request, retries included (default
          300); `connect_timeout` (10) and `idle_timeout`, the longest silence
          between two chunks (60); None disables one;
        - `max_retries` (2): further attempts after a connection error, a time-out,
          429/402 or 5xx, only while nothing has been yielded; `retry_backoff`
          (0.5 s, doubled each time, with jitter) and `max_retry_wait` (30 s, the
          longest `Retry-After` honoured);
        - `max_event_size`: the largest event accepted (16 MiB).

        Other keywords are accepted and ignored, as gpt4free callers pass options
        meant for other providers. Called with gpt4free's `stream` keyword, as
        its client calls it, it yields only text: the `text_pieces` of the
        values. `connector` is borrowed and never closed; a
        `proxy` (http, https, socks4, socks4a, socks5, socks5h) is applied once.

        Raises:
            UsageError: bad messages, model or options, before any traffic.
            TransportError, StatusError, ProtocolError: see `koala_chat.errors`.
        """
        options, request = cls._prepare(model, messages, kwargs)
        text_only = "stream" in kwargs
        async with (
            Call(options, proxy, connector) as call,
            aclosing(cls.send(call, request)) as batches,
        ):
            # Lists travel the layers below (all that one chunk of the reply
            # completes): one generator hop per value, not four, keeps many
            # streams cheap (benchmarks/bench_load.py).
            async for batch in batches:
                for value in text_pieces(batch) if text_only else batch:
                    yield value

    @classmethod
    @asynccontextmanager
    async def open_attempt(
        cls,
        model: str,
        messages: Messages,
        proxy: str | None = None,
        connector: BaseConnector | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[Attempt]:
        """Send `messages` once (no retries); yield the attempt when the head arrived.

        The attempt shows the raw response (status, headers) beside its values;
        the options are those of `create_async_generator`. The session and the
        response are closed when the block ends.

        Example:
            >>> async with Koala.open_attempt("", messages, timeout=20) as attempt:
            ...     print(attempt.response.status)
            ...     async for value in attempt.values():
            ...         print(value)

        Raises:
            UsageError: bad messages, model or options, before any traffic.
            TransportError: no reply arrived (`attempt.values()` raises the
                status and protocol errors).
        """
        options, request = cls._prepare(model, messages, kwargs)
        async with (
            Call(options, proxy, connector) as call,
            call.attempt(request, cls.reader_for(request)) as attempt,
        ):
            yield attempt

    @classmethod
    def _prepare(
        cls, model: str, messages: Messages, kwargs: Mapping[str, Any]
    ) -> tuple[RequestOptions, HTTPRequest]:
        """Check everything the caller gave; return the options and the request.

        Raises:
            UsageError: bad options, model, messages or endpoint.
        """
        options = RequestOptions.from_kwargs(kwargs)
        request = cls.prepare(model, messages, options)
        check_endpoint(request.url)
        if request.fallback is not None:
            check_endpoint(request.fallback.url)
        return options, request
