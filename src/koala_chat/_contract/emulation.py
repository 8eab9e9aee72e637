"""Emulated replies: JSON mode and tool calls, read whole, checked, retried once.

A request with `response_format` or `tools` (`CompletionRequest.emulated`) is
answered here instead of piece by piece: the reply is read whole, its JSON or
tool calls are found and validated (`jsonmode.py`, `tools.py`) on a thread of
`worker.py`, off the event loop, and a reply that fails is asked for once
more, with the reason quoted to the model. A second failure raises
`EmulationError` (a `ProtocolError`: `koala serve` answers 502) whose message
says why. A streamed request gets the checked result as a few chunks once it
is known, in the OpenAI shapes (tool calls as `delta.tool_calls` with index,
id, type and function).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, Final

from ..errors import EmulationError
from ..messages import JSONValue, NormalizedMessage
from .jsonmode import extract_json
from .params import CompletionRequest
from .provider import ChatProvider
from .replies import Reply, read_text
from .tools import ReplyProblem, ToolCallRequest, new_call_id, read_tool_calls
from .types import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessageToolCall,
    ChoiceDelta,
    ChoiceDeltaToolCall,
    Function,
)
from .validation import validate
from .worker import off_loop

__all__ = [
    "EmulationError",
    "Outcome",
    "complete_emulated",
    "emulate",
    "emulated_chunks",
    "interpret",
]

#: The attempts at a usable reply: the first, and one retry.
ATTEMPTS: Final = 2


@dataclass(frozen=True, slots=True)
class Outcome:
    """A checked emulated reply: its text (JSON or plain) or its tool calls."""

    reply: Reply
    content: str | None
    tool_calls: list[ChatCompletionMessageToolCall] | None = None

    def completion(self) -> ChatCompletion:
        """Return the reply as a `ChatCompletion`."""
        return self.reply.completion(self.content, self.tool_calls)

    def chunks(self) -> list[ChatCompletionChunk]:
        """Return the reply as the chunks of a stream (usage last, if asked)."""
        reply = self.reply
        if self.tool_calls:
            chunks = [
                reply.chunk(
                    ChoiceDelta(
                        role="assistant" if index == 0 else None,
                        tool_calls=[ChoiceDeltaToolCall(index, call.id, call.function)],
                    )
                )
                for index, call in enumerate(self.tool_calls)
            ]
            chunks.append(reply.chunk(ChoiceDelta(), "tool_calls"))
        else:
            chunks = [reply.chunk(ChoiceDelta(content="", role="assistant"))]
            if self.content:
                chunks.append(reply.chunk(ChoiceDelta(content=self.content)))
            chunks.append(reply.chunk(ChoiceDelta(), reply.finish_reason))
        if reply.request.include_usage:
            chunks.append(reply.usage_chunk())
        return chunks


def interpret(
    text: str, request: CompletionRequest
) -> tuple[str | None, list[ToolCallRequest] | None]:
    """Return what a reply gives: its content, or the tools it calls.

    Raises:
        ReplyProblem: the reply does not give what the request asks for.
    """
    tools = request.tools
    if tools is not None:
        calls = read_tool_calls(text, tools)
        if calls:
            return None, calls
        if tools.mode != "auto":
            raise ReplyProblem(
                "the reply calls no tool, but a tool call is required; answer "
                'with {"tool_calls": [...]}'
            )
    json_format = request.json_format
    if json_format is None:
        return text, None
    found = extract_json(text)
    if found is None or not isinstance(found[1], dict):
        raise ReplyProblem("the reply holds no JSON object")
    if problem := validate(found[1], json_format.schema):
        raise ReplyProblem(f"the JSON does not match the schema: {problem}")
    return found[0], None


async def emulate(
    provider: ChatProvider,
    request: CompletionRequest,
    options: Mapping[str, Any],
    *,
    model: tuple[str, str] | None = None,
) -> Outcome:
    """Ask for the reply, check it, ask once more if it fails; return it.

    `model` is the name to show and the name to send, when the caller resolved
    them itself (a provider with dialects sends an empty name as it is); by
    default both are `provider.get_model(request.model)`.

    Raises:
        EmulationError: the reply failed its check twice; the message says why.
        UsageError: the provider refuses the model or messages.
        TransportError, StatusError, ProtocolError: see `koala_chat.errors`.
    """
    shown, sent = model or (provider.get_model(request.model),) * 2
    messages = request.messages
    problem = ""
    for _ in range(ATTEMPTS):
        reply = Reply(request, shown)
        values: AsyncGenerator[JSONValue, None] = provider.create_async_generator(
            sent, messages, **options
        )
        async with aclosing(values):
            text = await read_text(values, reply)
        try:
            content, calls = await off_loop(interpret, text, request)
        except ReplyProblem as exc:
            problem = str(exc)
            messages = _retry(request.messages, text, problem)
            continue
        tool_calls = [
            ChatCompletionMessageToolCall(
                new_call_id(), Function(call.name, call.arguments)
            )
            for call in calls or ()
        ]
        return Outcome(reply, content, tool_calls or None)
    raise EmulationError(
        f"the model's reply was not usable, even when asked again: {problem}"
    )


async def complete_emulated(
    provider: ChatProvider, request: CompletionRequest, options: Mapping[str, Any]
) -> ChatCompletion:
    """Return the checked reply as a `ChatCompletion` (raises as `emulate`)."""
    return (await emulate(provider, request, options)).completion()


async def emulated_chunks(
    provider: ChatProvider, request: CompletionRequest, options: Mapping[str, Any]
) -> AsyncGenerator[ChatCompletionChunk, None]:
    """Yield the checked reply as chunks, once known (raises as `emulate`)."""
    for chunk in (await emulate(provider, request, options)).chunks():
        yield chunk


def _retry(
    messages: list[NormalizedMessage], text: str, problem: str
) -> list[NormalizedMessage]:
    """Return the conversation that asks again, quoting what was wrong."""
    return [
        *messages,
        {"role": "assistant", "content": text},
        {
            "role": "user",
            "content": (
                f"Your reply cannot be used: {problem}. Answer again, following "
                "the instructions exactly."
            ),
        },
    ]
