"""From a provider's values to an OpenAI reply: one path for client and server.

A `Reply` is one reply being received. `Reply.feed` turns each value the
provider streams into the text to emit: its text (`messages.text_of`), cut by a
`ReplyCutter` when the request has `stop` or `max_tokens`; `Reply.finish` gives
what the cutter held back once the values ended. The reply counts what it let
through, for the usage estimate, and builds the OpenAI objects: the whole
`ChatCompletion` from the whole text (the one place where a later step can
rework that text), the chunks of a stream and their usage.

`next_text` reads the values up to the next piece of text and reads nothing more
once the reply is cut, so the upstream request can be closed at once. It serves
`complete` and `stream_chunks` (the async core of `Client` and `AsyncClient`)
and the first piece and non-streamed replies of `koala serve`. The server's
streaming loop calls `Reply.feed` itself: one async call less per piece on its
hot path (server/streaming.py). Pure but for reading the values: no I/O of its
own.
"""

from __future__ import annotations

import random
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

from ..messages import JSONValue, text_of
from .cutting import ReplyCutter
from .params import CompletionRequest
from .provider import ChatProvider
from .types import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    ChatCompletionMessageToolCall,
    Choice,
    ChoiceDelta,
    ChunkChoice,
    CompletionUsage,
    FinishReason,
)
from .usage import completion_usage

__all__ = [
    "Reply",
    "complete",
    "new_completion_id",
    "next_text",
    "read_text",
    "stream_chunks",
]


def new_completion_id() -> str:
    """Return a fresh completion id in the OpenAI style (`chatcmpl-...`).

    An id only has to be unique, not secret: 96 bits from `random` (reseeded in
    every forked worker) cost no system call, unlike `secrets`.
    """
    return f"chatcmpl-{random.getrandbits(96):024x}"


class Reply:
    """One reply to `request` from `model`: its text as it comes, and its shape.

    Example:
        >>> hi = [{"role": "user", "content": "Hi"}]
        >>> reply = Reply(parse_request({"model": "", "messages": hi, "stop": "."}))
        >>> reply.feed("Hi. More"), reply.done, reply.finish_reason
        ('Hi', True, 'stop')
    """

    __slots__ = (
        "_cutter",
        "chars",
        "created",
        "done",
        "id",
        "model",
        "pieces",
        "request",
    )

    def __init__(self, request: CompletionRequest, model: str = "") -> None:
        self.request = request
        #: The model that answers (the provider's name for `request.model`).
        self.model = model or request.model
        self.id = new_completion_id()
        self.created = int(time.time())
        self._cutter = (
            ReplyCutter(request.stop, request.max_chars)
            if request.needs_cutting
            else None
        )
        #: True once the reply is over: cut, or `finish` was called.
        self.done = False
        #: The characters and non-empty pieces let through so far.
        self.chars = 0
        self.pieces = 0

    def feed(self, value: JSONValue) -> str:
        """Return the text to emit for the provider's next value ("" for none)."""
        text = value if type(value) is str else text_of(value)
        cutter = self._cutter
        if cutter is not None:
            text = cutter.feed(text)
            self.done = cutter.done
        if text:
            self.chars += len(text)
            self.pieces += 1
        return text

    def finish(self) -> str:
        """Return the text held back, once the values ended; harmless twice."""
        self.done = True
        text = self._cutter.flush() if self._cutter is not None else ""
        if text:
            self.chars += len(text)
            self.pieces += 1
        return text

    @property
    def finish_reason(self) -> FinishReason:
        """Return "length" when `max_tokens` cut the reply, else "stop"."""
        return self._cutter.finish_reason if self._cutter is not None else "stop"

    @property
    def stop_sequence(self) -> str | None:
        """Return the stop sequence that ended the reply (None: none did).

        A "stop" reply ended by one of the request's `stop` sequences names
        it; one that ended on its own, or was cut for length, names none.
        """
        cutter = self._cutter
        if cutter is None or cutter.finish_reason != "stop":
            return None
        return cutter.stop_sequence

    def usage(self) -> CompletionUsage:
        """Return the usage estimate of the text let through so far."""
        return completion_usage(self.request.messages, self.chars)

    def completion(
        self,
        text: str | None,
        tool_calls: list[ChatCompletionMessageToolCall] | None = None,
    ) -> ChatCompletion:
        """Return the whole reply as a `ChatCompletion`: its text or tool calls."""
        return ChatCompletion(
            id=self.id,
            choices=[
                Choice(
                    index=0,
                    message=ChatCompletionMessage(
                        content=None if tool_calls else text, tool_calls=tool_calls
                    ),
                    finish_reason="tool_calls" if tool_calls else self.finish_reason,
                )
            ],
            created=self.created,
            model=self.model,
            usage=self.usage(),
        )

    def chunk(
        self, delta: ChoiceDelta, finish_reason: FinishReason | None = None
    ) -> ChatCompletionChunk:
        """Return a chunk of the streamed reply that carries `delta`."""
        return ChatCompletionChunk(
            id=self.id,
            choices=[ChunkChoice(index=0, delta=delta, finish_reason=finish_reason)],
            created=self.created,
            model=self.model,
        )

    def usage_chunk(self) -> ChatCompletionChunk:
        """Return the last chunk of a stream with `include_usage`: no choices."""
        return ChatCompletionChunk(
            id=self.id,
            choices=[],
            created=self.created,
            model=self.model,
            usage=self.usage(),
        )


