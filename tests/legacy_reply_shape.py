"""Transition only: the reply types and chunk encoder before the structs.

Kept for one commit so that tests/test_reply_shape_transition.py compares
their bytes with the structs' encoding; removed right after.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any, Literal, TypeAlias

import msgspec

from koala_chat.messages import JSONValue

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


class ChunkEncoder:
    """The chunk encoder as it was (hand-built bytes)."""

    _SUFFIX = b'},"logprobs":null,"finish_reason":null}]}\n\n'

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
        self.id, self.created, self.model = completion_id, created, model

    def content(self, text: str) -> bytes:
        return self._prefix + msgspec.json.encode(text) + self._SUFFIX

    def role(self) -> bytes:
        return (
            self._head
            + b'[{"index":0,"delta":{"content":"","role":"assistant"}'
            + self._SUFFIX[1:]
        )

    def finish(self, reason: str) -> bytes:
        return b"".join(
            (
                self._head,
                b'[{"index":0,"delta":{},"logprobs":null,"finish_reason":"',
                reason.encode(),
                b'"}]}\n\n',
            )
        )

    def usage(self, usage: CompletionUsage) -> bytes:
        return b"".join(
            (
                self._head,
                b'[],"usage":',
                msgspec.json.encode(usage.model_dump()),
                b"}\n\n",
            )
        )

    def tool_calls(self, calls: list[ChatCompletionMessageToolCall]) -> bytes:
        return b"".join(
            _event(
                ChatCompletionChunk(
                    self.id,
                    [
                        ChunkChoice(
                            0,
                            ChoiceDelta(
                                role="assistant" if index == 0 else None,
                                tool_calls=[
                                    ChoiceDeltaToolCall(index, call.id, call.function)
                                ],
                            ),
                        )
                    ],
                    self.created,
                    self.model,
                )
            )
            for index, call in enumerate(calls)
        )


def _event(chunk: ChatCompletionChunk) -> bytes:
    data = chunk.model_dump()
    if data["usage"] is None:
        del data["usage"]
    for choice in data["choices"]:
        choice["delta"] = {
            key: value for key, value in choice["delta"].items() if value is not None
        }
    return b"data: " + msgspec.json.encode(data) + b"\n\n"
