"""The Koala provider: chat completions streamed from koala.sh.

The request, the reply and the behaviour (history, system messages, proxies and
borrowed connectors) follow docs/protocol.md, "The provider's contract".
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, ClassVar, Final

import msgspec
from aiohttp import BaseConnector, ClientResponse, ClientSession
from aiohttp.compression_utils import HAS_BROTLI

from .. import defaults
from ..errors import (
    KoalaError,
    KoalaTimeoutError,
    NotEventStreamError,
    UsageError,
)
from ..helper import get_random_string
from ..jsonstream import DONE_MARKER, JSONValueDecoder, loads
from ..messages import JSONValue, Messages, NormalizedMessage, normalize_messages
from ..requests import (
    get_connector,
    proxy_scheme,
    raise_for_status,
    read_excerpt,
    redact_url,
    remaining,
    text_excerpt,
    translate_errors,
)
from ..sse import DEFAULT_MAX_EVENT_SIZE
from ..urls import check_endpoint
from .base import AsyncGeneratorProvider, ProviderModelMixin, text_for_gpt4free
from .options import ENDPOINT_VARIABLE, RequestOptions, retry_wait

__all__ = ["ENDPOINT_VARIABLE", "Koala"]

# docs/protocol.md, "Request": advertise br only when aiohttp can decode it.
_ACCEPT_ENCODING: Final = "gzip, deflate, br" if HAS_BROTLI else "gzip, deflate"


class Koala(AsyncGeneratorProvider, ProviderModelMixin):
    """Chat completions from the Koala chat API, streamed as they are written.

    Example:
        >>> messages = [{"role": "user", "content": "Tell me something."}]
        >>> async for value in Koala.create_async_generator("", messages):
        ...     print(value, end="")
    """

    url = "https://koala.sh/chat"
    api_endpoint: ClassVar[str] = defaults.API_ENDPOINT
    # docs/protocol.md, "History": Cloudflare has blocked the API since November 2024,
    # and nothing we can reach says otherwise; `koala check` tells for sure.
    working = False
    supports_stream = True
    supports_message_history = True
    supports_system_message = True

    default_model = "gpt-4o-mini"
    models = ("gpt-4o-mini", "gpt-3.5-turbo", "gpt-4.1", "gpt-4.1-mini")
    # docs/protocol.md, "Models": the service decides about names it does not know.
    accept_unknown_models = True

    @classmethod
    @text_for_gpt4free
    async def create_async_generator(
        cls,
        model: str,
        messages: Messages,
        proxy: str | None = None,
        connector: BaseConnector | None = None,
        **kwargs: Any,
    ) -> AsyncGenerator[JSONValue, None]:
        """Send `messages` to Koala and yield each value the server streams back.

        Values are whatever JSON the server sends: strings in the replies on
        record, objects in the seed's example. Keyword options:

        - `api_endpoint`: the URL to post to (else `KOALA_API_ENDPOINT`, else
          `Koala.api_endpoint`);
        - `timeout`: seconds for the whole request, retries included (default
          300); `connect_timeout` (10) and `idle_timeout`, the longest silence
          between two chunks (60); None disables one;
        - `max_retries` (2): further attempts after a connection error, a time-out,
          429/402 or 5xx, only while nothing has been yielded; `retry_backoff`
          (0.5 s, doubled each time, with jitter) and `max_retry_wait` (30 s, the
          longest `Retry-After` honoured);
        - `max_event_size`: the largest event accepted (16 MiB).

        Other keywords are accepted and ignored, as gpt4free callers pass options
        meant for other providers. `connector` is borrowed and never closed; a
        `proxy` (http, https, socks4, socks4a, socks5, socks5h) is applied once.

        Raises:
            UsageError: bad messages, model or options, before any traffic.
            TransportError, StatusError, ProtocolError: see `koala_chat.errors`.
        """
        options = RequestOptions.from_kwargs(kwargs)
        body = cls.build_body(cls.get_model(model), normalize_messages(messages))
        endpoint = check_endpoint(options.api_endpoint or cls.api_endpoint)
        http_proxy = _http_proxy(proxy, connector)
        async with ClientSession(
            connector=get_connector(connector, proxy),
            connector_owner=connector is None,
        ) as session:
            request = _Request(
                session, endpoint, msgspec.json.encode(body), http_proxy, proxy
            )
            # The layers below pass on lists of values (all that one chunk of
            # the reply completes): one generator hop per value, not four,
            # keeps many streams cheap (benchmarks/bench_load.py).
            async with aclosing(cls._stream_with_retries(request, options)) as batches:
                async for batch in batches:
                    for value in batch:
                        yield value

    @classmethod
    def build_body(
        cls, model: str, messages: list[NormalizedMessage]
    ) -> dict[str, JSONValue]:
        """Return the JSON request body of a conversation (docs/protocol.md, "Request").

        The camelCase wire keys are built here and nowhere else.
        """
        input_text = messages[-1]["content"]
        system = " ".join(m["content"] for m in messages if m["role"] == "system")
        if system:
            input_text += f" {system}"
        return {
            "input": input_text,
            "inputHistory": [
                m["content"] for m in messages[:-1] if m["role"] == "user"
            ],
            "outputHistory": [
                m["content"] for m in messages if m["role"] == "assistant"
            ],
            "model": model,
        }

    @classmethod
    def build_headers(cls) -> dict[str, str]:
        """Return the browser-like request headers, with a fresh `Visitor-ID`."""
        return {
            "User-Agent": (
                "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:122.0) "
                "Gecko/20100101 Firefox/122.0"
            ),
            "Accept": "text/event-stream",
            "Accept-Language": "de,en-US;q=0.7,en;q=0.3",
            "Accept-Encoding": _ACCEPT_ENCODING,
            "Referer": cls.url or "",
            "Flag-Real-Time-Data": "false",
            "Visitor-ID": get_random_string(20),
            "Origin": "https://koala.sh",
            "Alt-Used": "koala.sh",
            "Sec-Fetch-Dest": "empty",
            "Sec-Fetch-Mode": "cors",
            "Sec-Fetch-Site": "same-origin",
            "TE": "trailers",
        }

    @classmethod
    async def _stream_with_retries(
        cls, request: _Request, options: RequestOptions
    ) -> AsyncGenerator[list[JSONValue], None]:
        """Yield the reply's values in batches, retrying failures before any."""
        loop = asyncio.get_running_loop()
        total = options.timeouts.total
        deadline = None if total is None else loop.time() + total
        attempt = 0
        while True:
            attempt += 1
            delivered = False
            try:
                async with aclosing(
                    cls._stream_once(request, options, deadline)
                ) as batches:
                    async for batch in batches:
                        delivered = True
                        yield batch
                return
            except KoalaError as exc:
                wait = retry_wait(exc, attempt, options, delivered, remaining(deadline))
                if wait is None:
                    exc.attempts = attempt
                    raise
            await asyncio.sleep(wait)

    @classmethod
    async def _stream_once(
        cls, request: _Request, options: RequestOptions, deadline: float | None
    ) -> AsyncGenerator[list[JSONValue], None]:
        """Make one request and yield its values in non-empty batches."""
        timeouts = options.timeouts
        left = remaining(deadline)
        if left is not None and left <= 0:
            raise KoalaTimeoutError(
                f"no time left for a request to {redact_url(request.endpoint)}",
                limit="total",
                seconds=timeouts.total,
            )
        async with (
            translate_errors(request.endpoint, timeouts, request.proxy),
            request.session.post(
                request.endpoint,
                data=request.body,
                headers={"Content-Type": "application/json", **cls.build_headers()},
                proxy=request.http_proxy,
                timeout=timeouts.client_timeout(left),
            ) as response,
        ):
            await raise_for_status(response)
            await _check_event_stream(response)
            async with aclosing(
                _parse_batches(response, options.max_event_size)
            ) as batches:
                async for batch in batches:
                    yield batch

    @staticmethod
    async def _parse_event_stream(
        response: Any, *, max_event_size: int = DEFAULT_MAX_EVENT_SIZE
    ) -> AsyncGenerator[JSONValue, None]:
        """Yield the JSON value of each event in a `text/event-stream` reply.

        For an aiohttp response the raw bytes are read (`content.iter_any()`, not
        aiohttp's line iterator, which fails on long lines) and decoded as the SSE
        specification says. `data: [DONE]` ends the stream. A last event cut off
        by the end of the stream is delivered when its data is complete JSON.

        Any other object whose `content` is an async iterable (the stand-in of
        the seed's example) is read as the seed's code reads aiohttp's lines:
        each item one line, each `data:` line one value.

        Raises:
            InvalidJSONError: an event's data is not JSON (after the values
                before it were yielded).
            IncompleteEventError: the stream ended inside an event that is not
                complete JSON.
            EventTooLargeError: an event is larger than `max_event_size`.
        """
        async with aclosing(_parse_batches(response, max_event_size)) as batches:
            async for batch in batches:
                for value in batch:
                    yield value


