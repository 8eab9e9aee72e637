"""The parameters of an OpenAI chat-completions request: one table, one check.

`Client`, `AsyncClient` and `koala serve` all check a request with
`parse_request`, so they accept and refuse exactly the same things. The Koala
protocol (docs/protocol.md, "Request") carries only the conversation and a model
name; every other OpenAI parameter is declared once in `PARAMETERS`, with its
treatment, its check, its JSON Schema and a short description. The server's
OpenAPI document is generated from the table, and a test holds the README's
table to it. The treatments:

- honoured: the conversation, `stream`, `stream_options.include_usage`, `stop`
  and `max_tokens` (both cut on our side, see `cutting.py`);
- emulated: JSON mode (`response_format`, see `jsonmode.py`) and tool calls
  (`tools`, `tool_choice`, see `tools.py`), done with an instruction to the
  model and a check of its reply;
- accepted and ignored, since they only tune sampling, billing or caching and an
  answer without them is still a correct answer (`IGNORED`); some are not
  OpenAI's but other clients' (Open WebUI's `keep_alive`, ...);
- refused unless given their neutral value, since ignoring them would give a
  wrong answer (several choices, log-probabilities, audio).

Any other name is ignored too (and named in `CompletionRequest.ignored`)
unless `strict` (the client's default; `koala serve --strict`) refuses it, and
other clients' names, as unknown. `null` counts as absent for every optional
parameter. Every error is a `UsageError` whose message starts with the
parameter's name.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, cast

from ..errors import UsageError
from ..messages import (
    JSONValue,
    NormalizedMessage,
)
from .checks import (
    BOOLEAN,
    MAX_STOP_LENGTH,
    MAX_STOP_SEQUENCES,
    OBJECT,
    POSITIVE,
    PROTOCOL,
    STOP_SCHEMA,
    STREAM_OPTIONS_SCHEMA,
    STRING,
    WHOLE,
    Check,
    Schema,
    include_usage_of,
    model_name,
    number_between,
    stop_sequences,
)
from .conversation import MESSAGES_SCHEMA, check_messages, with_instructions
from .jsonmode import RESPONSE_FORMAT_SCHEMA, JSONFormat, parse_response_format
from .neutral import NONE, Neutral, only
from .tools import (
    TOOL_CHOICE_SCHEMA,
    TOOLS_SCHEMA,
    ChoiceMode,
    Tool,
    ToolSet,
    parse_tool_choice,
    parse_tools,
    tool_set,
)
from .usage import chars_for_tokens

__all__ = [
    "EXTENSIONS",
    "IGNORED",
    "PARAMETERS",
    "SAMPLING",
    "CompletionRequest",
    "Parameter",
    "Treatment",
    "emulated",
    "foreign",
    "honoured",
    "ignored",
    "parse_request",
    "read_parameters",
    "refused",
]


class Treatment(enum.Enum):
    """What happens to an OpenAI parameter."""

    HONOURED = "honoured"
    EMULATED = "emulated"
    IGNORED = "ignored"
    REFUSED = "refused unless neutral"


@dataclass(frozen=True, slots=True)
class Parameter:
    """One OpenAI parameter: its treatment, check, schema and description.

    `schema` is the JSON Schema of a value other than null (None: no such
    value is accepted); `missing` is the advice given when a required
    parameter is absent ("" for an optional one); `foreign` marks a name that
    is not OpenAI's but another client's, refused as unknown when strict.
    """

    name: str
    treatment: Treatment
    check: Check
    schema: Schema | None
    description: str
    missing: str = ""
    foreign: bool = False

    def json_schema(self) -> Schema:
        """Return the parameter's JSON Schema, null included when optional."""
        if self.missing and self.schema is not None:
            body = self.schema
        elif self.schema is None:
            body = {"type": "null"}
        else:
            body = {"anyOf": [self.schema, {"type": "null"}]}
        return {**body, "description": self.description}


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    """A checked chat-completions request.

    `model` is as requested ("" asks for the provider's default), `messages`
    have plain-text contents (with the instruction of JSON mode or tools
    first, when emulated), `stop` holds the non-empty stop sequences and
    `max_chars` the reply length that `max_tokens` allows (None: no limit).
    `json_format` and `tools` say what is emulated; `ignored` names the
    parameters that were accepted and ignored, in the request's order.
    """

    model: str
    messages: list[NormalizedMessage]
    stream: bool = False
    stop: tuple[str, ...] = ()
    max_tokens: int | None = None
    include_usage: bool = False
    protocol: str | None = None
    web_search: bool | None = None
    json_format: JSONFormat | None = None
    tools: ToolSet | None = None
    ignored: tuple[str, ...] = ()

    @property
    def emulated(self) -> bool:
        """Tell whether the reply must be read whole and checked (JSON, tools)."""
        return self.json_format is not None or self.tools is not None

    @property
    def max_chars(self) -> int | None:
        """Return the reply length in characters that `max_tokens` allows."""
        if self.max_tokens is None:
            return None
        return chars_for_tokens(self.max_tokens)

    @property
    def needs_cutting(self) -> bool:
        """Tell whether the reply must go through a `ReplyCutter`."""
        return bool(self.stop) or self.max_tokens is not None


