"""OpenAI chat completions: `POST /v1/chat/completions`, the first adapter.

The request is the parameter table of `koala_chat._contract.params`; a reply
is a `chat.completion` object or a stream of `chat.completion.chunk` events
ended by `data: [DONE]`, and errors are `{"error": {...}}` (`failures.py`).

`ChunkEncoder` renders the events of one reply's stream: each event is
`data: ` and the `msgspec.json.encode` of one `ChatCompletionChunk`, which
the reply builds (`Reply.chunk`, `Reply.usage_chunk`), as it does for the
client. A content event is the server's hot path (`streaming.py`), so it is
not built as a struct each time: the bytes around the text are cut once per
stream from the encoding of a chunk (`framing.around_mark`), and an event
costs one `msgspec.json.encode` of the text and one concatenation.
tests/server/test_server.py proves that it is byte for byte the encoding of
the struct.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from aiohttp import web

from ..._contract.params import parse_request
from ..._contract.replies import Reply
from ..._contract.types import (
    ChatCompletion,
    ChatCompletionMessageToolCall,
    ChoiceDelta,
    ChoiceDeltaToolCall,
    FinishReason,
)
from ...messages import JSONValue
from ..conversation import handler
from ..failures import DONE_EVENT, Failure
from .base import Inbound, WireFormat
from .framing import MARK, around_mark, encode, event

__all__ = ["FORMAT", "ChatCompletions", "ChunkEncoder", "routes"]


class ChunkEncoder:
    """Render the `chat.completion.chunk` events of `reply`'s stream as bytes."""

    __slots__ = ("_prefix", "_reply", "_suffix")

    def __init__(self, reply: Reply) -> None:
        self._reply = reply
        self._prefix, self._suffix = around_mark(reply.chunk(ChoiceDelta(content=MARK)))

    def content(self, text: str) -> bytes:
        """Return the event that adds `text` to the reply.

        As `event(reply.chunk(ChoiceDelta(content=text)))`, without building it.
        """
        return self._prefix + encode(text) + self._suffix

    text = content

    def role(self) -> bytes:
        """Return the first event, which names the role."""
        return event(self._reply.chunk(ChoiceDelta(content="", role="assistant")))

    head = role

    def finish(self, reason: FinishReason) -> bytes:
        """Return the last event of the choice, with its finish reason."""
        return event(self._reply.chunk(ChoiceDelta(), reason))

    def usage(self) -> bytes:
        """Return the usage event (no choices), sent when `include_usage` asks."""
        return event(self._reply.usage_chunk())

    def tool_calls(self, calls: Sequence[ChatCompletionMessageToolCall]) -> bytes:
        """Return the chunks of a reply of tool calls, one call each.

        The first one names the role, as the OpenAI API's does.
        """
        return b"".join(
            event(
                self._reply.chunk(
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
        if self._reply.request.include_usage:
            tail += self.usage()
        return tail + DONE_EVENT

    def failed(self, failure: Failure) -> bytes:
        """Return the error event and `[DONE]`, which the SDKs raise from."""
        return failure.event() + DONE_EVENT


class ChatCompletions(WireFormat[None]):
    """The OpenAI chat completions API, as `koala_chat._contract.params` reads it."""

    name = "chat"

    def needs_worker(self, body: Mapping[str, JSONValue]) -> bool:
        return body.get("response_format") is not None or body.get("tools") is not None

    def parse(self, body: Mapping[str, JSONValue], *, strict: bool) -> Inbound[None]:
        return Inbound(parse_request(body, strict=strict), None)

    def encoder(self, inbound: Inbound[None], reply: Reply) -> ChunkEncoder:
        return ChunkEncoder(reply)

    def whole(
        self,
        inbound: Inbound[None],
        reply: Reply,
        content: str | None,
        tool_calls: Sequence[ChatCompletionMessageToolCall] | None = None,
    ) -> ChatCompletion:
        calls = list(tool_calls) if tool_calls else None
        return reply.completion(content, calls)


FORMAT: Final = ChatCompletions()

routes = web.RouteTableDef()
routes.post("/v1/chat/completions")(handler(FORMAT))
# As several clients call it (behind the key: `middleware.GUARDED`).
routes.post("/chat/completions")(handler(FORMAT))
