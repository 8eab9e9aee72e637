"""The OpenAI Responses API: `POST /v1/responses`.

The request is read by `responses_request.py`. A reply that is not streamed
is a `response` object (`output` of one `message` item, or of the
`function_call` items of emulated tools; `status`; `usage`), from which the
SDKs derive `output_text`. A streamed one is the API's own event sequence,
each event an `event:` line and a `data:` line whose `sequence_number`
counts up from 0, and no `[DONE]`:

    response.created, response.in_progress
    response.output_item.added (message), response.content_part.added
    response.output_text.delta ...
    response.output_text.done, response.content_part.done,
    response.output_item.done
    response.completed (the whole output and the usage)

A reply of tool calls has, per call, `response.output_item.added`
(`function_call`), `response.function_call_arguments.delta` and `.done`, and
`response.output_item.done`. A reply cut by `max_output_tokens` ends with
`response.incomplete` (status `incomplete`, reason `max_output_tokens`), and
one that breaks after its start with `response.failed`, whose response
carries the `error` (its `code` and `message`) as the SDKs read it. Errors
before the start are OpenAI's `{"error": {...}}`.

`ResponseEncoder.text` is the hot path: one `msgspec.json.encode` of the
piece, the sequence number, and one join (as chat's `ChunkEncoder`). The
pieces are kept to give the whole text at the end, as the API does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

import msgspec
from aiohttp import web

from ..._contract.replies import Reply
from ..._contract.types import (
    ChatCompletionMessageToolCall,
    CompletionUsage,
    FinishReason,
)
from ...messages import JSONValue
from ..conversation import handler
from ..failures import Failure
from .base import Inbound, WireFormat
from .responses_request import Echo, parse_responses

__all__ = ["FORMAT", "ResponseEncoder", "Responses", "routes"]

_encode: Final = msgspec.json.encode
#: The id of a reply (`chatcmpl-` and hex digits) gives its objects' ids.
_ID_PREFIX: Final = len("chatcmpl-")


def _usage(usage: CompletionUsage) -> dict[str, JSONValue]:
    """Return the usage estimate in the Responses API's shape."""
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.total_tokens,
    }


def _part(text: str) -> dict[str, JSONValue]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _message(item_id: str, status: str, content: list[JSONValue]) -> JSONValue:
    return {
        "id": item_id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": content,
    }


def _function_call(
    call: ChatCompletionMessageToolCall, status: str, arguments: str
) -> dict[str, JSONValue]:
    return {
        "id": "fc_" + call.id.removeprefix("call_"),
        "type": "function_call",
        "status": status,
        "call_id": call.id,
        "name": call.function.name,
        "arguments": arguments,
    }


def _status(reason: FinishReason) -> str:
    return "incomplete" if reason == "length" else "completed"


def _error_code(failure: Failure) -> str:
    """Return the `error.code` of a failed response, among those SDKs know."""
    return {429: "rate_limit_exceeded", 402: "insufficient_quota"}.get(
        failure.status, "server_error"
    )


