"""The Anthropic Messages API: `POST /v1/messages` and its `count_tokens`.

The request is read by `messages_request.py`. A reply is a `message` object,
or a stream of named events (`event:` and `data:` lines), in the order the
Anthropic SDKs' stream helpers accumulate:

    message_start        the message, its content empty, its input usage
    ping
    content_block_start  a text block (or a tool_use block per emulated call)
    content_block_delta  text_delta, once per piece (input_json_delta: a call)
    content_block_stop
    message_delta        stop_reason, stop_sequence, usage.output_tokens
    message_stop

A failure after the start is an `event: error`, whose data is the error
object, as the SDKs read it. Errors before the start are
`{"type": "error", "error": {"type", "message"}}` at the status of the
failure (`failures.py`), its type named from the status.

Claude Code names Anthropic's models (`claude-sonnet-4-5`, ...), which Koala
does not serve: a `claude-` name the provider does not list is answered by
the provider's default model (`model_for`); any other name is resolved as the
chat format resolves it. `count_tokens` answers the estimate koala-chat uses
everywhere (`_contract.usage`), not a tokenizer's count.

`MessageEncoder` renders the events of one stream: a text piece costs one
`msgspec.json.encode` of its text and one concatenation with constant bytes,
as the chat format's does (the server's hot path, `streaming.py`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Final

import msgspec
from aiohttp import web

from ..._contract.capabilities import Capabilities
from ..._contract.replies import Reply
from ..._contract.types import ChatCompletionMessageToolCall, FinishReason
from ..._contract.usage import prompt_tokens, tokens_for_length
from ..._contract.worker import off_loop
from ...messages import JSONValue
from ..accesslog import LOG_KEY
from ..conversation import handler, json_response, read_object
from ..failures import Failure
from ..state import STATE_KEY
from ..streaming import RequestLog
from .base import Inbound, WireFormat
from .messages_request import parse_messages

__all__ = ["ERROR_TYPES", "FORMAT", "MessageEncoder", "Messages", "routes"]

#: The Anthropic error type of each status; any other 4xx is an
#: `invalid_request_error`, any other 5xx an `api_error`.
ERROR_TYPES: Final[Mapping[int, str]] = {
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}

#: Why a reply ended, in the Messages API's words (`stop_sequence` apart).
_STOP_REASONS: Final[Mapping[str, str]] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
}

_DELTA: Final = (
    b"event: content_block_delta\n"
    b'data: {"type":"content_block_delta","index":0,'
    b'"delta":{"type":"text_delta","text":'
)
_DELTA_END: Final = b"}}\n\n"
_PING: Final = b'event: ping\ndata: {"type":"ping"}\n\n'
_TEXT_START: Final = (
    b"event: content_block_start\n"
    b'data: {"type":"content_block_start","index":0,'
    b'"content_block":{"type":"text","text":""}}\n\n'
)
_STOP: Final = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'


def _event(name: str, data: JSONValue) -> bytes:
    """Return one named event of `data`, whose `type` is the event's name."""
    return b"".join(
        (b"event: ", name.encode(), b"\ndata: ", msgspec.json.encode(data), b"\n\n")
    )


def _block_stop(index: int) -> bytes:
    return _event("content_block_stop", {"type": "content_block_stop", "index": index})


def message_id(reply: Reply) -> str:
    """Return the id of `reply` in the Messages API's style (`msg_...`)."""
    return "msg_" + reply.id.partition("-")[2]


def _usage(reply: Reply, output_tokens: int) -> dict[str, JSONValue]:
    return {
        "input_tokens": prompt_tokens(reply.request.messages),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
    }


def _tool_use(call: ChatCompletionMessageToolCall) -> dict[str, JSONValue]:
    """Return an emulated call as a `tool_use` block, its input empty."""
    return {
        "type": "tool_use",
        "id": "toolu_" + call.id.removeprefix("call_"),
        "name": call.function.name,
        "input": {},
    }


