"""The request of the OpenAI Responses API, read into the inside request.

`parse_responses` checks a `POST /v1/responses` body against `PARAMETERS`,
a table in the shape of chat completions' (`koala_chat._contract.params`) with
the Responses API's own names, so that every error names the parameter as the
client spelled it (`input[2].content[0]`, `text.format.schema`). The request
becomes the inside one:

- `input` (a string, or a list of items) is the conversation
  (`responses_input.py`), `instructions` a system message before it;
- `max_output_tokens` is `max_tokens`; `tools` (function tools, flat) and
  `tool_choice` are emulated as chat completions' are, `text.format` as
  `response_format`;
- `previous_response_id` and `conversation` are refused: this server keeps no
  responses, so the client sends the whole conversation in `input` (as
  `store: false` clients do).

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, cast

from ..._contract.checks import (
    BOOLEAN,
    OBJECT,
    POSITIVE,
    STRING,
    WHOLE,
    Check,
    Schema,
    kind_of,
)
from ..._contract.conversation import with_instructions
from ..._contract.jsonmode import JSONFormat, json_schema_format
from ..._contract.neutral import NONE, only
from ..._contract.params import (
    EXTENSIONS,
    CompletionRequest,
    Parameter,
    emulated,
    foreign,
    honoured,
    ignored,
    read_parameters,
    refused,
)
from ..._contract.params import PARAMETERS as CHAT_PARAMETERS
from ..._contract.tools import ChoiceMode, parse_tools, tool_set
from ...errors import UsageError
from ...messages import JSONValue, NormalizedMessage, replace_surrogates
from .responses_input import INPUT_SCHEMA, check_input

__all__ = ["PARAMETERS", "Echo", "parse_responses"]


@dataclass(frozen=True, slots=True)
class Echo:
    """What a response object repeats of its request, as the client sent it."""

    instructions: str | None = None
    max_output_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    tools: list[JSONValue] | None = None
    tool_choice: JSONValue = "auto"
    text_format: JSONValue = None
    metadata: JSONValue = None

    def members(self) -> dict[str, JSONValue]:
        """Return the members of a response object that echo the request."""
        return {
            "instructions": self.instructions,
            "max_output_tokens": self.max_output_tokens,
            "parallel_tool_calls": True,
            "previous_response_id": None,
            "reasoning": {"effort": None, "summary": None},
            "store": False,
            "temperature": self.temperature,
            "text": {"format": self.text_format or {"type": "text"}},
            "tool_choice": self.tool_choice,
            "tools": self.tools or [],
            "top_p": self.top_p,
            "truncation": "disabled",
            "metadata": self.metadata or {},
        }


def parse_responses(
    body: Mapping[str, JSONValue], *, strict: bool
) -> tuple[CompletionRequest, Echo]:
    """Return the inside request of a Responses API body, and what it echoes.

    Raises:
        UsageError: a parameter is missing, malformed, unknown (when strict)
            or asks for what Koala cannot do; the message starts with its
            name as the Responses API spells it.
    """
    values, skipped = read_parameters(PARAMETERS, body, strict=strict)
    others = None if strict else skipped
    tools = parse_tools("tools", values.get("tools", []), flat=True, others=others)
    mode, function = cast(
        tuple[ChoiceMode, str], values.get("tool_choice", ("auto", ""))
    )
    chosen = tool_set(tools, mode, function)
    json_format = cast(JSONFormat | None, values.get("text"))
    instructions = cast(str | None, values.get("instructions"))
    messages = cast(list[NormalizedMessage], values["input"])
    if instructions:
        system = replace_surrogates(instructions)
        messages = [{"role": "system", "content": system}, *messages]
    request = CompletionRequest(
        model=cast(str, values["model"]),
        messages=with_instructions(
            messages,
            chosen.instruction() if chosen else None,
            json_format.instruction() if json_format else None,
        ),
        stream=cast(bool, values.get("stream", False)),
        max_tokens=cast(int | None, values.get("max_output_tokens")),
        protocol=cast(str | None, values.get("protocol")),
        web_search=cast(bool | None, values.get("web_search")),
        json_format=json_format,
        tools=chosen,
        ignored=tuple(skipped),
    )
    return request, _echo(body, values)


def _echo(body: Mapping[str, JSONValue], values: Mapping[str, object]) -> Echo:
    text = body.get("text")
    return Echo(
        instructions=cast(str | None, values.get("instructions")),
        max_output_tokens=cast(int | None, values.get("max_output_tokens")),
        temperature=cast(float, values.get("temperature", 1.0)),
        top_p=cast(float, values.get("top_p", 1.0)),
        tools=cast(list[JSONValue] | None, body.get("tools")),
        tool_choice=body.get("tool_choice") or "auto",
        text_format=text.get("format") if isinstance(text, Mapping) else None,
        metadata=values.get("metadata"),
    )


# tools, tool_choice, text -----------------------------------------------------


def _list(name: str, value: JSONValue) -> list[JSONValue]:
    if not isinstance(value, list):
        raise UsageError(f"{name}: must be a list of tools, not {kind_of(value)}")
    return value


def check_tool_choice(name: str, value: JSONValue) -> tuple[ChoiceMode, str]:
    """Return the mode of `tool_choice` and the function it names ("").

    Raises:
        UsageError: not "none", "auto", "required" or a named function.
    """
    if value in ("none", "auto", "required"):
        return cast(ChoiceMode, value), ""
    if isinstance(value, Mapping) and value.get("type") == "function":
        title = value.get("name")
        if isinstance(title, str) and title:
            return "function", title
    raise UsageError(
        f"{name}: must be 'none', 'auto', 'required' or "
        '{"type": "function", "name": ...}'
    )


def check_text(name: str, value: JSONValue) -> JSONFormat | None:
    """Return the JSON that `text.format` asks for (None: plain text).

    Raises:
        UsageError: not an object, an unknown format type, or a JSON Schema
            that cannot be used (`_contract.schemas.check_schema`).
    """
    if not isinstance(value, Mapping):
        raise UsageError(f"{name}: must be an object, not {kind_of(value)}")
    spec = value.get("format")
    if spec is None:
        return None
    where = f"{name}.format"
    if not isinstance(spec, Mapping):
        raise UsageError(f"{where}: must be an object, not {kind_of(spec)}")
    kind = spec.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return JSONFormat()
    if kind != "json_schema":
        raise UsageError(
            f"{where}.type: must be 'text', 'json_object' or 'json_schema', "
            f"not {kind!r}"
        )
    if "schema" not in spec:
        raise UsageError(f"{where}.schema: missing; give the JSON Schema")
    return json_schema_format(where, spec)


# The table --------------------------------------------------------------------

_STATELESS: Final = (
    "this server keeps no responses or conversations: send the whole "
    "conversation in `input`"
)

_TOOLS_SCHEMA: Final[Schema] = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {"type": {"type": "string"}},
        "required": ["type"],
        # Tools of other types are left out unless strict.
        "if": {"properties": {"type": {"const": "function"}}},
        "then": {
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "description": {"type": ["string", "null"]},
                "parameters": {"type": ["object", "boolean", "null"]},
            },
            "required": ["type", "name"],
        },
    },
}
_TOOL_CHOICE_SCHEMA: Final[Schema] = {
    "anyOf": [
        {"enum": ["none", "auto", "required"]},
        {
            "type": "object",
            "properties": {
                "type": {"const": "function"},
                "name": {"type": "string", "minLength": 1},
            },
            "required": ["type", "name"],
        },
    ]
}
_TEXT_SCHEMA: Final[Schema] = {
    "type": "object",
    "properties": {
        "format": {
            "anyOf": [
                {"type": "null"},
                {
                    "type": "object",
                    "properties": {
                        "type": {"enum": ["text", "json_object", "json_schema"]}
                    },
                    "required": ["type"],
                    # Only a JSON Schema format reads the other members.
                    "if": {"properties": {"type": {"const": "json_schema"}}},
                    "then": {
                        "properties": {
                            "name": {"type": ["string", "null"]},
                            "description": {"type": ["string", "null"]},
                            "schema": {"type": ["object", "boolean"]},
                            "strict": {"type": ["boolean", "null"]},
                        },
                        "required": ["type", "schema"],
                    },
                },
            ]
        },
    },
}


def _checked(check: Check, schema: Schema) -> tuple[Check, Schema]:
    return check, schema


def _kept(name: str, value: JSONValue) -> JSONValue:
    return value


_TABLE: Final = (
    CHAT_PARAMETERS["model"],
    honoured(
        "input",
        _checked(check_input, INPUT_SCHEMA),
        "The conversation: a string, or message items (text only) and the "
        "function_call and function_call_output items of emulated tools.",
        "send the conversation as a string or a list of items",
    ),
    honoured("instructions", STRING, "The system prompt, put before the conversation."),
    honoured("stream", BOOLEAN, "Stream the reply as the Responses API's events."),
    honoured(
        "max_output_tokens",
        POSITIVE,
        "Applied on our side on the estimate: at most 4 x N characters; the "
        "response is then `incomplete`.",
    ),
    *EXTENSIONS,
    emulated(
        "tools",
        _list,
        _TOOLS_SCHEMA,
        "Function tools, emulated as chat completions' are. Tools of other "
        "types are refused when strict, else left out (and named ignored).",
    ),
    emulated(
        "tool_choice",
        check_tool_choice,
        _TOOL_CHOICE_SCHEMA,
        '"none", "auto", "required" or a function named in `tools`.',
    ),
    emulated(
        "text",
        check_text,
        _TEXT_SCHEMA,
        "`format` json_object or json_schema: JSON mode, emulated and "
        "validated as chat completions' `response_format`.",
    ),
    CHAT_PARAMETERS["temperature"],
    CHAT_PARAMETERS["top_p"],
    ignored("store", BOOLEAN, "Nothing is stored: every response is `store: false`."),
    CHAT_PARAMETERS["metadata"],
    CHAT_PARAMETERS["user"],
    CHAT_PARAMETERS["service_tier"],
    CHAT_PARAMETERS["prompt_cache_key"],
    CHAT_PARAMETERS["safety_identifier"],
    ignored(
        "include",
        (_kept, {"type": "array"}),
        "Extra output data (encrypted reasoning, ...): Koala has none.",
    ),
    ignored("parallel_tool_calls", BOOLEAN, "Emulated replies may call several."),
    ignored("max_tool_calls", WHOLE, "Emulated replies are checked whole."),
    ignored("reasoning", OBJECT, "Koala's models take no such hint."),
    ignored("truncation", STRING, "The conversation is sent whole."),
    ignored("stream_options", OBJECT, "Koala's events are not obfuscated."),
    foreign("client_metadata", "Codex"),
    refused("previous_response_id", _STATELESS, NONE),
    refused("conversation", _STATELESS, NONE),
    refused("prompt", "this server has no stored prompts", NONE),
    refused("background", "replies are never run in the background", only(False)),
    refused("top_logprobs", "Koala reports no log-probabilities", only(0)),
)

#: The Responses API's parameters Koala knows, by name.
PARAMETERS: Final[Mapping[str, Parameter]] = {p.name: p for p in _TABLE}