async def _parse_batches(
    response: Any, max_event_size: int
) -> AsyncGenerator[list[JSONValue], None]:
    """Yield the values of `_parse_event_stream` as non-empty lists, a chunk's worth."""
    content = response.content
    iter_any = getattr(content, "iter_any", None)
    if iter_any is None:
        async for value in _parse_lines(content):
            yield [value]
        return
    decoder = JSONValueDecoder(max_event_size=max_event_size)
    async for chunk in iter_any():
        if values := decoder.feed(chunk):
            yield values
        if decoder.done:
            return
    if values := decoder.close():
        yield values


async def _parse_lines(
    lines: AsyncIterable[bytes | str],
) -> AsyncGenerator[JSONValue, None]:
    """Yield the value of each `data:` line of an iterable of lines."""
    async for item in lines:
        line = item.decode("utf-8", "replace") if isinstance(item, bytes) else item
        line = line.rstrip("\r\n")
        if not line.startswith("data:"):
            continue  # comments, other fields and blank lines carry no value
        data = line[6:] if line.startswith("data: ") else line[5:]
        if data.strip() == DONE_MARKER:
            return
        yield loads(data)


@dataclass(frozen=True, slots=True)
class _Request:
    """What every attempt of one call sends, and through what."""

    session: ClientSession
    endpoint: str
    body: bytes
    http_proxy: str | None
    proxy: str | None


def _http_proxy(proxy: str | None, connector: BaseConnector | None) -> str | None:
    """Return the proxy aiohttp applies per request (HTTP proxies), if any.

    SOCKS proxies live in the connector instead, so each proxy is applied once.
    """
    if not proxy:
        return None
    if proxy_scheme(proxy).startswith("socks"):
        if connector is not None:
            raise UsageError(
                "a SOCKS proxy needs a connector of its own: pass either proxy= "
                "or a connector that goes through the proxy, not both"
            )
        return None
    return proxy


async def _check_event_stream(response: ClientResponse) -> None:
    """Raise NotEventStreamError unless a 2xx reply is `text/event-stream`.

    docs/protocol.md, "Errors seen in the wild": an HTML page with status 200 must be
    an error, never an empty reply.
    """
    if response.content_type == "text/event-stream":
        return
    body = text_excerpt(await read_excerpt(response, 64 * 1024))
    kind = response.content_type or "no content type"
    raise NotEventStreamError(
        f"{redact_url(response.url)} answered {response.status} with {kind} instead "
        f"of an event stream" + (f": {body}" if body else ""),
        content_type=response.content_type,
        body=body,
    )
