"""The OpenAI-shaped objects of a reply, as the client returns them.

Typed, slotted dataclasses named after their openai-python counterparts
(`ChatCompletion`, `ChatCompletionChunk`, `CompletionUsage`, `Model`, ...).
`model_dump()` and `to_dict()` give the JSON shape of the OpenAI API, with the
same keys and order, so an object can be serialised or compared with what the
OpenAI API would send. Nothing here does I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any, Literal, TypeAlias

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
    "FinishReason",
    "Function",
    "Model",
    "ModelList",
]

#: Why a reply ended: the upstream finished ("stop", also when one of the
#: `stop` sequences was met), the `max_tokens` estimate was reached ("length")
#: or the (emulated) reply calls tools ("tool_calls").
FinishReason: TypeAlias = Literal["stop", "length", "tool_calls"]


#: A member that the OpenAI API leaves out rather than send as null.
_OPTIONAL: Any = dataclasses.field(default=None, metadata={"omit_none": True})


class _OpenAIObject:
    """`model_dump()`, `to_dict()` and `model_dump_json()` for the dataclasses."""

    __slots__ = ()

    def model_dump(self, *, exclude_none: bool = False) -> dict[str, JSONValue]:
        """Return the object as the OpenAI API's JSON object (a new dict)."""
        return _dump(self, exclude_none)  # type: ignore[no-any-return]

    def to_dict(self, *, exclude_none: bool = False) -> dict[str, JSONValue]:
        """Return the object as the OpenAI API's JSON object (as `model_dump`)."""
        return self.model_dump(exclude_none=exclude_none)

    def model_dump_json(self, *, exclude_none: bool = False) -> str:
        """Return the object as OpenAI API JSON text."""
        return msgspec.json.encode(self.model_dump(exclude_none=exclude_none)).decode()


def _dump(value: object, exclude_none: bool) -> JSONValue:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        result: dict[str, JSONValue] = {}
        for field in dataclasses.fields(value):
            item = getattr(value, field.name)
            if item is None and (exclude_none or field.metadata.get("omit_none")):
                continue
            result[field.name] = _dump(item, exclude_none)
        return result
    if isinstance(value, list | tuple):
        return [_dump(item, exclude_none) for item in value]
    return value


@dataclasses.dataclass(slots=True)
class CompletionUsage(_OpenAIObject):
    """Token counts of one completion.

    Koala reports no token counts, so these are estimates: about four characters
    per token (`koala_chat.contract.usage`), never exact.
    """

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


@dataclasses.dataclass(slots=True)
class Function(_OpenAIObject):
    """The function a tool call calls: its name and its arguments as JSON text."""

    name: str
    arguments: str


@dataclasses.dataclass(slots=True)
class ChatCompletionMessageToolCall(_OpenAIObject):
    """One tool call of a reply (emulated: see `koala_chat.contract.tools`)."""

    id: str
    function: Function
    type: Literal["function"] = "function"


@dataclasses.dataclass(slots=True)
class ChatCompletionMessage(_OpenAIObject):
    """The assistant's reply in a non-streaming completion."""

    content: str | None
    role: Literal["assistant"] = "assistant"
    refusal: str | None = None
    tool_calls: list[ChatCompletionMessageToolCall] | None = _OPTIONAL


@dataclasses.dataclass(slots=True)
class Choice(_OpenAIObject):
    """One choice of a non-streaming completion (Koala gives exactly one)."""

    index: int
    message: ChatCompletionMessage
    finish_reason: FinishReason
    logprobs: None = None


@dataclasses.dataclass(slots=True)
class ChatCompletion(_OpenAIObject):
    """A whole reply, shaped like the OpenAI `chat.completion` object."""

    id: str
    choices: list[Choice]
    created: int
    model: str
    usage: CompletionUsage | None = None
    object: Literal["chat.completion"] = "chat.completion"
    system_fingerprint: str | None = None


@dataclasses.dataclass(slots=True)
class ChoiceDeltaToolCall(_OpenAIObject):
    """One tool call in a chunk; `index` says which call of the reply it is."""

    index: int
    id: str | None = None
    function: Function | None = None
    type: Literal["function"] | None = "function"


@dataclasses.dataclass(slots=True)
class ChoiceDelta(_OpenAIObject):
    """What one chunk adds to the reply: the role (first chunk), text or calls."""

    content: str | None = None
    role: Literal["assistant"] | None = None
    refusal: str | None = None
    tool_calls: list[ChoiceDeltaToolCall] | None = _OPTIONAL


@dataclasses.dataclass(slots=True)
class ChunkChoice(_OpenAIObject):
    """One choice of a streamed chunk (`choices[0]` of `ChatCompletionChunk`)."""

    index: int
    delta: ChoiceDelta
    finish_reason: FinishReason | None = None
    logprobs: None = None


@dataclasses.dataclass(slots=True)
class ChatCompletionChunk(_OpenAIObject):
    """One streamed piece, shaped like the OpenAI `chat.completion.chunk` object.

    A stream's first chunk carries the role, the following ones text, the last
    one (before an optional usage chunk with no choices) the finish reason.
    """

    id: str
    choices: list[ChunkChoice]
    created: int
    model: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    system_fingerprint: str | None = None
    usage: CompletionUsage | None = None


@dataclasses.dataclass(slots=True)
class Model(_OpenAIObject):
    """A model the provider offers, shaped like the OpenAI `model` object."""

    id: str
    created: int = 0
    owned_by: str = "koala"
    object: Literal["model"] = "model"


@dataclasses.dataclass(slots=True)
class ModelList(_OpenAIObject):
    """The models of a provider; iterating yields them (as the SDK's page does)."""

    data: list[Model]
    object: Literal["list"] = "list"

    def __iter__(self) -> Iterator[Model]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)
