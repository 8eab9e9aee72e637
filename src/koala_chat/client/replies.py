"""Turn a provider's reply into OpenAI-shaped completions and chunks.

The async core of `Client` and `AsyncClient`: `complete` returns a whole
`ChatCompletion`, `stream_chunks` yields `ChatCompletionChunk`s. Both apply
`stop` and `max_tokens` with a `ReplyCutter` and estimate the usage
(`params.estimate_tokens`: about four characters per token).
"""

from __future__ import annotations

import random
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from .cutting import ReplyCutter
from .params import CompletionRequest, prompt_tokens, tokens_for_length
from .provider import ChatProvider, text_pieces
from .types import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    Choice,
    ChoiceDelta,
    ChunkChoice,
    CompletionUsage,
    FinishReason,
)

__all__ = ["complete", "new_completion_id", "stream_chunks"]


def new_completion_id() -> str:
    """Return a fresh completion id in the OpenAI style (`chatcmpl-...`).

    An id only has to be unique, not secret: 96 bits from `random` (reseeded in
    every forked worker) cost no system call, unlike `secrets`.
    """
    return f"chatcmpl-{random.getrandbits(96):024x}"


@dataclass(slots=True)
class _Reply:
    """One reply being received: its pieces, already cut, and what was seen."""

    pieces: AsyncGenerator[str, None]
    cutter: ReplyCutter | None
    model: str
    id: str = field(default_factory=new_completion_id)
    created: int = field(default_factory=lambda: int(time.time()))
    chars: int = 0

    @property
    def finish_reason(self) -> FinishReason:
        return self.cutter.finish_reason if self.cutter else "stop"

    def usage(self, request: CompletionRequest) -> CompletionUsage:
        prompt = prompt_tokens(request.messages)
        completion = tokens_for_length(self.chars)
        return CompletionUsage(prompt, completion, prompt + completion)


def _open(
    provider: ChatProvider, request: CompletionRequest, options: dict[str, Any]
) -> _Reply:
    model = provider.get_model(request.model)
    pieces = text_pieces(provider, model, request.messages, options)
    if not request.needs_cutting:
        return _Reply(pieces, None, model)
    cutter = ReplyCutter(request.stop, request.max_chars)
    return _Reply(_cut(pieces, cutter), cutter, model)


async def _cut(
    pieces: AsyncGenerator[str, None], cutter: ReplyCutter
) -> AsyncGenerator[str, None]:
    """Yield the pieces as `cutter` lets them through; stop reading once cut."""
    async with aclosing(pieces):
        async for piece in pieces:
            if text := cutter.feed(piece):
                yield text
            if cutter.done:
                return
    if text := cutter.flush():
        yield text


async def complete(
    provider: ChatProvider, request: CompletionRequest, options: dict[str, Any]
) -> ChatCompletion:
    """Return the whole reply as a `ChatCompletion`.

    Raises:
        UsageError: the provider refuses the model or messages.
        TransportError, StatusError, ProtocolError: see `koala_chat.errors`.
    """
    reply = _open(provider, request, options)
    async with aclosing(reply.pieces) as pieces:
        text = "".join([piece async for piece in pieces])
    reply.chars = len(text)
    return ChatCompletion(
        id=reply.id,
        choices=[
            Choice(
                index=0,
                message=ChatCompletionMessage(content=text),
                finish_reason=reply.finish_reason,
            )
        ],
        created=reply.created,
        model=reply.model,
        usage=reply.usage(request),
    )


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
    reply = _open(provider, request, options)
    async with aclosing(reply.pieces) as pieces:
        first = await anext(pieces, None)
        yield _chunk(reply, ChoiceDelta(content="", role="assistant"))
        if first is not None:
            reply.chars += len(first)
            yield _chunk(reply, ChoiceDelta(content=first))
            async for piece in pieces:
                reply.chars += len(piece)
                yield _chunk(reply, ChoiceDelta(content=piece))
    yield _chunk(reply, ChoiceDelta(), reply.finish_reason)
    if request.include_usage:
        yield ChatCompletionChunk(
            id=reply.id,
            choices=[],
            created=reply.created,
            model=reply.model,
            usage=reply.usage(request),
        )


def _chunk(
    reply: _Reply, delta: ChoiceDelta, finish_reason: FinishReason | None = None
) -> ChatCompletionChunk:
    return ChatCompletionChunk(
        id=reply.id,
        choices=[ChunkChoice(index=0, delta=delta, finish_reason=finish_reason)],
        created=reply.created,
        model=reply.model,
    )