class ResponseEncoder:
    """Render the events of one streamed response as bytes."""

    __slots__ = (
        "_delta",
        "_echo",
        "_id",
        "_item",
        "_keep",
        "_message_open",
        "_output",
        "_pieces",
        "_reply",
        "_seq",
    )

    def __init__(self, echo: Echo, reply: Reply) -> None:
        digits = reply.id[_ID_PREFIX:]
        self._reply = reply
        self._echo = echo.members()
        self._id = "resp_" + digits
        self._item = "msg_" + digits
        self._seq = 0
        self._pieces: list[str] = []
        self._keep = self._pieces.append
        self._output: list[JSONValue] = []
        self._message_open = False
        self._delta = b"".join(
            (
                b"event: response.output_text.delta\n"
                b'data: {"type":"response.output_text.delta","item_id":',
                _encode(self._item),
                b',"output_index":0,"content_index":0,"delta":',
            )
        )

    def text(self, piece: str) -> bytes:
        """Return the `response.output_text.delta` event of `piece`."""
        self._keep(piece)
        seq = self._seq
        self._seq = seq + 1
        # One formatting: cheaper than a join of the parts.
        return b'%b%b,"logprobs":[],"sequence_number":%d}\n\n' % (
            self._delta,
            _encode(piece),
            seq,
        )

    def head(self) -> bytes:
        """Return the opening events and the message item's, with its part."""
        self._message_open = True
        return (
            self._opening()
            + self._event(
                "response.output_item.added",
                output_index=0,
                item=_message(self._item, "in_progress", []),
            )
            + self._event(
                "response.content_part.added",
                item_id=self._item,
                output_index=0,
                content_index=0,
                part=_part(""),
            )
        )

    def tool_calls(self, calls: Sequence[ChatCompletionMessageToolCall]) -> bytes:
        """Return the opening events and a `function_call` item per call."""
        events = [self._opening()]
        for index, call in enumerate(calls):
            arguments = call.function.arguments
            started = _function_call(call, "in_progress", "")
            item_id = started["id"]
            done = _function_call(call, "completed", arguments)
            events += (
                self._event(
                    "response.output_item.added", output_index=index, item=started
                ),
                self._event(
                    "response.function_call_arguments.delta",
                    item_id=item_id,
                    output_index=index,
                    delta=arguments,
                ),
                self._event(
                    "response.function_call_arguments.done",
                    item_id=item_id,
                    output_index=index,
                    name=call.function.name,
                    arguments=arguments,
                ),
                self._event("response.output_item.done", output_index=index, item=done),
            )
            self._output.append(done)
        return b"".join(events)

    def tail(self, reason: FinishReason) -> bytes:
        """Return the closing events: the message's, then `response.completed`.

        A reply cut by `max_output_tokens` ends with `response.incomplete`.
        """
        status = _status(reason)
        closing = self._closing(status) if self._message_open else b""
        response = self._response(status, usage=_usage(self._reply.usage()))
        return closing + self._event(f"response.{status}", response=response)

    def failed(self, failure: Failure) -> bytes:
        """Return `response.failed`: the text so far, and the error."""
        if self._message_open:
            text = "".join(self._pieces)
            self._output = [_message(self._item, "incomplete", [_part(text)])]
        error = {"code": _error_code(failure), "message": failure.message}
        response = self._response("failed", error=error)
        return self._event("response.failed", response=response)

    def _closing(self, status: str) -> bytes:
        text = "".join(self._pieces)
        part = _part(text)
        item = _message(self._item, status, [part])
        self._output = [item]
        where: dict[str, JSONValue] = {
            "item_id": self._item,
            "output_index": 0,
            "content_index": 0,
        }
        return b"".join(
            (
                self._event(
                    "response.output_text.done", **where, text=text, logprobs=[]
                ),
                self._event("response.content_part.done", **where, part=part),
                self._event("response.output_item.done", output_index=0, item=item),
            )
        )

    def _opening(self) -> bytes:
        response = self._response("in_progress")
        return self._event("response.created", response=response) + self._event(
            "response.in_progress", response=response
        )

    def _response(
        self,
        status: str,
        *,
        usage: JSONValue = None,
        error: JSONValue = None,
    ) -> dict[str, JSONValue]:
        reply = self._reply
        return response_object(
            self._id, reply, self._echo, status, self._output, usage, error
        )

    def _event(self, kind: str, **members: JSONValue) -> bytes:
        seq = self._seq
        self._seq = seq + 1
        data = _encode({"type": kind, **members, "sequence_number": seq})
        return b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"


def response_object(
    response_id: str,
    reply: Reply,
    echo: Mapping[str, JSONValue],
    status: str,
    output: list[JSONValue],
    usage: JSONValue = None,
    error: JSONValue = None,
) -> dict[str, JSONValue]:
    """Return a `response` object: its id, status, output and usage."""
    incomplete = {"reason": "max_output_tokens"} if status == "incomplete" else None
    return {
        "id": response_id,
        "object": "response",
        "created_at": reply.created,
        "status": status,
        "background": False,
        "error": error,
        "incomplete_details": incomplete,
        **echo,
        "model": reply.model,
        "output": output,
        "usage": usage,
        "user": None,
    }


class Responses(WireFormat[Echo]):
    """The OpenAI Responses API, without stored state."""

    name = "responses"
    paths = ("/v1/responses",)

    def needs_worker(self, body: Mapping[str, JSONValue]) -> bool:
        return body.get("tools") is not None or body.get("text") is not None

    def parse(self, body: Mapping[str, JSONValue], *, strict: bool) -> Inbound[Echo]:
        return Inbound(*parse_responses(body, strict=strict))

    def encoder(self, inbound: Inbound[Echo], reply: Reply) -> ResponseEncoder:
        return ResponseEncoder(inbound.context, reply)

    def whole(
        self,
        inbound: Inbound[Echo],
        reply: Reply,
        content: str | None,
        tool_calls: Sequence[ChatCompletionMessageToolCall] | None = None,
    ) -> JSONValue:
        digits = reply.id[_ID_PREFIX:]
        if tool_calls:
            status = "completed"
            output = [
                _function_call(call, "completed", call.function.arguments)
                for call in tool_calls
            ]
        else:
            status = _status(reply.finish_reason)
            output = [_message("msg_" + digits, status, [_part(content or "")])]
        return response_object(
            "resp_" + digits,
            reply,
            inbound.context.members(),
            status,
            output,
            _usage(reply.usage()),
        )


FORMAT: Final = Responses()

routes = web.RouteTableDef()
routes.post("/v1/responses")(handler(FORMAT))