def parse_request(
    params: Mapping[str, JSONValue], *, strict: bool = True
) -> CompletionRequest:
    """Check the parameters of a chat-completions request.

    `strict` refuses unknown names (and other clients' names); otherwise they
    are ignored and named in `ignored`.

    Raises:
        UsageError: a parameter is missing, malformed, unknown (when strict),
            or asks for something Koala cannot do; the message starts with
            its name.
    """
    values, skipped = read_parameters(PARAMETERS, params, strict=strict)
    limits = [
        cast(int, values[name])
        for name in ("max_tokens", "max_completion_tokens")
        if name in values
    ]
    json_format = cast(JSONFormat | None, values.get("response_format"))
    tools = tool_set(
        cast(tuple[Tool, ...], values.get("tools", ())),
        *cast(tuple[ChoiceMode, str], values.get("tool_choice", ("auto", ""))),
    )
    return CompletionRequest(
        model=cast(str, values["model"]),
        messages=with_instructions(
            cast(list[NormalizedMessage], values["messages"]),
            tools.instruction() if tools else None,
            json_format.instruction() if json_format else None,
        ),
        stream=cast(bool, values.get("stream", False)),
        stop=cast(tuple[str, ...], values.get("stop", ())),
        max_tokens=min(limits, default=None),
        include_usage=cast(bool, values.get("stream_options", False)),
        protocol=cast(str | None, values.get("protocol")),
        web_search=cast(bool | None, values.get("web_search")),
        json_format=json_format,
        tools=tools,
        ignored=tuple(skipped),
    )


def read_parameters(
    table: Mapping[str, Parameter],
    params: Mapping[str, JSONValue],
    *,
    strict: bool,
) -> tuple[dict[str, object], list[str]]:
    """Check `params` against `table`; return the checked values and the ignored.

    The values are what each parameter's check keeps, null ones left out;
    the ignored names are the unknown ones (when not `strict`) and those the
    table ignores, in the request's order. Every wire format reads its
    parameters so, with a table of its own names.

    Raises:
        UsageError: as `parse_request`; the message starts with the name.
    """
    values: dict[str, object] = {}
    skipped: list[str] = []
    for name, value in params.items():
        parameter = table.get(name)
        if parameter is None or parameter.foreign:
            if strict:
                raise UsageError(f"{name}: unknown parameter")
            skipped.append(name)
        elif value is not None:
            values[name] = parameter.check(name, value)
            if parameter.treatment is Treatment.IGNORED:
                skipped.append(name)
    for parameter in table.values():
        if parameter.missing and parameter.name not in values:
            raise UsageError(f"{parameter.name}: missing; {parameter.missing}")
    return values, skipped


# The table's entries, for this table and the other formats' ----------------


def emulated(name: str, check: Check, schema: Schema, description: str) -> Parameter:
    return Parameter(name, Treatment.EMULATED, check, schema, description)


def _provider(name: str, value: JSONValue) -> JSONValue:
    if not isinstance(value, str) or value.lower() != "koala":
        raise UsageError(
            f"{name}: this server serves the Koala provider only, not {value!r}; "
            'send "Koala" or leave it out'
        )
    return value


def _anything(name: str, value: JSONValue) -> JSONValue:
    return value


def foreign(name: str, client: str) -> Parameter:
    return Parameter(
        name,
        Treatment.IGNORED,
        _anything,
        {},
        f"Sent by {client}, not an OpenAI parameter; refused as unknown when strict.",
        foreign=True,
    )


def refused(name: str, why: str, neutral: Neutral) -> Parameter:
    def check(name: str, value: JSONValue) -> JSONValue:
        if not neutral.accepts(value):
            raise UsageError(f"{name}: not supported, {why}{neutral.advice}")
        return value

    return Parameter(
        name, Treatment.REFUSED, check, neutral.schema, f"{why}{neutral.advice}."
    )


def honoured(
    name: str,
    rule: tuple[Check, Schema],
    description: str,
    missing: str = "",
) -> Parameter:
    return Parameter(name, Treatment.HONOURED, *rule, description, missing)


def ignored(name: str, rule: tuple[Check, Schema], description: str) -> Parameter:
    return Parameter(name, Treatment.IGNORED, *rule, description)


_SAMPLING: Final = "Tunes sampling; Koala has no such control."
_BOOKKEEPING: Final = "Bookkeeping for OpenAI's own service; Koala has none."
_FUNCTIONS: Final = "Koala has no function calling"
_LOGPROBS: Final = "Koala reports no log-probabilities"
_TEXT_ONLY: Final = "Koala answers in text only"

#: Koala's own extensions, the same in every OpenAI-shaped format
#: (docs/protocol.md, "Choosing a dialect").
EXTENSIONS: Final = (
    honoured("protocol", PROTOCOL, "Koala's dialect for this request only."),
    honoured("web_search", BOOLEAN, "Koala's real-time data flag, on or off."),
)