class MessageEncoder:
    """Render the events of one streamed message as bytes (see the module)."""

    __slots__ = ("_open", "_reply")

    def __init__(self, reply: Reply) -> None:
        self._reply = reply
        #: A text block was opened and not yet stopped.
        self._open = False

    def _start(self) -> bytes:
        reply = self._reply
        message: dict[str, JSONValue] = {
            "id": message_id(reply),
            "type": "message",
            "role": "assistant",
            "model": reply.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": _usage(reply, 0),
        }
        return (
            _event("message_start", {"type": "message_start", "message": message})
            + _PING
        )

    def head(self) -> bytes:
        """Return the message's start and the start of its text block."""
        self._open = True
        return self._start() + _TEXT_START

    def text(self, piece: str) -> bytes:
        """Return the `text_delta` event that adds `piece`."""
        return _DELTA + msgspec.json.encode(piece) + _DELTA_END

    def tool_calls(self, calls: Sequence[ChatCompletionMessageToolCall]) -> bytes:
        """Return the message's start and a `tool_use` block per call."""
        events = [self._start()]
        for index, call in enumerate(calls):
            events.append(
                _event(
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": _tool_use(call),
                    },
                )
            )
            events.append(
                _event(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {
                            "type": "input_json_delta",
                            "partial_json": call.function.arguments,
                        },
                    },
                )
            )
            events.append(_block_stop(index))
        return b"".join(events)

    def tail(self, reason: FinishReason) -> bytes:
        """Return the end of the text block, `message_delta` and `message_stop`."""
        reply = self._reply
        stop = _block_stop(0) if self._open else b""
        self._open = False
        stop_reason, stop_sequence = stop_reason_of(reply, reason)
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
            "usage": {
                "input_tokens": prompt_tokens(reply.request.messages),
                "output_tokens": tokens_for_length(reply.chars),
            },
        }
        return stop + _event("message_delta", delta) + _STOP

    def failed(self, failure: Failure) -> bytes:
        """Return the `error` event that ends a broken stream."""
        return _event("error", error_body(failure))


def stop_reason_of(reply: Reply, reason: FinishReason) -> tuple[str, str | None]:
    """Return the `stop_reason` and `stop_sequence` of a reply that ended so."""
    sequence = reply.stop_sequence if reason == "stop" else None
    if sequence is not None:
        return "stop_sequence", sequence
    return _STOP_REASONS[reason], None


def error_type(status: int) -> str:
    """Return the Anthropic error type of an error at `status`."""
    found = ERROR_TYPES.get(status)
    if found is not None:
        return found
    return "api_error" if status >= 500 else "invalid_request_error"


def error_body(failure: Failure) -> dict[str, JSONValue]:
    """Return `failure` as the Messages API's error object."""
    return {
        "type": "error",
        "error": {"type": error_type(failure.status), "message": failure.message},
    }


class Messages(WireFormat[None]):
    """The Anthropic Messages API, served on the inside conversation."""

    name = "messages"
    paths = ("/v1/messages",)
    in_openapi = False

    def needs_worker(self, body: Mapping[str, JSONValue]) -> bool:
        return body.get("tools") is not None or body.get("output_config") is not None

    def parse(self, body: Mapping[str, JSONValue], *, strict: bool) -> Inbound[None]:
        return Inbound(parse_messages(body, strict=strict), None)

    def model_for(self, requested: str, capabilities: Capabilities) -> str:
        """Return "" (the default model) for a `claude-` name not listed."""
        if not requested.startswith("claude-"):
            return requested
        for models in capabilities.model_sets.values():
            if requested in models.models:
                return requested
        return ""

    def encoder(self, inbound: Inbound[None], reply: Reply) -> MessageEncoder:
        return MessageEncoder(reply)

    def whole(
        self,
        inbound: Inbound[None],
        reply: Reply,
        content: str | None,
        tool_calls: Sequence[ChatCompletionMessageToolCall] | None = None,
    ) -> JSONValue:
        blocks: list[JSONValue]
        if tool_calls:
            blocks = [
                {**_tool_use(call), "input": json.loads(call.function.arguments)}
                for call in tool_calls
            ]
            reason: FinishReason = "tool_calls"
        else:
            blocks = [{"type": "text", "text": content}] if content else []
            reason = reply.finish_reason
        stop_reason, stop_sequence = stop_reason_of(reply, reason)
        return {
            "id": message_id(reply),
            "type": "message",
            "role": "assistant",
            "model": reply.model,
            "content": blocks,
            "stop_reason": stop_reason,
            "stop_sequence": stop_sequence,
            "usage": _usage(reply, tokens_for_length(reply.chars)),
        }

    def error(self, failure: Failure) -> web.Response:
        response = web.Response(
            status=failure.status,
            body=msgspec.json.encode(error_body(failure)),
            content_type="application/json",
            headers=failure.headers,
        )
        if failure.close:
            response.force_close()
        return response


FORMAT: Final = Messages()


async def count_tokens(request: web.Request) -> web.Response:
    """Answer `{"input_tokens": N}`, koala-chat's estimate of the prompt.

    Counted as the request would be sent: the system prompt, the tool
    history written as text and the instruction of emulated tools included.
    """
    state = request.app[STATE_KEY]
    request[LOG_KEY] = RequestLog(started=time.perf_counter(), format=FORMAT.name)
    body = await read_object(request, state.config.max_body)
    strict = state.config.strict
    if FORMAT.needs_worker(body):
        completion = await off_loop(parse_messages, body, strict=strict, count=True)
    else:
        completion = parse_messages(body, strict=strict, count=True)
    return json_response({"input_tokens": prompt_tokens(completion.messages)})


routes = web.RouteTableDef()
# Claude Code adds `?beta=true`, which changes nothing here.
routes.post("/v1/messages")(handler(FORMAT))
routes.post("/v1/messages/count_tokens")(count_tokens)
