"""The `input` of the OpenAI Responses API, read into the conversation.

`check_input` is the check of `input` in `responses_request.PARAMETERS`: a
string is one user message; a list holds `message` items (content as a string
or `input_text` / `output_text` parts; `developer` is `system`) and the
`function_call` and `function_call_output` items of emulated tools. They
become chat completions' messages (an assistant's `tool_calls`, `tool`
messages), which `_contract.conversation.check_messages` writes into text.
Every error names the item as the client sent it (`input[2].content[0]`).
Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, cast

from ..._contract.checks import Schema, kind_of
from ..._contract.conversation import check_messages
from ...errors import UsageError
from ...messages import JSONValue, NormalizedMessage, replace_surrogates

__all__ = ["INPUT_SCHEMA", "check_input"]

_ROLES: Final = frozenset(("user", "assistant", "system", "developer"))
_TEXT_PARTS: Final = frozenset(("input_text", "output_text"))


def check_input(name: str, value: JSONValue) -> list[NormalizedMessage]:
    """Return the conversation of `input`, with plain-text contents.

    Raises:
        UsageError: not a string or a non-empty list of the items Koala can
            take; the message names the offending item (`input[2]`).
    """
    if isinstance(value, str):
        return [{"role": "user", "content": replace_surrogates(value)}]
    if not isinstance(value, list) or not value:
        raise UsageError(f"{name}: must be a string or a non-empty list of items")
    chat: list[JSONValue] = []
    for index, item in enumerate(value):
        where = f"{name}[{index}]"
        if not isinstance(item, Mapping):
            raise UsageError(f"{where}: must be an object, not {kind_of(item)}")
        kind = item.get("type", "message")
        if kind == "message":
            chat.append(_message(where, item))
        elif kind == "function_call":
            call = _call(where, item)
            last = chat[-1] if chat else None
            if isinstance(last, dict) and last["role"] == "assistant":
                last["tool_calls"] = [*last.get("tool_calls", ()), call]
            else:
                chat.append(
                    {"role": "assistant", "content": None, "tool_calls": [call]}
                )
        elif kind == "function_call_output":
            chat.append(_call_output(where, item))
        else:
            raise UsageError(
                f"{where}.type: {kind!r} items are not supported; send message, "
                "function_call and function_call_output items"
            )
    # Well-formed by now: what is left is writing the tool history as text.
    return check_messages(name, chat)


def _message(where: str, item: Mapping[str, JSONValue]) -> dict[str, JSONValue]:
    role = item.get("role")
    if not isinstance(role, str) or role not in _ROLES:
        raise UsageError(
            f"{where}.role: must be 'user', 'assistant', 'system' or "
            f"'developer', not {role!r}"
        )
    if "content" not in item:
        raise UsageError(f"{where}.content: missing")
    return {"role": role, "content": _text(f"{where}.content", item["content"])}


def _text(where: str, content: JSONValue) -> str:
    """Return the text of a content: a string, or a list of text parts."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise UsageError(
            f"{where}: must be a string or a list of parts, not {kind_of(content)}"
        )
    texts = []
    for index, part in enumerate(content):
        kind = part.get("type") if isinstance(part, Mapping) else None
        if not isinstance(kind, str) or kind not in _TEXT_PARTS:
            raise UsageError(
                f"{where}[{index}]: is not a text part (type {kind!r}): "
                "Koala accepts input_text and output_text only"
            )
        text = cast(Mapping[str, JSONValue], part).get("text")
        if not isinstance(text, str):
            raise UsageError(f"{where}[{index}].text: must be a string")
        texts.append(text)
    return "".join(texts)


def _call(where: str, item: Mapping[str, JSONValue]) -> dict[str, JSONValue]:
    for key in ("call_id", "name", "arguments"):
        if not isinstance(item.get(key), str):
            raise UsageError(f"{where}.{key}: must be a string")
    return {
        "id": item["call_id"],
        "type": "function",
        "function": {"name": item["name"], "arguments": item["arguments"]},
    }


def _call_output(where: str, item: Mapping[str, JSONValue]) -> dict[str, JSONValue]:
    call_id = item.get("call_id")
    if not isinstance(call_id, str):
        raise UsageError(f"{where}.call_id: must be a string")
    if "output" not in item:
        raise UsageError(f"{where}.output: missing; it carries the tool's result")
    return {
        "role": "tool",
        "tool_call_id": call_id,
        "content": _text(f"{where}.output", item["output"]),
    }


_TEXT_PART: Final[Schema] = {
    "type": "object",
    "properties": {
        "type": {"enum": sorted(_TEXT_PARTS)},
        "text": {"type": "string"},
    },
    "required": ["type", "text"],
}
_CONTENT: Final[Schema] = {
    "anyOf": [{"type": "string"}, {"type": "array", "items": _TEXT_PART}]
}
INPUT_SCHEMA: Final[Schema] = {
    "anyOf": [
        {"type": "string"},
        {
            "type": "array",
            "minItems": 1,
            "items": {
                "anyOf": [
                    {
                        "type": "object",
                        "properties": {
                            "type": {"const": "message"},
                            "role": {"enum": sorted(_ROLES)},
                            "content": _CONTENT,
                        },
                        "required": ["role", "content"],
                    },
                    {
                        "type": "object",
                        "properties": {
                            "type": {"const": "function_call"},
                            "call_id": {"type": "string"},
                            "name": {"type": "string"},
                            "arguments": {"type": "string"},
                        },
                        "required": ["type", "call_id", "name", "arguments"],
                    },
                    {
                        "type": "object",
                        "properties": {
                            "type": {"const": "function_call_output"},
                            "call_id": {"type": "string"},
                            "output": _CONTENT,
                        },
                        "required": ["type", "call_id", "output"],
                    },
                ]
            },
        },
    ]
}
