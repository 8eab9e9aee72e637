"""What a wire format is: one adapter between its bytes and the inside model.

Inside, `koala serve` knows one conversation: a request (`CompletionRequest`:
the messages with the system prompt first, the model, the options) and one
reply as a series of events (its text pieces, or its tool calls; then its end,
with the reason and the usage; or an error). Outside, each API a client may
speak (OpenAI chat completions, and the others beside it) is one `WireFormat`:
it turns its own request body into the inside request, and the inside events
into its own bytes.

The events are method calls on the format's `Encoder`, not objects: on the
server's hot path one object per text piece would cost more than the rest
(`streaming.py`). A streamed reply is

    head, text, text, ..., tail        a reply in text
    tool_calls, tail                   a reply of (emulated) tool calls

and any of them may be followed by `failed` instead of `tail`, when the reply
breaks after its start. A reply that is not streamed is `whole`; an error
before the start is `error`, a response of the format's own shape and status.

A format's module holds nothing else: the driver that reads the body, admits
the request, asks the provider and awaits the first piece is the same for all
(`koala_chat.server.conversation`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import ClassVar, Generic, Protocol, TypeVar

import msgspec
from aiohttp import web

from ..._contract.capabilities import Capabilities
from ..._contract.params import CompletionRequest
from ..._contract.replies import Reply
from ..._contract.types import ChatCompletionMessageToolCall, FinishReason
from ...messages import JSONValue
from ..failures import Failure

__all__ = ["Context", "Encoder", "Inbound", "WireFormat"]

#: What a format keeps of its request beyond the inside one (its own names,
#: what its replies echo back); `None` for a format that keeps nothing.
Context = TypeVar("Context")


class Encoder(Protocol):
    """The bytes of one streamed reply in one wire format (see the module)."""

    def head(self) -> bytes:
        """Return the opening of a reply in text, before its first piece."""
        ...

    def text(self, piece: str) -> bytes:
        """Return the event that adds `piece` (never empty) to the reply."""
        ...

    def tool_calls(self, calls: Sequence[ChatCompletionMessageToolCall]) -> bytes:
        """Return a whole reply of tool calls, its opening included."""
        ...

    def tail(self, reason: FinishReason) -> bytes:
        """Return the end of the reply, its usage and end-of-stream included."""
        ...

    def failed(self, failure: Failure) -> bytes:
        """Return the end of a reply that broke after its start."""
        ...


class Inbound(Generic[Context]):
    """A request in the inside model, with what its format keeps of it."""

    __slots__ = ("context", "request")

    def __init__(self, request: CompletionRequest, context: Context) -> None:
        self.request = request
        self.context = context


class WireFormat(ABC, Generic[Context]):
    """One API of `koala serve`: its request, its replies and its errors.

    A subclass names itself (`name`, as the access log shows it) and the
    media type of its streams, and answers the five calls below (and
    `model_for`, when its clients name models of their own); its module adds
    the routes (`koala_chat.server.conversation.handler`).
    """

    #: The format's name in the access log and the metrics, e.g. `chat`.
    name: ClassVar[str]
    #: The media type of a streamed reply.
    stream_type: ClassVar[str] = "text/event-stream"
    #: The path prefixes whose errors take this format's shape.
    paths: ClassVar[tuple[str, ...]] = ()
    #: Whether `/openapi.json` describes the format's routes: it describes
    #: the OpenAI-shaped ones, whose clients read such a document.
    in_openapi: ClassVar[bool] = True

    def needs_worker(self, body: Mapping[str, JSONValue]) -> bool:
        """Tell whether checking `body` may take long (it holds JSON Schemas).

        Such a body is parsed on a thread of `koala_chat._contract.worker`.
        """
        return False

    @abstractmethod
    def parse(self, body: Mapping[str, JSONValue], *, strict: bool) -> Inbound[Context]:
        """Return the inside request of `body`, a JSON object.

        `strict` refuses parameters the format does not know; otherwise they
        are ignored and named in the request's `ignored`.

        Raises:
            UsageError: the body is not a request of this format; the message
                names the offending parameter.
        """

    def model_for(self, requested: str, capabilities: Capabilities) -> str:
        """Return the model name to resolve for the `requested` one.

        `capabilities` are the provider's; "" asks for its default model. By
        default the name is resolved as it is.
        """
        return requested

    @abstractmethod
    def encoder(self, inbound: Inbound[Context], reply: Reply) -> Encoder:
        """Return the encoder of the streamed `reply` to `inbound`."""

    @abstractmethod
    def whole(
        self,
        inbound: Inbound[Context],
        reply: Reply,
        content: str | None,
        tool_calls: Sequence[ChatCompletionMessageToolCall] | None = None,
    ) -> JSONValue | msgspec.Struct:
        """Return the reply that is not streamed: its text or its tool calls.

        A struct is encoded as it is: its encoding is the wire shape.
        """

    def error(self, failure: Failure) -> web.Response:
        """Return `failure` as a response of this format (OpenAI's by default)."""
        return failure.response()
