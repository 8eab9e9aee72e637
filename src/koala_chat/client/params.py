"""The parameters of an OpenAI chat-completions request, checked for Koala.

Used by both `Client` and `koala serve`, so the two accept and refuse exactly the
same things. The Koala protocol (docs/protocol.md, "Request") carries only the
conversation and a model name; every other OpenAI parameter is handled here, one
by one:

- honoured: `model`, `messages`, `stream`, `stream_options.include_usage`,
  `stop` (cut on our side), `max_tokens` / `max_completion_tokens` (cut on our
  side at the token estimate, finish reason "length"), `n` = 1;
- accepted and ignored, since they only tune sampling, billing or caching and an
  answer without them is still a correct answer: `IGNORED`;
- refused unless given their neutral value, since ignoring them would give a
  wrong answer (several choices, tool calls, JSON mode, log-probabilities,
  audio): `n` > 1, `tools`, `tool_choice`, `functions`, `function_call`,
  `response_format`, `logprobs`, `top_logprobs`, `modalities`, `audio`,
  `web_search_options`;
- any other name is refused as unknown, as the OpenAI API does.

`null` counts as absent for every optional parameter. Every error is a
`UsageError` whose message starts with the parameter's name.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from ..errors import UsageError
from ..messages import JSONValue, NormalizedMessage, normalize_messages

__all__ = [
    "IGNORED",
    "CompletionRequest",
    "estimate_tokens",
    "parse_request",
    "prompt_tokens",
    "tokens_for_length",
]

#: Characters per token of the usage estimate; OpenAI's rule of thumb for
#: English text ("about four characters per token").
CHARS_PER_TOKEN: Final = 4
#: The most stop sequences a request may give (the OpenAI API's limit).
MAX_STOP_SEQUENCES: Final = 4


def estimate_tokens(text: str) -> int:
    """Return the estimated token count of `text`: its length / 4, rounded up."""
    return tokens_for_length(len(text))


def tokens_for_length(length: int) -> int:
    """Return the estimated token count of a text of `length` characters."""
    return -(-length // CHARS_PER_TOKEN)


def prompt_tokens(messages: list[NormalizedMessage]) -> int:
    """Return the estimated token count of a conversation's contents."""
    return sum(estimate_tokens(message["content"]) for message in messages)


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    """A checked chat-completions request.

    `model` is as requested ("" asks for the provider's default), `messages`
    have plain-text contents, `stop` holds the non-empty stop sequences and
    `max_chars` the reply length that `max_tokens` allows (None: no limit).
    """

    model: str
    messages: list[NormalizedMessage]
    stream: bool = False
    stop: tuple[str, ...] = ()
    max_tokens: int | None = None
    include_usage: bool = False

    @property
    def max_chars(self) -> int | None:
        """Return the reply length in characters that `max_tokens` allows."""
        if self.max_tokens is None:
            return None
        return self.max_tokens * CHARS_PER_TOKEN

    @property
    def needs_cutting(self) -> bool:
        """Tell whether the reply must go through a `ReplyCutter`."""
        return bool(self.stop) or self.max_tokens is not None


def parse_request(params: Mapping[str, JSONValue]) -> CompletionRequest:
    """Check the parameters of a chat-completions request.

    Raises:
        UsageError: a parameter is missing, malformed, unknown, or asks for
            something Koala cannot do; the message starts with its name.
    """
    for name, value in params.items():
        if value is None or name in _HANDLED:
            continue
        check = _CHECKS.get(name)
        if check is None:
            raise UsageError(f"{name}: unknown parameter")
        check(name, value)
    return CompletionRequest(
        model=_model(params.get("model")),
        messages=_messages(params.get("messages")),
        stream=_flag(params, "stream"),
        stop=_stop(params.get("stop")),
        max_tokens=_max_tokens(params),
        include_usage=_include_usage(params.get("stream_options")),
    )


_HANDLED: Final = frozenset(
    (
        "model",
        "messages",
        "stream",
        "stop",
        "max_tokens",
        "max_completion_tokens",
        "stream_options",
    )
)


def _model(value: JSONValue) -> str:
    if value is None:
        raise UsageError("model: missing; name a model (see /v1/models)")
    if not isinstance(value, str):
        raise UsageError(f"model: must be a string, not {_kind(value)}")
    return value


def _messages(value: JSONValue) -> list[NormalizedMessage]:
    if value is None:
        raise UsageError("messages: missing; send at least one message")
    if isinstance(value, list):
        # "developer" is the OpenAI API's newer name for "system" messages.
        value = [
            {**item, "role": "system"}
            if isinstance(item, Mapping) and item.get("role") == "developer"
            else item
            for item in value
        ]
    return normalize_messages(value)


def _flag(params: Mapping[str, JSONValue], name: str) -> bool:
    value = params.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise UsageError(f"{name}: must be true or false, not {_kind(value)}")
    return value


def _stop(value: JSONValue) -> tuple[str, ...]:
    if value is None:
        return ()
    sequences = [value] if isinstance(value, str) else value
    if not isinstance(sequences, list) or not all(
        isinstance(item, str) for item in sequences
    ):
        raise UsageError("stop: must be a string or a list of strings")
    if len(sequences) > MAX_STOP_SEQUENCES:
        raise UsageError(
            f"stop: at most {MAX_STOP_SEQUENCES} sequences, not {len(sequences)}"
        )
    return tuple(dict.fromkeys(item for item in sequences if item))


