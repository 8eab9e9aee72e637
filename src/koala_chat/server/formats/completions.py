"""OpenAI legacy completions: `POST /v1/completions`.

The request's `prompt` (a string, or a list of one string) is the one user
message of the conversation; the other parameters are chat completions'
where the API shares them (`stop`, `max_tokens`, `stream_options`, the
sampling ones), checked by the same checks under the legacy names. There is
no default of 16 tokens: without `max_tokens` the reply is whole, as chat
completions' is. A reply is a `text_completion` object; a stream is
`text_completion` chunks (`choices[0].text`), the last one with the finish
reason, a usage chunk when `stream_options.include_usage` asks, and
`data: [DONE]`. Errors are OpenAI's `{"error": {...}}`.

`CompletionEncoder.text` is the hot path, built as chat's `ChunkEncoder`:
the constant bytes rendered once, one `msgspec.json.encode` per piece.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final, cast

import msgspec
from aiohttp import web

from ...contract.checks import (
    BOOLEAN,
    OBJECT,
    POSITIVE,
    PROTOCOL,
    STOP_SCHEMA,
    STREAM_OPTIONS_SCHEMA,
    STRING,
    WHOLE,
    include_usage_of,
    model_name,
    number_between,
    stop_sequences,
)
from ...contract.neutral import only
from ...contract.params import (
    CompletionRequest,
    Parameter,
    honoured,
    ignored,
    read_parameters,
    refused,
)
from ...contract.replies import Reply
from ...contract.types import ChatCompletionMessageToolCall, FinishReason
from ...errors import UsageError
from ...messages import JSONValue, replace_surrogates
from ..conversation import handler
from ..failures import DONE_EVENT, Failure
from .base import Inbound, WireFormat

__all__ = ["FORMAT", "PARAMETERS", "CompletionEncoder", "Completions", "routes"]

_ID_PREFIX: Final = len("chatcmpl-")


def check_prompt(name: str, value: JSONValue) -> str:
    """Return the text of `prompt`: a string, or a list of one string.

    Raises:
        UsageError: anything else (several prompts, token arrays).
    """
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if not isinstance(value, str):
        raise UsageError(
            f"{name}: must be a string or a list of one string; Koala answers "
            "one text prompt per request"
        )
    return replace_surrogates(value)


class CompletionEncoder:
    """Render the `text_completion` chunks of one stream as bytes."""

    __slots__ = ("_head", "_prefix", "_reply")

    _SUFFIX: Final = b',"index":0,"logprobs":null,"finish_reason":null}]}\n\n'

    def __init__(self, reply: Reply) -> None:
        self._reply = reply
        self._head = b"".join(
            (
                b'data: {"id":',
                _encode("cmpl-" + reply.id[_ID_PREFIX:]),
                b',"object":"text_completion","created":',
                b"%d" % reply.created,
                b',"model":',
                _encode(reply.model),
                b',"system_fingerprint":null,"choices":',
            )
        )
        self._prefix = self._head + b'[{"text":'

    def head(self) -> bytes:
        """Return nothing: a legacy stream has no opening chunk."""
        return b""

    def text(self, piece: str) -> bytes:
        """Return the chunk that adds `piece` to the reply."""
        return self._prefix + _encode(piece) + self._SUFFIX

    def tool_calls(self, calls: Sequence[ChatCompletionMessageToolCall]) -> bytes:
        """Never asked: legacy completions have no tools."""
        raise AssertionError("legacy completions have no tools")

    def tail(self, reason: FinishReason) -> bytes:
        """Return the finish chunk, the usage chunk when asked, and `[DONE]`."""
        reply = self._reply
        tail = b"".join(
            (
                self._prefix,
                b'"","index":0,"logprobs":null,"finish_reason":"',
                reason.encode(),
                b'"}]}\n\n',
            )
        )
        if reply.request.include_usage:
            usage = _encode(reply.usage().model_dump())
            tail += self._head + b'[],"usage":' + usage + b"}\n\n"
        return tail + DONE_EVENT

    def failed(self, failure: Failure) -> bytes:
        """Return the error event and `[DONE]`, which the SDKs raise from."""
        return failure.event() + DONE_EVENT


_encode: Final = msgspec.json.encode


class Completions(WireFormat[None]):
    """The OpenAI legacy completions API: one prompt, one text."""

    name = "completions"
    paths = ("/v1/completions",)

    def parse(self, body: Mapping[str, JSONValue], *, strict: bool) -> Inbound[None]:
        values, skipped = read_parameters(PARAMETERS, body, strict=strict)
        limit = cast(int | None, values.get("max_tokens"))
        request = CompletionRequest(
            model=cast(str, values["model"]),
            messages=[{"role": "user", "content": cast(str, values["prompt"])}],
            stream=cast(bool, values.get("stream", False)),
            stop=cast(tuple[str, ...], values.get("stop", ())),
            max_tokens=limit,
            include_usage=cast(bool, values.get("stream_options", False)),
            protocol=cast(str | None, values.get("protocol")),
            web_search=cast(bool | None, values.get("web_search")),
            ignored=tuple(skipped),
        )
        return Inbound(request, None)

    def encoder(self, inbound: Inbound[None], reply: Reply) -> CompletionEncoder:
        return CompletionEncoder(reply)

    def whole(
        self,
        inbound: Inbound[None],
        reply: Reply,
        content: str | None,
        tool_calls: Sequence[ChatCompletionMessageToolCall] | None = None,
    ) -> JSONValue:
        return {
            "id": "cmpl-" + reply.id[_ID_PREFIX:],
            "object": "text_completion",
            "created": reply.created,
            "model": reply.model,
            "system_fingerprint": None,
            "choices": [
                {
                    "text": content or "",
                    "index": 0,
                    "logprobs": None,
                    "finish_reason": reply.finish_reason,
                }
            ],
            "usage": reply.usage().model_dump(),
        }


_SAMPLING: Final = "Tunes sampling; Koala has no such control."

_TABLE: Final = (
    honoured(
        "model",
        (model_name, {"type": "string"}),
        'A model id; "" asks for the default model.',
        "name a model (see /v1/models)",
    ),
    honoured(
        "prompt",
        (
            check_prompt,
            {
                "anyOf": [
                    {"type": "string"},
                    {
                        "type": "array",
                        "items": {"type": "string"},
                        "minItems": 1,
                        "maxItems": 1,
                    },
                ]
            },
        ),
        "The prompt, sent as one user message; a list holds one string.",
        "send the prompt as a string",
    ),
    honoured("stream", BOOLEAN, "Stream the reply as text_completion chunks."),
    honoured(
        "stream_options",
        (include_usage_of, STREAM_OPTIONS_SCHEMA),
        "`include_usage` adds a last chunk with the usage estimate.",
    ),
    honoured(
        "stop",
        (stop_sequences, STOP_SCHEMA),
        "Applied on our side: the reply ends before the first stop sequence.",
    ),
    honoured(
        "max_tokens",
        POSITIVE,
        "Applied on our side on the estimate: at most 4 x N characters (no "
        "default of 16).",
    ),
    honoured("protocol", PROTOCOL, "Koala's dialect for this request only."),
    honoured("web_search", BOOLEAN, "Koala's real-time data flag, on or off."),
    ignored("temperature", number_between(0, 2), _SAMPLING),
    ignored("top_p", number_between(0, 1), _SAMPLING),
    ignored("presence_penalty", number_between(-2, 2), _SAMPLING),
    ignored("frequency_penalty", number_between(-2, 2), _SAMPLING),
    ignored("seed", WHOLE, _SAMPLING),
    ignored("logit_bias", OBJECT, _SAMPLING),
    ignored("user", STRING, "Bookkeeping for OpenAI's own service; Koala has none."),
    refused("n", "Koala gives one choice per request", only(1)),
    refused("best_of", "Koala gives one choice per request", only(1)),
    refused("echo", "Koala does not repeat the prompt", only(False)),
    refused("logprobs", "Koala reports no log-probabilities", only(0)),
    refused("suffix", "Koala does not fill in the middle", only("")),
)

#: The legacy completions parameters Koala knows, by name.
PARAMETERS: Final[Mapping[str, Parameter]] = {p.name: p for p in _TABLE}

FORMAT: Final = Completions()

routes = web.RouteTableDef()
routes.post("/v1/completions")(handler(FORMAT))
