"""The OpenAI-shaped objects of a reply: declared once, for client and server.

Typed `msgspec.Struct`s named after their openai-python counterparts
(`ChatCompletion`, `ChatCompletionChunk`, `CompletionUsage`, `Model`, ...).
The declaration is the wire shape: the field order is the key order,
`msgspec.json.encode` of an object is what `koala serve` sends, the OpenAPI
components are generated from these classes (`server/components.py`), and
`model_dump()` and `to_dict()` give the same JSON object as Python values.
Members the OpenAI API leaves out rather than send as null (a delta's absent
role, a message's absent tool calls, a chunk's absent usage) are left out.
How the msgspec options used here behave: docs/reply-shape.md. Nothing here
does I/O.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal, TypeAlias

import msgspec

from ..messages import JSONValue

__all__ = [
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatCompletionMessage",
    "ChatCompletionMessageToolCall",
    "Choice",
    "ChoiceDelta",
    "ChoiceDeltaToolCall",
    "ChunkChoice",
    "CompletionUsage",
    "Count",
    "FinishReason",
    "Function",
    "Model",
    "ModelList",
    "always_sent",
]

#: Why a reply ended: the upstream finished ("stop", also when one of the
#: `stop` sequences was met), the `max_tokens` estimate was reached ("length")
#: or the (emulated) reply calls tools ("tool_calls").
FinishReason: TypeAlias = Literal["stop", "length", "tool_calls"]

#: A token count, or a choice's index: never negative.
Count: TypeAlias = Annotated[int, msgspec.Meta(ge=0)]


def always_sent(value: Any) -> Any:
    """Return a default that is sent even in a struct that omits defaults.

    `omit_defaults` leaves out a member equal to its plain default, never one
    that a default factory made (docs/reply-shape.md): so a constant such as
    `"object": "chat.completion.chunk"` or `"system_fingerprint": null` stays
    in the JSON beside members that are left out when absent.
    """
    return msgspec.field(default_factory=lambda: value)


class _OpenAIObject(msgspec.Struct):
    """`model_dump()`, `to_dict()` and `model_dump_json()` for the structs."""

    def model_dump(self, *, exclude_none: bool = False) -> dict[str, JSONValue]:
        """Return the object as the OpenAI API's JSON object (a new dict)."""
        dumped: dict[str, JSONValue] = msgspec.to_builtins(self)
        return _without_none(dumped) if exclude_none else dumped

    def to_dict(self, *, exclude_none: bool = False) -> dict[str, JSONValue]:
        """Return the object as the OpenAI API's JSON object (as `model_dump`)."""
        return self.model_dump(exclude_none=exclude_none)

    def model_dump_json(self, *, exclude_none: bool = False) -> str:
        """Return the object as OpenAI API JSON text."""
        if exclude_none:
            return msgspec.json.encode(self.model_dump(exclude_none=True)).decode()
        return msgspec.json.encode(self).decode()


def _without_none(value: JSONValue) -> JSONValue:
    """Return `value` without the null members of its objects, at any depth."""
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(item) for item in value]
    return value


class CompletionUsage(_OpenAIObject):
    """Token counts of one completion.

    Koala reports no token counts, so these are estimates: about four
    characters per token, never exact.
    """

    prompt_tokens: Count
    completion_tokens: Count
    total_tokens: Count


class Function(_OpenAIObject):
    """The function a tool call calls: its name and its arguments as JSON text."""

    name: str
    arguments: str


class ChatCompletionMessageToolCall(_OpenAIObject):
    """One tool call of a reply (emulated from the reply's text)."""

    id: str
    function: Function
    type: Literal["function"] = "function"


class ChatCompletionMessage(_OpenAIObject, omit_defaults=True):
    """The assistant's reply in a non-streaming completion.

    `content` is null when the reply calls tools; `tool_calls` is left out
    when it calls none.
    """

    content: str | None
    role: Literal["assistant"] = always_sent("assistant")
    refusal: str | None = always_sent(None)
    tool_calls: list[ChatCompletionMessageToolCall] | None = None


class Choice(_OpenAIObject):
    """One choice of a non-streaming completion (Koala gives exactly one)."""

    index: Count
    message: ChatCompletionMessage
    finish_reason: FinishReason
    logprobs: None = None


class ChatCompletion(_OpenAIObject):
    """A whole reply, shaped like the OpenAI `chat.completion` object.

    The usage is an estimate: about four characters per token.
    """

    id: str
    choices: Annotated[list[Choice], msgspec.Meta(min_length=1, max_length=1)]
    created: int
    model: str
    usage: CompletionUsage | None = None
    object: Literal["chat.completion"] = "chat.completion"
    system_fingerprint: str | None = None


class ChoiceDeltaToolCall(_OpenAIObject):
    """One tool call in a chunk; `index` says which call of the reply it is."""

    index: Count
    id: str | None = None
    function: Function | None = None
    type: Literal["function"] | None = "function"


class ChoiceDelta(_OpenAIObject, omit_defaults=True):
    """What one chunk adds to the reply: the role (first chunk), text or calls.

    A member the chunk does not carry is left out.
    """

    content: str | None = None
    role: Literal["assistant"] | None = None
    refusal: str | None = None
    tool_calls: list[ChoiceDeltaToolCall] | None = None


# Keyword-only, as the OpenAI key order (`logprobs` before `finish_reason`)
# is the field order. The docstrings are the OpenAPI descriptions too.
class ChunkChoice(_OpenAIObject, kw_only=True):
    """One choice of a streamed chunk (`choices[0]` of `ChatCompletionChunk`)."""

    index: Count
    delta: ChoiceDelta
    logprobs: None = None
    finish_reason: FinishReason | None = None


# Keyword-only, as the OpenAI key order puts `object` before `created`.
class ChatCompletionChunk(_OpenAIObject, omit_defaults=True, kw_only=True):
    """One streamed piece, shaped like the OpenAI `chat.completion.chunk` object.

    A stream's first chunk carries the role, the following ones text, the last
    one with choices the finish reason; with `stream_options.include_usage` a
    last chunk without choices carries the usage estimate, which no other
    chunk has.
    """

    id: str
    object: Literal["chat.completion.chunk"] = always_sent("chat.completion.chunk")
    created: int
    model: str
    system_fingerprint: str | None = always_sent(None)
    choices: Annotated[list[ChunkChoice], msgspec.Meta(max_length=1)]
    usage: CompletionUsage | None = None


class Model(_OpenAIObject):
    """A model the provider offers, shaped like the OpenAI `model` object."""

    id: str
    created: int = 0
    owned_by: str = "koala"
    object: Literal["model"] = "model"


class ModelList(_OpenAIObject):
    """The models of a provider; iterating yields them (as the SDK's page does)."""

    data: list[Model]
    object: Literal["list"] = "list"

    def __iter__(self) -> Iterator[Model]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)
