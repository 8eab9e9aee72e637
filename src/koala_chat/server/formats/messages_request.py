"""The request of the Anthropic Messages API, read into the inside request.

`parse_messages` checks a `POST /v1/messages` body (or a `count_tokens` one)
and returns the `CompletionRequest` the driver serves. Every error is a
`UsageError` whose message starts with the Anthropic parameter's name
(`messages[2].content[0].tool_use_id`, `stop_sequences`, `tools[1].input_schema`),
never the OpenAI name it is served as. The treatments, as the chat format's
(`koala_chat._contract.params`):

- honoured: `model`, `messages`, `system`, `max_tokens` (required, applied on
  our side on the estimate), `stop_sequences` (cut on our side), `stream`, and
  Koala's `protocol` and `web_search`;
- emulated: `tools` (custom tools with `input_schema`), `tool_choice`, and
  `output_config.format` (JSON mode with a schema);
- accepted and ignored: sampling, bookkeeping and caching hints (`IGNORED`);
- refused unless neutral: `mcp_servers`, which only Anthropic's service can
  reach.

Any other name is ignored (and named in `ignored`) unless `strict` refuses it.
Tool calls and results in the history (`tool_use`, `tool_result` blocks) are
written into the conversation as text, as the chat format's are
(`_contract.tools.render_history`); `thinking` blocks of earlier replies are
left out: they were never this server's. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Final, cast

from ..._contract.checks import (
    BOOLEAN,
    OBJECT,
    PROTOCOL,
    STRING,
    WHOLE,
    kind_of,
    model_name,
    number_between,
    positive_whole,
    stop_sequences,
)
from ..._contract.conversation import with_instructions
from ..._contract.jsonmode import JSONFormat, parse_response_format
from ..._contract.params import CompletionRequest
from ..._contract.tools import ChoiceMode, Tool, parse_tools, render_history, tool_set
from ..._values import shown
from ...errors import UsageError
from ...messages import JSONValue, normalize_messages

__all__ = ["IGNORED", "parse_messages"]

_Check = Callable[[str, JSONValue], object]

#: Text blocks of one message or of `system` are paragraphs of one text.
_JOINER: Final = "\n\n"


def parse_messages(
    body: Mapping[str, JSONValue], *, strict: bool, count: bool = False
) -> CompletionRequest:
    """Return the inside request of a Messages API `body`.

    `count` reads a `count_tokens` body, which has no `max_tokens`.

    Raises:
        UsageError: a parameter is missing, malformed, unknown (when strict)
            or asks for what Koala cannot do; the message starts with its name.
    """
    values: dict[str, object] = {}
    ignored: list[str] = []
    for name, value in body.items():
        check = _CHECKS.get(name)
        if check is None:
            if strict:
                raise UsageError(f"{name}: unknown parameter")
            ignored.append(name)
        elif value is not None:
            if name == "tools":
                values[name] = _tools(name, value, strict, ignored)
            else:
                values[name] = check(name, value)
            if name in IGNORED:
                ignored.append(name)
    required = ("model", "messages") if count else ("model", "messages", "max_tokens")
    for name in required:
        if name not in values:
            raise UsageError(f"{name}: missing; {_MISSING[name]}")
    tools = tool_set(
        cast(tuple[Tool, ...], values.get("tools", ())),
        *cast(tuple[ChoiceMode, str], values.get("tool_choice", ("auto", ""))),
    )
    json_format = cast(JSONFormat | None, values.get("output_config"))
    system = cast(str | None, values.get("system"))
    messages = cast(list[JSONValue], values["messages"])
    if system:
        messages = [{"role": "system", "content": system}, *messages]
    return CompletionRequest(
        model=cast(str, values["model"]),
        messages=with_instructions(
            normalize_messages(render_history(messages)),
            tools.instruction() if tools else None,
            json_format.instruction() if json_format else None,
        ),
        stream=cast(bool, values.get("stream", False)),
        stop=cast(tuple[str, ...], values.get("stop_sequences", ())),
        max_tokens=cast(int | None, values.get("max_tokens")),
        protocol=cast(str | None, values.get("protocol")),
        web_search=cast(bool | None, values.get("web_search")),
        json_format=json_format,
        tools=tools,
        ignored=tuple(ignored),
    )


_MISSING: Final = {
    "model": 'name a model (see /v1/models); "" asks for the default model',
    "messages": "send at least one message",
    "max_tokens": "the Messages API requires it (the most tokens of the reply)",
}


# The conversation -----------------------------------------------------------


def _messages(name: str, value: JSONValue) -> list[JSONValue]:
    """Return the conversation as OpenAI-style messages, tool turns included."""
    if not isinstance(value, list) or not value:
        raise UsageError(f"{name}: must be a non-empty list of messages")
    result: list[JSONValue] = []
    for index, item in enumerate(value):
        where = f"{name}[{index}]"
        if not isinstance(item, Mapping):
            raise UsageError(f"{where}: must be an object, not {kind_of(item)}")
        role = item.get("role")
        if role not in ("user", "assistant", "system"):
            raise UsageError(
                f"{where}.role: must be 'user', 'assistant' or 'system', "
                f"not {shown(role)}"
            )
        if "content" not in item:
            raise UsageError(f"{where}.content: missing")
        content = item["content"]
        if role == "system":
            # A system turn in the conversation, as Claude Code sends one
            # (its `per-turn-control` beta): text only, kept in place.
            text = _system(f"{where}.content", content)
            result.append({"role": "system", "content": text})
        elif isinstance(content, str):
            result.append({"role": role, "content": content})
        elif isinstance(content, list):
            result.extend(_turn(f"{where}.content", role, content))
        else:
            raise UsageError(
                f"{where}.content: must be a string or a list of content blocks,"
                f" not {kind_of(content)}"
            )
    return result


def _turn(where: str, role: str, blocks: list[JSONValue]) -> list[JSONValue]:
    """Return one message's blocks as OpenAI-style messages.

    A user turn gives its tool results first (as `tool` messages), then its
    text; an assistant turn gives its text and its tool calls in one message.
    """
    texts: list[str] = []
    calls: list[JSONValue] = []
    results: list[JSONValue] = []
    for number, block in enumerate(blocks):
        at = f"{where}[{number}]"
        kind = block.get("type") if isinstance(block, Mapping) else None
        if not isinstance(block, Mapping) or not isinstance(kind, str):
            raise UsageError(f"{at}: must be a content block with a `type`")
        if kind == "text":
            texts.append(_string(f"{at}.text", block.get("text")))
        elif kind == "tool_use" and role == "assistant":
            calls.append(_tool_use(at, block))
        elif kind == "tool_result" and role == "user":
            results.append(_tool_result(at, block))
        elif kind in ("thinking", "redacted_thinking") and role == "assistant":
            continue
        else:
            raise UsageError(
                f"{at}.type: a {kind!r} block is not supported in a {role} "
                "message; Koala takes text, an assistant's tool_use and a "
                "user's tool_result blocks"
            )
    text = _JOINER.join(texts)
    if role == "assistant":
        if calls:
            return [{"role": "assistant", "content": text, "tool_calls": calls}]
        return [{"role": "assistant", "content": text}]
    if results and not texts:
        return results
    return [*results, {"role": "user", "content": text}]


def _tool_use(at: str, block: Mapping[str, JSONValue]) -> JSONValue:
    call_id = _string(f"{at}.id", block.get("id"))
    name = _string(f"{at}.name", block.get("name"))
    arguments = block.get("input", {})
    if not isinstance(arguments, Mapping):
        raise UsageError(f"{at}.input: must be an object, not {kind_of(arguments)}")
    return {"id": call_id, "function": {"name": name, "arguments": arguments}}


def _tool_result(at: str, block: Mapping[str, JSONValue]) -> JSONValue:
    call_id = _string(f"{at}.tool_use_id", block.get("tool_use_id"))
    content = block.get("content")
    if content is None:
        text = ""
    elif isinstance(content, str):
        text = content
    elif isinstance(content, list):
        parts = []
        for number, part in enumerate(content):
            where = f"{at}.content[{number}]"
            if not isinstance(part, Mapping) or part.get("type") != "text":
                raise UsageError(f"{where}: not a text block; Koala takes text only")
            parts.append(_string(f"{where}.text", part.get("text")))
        text = _JOINER.join(parts)
    else:
        raise UsageError(
            f"{at}.content: must be a string or text blocks, not {kind_of(content)}"
        )
    if block.get("is_error") is True:
        text = f"(the tool failed) {text}"
    return {"role": "tool", "tool_call_id": call_id, "content": text}


def _string(where: str, value: JSONValue) -> str:
    if not isinstance(value, str):
        raise UsageError(f"{where}: must be a string, not {kind_of(value)}")
    return value


def _system(name: str, value: JSONValue) -> str:
    """Return the system prompt: a string, or text blocks as paragraphs."""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise UsageError(
            f"{name}: must be a string or a list of text blocks, not {kind_of(value)}"
        )
    texts = []
    for number, block in enumerate(value):
        where = f"{name}[{number}]"
        if not isinstance(block, Mapping) or block.get("type") != "text":
            raise UsageError(f"{where}: must be a text block")
        texts.append(_string(f"{where}.text", block.get("text")))
    return _JOINER.join(texts)


def _stop_sequences(name: str, value: JSONValue) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise UsageError(f"{name}: must be a list of strings, not {kind_of(value)}")
    return stop_sequences(name, value)


# Tools ----------------------------------------------------------------------

#: An error of `parse_tools` about one OpenAI-shaped tool, to be renamed.
_TOOL_ERROR: Final = re.compile(r"tools\[(\d+)\](\.function(\.\w+)?)?")
_RENAMED: Final = {".parameters": ".input_schema", ".name": ".name", None: ""}


def _tools(
    name: str, value: JSONValue, strict: bool, ignored: list[str]
) -> tuple[Tool, ...]:
    """Return the custom tools of `tools`, checked as the chat format's are.

    Anthropic's own tools (a `type` such as `web_search_20250305`) run on its
    service: ignored and named in `ignored`, or refused when `strict`.
    """
    if not isinstance(value, list):
        raise UsageError(f"{name}: must be a list of tools, not {kind_of(value)}")
    functions: list[JSONValue] = []
    origins: list[int] = []
    for index, item in enumerate(value):
        where = f"{name}[{index}]"
        if not isinstance(item, Mapping):
            raise UsageError(f"{where}: must be an object, not {kind_of(item)}")
        kind = item.get("type")
        if kind is not None and kind != "custom":
            if strict or not isinstance(kind, str):
                raise UsageError(
                    f"{where}.type: {shown(kind)} is not a custom tool; this "
                    "server runs none of Anthropic's own tools"
                )
            ignored.append(where)
            continue
        if item.get("input_schema") is None:
            raise UsageError(f"{where}.input_schema: missing; a tool's JSON Schema")
        functions.append(
            {
                "type": "function",
                "function": {
                    "name": item.get("name"),
                    "description": item.get("description"),
                    "parameters": item["input_schema"],
                },
            }
        )
        origins.append(index)
    try:
        return parse_tools(name, functions)
    except UsageError as exc:
        message = _TOOL_ERROR.sub(lambda m: _renamed(m, origins), str(exc), 1)
        raise UsageError(message) from None


def _renamed(match: re.Match[str], origins: list[int]) -> str:
    member = match.group(3)
    return f"tools[{origins[int(match.group(1))]}]{_RENAMED.get(member, member)}"


def _tool_choice(name: str, value: JSONValue) -> tuple[ChoiceMode, str]:
    """Return the mode and the tool of `tool_choice` (auto, any, tool, none)."""
    kind = value.get("type") if isinstance(value, Mapping) else None
    if kind in ("auto", "none"):
        return cast(ChoiceMode, kind), ""
    if kind == "any":
        return "required", ""
    if kind == "tool":
        tool = cast(Mapping[str, JSONValue], value).get("name")
        if isinstance(tool, str) and tool:
            return "function", tool
        raise UsageError(f"{name}.name: must name one of the tools")
    raise UsageError(
        f'{name}: must be {{"type": "auto"}}, {{"type": "any"}}, {{"type": "none"}}'
        ' or {"type": "tool", "name": ...}'
    )


def _output_config(name: str, value: JSONValue) -> JSONFormat | None:
    """Return the JSON format `output_config.format` asks for (None: text).

    Its other members (`effort`) only tune the model: ignored.
    """
    if not isinstance(value, Mapping):
        raise UsageError(f"{name}: must be an object, not {kind_of(value)}")
    spec = value.get("format")
    if spec is None:
        return None
    where = f"{name}.format"
    if not isinstance(spec, Mapping) or spec.get("type") != "json_schema":
        raise UsageError(f'{where}: must be {{"type": "json_schema", "schema": ...}}')
    if spec.get("schema") is None:
        raise UsageError(f"{where}.schema: missing")
    try:
        return parse_response_format(
            where, {"type": "json_schema", "json_schema": {"schema": spec["schema"]}}
        )
    except UsageError as exc:
        message = str(exc).replace(".json_schema.schema", ".schema", 1)
        raise UsageError(message) from None


def _anything(name: str, value: JSONValue) -> JSONValue:
    return value


def _no_mcp_servers(name: str, value: JSONValue) -> JSONValue:
    if value != []:
        raise UsageError(
            f"{name}: not supported, only Anthropic's service reaches MCP "
            "servers; send [] or leave it out"
        )
    return value


_Rules = Mapping[str, _Check]

_HONOURED: Final[_Rules] = {
    "model": model_name,
    "messages": _messages,
    "system": _system,
    "max_tokens": positive_whole,
    "stop_sequences": _stop_sequences,
    "stream": BOOLEAN[0],
    "protocol": PROTOCOL[0],
    "web_search": BOOLEAN[0],
    "tools": _anything,  # read by `_tools`, which also needs `strict`
    "tool_choice": _tool_choice,
    "output_config": _output_config,
    "mcp_servers": _no_mcp_servers,
}

#: The parameters that only tune sampling, billing or caching: checked for
#: their type and otherwise ignored.
_IGNORED_RULES: Final[_Rules] = {
    "temperature": number_between(0, 1)[0],
    "top_p": number_between(0, 1)[0],
    "top_k": WHOLE[0],
    "thinking": OBJECT[0],
    "metadata": OBJECT[0],
    "service_tier": STRING[0],
    "cache_control": OBJECT[0],
    "context_management": OBJECT[0],
    "container": _anything,
    "inference_geo": STRING[0],
    "speed": STRING[0],
    "diagnostics": OBJECT[0],
}

#: The names that are accepted and ignored.
IGNORED: Final = frozenset(_IGNORED_RULES)

_CHECKS: Final[_Rules] = {**_HONOURED, **_IGNORED_RULES}
