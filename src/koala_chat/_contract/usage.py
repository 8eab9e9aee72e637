"""The token estimate, and the usage object of a reply built from it.

A Koala reply is text and nothing else (docs/protocol.md, "Response"): no
token counts. So the usage of a completion is an estimate, about four characters
per token (OpenAI's rule of thumb for English text), and `max_tokens` is applied
on the same estimate: a reply cut at N tokens reports N completion tokens. Pure: no I/O.
"""

from __future__ import annotations

from typing import Final

from ..messages import NormalizedMessage
from .types import CompletionUsage

__all__ = [
    "CHARS_PER_TOKEN",
    "chars_for_tokens",
    "completion_usage",
    "estimate_tokens",
    "prompt_tokens",
    "tokens_for_length",
]

#: Characters per token of the estimate ("about four characters per token").
CHARS_PER_TOKEN: Final = 4


def estimate_tokens(text: str) -> int:
    """Return the estimated token count of `text`: its length / 4, rounded up."""
    return tokens_for_length(len(text))


def tokens_for_length(length: int) -> int:
    """Return the estimated token count of a text of `length` characters."""
    return -(-length // CHARS_PER_TOKEN)


def chars_for_tokens(tokens: int) -> int:
    """Return the most characters that `tokens` estimated tokens cover."""
    return tokens * CHARS_PER_TOKEN


def prompt_tokens(messages: list[NormalizedMessage]) -> int:
    """Return the estimated token count of a conversation's contents."""
    return sum(estimate_tokens(message["content"]) for message in messages)


def completion_usage(
    messages: list[NormalizedMessage], reply_chars: int
) -> CompletionUsage:
    """Return the usage of a reply of `reply_chars` characters to `messages`."""
    prompt = prompt_tokens(messages)
    completion = tokens_for_length(reply_chars)
    return CompletionUsage(prompt, completion, prompt + completion)
