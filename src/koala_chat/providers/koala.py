"""The Koala provider: chat completions from koala.sh, in three dialects.

The dialects, what each sends and how `auto` finds the one an endpoint speaks
follow docs/protocol.md ("How koala-chat builds each request", "Choosing a
dialect"); the seed's behaviour (history, system messages, proxies, borrowed
connectors) follows "The provider's contract". The attempt loop, retries, time
limits and error translation are `HTTPProvider`'s; this module says only what
Koala sends and how its reply reads.
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from dataclasses import replace
from typing import Any, ClassVar, Final

from aiohttp import ClientResponse
from aiohttp.compression_utils import HAS_BROTLI

from .. import defaults
from .._contract.capabilities import Capabilities, ModelSet
from ..defaults import ENDPOINT_VARIABLE
from ..errors import UsageError
from ..helper import get_random_string
from ..messages import JSONValue, Messages, NormalizedMessage, normalize_messages
from . import dialects
from .attempts import Call, HTTPRequest, ReplyReader
from .dialects import DIALECTS, Dialect, Protocol, choose_protocol
from .eventstream import event_batches, reply_batches
from .http import HTTPProvider
from .negotiation import DialectMemory, negotiate
from .options import RequestOptions
from .settings import (
    API_KEY_VARIABLE,
    PROTOCOL_VARIABLE,
    DialectSettings,
    api_key,
    dialect_of,
)

__all__ = ["API_KEY_VARIABLE", "ENDPOINT_VARIABLE", "PROTOCOL_VARIABLE", "Koala"]

# docs/protocol.md, "Request": advertise br only when aiohttp can decode it.
_ACCEPT_ENCODING: Final = "gzip, deflate, br" if HAS_BROTLI else "gzip, deflate"

# What `auto` may send: the history dialect's models, then the messages one's.
_AUTO_MODELS: Final = tuple(
    dict.fromkeys(dialects.HISTORY.models + dialects.MESSAGES.models)
)
# The models of each value of `protocol`, in the order of `defaults.PROTOCOLS`;
# `auto` starts with the history dialect, whose default it sends first.
_MODEL_SETS: Final[Mapping[str, ModelSet]] = {
    "auto": ModelSet(dialects.HISTORY.default_model, _AUTO_MODELS),
    **{
        name: ModelSet(info.default_model, info.models)
        for name, info in DIALECTS.items()
    },
}


class Koala(HTTPProvider):
    """Chat completions from the Koala chat API, in the dialect the endpoint speaks.

    Keyword options besides `HTTPProvider`'s (docs/protocol.md, "Choosing a
    dialect"):

    - `protocol`: `"auto"` (the default; else `KOALA_PROTOCOL`), `"history"`,
      `"messages"` or `"api"`. `auto` sends the history request first and,
      only when the endpoint refuses its shape, the messages request, and
      remembers per endpoint which one it accepted;
    - `api_key`: the key of the official API (else `KOALA_API_KEY`); a key
      without a protocol means `"api"`. It is sent only as the Bearer header;
    - `web_search`: None keeps each dialect's recorded default; True or False
      sets `Flag-Real-Time-Data` / `flag-real-time-data` / `realTimeData`.

    Example:
        >>> messages = [{"role": "user", "content": "Tell me something."}]
        >>> async for value in Koala.create_async_generator("", messages):
        ...     print(value, end="")
    """

    url = "https://koala.sh/chat"
    api_endpoint: ClassVar[str] = defaults.API_ENDPOINT
    endpoint_variable = ENDPOINT_VARIABLE
    # docs/protocol.md, "History": Cloudflare has blocked the history dialect
    # since November 2024, but the messages dialect (which `auto` falls back
    # to) was recorded working in July 2026, and the api dialect is documented
    # (2025-2026). `koala check --all` tells for sure.
    working = True
    supports_stream = True
    supports_message_history = True
    supports_system_message = True

    default_model = dialects.HISTORY.default_model
    #: The models of the default protocol, `auto`: the history dialect's, then
    #: the messages dialect's; `get_models(protocol)` gives any dialect's
    #: (docs/protocol.md, "How koala-chat builds each request").
    models = _AUTO_MODELS
    # docs/protocol.md, "Models": the service decides about names it does not know.
    accept_unknown_models = True

    #: The dialect each endpoint accepted under `auto`, for the life of the process.
    dialect_memory: ClassVar[DialectMemory] = DialectMemory()

    @classmethod
    def forget_dialects(cls, endpoint: str | None = None) -> None:
        """Forget which dialect `endpoint` accepted (None: every endpoint)."""
        cls.dialect_memory.forget(endpoint)

    @classmethod
    def capabilities(cls, **options: Any) -> Capabilities:
        """Return the models of each protocol, and the one `options` configure.

        The configured protocol is chosen as a call chooses it: `protocol`,
        else `KOALA_PROTOCOL`, else `api` when a key is given (`api_key` or
        `KOALA_API_KEY`), else `auto` (docs/protocol.md, "Choosing a dialect").

        Raises:
            UsageError: an unknown protocol, or a key that cannot be sent.
        """
        setting = options.get("protocol")
        if setting is not None and not isinstance(setting, str):
            raise UsageError(f"protocol must be a string, not {type(setting).__name__}")
        has_key = api_key(options.get("api_key")) is not None
        chosen = choose_protocol(
            setting or os.environ.get(PROTOCOL_VARIABLE) or None, has_key=has_key
        )
        return Capabilities(
            name=cls.__name__,
            model_sets=_MODEL_SETS,
            protocol=chosen,
            accept_unknown_models=cls.accept_unknown_models,
            web_search=True,
            options=(*cls.OPTIONS, "protocol", "api_key", "web_search"),
        )

    @classmethod
    def get_models(cls, protocol: str | None = None, **kwargs: Any) -> list[str]:
        """Return the models of the dialect in use.

        `protocol` None means the configured one (`KOALA_PROTOCOL`, else `api`
        when `KOALA_API_KEY` is set, else `auto`). `auto` gives the history
        dialect's models and then the messages dialect's (`Koala.models`), since
        it may speak either; a dialect gives its own, its default first. Other
        keywords (gpt4free passes `api_key`) change nothing.

        Raises:
            UsageError: an unknown protocol.
        """
        chosen = cls.resolve_protocol(protocol)
        if chosen == "auto":
            return list(_AUTO_MODELS)
        return list(DIALECTS[chosen].models)

    @classmethod
    def get_model(
        cls, model: str | None, protocol: str | None = None, **kwargs: Any
    ) -> str:
        """Return the model to send for `model` in `protocol`'s dialect.

        Empty or None gives the default of the dialect (`auto`: the history
        dialect's, which it sends first); any other name passes through.

        Raises:
            UsageError: `model` is not a string, or an unknown protocol.
        """
        if model is None or model == "":
            chosen = cls.resolve_protocol(protocol)
            return DIALECTS[dialect_of(chosen)].default_model
        return super().get_model(model)

    @classmethod
    def prepare(
        cls, model: str, messages: Messages, options: RequestOptions
    ) -> HTTPRequest:
        """Return the request of the chosen dialect (under `auto`, with a fallback).

        Raises:
            UsageError: bad messages, model or options (protocol, key, web_search).
        """
        settings = DialectSettings.from_options(options.extra)
        normalized = normalize_messages(messages)
        name = "" if model is None or model == "" else super().get_model(model)
        url = cls.resolve_endpoint(options.api_endpoint)
        if settings.protocol != "auto":
            return cls.dialect_request(
                settings.protocol, url, name, normalized, settings
            )
        first: Dialect = cls.dialect_memory.recall(url) or "history"
        other: Dialect = "messages" if first == "history" else "history"
        return replace(
            cls.dialect_request(first, url, name, normalized, settings),
            fallback=cls.dialect_request(other, url, name, normalized, settings),
        )

    @classmethod
    def dialect_request(
        cls,
        dialect: Dialect,
        url: str,
        model: str,
        messages: list[NormalizedMessage],
        settings: DialectSettings,
    ) -> HTTPRequest:
        """Return the request of `dialect`; an empty model is its default.

        Raises:
            UsageError: the api dialect without a key.
        """
        prepared = dialects.build_request(
            dialect,
            model,
            messages,
            api_key=settings.api_key,
            web_search=settings.web_search,
            accept_encoding=_ACCEPT_ENCODING,
        )
        return HTTPRequest(
            url=url, body=prepared.body, headers=prepared.headers, dialect=dialect
        )

    @classmethod
    def send(
        cls, call: Call, request: HTTPRequest
    ) -> AsyncGenerator[list[JSONValue], None]:
        """Send `request`, and under `auto` its fallback when its shape is refused."""
        if request.fallback is None:
            # a dialect was chosen
            return call.batches(request, cls.reader_for(request))
        return negotiate(call, request, cls.reader_for, cls.dialect_memory)

    @classmethod
    def reader_for(cls, request: HTTPRequest) -> ReplyReader:
        """Return the reader of `request`'s dialect.

        The messages dialect's reply may carry raw text (`read_messages_reply`);
        the others are read strictly (`read_reply`).
        """
        if request.dialect == "messages":
            return cls.read_messages_reply
        return cls.read_reply

    @classmethod
    def read_reply(
        cls, response: ClientResponse, options: RequestOptions
    ) -> AsyncGenerator[list[JSONValue], None]:
        """Read a reply by what it is: an event stream, or one `{"output"}` object.

        Every event's data must be JSON, as the seed's parser wants.

        Raises (from the generator):
            NotEventStreamError: an HTML page or another content type.
            UnexpectedReplyError: JSON that is not `{"output": "..."}`.
            InvalidJSONError: an event's data is not JSON.
        """
        return reply_batches(response, options.max_event_size)

    @classmethod
    def read_messages_reply(
        cls, response: ClientResponse, options: RequestOptions
    ) -> AsyncGenerator[list[JSONValue], None]:
        """Read a reply to the messages dialect, whose payloads may be raw text.

        As `read_reply`, except that an event whose data is not a JSON string or
        object is that text (docs/protocol.md, "Raw text in the messages
        dialect"), never an InvalidJSONError.
        """
        return reply_batches(response, options.max_event_size, raw_text=True)

    @classmethod
    def build_request(
        cls, model: str, messages: list[NormalizedMessage], options: RequestOptions
    ) -> HTTPRequest:
        """Return the request of the history dialect (docs/protocol.md, "Request")."""
        return cls.dialect_request(
            "history",
            cls.resolve_endpoint(options.api_endpoint),
            model,
            messages,
            DialectSettings(protocol="history"),
        )

    @classmethod
    def resolve_protocol(cls, protocol: str | None = None) -> Protocol:
        """Return the protocol named, else the configured one.

        The configured one is `KOALA_PROTOCOL`, else `api` when `KOALA_API_KEY`
        is set, else `auto` (docs/protocol.md, "Choosing a dialect").

        Raises:
            UsageError: an unknown protocol.
        """
        if protocol is not None and not isinstance(protocol, str):
            raise UsageError(
                f"protocol must be a string, not {type(protocol).__name__}"
            )
        setting = protocol or os.environ.get(PROTOCOL_VARIABLE) or None
        has_key = bool(os.environ.get(API_KEY_VARIABLE, "").strip())
        return choose_protocol(setting, has_key=has_key)

    @classmethod
    def build_body(
        cls, model: str, messages: list[NormalizedMessage]
    ) -> dict[str, JSONValue]:
        """Return the JSON request body of a conversation (docs/protocol.md, "Request").

        The history dialect's body; an empty model is `gpt-4o-mini`.
        """
        return dialects.history_body(model, messages)

    @classmethod
    def build_headers(cls) -> dict[str, str]:
        """Return the browser-like request headers, with a fresh `Visitor-ID`."""
        headers = dialects.history_headers(
            visitor_id=get_random_string(20), accept_encoding=_ACCEPT_ENCODING
        )
        del headers["Content-Type"]
        return headers

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