#: The sampling controls, checked and ignored in every OpenAI-shaped format.
SAMPLING: Final = (
    ignored("temperature", number_between(0, 2), _SAMPLING),
    ignored("top_p", number_between(0, 1), _SAMPLING),
    ignored("presence_penalty", number_between(-2, 2), _SAMPLING),
    ignored("frequency_penalty", number_between(-2, 2), _SAMPLING),
    ignored("seed", WHOLE, _SAMPLING),
    ignored("logit_bias", OBJECT, _SAMPLING),
)

_TABLE: Final = (
    honoured(
        "model",
        (model_name, {"type": "string"}),
        'A model id; "" asks for the default model.',
        "name a model (see /v1/models)",
    ),
    honoured(
        "messages",
        (check_messages, MESSAGES_SCHEMA),
        'The conversation, text only; "developer" is a system message.',
        "send at least one message",
    ),
    honoured("stream", BOOLEAN, "Stream the reply as chunk events."),
    honoured(
        "stream_options",
        (include_usage_of, STREAM_OPTIONS_SCHEMA),
        "`include_usage` adds a last chunk with the usage estimate.",
    ),
    honoured(
        "stop",
        (stop_sequences, STOP_SCHEMA),
        "Applied on our side: the reply ends before the first stop sequence; "
        f"at most {MAX_STOP_SEQUENCES} of at most {MAX_STOP_LENGTH} characters.",
    ),
    honoured(
        "max_tokens",
        POSITIVE,
        "Applied on our side on the estimate: at most 4 x N characters.",
    ),
    honoured(
        "max_completion_tokens",
        POSITIVE,
        "As `max_tokens`; the smaller of the two applies.",
    ),
    *EXTENSIONS,
    *SAMPLING,
    ignored("user", STRING, _BOOKKEEPING),
    ignored("metadata", OBJECT, _BOOKKEEPING),
    ignored("store", BOOLEAN, _BOOKKEEPING),
    ignored("service_tier", STRING, _BOOKKEEPING),
    ignored("prompt_cache_key", STRING, _BOOKKEEPING),
    ignored("safety_identifier", STRING, _BOOKKEEPING),
    ignored("parallel_tool_calls", BOOLEAN, "Emulated replies may call several tools."),
    ignored("prediction", OBJECT, "A latency hint; the answer is the same."),
    ignored("reasoning_effort", STRING, "Koala's models take no such hint."),
    ignored("verbosity", STRING, "Koala's models take no such hint."),
    foreign("keep_alive", "Open WebUI (Ollama)"),
    foreign("num_keep", "Open WebUI (Ollama)"),
    foreign("num_ctx", "Open WebUI (Ollama)"),
    foreign("tool_servers", "Open WebUI"),
    foreign("chat_id", "Open WebUI"),
    foreign("session_id", "Open WebUI"),
    foreign("top_k", "several clients"),
    foreign("min_p", "several clients"),
    foreign("repetition_penalty", "several clients"),
    foreign("reasoning", "OpenRouter-style clients"),
    emulated(
        "response_format",
        parse_response_format,
        RESPONSE_FORMAT_SCHEMA,
        "JSON mode, emulated: the model is instructed, its JSON extracted and "
        "validated (one retry), else 502; streamed as one piece once known.",
    ),
    emulated(
        "tools",
        parse_tools,
        TOOLS_SCHEMA,
        "Function tools, emulated: described to the model, its calls read "
        "from its reply and checked against each tool's parameters. Each "
        "function's name is given once.",
    ),
    emulated(
        "tool_choice",
        parse_tool_choice,
        TOOL_CHOICE_SCHEMA,
        '"none", "auto", "required" or a function named in `tools` (which '
        "must then not be empty); emulated as `tools`.",
    ),
    honoured(
        "provider",
        (_provider, {"type": "string", "pattern": "^[Kk][Oo][Aa][Ll][Aa]$"}),
        'Must name this server\'s provider, "Koala", if given.',
    ),
    refused("n", "Koala gives one choice per request", only(1)),
    refused("functions", _FUNCTIONS, only([], {})),
    refused("function_call", _FUNCTIONS, only("none", "auto")),
    refused("logprobs", _LOGPROBS, only(False)),
    refused("top_logprobs", _LOGPROBS, only(0)),
    refused("modalities", _TEXT_ONLY, only(["text"])),
    refused("audio", _TEXT_ONLY, NONE),
    refused("web_search_options", "Koala's web search cannot be switched on", NONE),
)

#: Every OpenAI parameter Koala knows, by name, in the order of the table.
PARAMETERS: Final[Mapping[str, Parameter]] = {p.name: p for p in _TABLE}

#: The parameters that are checked for their type and otherwise ignored.
IGNORED: Final = frozenset(p.name for p in _TABLE if p.treatment is Treatment.IGNORED)
