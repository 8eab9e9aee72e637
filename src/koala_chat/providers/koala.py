"""The Koala provider: chat completions streamed from koala.sh.

The request, the reply and the behaviour (history, system messages, proxies and
borrowed connectors) follow docs/protocol.md, "The provider's contract". The
attempt loop, retries, time limits and error translation are `HTTPProvider`'s;
this module says only what Koala sends and how its reply reads.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any, ClassVar, Final

import msgspec
from aiohttp.compression_utils import HAS_BROTLI

from .. import defaults
from ..helper import get_random_string
from ..messages import JSONValue, NormalizedMessage
from .attempts import HTTPRequest
from .eventstream import event_batches
from .http import HTTPProvider
from .options import ENDPOINT_VARIABLE, RequestOptions

__all__ = ["ENDPOINT_VARIABLE", "Koala"]

# docs/protocol.md, "Request": advertise br only when aiohttp can decode it.
_ACCEPT_ENCODING: Final = "gzip, deflate, br" if HAS_BROTLI else "gzip, deflate"


class Koala(HTTPProvider):
    """Chat completions from the Koala chat API, streamed as they are written.

    Example:
        >>> messages = [{"role": "user", "content": "Tell me something."}]
        >>> async for value in Koala.create_async_generator("", messages):
        ...     print(value, end="")
    """

    url = "https://koala.sh/chat"
    api_endpoint: ClassVar[str] = defaults.API_ENDPOINT
    endpoint_variable = ENDPOINT_VARIABLE
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
    def build_request(
        cls, model: str, messages: list[NormalizedMessage], options: RequestOptions
    ) -> HTTPRequest:
        """Return the request of the history dialect (docs/protocol.md, "Request")."""
        return HTTPRequest(
            url=cls.resolve_endpoint(options.api_endpoint),
            body=msgspec.json.encode(cls.build_body(model, messages)),
            headers={"Content-Type": "application/json", **cls.build_headers()},
        )

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

    @staticmethod
    async def _parse_event_stream(
        response: Any, *, max_event_size: int = defaults.MAX_EVENT_SIZE
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
        async with aclosing(
            event_batches(response, max_event_size, require_event_stream=False)
        ) as batches:
            async for batch in batches:
                for value in batch:
                    yield value
