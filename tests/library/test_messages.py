"""Message validation and the text carried by streamed values."""

from __future__ import annotations

import copy

import pytest

from koala_chat import UsageError, text_of
from koala_chat.messages import normalize_messages


def test_plain_messages_pass_unchanged() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]
    before = copy.deepcopy(messages)
    assert normalize_messages(messages) == messages
    assert messages == before


def test_text_parts_are_joined() -> None:
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Hello, "},
                {"type": "text", "text": "you"},
            ],
        }
    ]
    assert normalize_messages(messages)[0]["content"] == "Hello, you"


@pytest.mark.parametrize(
    ("messages", "fragment"),
    [
        ("hi", "must be a list"),
        ({"role": "user"}, "must be a list"),
        ([], "empty"),
        (["hi"], "messages[0] must be a dict"),
        ([{"content": "x"}], "messages[0] has no 'role'"),
        ([{"role": "user"}], "messages[0] has no 'content'"),
        (
            [{"role": "user", "content": "a"}, {"role": "robot", "content": "b"}],
            "messages[1] has the unknown role 'robot'",
        ),
        (
            [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}],
            "messages[0].content[0] is not a text part (type 'image_url')",
        ),
        ([{"role": "user", "content": 5}], "messages[0].content must be"),
        ([{"role": ["user"], "content": "x"}], "messages[0] has the unknown role"),
        (
            [{"role": "user", "content": [{"type": "text", "text": 3}]}],
            "messages[0].content[0] is a text part whose 'text' is not a string",
        ),
    ],
)
def test_bad_messages_are_usage_errors(messages: object, fragment: str) -> None:
    with pytest.raises(UsageError) as caught:
        normalize_messages(messages)
    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("piece", "piece"),
        ({"text": "piece"}, "piece"),
        ({"text": 5}, ""),
        ({"other": "x"}, ""),
        (3, ""),
        (None, ""),
        (["a"], ""),
    ],
)
def test_text_of(value: object, text: str) -> None:
    assert text_of(value) == text
