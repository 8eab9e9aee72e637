"""The token estimate: about four characters per token, rounded up."""

from __future__ import annotations

import pytest

from koala_chat._contract.usage import (
    chars_for_tokens,
    completion_usage,
    prompt_tokens,
    tokens_for_length,
)
from koala_chat.client import estimate_tokens


@pytest.mark.parametrize(
    ("text", "tokens"), [("", 0), ("a", 1), ("abcd", 1), ("abcde", 2)]
)
def test_estimate_rounds_up(text: str, tokens: int) -> None:
    assert estimate_tokens(text) == tokens_for_length(len(text)) == tokens


def test_a_cut_at_n_tokens_reports_n_tokens() -> None:
    for tokens in range(1, 20):
        assert tokens_for_length(chars_for_tokens(tokens)) == tokens


def test_usage_adds_the_prompt_per_message() -> None:
    messages = [
        {"role": "system", "content": "abcde"},
        {"role": "user", "content": "a"},
    ]
    assert prompt_tokens(messages) == 3  # 2 + 1, not estimate("abcdea") == 2
    assert completion_usage(messages, 9).model_dump() == {
        "prompt_tokens": 3,
        "completion_tokens": 3,
        "total_tokens": 6,
    }
