"""The Ollama API: `/api/chat`, `/api/generate` and the routes beside them.

Open WebUI's Ollama connection, the `ollama` Python client and many editor
plugins speak it (README, "The Ollama API"). A request names its model and
messages (or prompt); `options` carries `num_predict` (the reply's length),
`stop` and sampling settings. Replies stream by default, as NDJSON: one JSON
object per line, each with the next piece, and a last one with `done: true`,
`done_reason` and the counts Ollama clients read (estimates here, as
everywhere in koala-chat). `"stream": false` asks for the last object alone,
with the whole reply. An error is `{"error": "..."}`, at its status before the
reply starts and as a line of its own after.

Koala takes text only: a message with `images` is refused. `format` ("json"
or a JSON Schema) and `tools` are emulated as chat completions' JSON mode and
tools are. A name with Ollama's default tag (`koala:latest`) means the name
without it.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Final

import msgspec
from aiohttp import web

from ... import __version__
from ..._contract.params import CompletionRequest, parse_request
from ..._contract.replies import Reply
from ..._contract.types import ChatCompletionMessageToolCall, FinishReason
from ...errors import UsageError
from ...messages import JSONValue
from ..conversation import handler, json_response, read_object
from ..failures import Failure, FailureError
from ..state import STATE_KEY
from .base import Inbound, WireFormat

__all__ = ["FORMAT", "GENERATE", "OLLAMA_VERSION", "OllamaChat", "routes"]

#: The version `/api/version` reports: the Ollama API whose routes and fields
#: koala-chat speaks. Clients read it to decide what they may send.
OLLAMA_VERSION: Final = "0.14.0"

#: The request members each route reads; the rest is refused when strict,
#: else ignored and named in `X-Koala-Ignored-Params`.
_CHAT_KEYS: Final = frozenset(
    {"model", "messages", "stream", "format", "options", "tools"}
)
_GENERATE_KEYS: Final = frozenset(
    {"model", "prompt", "system", "stream", "format", "options"}
)
#: Members Ollama clients send that change nothing here: model loading, the
#: "thinking" of reasoning models, raw templates, token contexts.
_IGNORED_KEYS: Final = frozenset(
    {"keep_alive", "think", "raw", "context", "template", "logprobs", "top_logprobs"}
)
#: `options` members read: the reply's length and the stop sequences; the
#: rest (temperature, seed, num_ctx, ...) tune a local model and are ignored.
_READ_OPTIONS: Final = frozenset({"num_predict", "stop"})


def _created_at(created: int) -> str:
    """Return the RFC 3339 time Ollama writes as `created_at`."""
    return datetime.fromtimestamp(created, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _model_name(value: JSONValue) -> str:
    """Return the model a request names, without Ollama's default tag.

    Raises:
        UsageError: no model, or not a string.
    """
    if not isinstance(value, str) or not value:
        raise UsageError("model: required, the name of a model (see /api/tags)")
    return value.removesuffix(":latest")


def _common(
    body: Mapping[str, JSONValue], keys: frozenset[str], strict: bool
) -> tuple[dict[str, JSONValue], list[str]]:
    """Return the chat-completions parameters of `body`'s shared members.

    They are the model, `stream` (true unless false), `format`, `options`;
    the second value names the members ignored.

    Raises:
        UsageError: a member malformed, or unknown when `strict`.
    """
    ignored: list[str] = []
    for name in body:
        if name in keys:
            continue
        if strict:
            raise UsageError(f"{name}: unknown parameter")
        ignored.append(name)
    stream = body.get("stream", True)
    if not isinstance(stream, bool):
        raise UsageError("stream: must be true or false")
    params: dict[str, JSONValue] = {
        "model": _model_name(body.get("model")),
        "stream": stream,
    }
    fmt = body.get("format")
    if fmt == "json":
        params["response_format"] = {"type": "json_object"}
    elif isinstance(fmt, dict):
        params["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "format", "schema": fmt},
        }
    elif fmt not in (None, ""):
        raise UsageError('format: "json" or a JSON Schema object')
    options = body.get("options")
    if options is not None:
        if not isinstance(options, dict):
            raise UsageError("options: must be an object")
        params.update(_options(options))
        ignored.extend(
            f"options.{name}" for name in options if name not in _READ_OPTIONS
        )
    return params, ignored


def _options(options: Mapping[str, JSONValue]) -> dict[str, JSONValue]:
    """Return the parameters of the `options` koala-chat reads.

    `num_predict` is the most tokens of the reply (-1 and -2, Ollama's "no
    limit" and "fill the context", mean none); `stop` the stop sequences.

    Raises:
        UsageError: either malformed.
    """
    params: dict[str, JSONValue] = {}
    limit = options.get("num_predict")
    if limit is not None:
        if type(limit) is not int or limit < -2:
            raise UsageError("options.num_predict: a whole number of tokens, or -1")
        if limit >= 0:
            params["max_tokens"] = limit
    stop = options.get("stop")
    if stop is not None:
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise UsageError("options.stop: must be a list of strings")
        params["stop"] = stop
    return params


def _messages(value: JSONValue) -> list[JSONValue]:
    """Return Ollama's messages as chat completions' (tool calls included).

    Raises:
        UsageError: not a list of messages; a message with images.
    """
    if not isinstance(value, list) or not value:
        raise UsageError("messages: required, a non-empty list of messages")
    result: list[JSONValue] = []
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise UsageError(f"messages[{index}]: must be an object")
        if item.get("images"):
            raise UsageError(f"messages[{index}].images: Koala takes text only")
        message: dict[str, JSONValue] = {
            "role": item.get("role"),
            "content": item.get("content", ""),
        }
        calls = item.get("tool_calls")
        if calls is not None:
            message["tool_calls"] = _tool_calls(index, calls)
        if item.get("role") == "tool":
            message["tool_call_id"] = f"call_{item.get('tool_name', '')}"
        result.append(message)
    return result


def _tool_calls(index: int, calls: JSONValue) -> list[JSONValue]:
    """Return an assistant's Ollama tool calls as chat completions' ones.

    Ollama names a call by its function's name (`tool_name` answers it) and
    gives its arguments as an object, where the OpenAI API gives JSON text.
    """
    if not isinstance(calls, list):
        raise UsageError(f"messages[{index}].tool_calls: must be a list")
    result: list[JSONValue] = []
    for call in calls:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise UsageError(
                f"messages[{index}].tool_calls: each needs a function name"
            )
        name = function["name"]
        arguments = msgspec.json.encode(function.get("arguments") or {}).decode()
        result.append(
            {
                "id": f"call_{name}",
                "type": "function",
                "function": {"name": name, "arguments": arguments},
            }
        )
    return result


def _ignoring(request: CompletionRequest, ignored: list[str]) -> CompletionRequest:
    if not ignored:
        return request
    return replace(request, ignored=(*ignored, *request.ignored))


class _Lines:
    """The NDJSON lines of one streamed reply (`text` is the hot path).

    Every line but the last shares everything but its piece, rendered once.
    """

    __slots__ = ("_head", "_prefix", "_reply", "_started", "_suffix")

    #: The member that carries the pieces, and what closes it.
    _MEMBER: bytes = b""
    _CLOSE: bytes = b""

    def __init__(self, reply: Reply, started: int) -> None:
        self._head = b"".join(
            (
                b'{"model":',
                msgspec.json.encode(reply.model),
                b',"created_at":"',
                _created_at(reply.created).encode(),
                b'",',
            )
        )
        self._prefix = self._head + self._MEMBER
        self._suffix = self._CLOSE + b',"done":false}\n'
        self._reply = reply
        self._started = started

    def head(self) -> bytes:
        return b""

    def text(self, piece: str) -> bytes:
        return self._prefix + msgspec.json.encode(piece) + self._suffix

    def failed(self, failure: Failure) -> bytes:
        return msgspec.json.encode({"error": failure.message}) + b"\n"

    def _line(self, members: dict[str, JSONValue]) -> bytes:
        """Return the line of `members` after the model and the time."""
        return self._head + msgspec.json.encode(members)[1:] + b"\n"


class _ChatLines(_Lines):
    _MEMBER = b'"message":{"role":"assistant","content":'
    _CLOSE = b"}"

    def tool_calls(self, calls: Sequence[ChatCompletionMessageToolCall]) -> bytes:
        return self._line({"message": _message("", calls), "done": False})

    def tail(self, reason: FinishReason) -> bytes:
        last = {"message": {"role": "assistant", "content": ""}}
        return self._line({**last, **_counts(self._reply, self._started, reason)})


class _GenerateLines(_Lines):
    _MEMBER = b'"response":'

    def tool_calls(self, calls: Sequence[ChatCompletionMessageToolCall]) -> bytes:
        raise AssertionError("/api/generate takes no tools")  # refused by parse

    def tail(self, reason: FinishReason) -> bytes:
        last = {"response": "", **_counts(self._reply, self._started, reason)}
        return self._line(last)


def _counts(reply: Reply, started: int, reason: FinishReason) -> dict[str, JSONValue]:
    usage = reply.usage()
    return {
        "done": True,
        "done_reason": "length" if reason == "length" else "stop",
        "total_duration": time.perf_counter_ns() - started,
        "load_duration": 0,
        "prompt_eval_count": usage.prompt_tokens,
        "prompt_eval_duration": 0,
        "eval_count": usage.completion_tokens,
        "eval_duration": 0,
    }


def _message(
    content: str | None, calls: Sequence[ChatCompletionMessageToolCall] | None
) -> dict[str, JSONValue]:
    message: dict[str, JSONValue] = {"role": "assistant", "content": content or ""}
    if calls:
        message["tool_calls"] = [
            {
                "function": {
                    "name": call.function.name,
                    "arguments": msgspec.json.decode(call.function.arguments),
                }
            }
            for call in calls
        ]
    return message


class _Ollama(WireFormat[int]):
    """What Ollama's chat and generate routes share; the context is the start."""

    stream_type = "application/x-ndjson"
    paths = ("/api",)
    in_openapi = False

    def needs_worker(self, body: Mapping[str, JSONValue]) -> bool:
        return body.get("format") not in (None, "", "json") or bool(body.get("tools"))

    def error(self, failure: Failure) -> web.Response:
        response = web.Response(
            status=failure.status,
            body=msgspec.json.encode({"error": failure.message}),
            content_type="application/json",
            headers=failure.headers,
        )
        if failure.close:
            response.force_close()
        return response


class OllamaChat(_Ollama):
    """`POST /api/chat`: a conversation, its reply as `message`."""

    name = "ollama"

    def parse(self, body: Mapping[str, JSONValue], *, strict: bool) -> Inbound[int]:
        params, ignored = _common(body, _CHAT_KEYS, strict)
        params["messages"] = _messages(body.get("messages"))
        if body.get("tools"):
            params["tools"] = body["tools"]
        ignored = [name for name in ignored if name not in _IGNORED_KEYS or strict]
        request = parse_request(params, strict=True)
        return Inbound(_ignoring(request, ignored), time.perf_counter_ns())

    def encoder(self, inbound: Inbound[int], reply: Reply) -> _ChatLines:
        return _ChatLines(reply, inbound.context)

    def whole(
        self,
        inbound: Inbound[int],
        reply: Reply,
        content: str | None,
        tool_calls: Sequence[ChatCompletionMessageToolCall] | None = None,
    ) -> JSONValue:
        return {
            "model": reply.model,
            "created_at": _created_at(reply.created),
            "message": _message(content, tool_calls),
            **_counts(
                reply, inbound.context, "stop" if tool_calls else reply.finish_reason
            ),
        }


class OllamaGenerate(_Ollama):
    """`POST /api/generate`: a prompt (and a system prompt), its reply as `response`."""

    name = "ollama-generate"

    def parse(self, body: Mapping[str, JSONValue], *, strict: bool) -> Inbound[int]:
        params, ignored = _common(body, _GENERATE_KEYS, strict)
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            raise UsageError("prompt: required, the text to answer")
        if body.get("images"):
            raise UsageError("images: Koala takes text only")
        system = body.get("system")
        if system is not None and not isinstance(system, str):
            raise UsageError("system: must be a string")
        messages: list[JSONValue] = [{"role": "user", "content": prompt}]
        if system:
            messages.insert(0, {"role": "system", "content": system})
        params["messages"] = messages
        ignored = [name for name in ignored if name not in _IGNORED_KEYS or strict]
        request = parse_request(params, strict=True)
        return Inbound(_ignoring(request, ignored), time.perf_counter_ns())

    def encoder(self, inbound: Inbound[int], reply: Reply) -> _GenerateLines:
        return _GenerateLines(reply, inbound.context)

    def whole(
        self,
        inbound: Inbound[int],
        reply: Reply,
        content: str | None,
        tool_calls: Sequence[ChatCompletionMessageToolCall] | None = None,
    ) -> JSONValue:
        return {
            "model": reply.model,
            "created_at": _created_at(reply.created),
            "response": content or "",
            **_counts(reply, inbound.context, reply.finish_reason),
        }


FORMAT: Final = OllamaChat()
GENERATE: Final = OllamaGenerate()

routes = web.RouteTableDef()
routes.post("/api/chat")(handler(FORMAT))
routes.post("/api/generate")(handler(GENERATE))


def _listed(name: str) -> dict[str, JSONValue]:
    """Return a model as `/api/tags` lists it: nothing is local, so no size."""
    return {
        "name": name,
        "model": name,
        "modified_at": "1970-01-01T00:00:00Z",
        "size": 0,
        "digest": hashlib.sha256(name.encode()).hexdigest(),
        "details": _DETAILS,
    }


_DETAILS: Final[dict[str, JSONValue]] = {
    "parent_model": "",
    "format": "koala",
    "family": "koala",
    "families": ["koala"],
    "parameter_size": "",
    "quantization_level": "",
}


@routes.get("/api/tags")
async def tags(request: web.Request) -> web.Response:
    """Return the provider's models as Ollama's local models."""
    models = request.app[STATE_KEY].capabilities.models
    return json_response({"models": [_listed(name) for name in models]})


@routes.get("/api/ps")
async def running(request: web.Request) -> web.Response:
    """Return the models loaded in memory: none, as nothing runs here."""
    return json_response({"models": []})


@routes.post("/api/show")
async def show(request: web.Request) -> web.Response:
    """Return what Ollama tells of one model, or 404 for one not offered."""
    state = request.app[STATE_KEY]
    body = await read_object(request, state.config.max_body)
    name = _model_name(body.get("model", body.get("name")))
    if name not in state.capabilities.models:
        raise FailureError(
            Failure(
                404,
                "invalid_request_error",
                "model_not_found",
                f"model {name!r} not found; see /api/tags",
            )
        )
    return json_response(
        {
            "modelfile": "",
            "parameters": "",
            "template": "",
            "details": _DETAILS,
            "model_info": {"general.architecture": "koala"},
            "capabilities": ["completion", "tools"],
            "modified_at": "1970-01-01T00:00:00Z",
        }
    )


@routes.get("/api/version")
async def version(request: web.Request) -> web.Response:
    """Return the Ollama API version spoken, and koala-chat's own."""
    return json_response({"version": OLLAMA_VERSION, "koala_chat": __version__})