async def next_text(
    values: AsyncGenerator[JSONValue, None], reply: Reply
) -> str | None:
    """Return the reply's next piece of text, or None once it is over.

    Reads no value past the one that completed the cut. Closing `values` is
    the caller's job.

    Raises:
        KoalaError: whatever the provider raises (see `koala_chat.errors`).
    """
    if not reply.done:
        async for value in values:
            if text := reply.feed(value):
                return text
            if reply.done:
                break
    return reply.finish() or None


async def read_text(values: AsyncGenerator[JSONValue, None], reply: Reply) -> str:
    """Return the rest of the reply's text, read to its end or its cut."""
    pieces = []
    while (text := await next_text(values, reply)) is not None:
        pieces.append(text)
    return "".join(pieces)


def _open(
    provider: ChatProvider, request: CompletionRequest, options: dict[str, Any]
) -> tuple[Reply, AsyncGenerator[JSONValue, None]]:
    # Koala's default model depends on the dialect a call chose.
    chosen = {"protocol": options["protocol"]} if "protocol" in options else {}
    model = provider.get_model(request.model, **chosen)
    values = provider.create_async_generator(model, request.messages, **options)
    return Reply(request, model), values


async def complete(
    provider: ChatProvider, request: CompletionRequest, options: dict[str, Any]
) -> ChatCompletion:
    """Return the whole reply as a `ChatCompletion`.

    Raises:
        UsageError: the provider refuses the model or messages.
        TransportError, StatusError, ProtocolError: see `koala_chat.errors`.
    """
    reply, values = _open(provider, request, options)
    async with aclosing(values):
        text = await read_text(values, reply)
    return reply.completion(text)


async def stream_chunks(
    provider: ChatProvider, request: CompletionRequest, options: dict[str, Any]
) -> AsyncGenerator[ChatCompletionChunk, None]:
    """Yield the reply as chunks: the role, the text pieces, the finish reason.

    The first chunk is yielded only after the first piece of text arrived (or the
    reply ended), so that a failing request raises before any chunk. With
    `include_usage` a last chunk without choices carries the usage estimate.

    Raises:
        UsageError: the provider refuses the model or messages.
        TransportError, StatusError, ProtocolError: see `koala_chat.errors`.
    """
    reply, values = _open(provider, request, options)
    async with aclosing(values):
        text = await next_text(values, reply)
        yield reply.chunk(ChoiceDelta(content="", role="assistant"))
        while text is not None:
            yield reply.chunk(ChoiceDelta(content=text))
            text = await next_text(values, reply)
    yield reply.chunk(ChoiceDelta(), reply.finish_reason)
    if request.include_usage:
        yield reply.usage_chunk()
