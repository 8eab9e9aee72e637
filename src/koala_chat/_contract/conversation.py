"""The conversation of a request: checked, with tool history written as text.

`check_messages` is the check of the `messages` parameter: a `developer`
message counts as a `system` one (the OpenAI API's newer name), tool calls and
results are written into text (`tools.render_history`), and the result is
normalised to plain-text contents (`koala_chat.messages`). `with_instructions`
puts the system message of an emulation (JSON mode, tools) first. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from ..messages import JSONValue, NormalizedMessage, normalize_messages
from .jsonmode import Schema
from .tools import render_history

__all__ = ["MESSAGES_SCHEMA", "check_messages", "with_instructions"]


def check_messages(name: str, value: JSONValue) -> list[NormalizedMessage]:
    """Return the conversation `value` checked, with plain-text contents.

    Raises:
        UsageError: not a list of messages Koala can take; the message names
            the offending item.
    """
    if isinstance(value, list):
        value = render_history(
            [
                {**item, "role": "system"}
                if isinstance(item, Mapping) and item.get("role") == "developer"
                else item
                for item in value
            ]
        )
    return normalize_messages(value)


def with_instructions(
    messages: list[NormalizedMessage], *instructions: str | None
) -> list[NormalizedMessage]:
    """Return `messages` after a system message of the given instructions.

    None and empty instructions are left out; without any, `messages` is
    returned as it is.
    """
    text = "\n\n".join(filter(None, instructions))
    if not text:
        return messages
    return [{"role": "system", "content": text}, *messages]


MESSAGES_SCHEMA: Final[Schema] = {
    "type": "array",
    "minItems": 1,
    "items": {
        "type": "object",
        "properties": {
            "role": {"enum": ["system", "developer", "user", "assistant", "tool"]},
            "content": {
                "anyOf": [
                    {"type": "string"},
                    {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "type": {"const": "text"},
                                "text": {"type": "string"},
                            },
                            "required": ["type", "text"],
                        },
                    },
                ]
            },
        },
        "required": ["role", "content"],
        "description": (
            "An assistant's `tool_calls` (its content may then be left out) "
            "and `tool` messages (`tool_call_id`) are written into the "
            "conversation as text; other members (`name`, a part's "
            "`cache_control`) are ignored."
        ),
    },
}
