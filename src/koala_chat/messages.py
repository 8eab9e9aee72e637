"""Message types and their validation.

`Messages` is the gpt4free name for a conversation: a list of OpenAI-style
messages. `normalize_messages` checks one before any network traffic and turns
list-of-parts content into plain text.

Lone surrogates (code points U+D800 to U+DFFF that do not form a pair) cannot
be encoded as UTF-8, so no text holding one can be sent, printed or served.
The rule (docs/protocol.md, "Response"): wherever text enters our code, from the
caller's messages or from a JSON reply, each lone surrogate becomes U+FFFD, the
replacement character, as a UTF-8 decoder does with a bad byte
(`replace_surrogates`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, NotRequired, TypeAlias, TypedDict, cast

from ._values import shown
from .errors import UsageError

__all__ = [
    "JSONValue",
    "Message",
    "Messages",
    "Role",
    "TextPart",
    "normalize_messages",
    "replace_surrogates",
    "text_of",
]

# Any stays behind this alias: a JSON value is whatever the server sends.
JSONValue: TypeAlias = Any

Role = Literal["system", "user", "assistant"]
ROLES: frozenset[str] = frozenset(("system", "user", "assistant"))


class TextPart(TypedDict):
    """An OpenAI-style content part; only text parts can be sent to Koala."""

    type: Literal["text"]
    text: str


class Message(TypedDict):
    """One turn of a conversation."""

    role: Role
    content: str | list[TextPart]
    name: NotRequired[str]


Messages: TypeAlias = list[Message]


class NormalizedMessage(TypedDict):
    """A validated message whose content is plain text."""

    role: Role
    content: str


def normalize_messages(messages: object) -> list[NormalizedMessage]:
    """Validate a conversation and return it with plain-text contents.

    Nothing of the caller's is changed: a new list of new dicts is returned.

    Raises:
        UsageError: `messages` is not a non-empty list of messages, or one of them
            lacks a role or content, has an unknown role or a non-text part. The
            message names the offending item by its index.
    """
    if isinstance(messages, str | bytes | Mapping) or not isinstance(
        messages, Sequence
    ):
        raise UsageError(
            f"messages must be a list of messages, not {type(messages).__name__}"
        )
    if not messages:
        raise UsageError("messages is empty: send at least one message")
    return [_normalize_message(index, item) for index, item in enumerate(messages)]


def _normalize_message(index: int, item: object) -> NormalizedMessage:
    where = f"messages[{index}]"
    if not isinstance(item, Mapping):
        raise UsageError(f"{where} must be a dict, not {type(item).__name__}")
    if "role" not in item:
        raise UsageError(f"{where} has no 'role'")
    if "content" not in item:
        raise UsageError(f"{where} has no 'content'")
    role = item["role"]
    if not isinstance(role, str) or role not in ROLES:
        raise UsageError(
            f"{where} has the unknown role {shown(role)}; "
            "use 'system', 'user' or 'assistant'"
        )
    return {"role": cast(Role, role), "content": _content_text(where, item["content"])}


def _content_text(where: str, content: object) -> str:
    if isinstance(content, str):
        return replace_surrogates(content)
    if isinstance(content, list):
        texts: list[str] = []
        for number, part in enumerate(content):
            texts.append(_part_text(f"{where}.content[{number}]", part))
        # OpenAI joins text parts without a separator; so do we.
        return replace_surrogates("".join(texts))
    raise UsageError(
        f"{where}.content must be a string or a list of text parts, "
        f"not {type(content).__name__}"
    )


def _part_text(where: str, part: object) -> str:
    if not isinstance(part, Mapping) or part.get("type") != "text":
        kind = part.get("type") if isinstance(part, Mapping) else None
        raise UsageError(
            f"{where} is not a text part"
            + (f" (type {kind!r})" if kind is not None else "")
            + ": Koala accepts text only"
        )
    text = part.get("text")
    if not isinstance(text, str):
        raise UsageError(
            f"{where} is a text part whose 'text' is not a string "
            f"but {type(text).__name__}"
        )
    return text


def replace_surrogates(text: str) -> str:
    """Return `text` with each lone surrogate replaced by U+FFFD.

    A pair of surrogates that Python holds as two code points becomes the one
    character it encodes, as a JSON parser reads `"\\ud83d\\ude00"`.
    """
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def text_of(value: JSONValue) -> str:
    """Return the text a streamed value carries.

    A JSON string is text; so is an object's string `"text"` field (the seed's
    example shape) or `"content"` field, and an OpenAI-style chunk's
    `choices[0].delta.content`: the shapes the messages dialect may stream
    (docs/protocol.md, "The messages dialect (2026)"). Anything else (numbers,
    lists, objects without such a field, null) carries no text and gives "":
    the raw values stay available from `create_async_generator`.
    """
    if isinstance(value, str):
        return value
    if not isinstance(value, dict):
        return ""
    for key in ("text", "content"):
        text = value.get(key)
        if isinstance(text, str):
            return text
    choices = value.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        delta = choices[0].get("delta")
        if isinstance(delta, dict) and isinstance(content := delta.get("content"), str):
            return content
    return ""
