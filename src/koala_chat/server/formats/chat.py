"""OpenAI chat completions: `POST /v1/chat/completions`, the first adapter.

The request is the parameter table of `koala_chat.contract.params`; a reply
is a `chat.completion` object or a stream of `chat.completion.chunk` events
ended by `data: [DONE]`, and errors are `{"error": {...}}` (`failures.py`).

`ChunkEncoder` renders the events of one stream: every event shares
everything but its text, so the constant bytes are rendered once per stream
and a content event costs one `msgspec.json.encode` of the text and one
concatenation (the server's hot path, `streaming.py`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

import msgspec
from aiohttp import web

from ...contract.params import parse_request
from ...contract.replies import Reply
from ...contract.types import (
    ChatCompletionChunk,
    ChatCompletionMessageToolCall,
    ChoiceDelta,
    ChoiceDeltaToolCall,
    CompletionUsage,
    FinishReason,
)
from ...messages import JSONValue
from ..conversation import handler
from ..failures import DONE_EVENT, Failure
from .base import Inbound, WireFormat

__all__ = ["FORMAT", "ChatCompletions", "ChunkEncoder", "routes"]


class ChunkEncoder:
    """Render the `chat.completion.chunk` events of one stream as bytes.

    The JSON has the keys and order of the OpenAI API (and of
    `koala_chat.contract.types.ChatCompletionChunk`).
    """

    __slots__ = ("_head", "_prefix", "_reply")

    _SUFFIX: Final = b'},"logprobs":null,"finish_reason":null}]}\n\n'

    def __init__(self, completion_id: str, created: int, model: str) -> None:
        self._head = b"".join(
            (
                b'data: {"id":',
                msgspec.json.encode(completion_id),
                b',"object":"chat.completion.chunk","created":',
                str(int(created)).encode(),
                b',"model":',
                msgspec.json.encode(model),
                b',"system_fingerprint":null,"choices":',
            )
        )
        self._prefix = self._head + b'[{"index":0,"delta":{"content":'
        self._reply: Reply | None = None

    @classmethod
    def of(cls, reply: Reply) -> ChunkEncoder:
        """Return the encoder of `reply`'s stream (its usage when it asks)."""
        encoder = cls(reply.id, reply.created, reply.model)
        encoder._reply = reply
        return encoder

    def content(self, text: str) -> bytes:
        """Return the event that adds `text` to the reply."""
        return self._prefix + msgspec.json.encode(text) + self._SUFFIX

    text = content

    def role(self) -> bytes:
        """Return the first event, which names the role."""
        return (
            self._head
            + b'[{"index":0,"delta":{"content":"","role":"assistant"}'
            + self._SUFFIX[1:]
        )

    head = role

    def finish(self, reason: FinishReason) -> bytes:
        """Return the last event of the choice, with its finish reason."""
        return b"".join(
            (
                self._head,
                b'[{"index":0,"delta":{},"logprobs":null,"finish_reason":"',
                reason.encode(),
                b'"}]}\n\n',
            )
        )

    def usage(self, usage: CompletionUsage) -> bytes:
        """Return the usage event (no choices), sent when `include_usage` asks."""
        return b"".join(
            (
                self._head,
                b'[],"usage":',
                msgspec.json.encode(usage.model_dump()),
                b"}\n\n",
            )
        )

    def tool_calls(self, calls: Sequence[ChatCompletionMessageToolCall]) -> bytes:
        """Return the chunks of a reply of tool calls, one call each.

        The first one names the role, as the OpenAI API's does.
        """
        reply = self._reply
        assert reply is not None  # only a reply's encoder (`of`) is asked
        return b"".join(
            _event(
                reply.chunk(
                    ChoiceDelta(
                        role="assistant" if index == 0 else None,
                        tool_calls=[ChoiceDeltaToolCall(index, call.id, call.function)],
                    )
                )
            )
            for index, call in enumerate(calls)
        )

    def tail(self, reason: FinishReason) -> bytes:
        """Return the finish event, the usage event when asked, and `[DONE]`."""
        tail = self.finish(reason)
        reply = self._reply
        if reply is not None and reply.request.include_usage:
            tail += self.usage(reply.usage())
        return tail + DONE_EVENT

    def failed(self, failure: Failure) -> bytes:
        """Return the error event and `[DONE]`, which the SDKs raise from."""
        return failure.event() + DONE_EVENT


def _event(chunk: ChatCompletionChunk) -> bytes:
    """Return the event of `chunk`, whose deltas name only what they carry.

    As `ChunkEncoder`'s events: no `usage` member but on the usage chunk.
    """
    data = chunk.model_dump()
    if data["usage"] is None:
        del data["usage"]
    for choice in data["choices"]:
        choice["delta"] = {
            key: value for key, value in choice["delta"].items() if value is not None
        }
    return b"data: " + msgspec.json.encode(data) + b"\n\n"


class ChatCompletions(WireFormat[None]):
    """The OpenAI chat completions API, as `koala_chat.contract.params` reads it."""

    name = "chat"

    def needs_worker(self, body: Mapping[str, JSONValue]) -> bool:
        return body.get("response_format") is not None or body.get("tools") is not None

    def parse(self, body: Mapping[str, JSONValue], *, strict: bool) -> Inbound[None]:
        return Inbound(parse_request(body, strict=strict), None)

    def encoder(self, inbound: Inbound[None], reply: Reply) -> ChunkEncoder:
        return ChunkEncoder.of(reply)

    def whole(
        self,
        inbound: Inbound[None],
        reply: Reply,
        content: str | None,
        tool_calls: Sequence[ChatCompletionMessageToolCall] | None = None,
    ) -> JSONValue:
        calls = list(tool_calls) if tool_calls else None
        return reply.completion(content, calls).model_dump()


FORMAT: Final = ChatCompletions()

routes = web.RouteTableDef()
routes.post("/v1/chat/completions")(handler(FORMAT))
# As several clients call it (`routes.unprefixed_middleware`).
routes.post("/chat/completions")(handler(FORMAT))
