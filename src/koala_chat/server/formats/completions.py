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

The replies are the `TextCompletion` struct, encoded; `CompletionEncoder.text`
is the hot path, built as chat's `ChunkEncoder`: the bytes around the text
cut once per stream from a struct's event (`framing.around_mark`), one
`msgspec.json.encode` per piece.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Final, Literal, cast

import msgspec
from aiohttp import web

from ..._contract.checks import BOOLEAN, POSITIVE, STOP_SCHEMA, stop_sequences
from ..._contract.neutral import only
from ..._contract.params import (
    EXTENSIONS,
    SAMPLING,
    CompletionRequest,
    Parameter,
    honoured,
    read_parameters,
    refused,
)
from ..._contract.params import PARAMETERS as CHAT_PARAMETERS
from ..._contract.replies import Reply
from ..._contract.types import (
    ChatCompletionMessageToolCall,
    CompletionUsage,
    Count,
    FinishReason,
    always_sent,
)
from ...errors import UsageError
from ...messages import JSONValue, replace_surrogates
from ..conversation import handler
from ..failures import DONE_EVENT, Failure
from .base import Inbound, WireFormat
from .framing import MARK, around_mark, encode, event

__all__ = [
    "FORMAT",
    "PARAMETERS",
    "CompletionEncoder",
    "Completions",
    "TextChoice",
    "TextCompletion",
    "routes",
]

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


class TextChoice(msgspec.Struct, kw_only=True):
    """The one choice of a `text_completion`: its text and why it ended."""

    text: str
    index: Count = 0
    logprobs: None = None
    finish_reason: FinishReason | None = None


# Keyword-only, as the OpenAI key order puts `object` before `created`. The
# docstrings are the OpenAPI descriptions too.
class TextCompletion(msgspec.Struct, omit_defaults=True, kw_only=True):
    """A legacy completion, whole, or one chunk of a stream.

    A stream's chunks carry the text, the last one with choices the finish
    reason; with `stream_options.include_usage` a last chunk without choices
    carries the usage estimate. A whole reply always has its usage.
    """

    id: str
    object: Literal["text_completion"] = always_sent("text_completion")
    created: int
    model: str
    system_fingerprint: str | None = always_sent(None)
    choices: Annotated[list[TextChoice], msgspec.Meta(max_length=1)]
    usage: CompletionUsage | None = None


def _completion(
    reply: Reply, choices: list[TextChoice], usage: CompletionUsage | None = None
) -> TextCompletion:
    return TextCompletion(
        id="cmpl-" + reply.id[_ID_PREFIX:],
        created=reply.created,
        model=reply.model,
        choices=choices,
        usage=usage,
    )


class CompletionEncoder:
    """Render the `text_completion` chunks of one stream as bytes."""

    __slots__ = ("_prefix", "_reply", "_suffix")

    def __init__(self, reply: Reply) -> None:
        self._reply = reply
        self._prefix, self._suffix = around_mark(
            _completion(reply, [TextChoice(text=MARK)])
        )

    def head(self) -> bytes:
        """Return nothing: a legacy stream has no opening chunk."""
        return b""

    def text(self, piece: str) -> bytes:
        """Return the chunk that adds `piece` to the reply.

        As the `event` of its `TextCompletion`, without building it.
        """
        return self._prefix + encode(piece) + self._suffix

    def tool_calls(self, calls: Sequence[ChatCompletionMessageToolCall]) -> bytes:
        """Never asked: legacy completions have no tools."""
        raise AssertionError("legacy completions have no tools")

    def tail(self, reason: FinishReason) -> bytes:
        """Return the finish chunk, the usage chunk when asked, and `[DONE]`."""
        reply = self._reply
        tail = event(_completion(reply, [TextChoice(text="", finish_reason=reason)]))
        if reply.request.include_usage:
            tail += event(_completion(reply, [], reply.usage()))
        return tail + DONE_EVENT

    def failed(self, failure: Failure) -> bytes:
        """Return the error event and `[DONE]`, which the SDKs raise from."""
        return failure.event() + DONE_EVENT


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
    ) -> TextCompletion:
        choice = TextChoice(text=content or "", finish_reason=reply.finish_reason)
        return _completion(reply, [choice], reply.usage())


_TABLE: Final = (
    CHAT_PARAMETERS["model"],
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
    CHAT_PARAMETERS["stream_options"],
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
    *EXTENSIONS,
    *SAMPLING,
    CHAT_PARAMETERS["user"],
    CHAT_PARAMETERS["n"],
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
