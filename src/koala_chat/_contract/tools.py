"""Tool calls, emulated: the instruction, the history and the reading of calls.

Koala's models take and give text only (docs/protocol.md, "Request"), so the
tools of a request are described to the model in a system message, and a reply
that calls tools is a JSON object of one agreed shape:

    {"tool_calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}}]}

`read_tool_calls` finds that object in a reply and checks each call against
the tool's parameter schema (`validation.validate`). The other way round,
`render_history` turns `tool` messages and assistant `tool_calls` of the
conversation back into text in the same shape, so the model reads its own
calls and their results. Pure: no I/O.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal, cast

from .. import defaults
from ..errors import UsageError
from ..messages import JSONValue
from .jsonmode import Schema, extract_json
from .schemas import SchemaProblem, check_schema
from .validation import validate

__all__ = [
    "TOOLS_SCHEMA",
    "TOOL_CHOICE_SCHEMA",
    "ReplyProblem",
    "Tool",
    "ToolCallRequest",
    "ToolSet",
    "new_call_id",
    "parse_tool_choice",
    "parse_tools",
    "read_tool_calls",
    "render_history",
    "tool_set",
]

ChoiceMode = Literal["none", "auto", "required", "function"]

_SHAPE: Final = '{"tool_calls": [{"name": "<tool name>", "arguments": {<arguments>}}]}'


#: The JSON Schemas of `tools` and `tool_choice`, for the OpenAPI document.
TOOLS_SCHEMA: Final[Schema] = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "type": {"const": "function"},
            "function": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "description": {"type": ["string", "null"]},
                    "parameters": {"type": ["object", "boolean", "null"]},
                },
                "required": ["name"],
            },
        },
        "required": ["type", "function"],
    },
}

TOOL_CHOICE_SCHEMA: Final[Schema] = {
    "anyOf": [
        {"enum": ["none", "auto", "required"]},
        {
            "type": "object",
            "properties": {
                "type": {"const": "function"},
                "function": {
                    "type": "object",
                    "properties": {"name": {"type": "string", "minLength": 1}},
                    "required": ["name"],
                },
            },
            "required": ["type", "function"],
        },
    ]
}


class ReplyProblem(Exception):
    """A reply that does not give what the request asked for; the text says why."""


@dataclass(frozen=True, slots=True)
class Tool:
    """A function the model may call: its name, description and parameters."""

    name: str
    description: str = ""
    parameters: Schema | None = None

    def line(self) -> str:
        """Return the tool described on one line for the instruction."""
        text = f"- {self.name}"
        if self.description:
            text += f": {self.description}"
        if self.parameters is not None:
            text += f" Arguments (JSON Schema): {_dumps(self.parameters)}"
        return text


@dataclass(frozen=True, slots=True)
class ToolSet:
    """The tools of a request and its `tool_choice`.

    `mode` is "none", "auto", "required" or "function" (then `function` names
    the one tool the model must call).
    """

    tools: tuple[Tool, ...]
    mode: ChoiceMode = "auto"
    function: str = ""

    def instruction(self) -> str | None:
        """Return the system message describing the tools (None for "none")."""
        if self.mode == "none" or not self.tools:
            return None
        if self.mode == "function":
            rule = f"You must call the tool {self.function!r} now."
        elif self.mode == "required":
            rule = "You must call at least one of them now."
        else:
            rule = "Call them only when they help; otherwise answer in plain text."
        listing = "\n".join(tool.line() for tool in self.tools)
        return (
            f"You can call these tools:\n{listing}\n{rule} To call tools, answer "
            f"with only this JSON object, no prose, no code fences: {_SHAPE}. "
            "You will then get each call's result."
        )

    def get(self, name: str) -> Tool | None:
        """Return the tool named `name`, if any."""
        return next((tool for tool in self.tools if tool.name == name), None)


@dataclass(frozen=True, slots=True)
class ToolCallRequest:
    """A checked call from a reply: a tool name and its arguments as JSON text."""

    name: str
    arguments: str


def new_call_id() -> str:
    """Return a fresh tool call id in the OpenAI style (`call_...`)."""
    return f"call_{random.getrandbits(96):024x}"


# The request ---------------------------------------------------------------


def parse_tools(
    name: str,
    value: JSONValue,
    *,
    flat: bool = False,
    others: list[str] | None = None,
) -> tuple[Tool, ...]:
    """Check `tools` (OpenAI's list of `{"type": "function", ...}`).

    Each tool keeps a plain JSON copy of its parameters (`check_schema`).
    `flat` reads the Responses API's shape, where the function's members
    stand in the tool itself (`{"type": "function", "name": ...}`). A tool of
    another type is refused, or, when `others` is given, left out and its
    path (`tools[2]`) appended to `others`.

    Raises:
        UsageError: not a list of function tools with names and usable
            schemas (see `schemas.check_schema`), or more tools or schema
            bytes than `TOOLS_MAX_COUNT` and `TOOLS_MAX_BYTES` allow.
    """
    if not isinstance(value, list):
        raise UsageError(f"{name}: must be a list of tools")
    if len(value) > defaults.TOOLS_MAX_COUNT:
        raise UsageError(
            f"{name}: at most {defaults.TOOLS_MAX_COUNT} tools, not {len(value)}"
        )
    tools: dict[str, Tool] = {}
    budget = (defaults.TOOLS_MAX_BYTES, defaults.SCHEMA_MAX_SUBSCHEMAS)
    for index, item in enumerate(value):
        where = f"{name}[{index}]"
        if not isinstance(item, Mapping) or item.get("type") != "function":
            if others is None or not isinstance(item, Mapping):
                raise UsageError(f"{where}: only function tools are supported")
            others.append(where)
            continue
        function = item if flat else item.get("function")
        if not flat:
            where += ".function"
        if not isinstance(function, Mapping):
            raise UsageError(f"{where}: must be an object")
        title = function.get("name")
        if not isinstance(title, str) or not title:
            raise UsageError(f"{where}.name: must be a non-empty string")
        if title in tools:
            raise UsageError(f"{where}.name: {title!r} is given twice")
        description = function.get("description")
        if description is not None and not isinstance(description, str):
            raise UsageError(f"{where}.description: must be a string")
        parameters = function.get("parameters")
        if parameters is not None:
            parameters, budget = _checked_parameters(
                f"{where}.parameters", parameters, budget
            )
        tools[title] = Tool(title, description or "", cast(Schema | None, parameters))
    return tuple(tools.values())


def _checked_parameters(
    where: str, schema: JSONValue, budget: tuple[int, int]
) -> tuple[JSONValue, tuple[int, int]]:
    """Return a tool's checked parameters and the budget left after them.

    `budget` is what the tools' schemas together may still take: bytes of
    JSON and subschemas.

    Raises:
        UsageError: the schema cannot be used, or the tools' schemas together
            go over `TOOLS_MAX_BYTES` or `SCHEMA_MAX_SUBSCHEMAS`.
    """
    try:
        checked = check_schema(schema)
    except SchemaProblem as exc:
        raise UsageError(f"{where}: {exc}") from exc
    size, subschemas = budget
    if checked.size > size:
        raise UsageError(
            f"{where}: the tools' schemas together are more than "
            f"{defaults.TOOLS_MAX_BYTES} bytes of JSON"
        )
    if checked.subschemas > subschemas:
        raise UsageError(
            f"{where}: the tools' schemas together have more than "
            f"{defaults.SCHEMA_MAX_SUBSCHEMAS} subschemas"
        )
    return checked.schema, (size - checked.size, subschemas - checked.subschemas)


def parse_tool_choice(name: str, value: JSONValue) -> tuple[ChoiceMode, str]:
    """Check `tool_choice`; return its mode and the function it names ("").

    Raises:
        UsageError: not "none", "auto", "required" or a named function.
    """
    if value in ("none", "auto", "required"):
        return value, ""
    if isinstance(value, Mapping) and value.get("type") == "function":
        function = value.get("function")
        title = function.get("name") if isinstance(function, Mapping) else None
        if isinstance(title, str) and title:
            return "function", title
    raise UsageError(
        f"{name}: must be 'none', 'auto', 'required' or "
        '{"type": "function", "function": {"name": ...}}'
    )


def tool_set(
    tools: tuple[Tool, ...], mode: ChoiceMode, function: str
) -> ToolSet | None:
    """Return the checked tools of a request with their choice (None: none).

    Raises:
        UsageError: `tool_choice` asks for a call without tools, or names a
            function that is not among them.
    """
    if not tools:
        if mode in ("required", "function"):
            raise UsageError("tool_choice: asks for a tool call, but tools is empty")
        return None
    if mode == "none":
        return None
    result = ToolSet(tools, mode, function)
    if mode == "function" and result.get(function) is None:
        raise UsageError(f"tool_choice: names {function!r}, which is not in tools")
    return result


# The reply -----------------------------------------------------------------


def read_tool_calls(text: str, tools: ToolSet) -> list[ToolCallRequest] | None:
    """Return the calls a reply makes (None: it calls no tool).

    Raises:
        ReplyProblem: the reply's tool calls are malformed, name an unknown
            tool, or give arguments the tool's schema refuses.
    """
    found = extract_json(text)
    if found is None or not isinstance(found[1], dict) or "tool_calls" not in found[1]:
        return None
    calls = found[1]["tool_calls"]
    if not isinstance(calls, list) or not calls:
        raise ReplyProblem("tool_calls must be a non-empty list")
    return [_call(index, item, tools) for index, item in enumerate(calls)]


def _call(index: int, item: JSONValue, tools: ToolSet) -> ToolCallRequest:
    where = f"tool_calls[{index}]"
    if not isinstance(item, dict):
        raise ReplyProblem(f"{where} must be an object with name and arguments")
    name = item.get("name")
    tool = tools.get(name) if isinstance(name, str) else None
    if tool is None:
        known = ", ".join(repr(tool.name) for tool in tools.tools)
        raise ReplyProblem(f"{where} names the unknown tool {name!r}; known: {known}")
    if tools.mode == "function" and name != tools.function:
        raise ReplyProblem(f"{where} calls {name!r}; call {tools.function!r}")
    arguments = item.get("arguments", {})
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except (ValueError, RecursionError) as exc:
            raise ReplyProblem(f"{where}.arguments is not JSON: {exc}") from exc
    if not isinstance(arguments, dict):
        raise ReplyProblem(f"{where}.arguments must be an object")
    if problem := validate(arguments, tool.parameters):
        raise ReplyProblem(f"{where}.arguments of {name!r} {problem}")
    return ToolCallRequest(tool.name, _dumps(arguments))


# The history ---------------------------------------------------------------


def render_history(messages: list[JSONValue]) -> list[JSONValue]:
    """Return the conversation with tool calls and results written as text.

    An assistant message's `tool_calls` become the agreed JSON object (after
    its text, if any); a `tool` message becomes a user message that names the
    call and the tool. Other messages are kept as they are.
    """
    names: dict[str, str] = {}
    result: list[JSONValue] = []
    for index, item in enumerate(messages):
        if not isinstance(item, Mapping):
            result.append(item)
        elif item.get("role") == "tool":
            if "content" not in item:
                raise UsageError(
                    f"messages[{index}].content: missing; a tool message "
                    "carries the tool's result"
                )
            result.append(_tool_result(item, names))
        elif item.get("role") == "assistant" and (
            "tool_calls" in item or item.get("content", "") is None
        ):
            result.append(_assistant(item, names))
        else:
            result.append(item)
    return result


def _assistant(item: Mapping[str, JSONValue], names: dict[str, str]) -> JSONValue:
    calls = []
    for call in item.get("tool_calls") or []:
        function = call.get("function") if isinstance(call, Mapping) else None
        if not isinstance(function, Mapping):
            raise UsageError("an assistant's tool_calls must have a function each")
        arguments = function.get("arguments", "{}")
        try:
            parsed = json.loads(arguments) if isinstance(arguments, str) else arguments
        except (ValueError, RecursionError):
            parsed = arguments
        names[str(call.get("id"))] = str(function.get("name"))
        calls.append({"name": function.get("name"), "arguments": parsed})
    text = _text(item.get("content"))
    if calls:
        shape = _dumps({"tool_calls": calls})
        text = f"{text}\n{shape}" if text else shape
    return {"role": "assistant", "content": text}


def _tool_result(item: Mapping[str, JSONValue], names: dict[str, str]) -> JSONValue:
    call_id = item.get("tool_call_id")
    name = names.get(str(call_id), "a tool")
    content = _text(item.get("content"))
    return {
        "role": "user",
        "content": f"The tool call {call_id} ({name}) returned:\n{content}",
    }


def _text(content: JSONValue) -> str:
    """Return the text of a content (a string, text parts or null)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part["text"]
            for part in content
            if isinstance(part, Mapping) and isinstance(part.get("text"), str)
        )
    raise UsageError(f"a message content must be text, not {type(content).__name__}")


def _dumps(value: JSONValue) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