def _max_tokens(params: Mapping[str, JSONValue]) -> int | None:
    limits = [
        _positive_int(name, params[name])
        for name in ("max_tokens", "max_completion_tokens")
        if params.get(name) is not None
    ]
    return min(limits) if limits else None


def _include_usage(value: JSONValue) -> bool:
    if value is None:
        return False
    if not isinstance(value, Mapping):
        raise UsageError(f"stream_options: must be an object, not {_kind(value)}")
    for key in value:
        if key != "include_usage":
            raise UsageError(f"stream_options.{key}: unknown option")
    return _flag(value, "include_usage")


def _positive_int(name: str, value: JSONValue) -> int:
    if not _is_whole(value) or value < 1:
        raise UsageError(f"{name}: must be a whole number >= 1, not {value!r}")
    return int(value)


def _is_whole(value: JSONValue) -> bool:
    """Tell whether `value` is a whole number; 2.0 is one, as JSON Schema says.

    JSON has one number type (RFC 8259, section 6), so `2.0` is the same number
    as `2`; `n` and `top_logprobs` already compare by value.
    """
    if isinstance(value, float):
        return value.is_integer()
    return isinstance(value, int) and not isinstance(value, bool)


def _kind(value: JSONValue) -> str:
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
    }.get(type(value), type(value).__name__)


# Checks of the parameters that do not change the request -------------------

Check = Callable[[str, JSONValue], None]


def _number(low: float, high: float) -> Check:
    def check(name: str, value: JSONValue) -> None:
        if (
            not isinstance(value, int | float)
            or isinstance(value, bool)
            or not math.isfinite(value)
            or not low <= value <= high
        ):
            raise UsageError(
                f"{name}: must be a number from {low:g} to {high:g}, not {value!r}"
            )

    return check


def _of_type(kind: type, description: str) -> Check:
    def check(name: str, value: JSONValue) -> None:
        # `_is_whole`: 3.0 is a seed, `true` (a subclass of int) is not.
        if not (_is_whole(value) if kind is int else isinstance(value, kind)):
            raise UsageError(f"{name}: must be {description}, not {_kind(value)}")

    return check


def _unsupported(neutral: Callable[[JSONValue], bool], why: str) -> Check:
    def check(name: str, value: JSONValue) -> None:
        if not neutral(value):
            raise UsageError(f"{name}: not supported, {why}")

    return check


def _is_one(value: JSONValue) -> bool:
    return bool(value == 1 and not isinstance(value, bool))


def _is_zero(value: JSONValue) -> bool:
    return bool(value == 0 and not isinstance(value, bool))


def _is_empty(value: JSONValue) -> bool:
    return bool(value == [] or value == {})


def _is_text_format(value: JSONValue) -> bool:
    return isinstance(value, Mapping) and value.get("type") == "text"


def _is_no_tool_choice(value: JSONValue) -> bool:
    return bool(value in ("none", "auto"))


_IGNORED_CHECKS: Final[dict[str, Check]] = {
    "temperature": _number(0, 2),
    "top_p": _number(0, 1),
    "presence_penalty": _number(-2, 2),
    "frequency_penalty": _number(-2, 2),
    "seed": _of_type(int, "a whole number"),
    "user": _of_type(str, "a string"),
    "logit_bias": _of_type(dict, "an object"),
    "metadata": _of_type(dict, "an object"),
    "store": _of_type(bool, "true or false"),
    "service_tier": _of_type(str, "a string"),
    "parallel_tool_calls": _of_type(bool, "true or false"),
    "prediction": _of_type(dict, "an object"),
    "reasoning_effort": _of_type(str, "a string"),
    "verbosity": _of_type(str, "a string"),
    "prompt_cache_key": _of_type(str, "a string"),
    "safety_identifier": _of_type(str, "a string"),
}

#: The parameters that are checked for their type and otherwise ignored.
IGNORED: Final = frozenset(_IGNORED_CHECKS)

_CHECKS: Final[dict[str, Check]] = {
    **_IGNORED_CHECKS,
    "n": _unsupported(_is_one, "Koala gives one choice per request; use n=1"),
    "tools": _unsupported(_is_empty, "Koala has no tool calling"),
    "functions": _unsupported(_is_empty, "Koala has no function calling"),
    "tool_choice": _unsupported(
        _is_no_tool_choice, "Koala has no tool calling; use 'none' or 'auto'"
    ),
    "function_call": _unsupported(
        _is_no_tool_choice, "Koala has no function calling; use 'none' or 'auto'"
    ),
    "response_format": _unsupported(
        _is_text_format, "Koala answers in plain text only; use {'type': 'text'}"
    ),
    "logprobs": _unsupported(
        lambda value: value is False, "Koala reports no log-probabilities"
    ),
    "top_logprobs": _unsupported(_is_zero, "Koala reports no log-probabilities"),
    "modalities": _unsupported(
        lambda value: value == ["text"], "Koala answers in text only"
    ),
    "audio": _unsupported(lambda value: False, "Koala answers in text only"),
    "web_search_options": _unsupported(
        lambda value: False, "Koala's web search cannot be switched on"
    ),
}
