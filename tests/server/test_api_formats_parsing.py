"""The request parsers of the Responses and legacy completions formats (pure).

Whatever JSON object a client sends, parsing gives an inside request or a
`UsageError` (a 400 naming the parameter), never another exception: the keys
are drawn from the names the parsers read, so the values reach deep paths.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from koala_chat import UsageError
from koala_chat.server.formats.base import WireFormat
from koala_chat.server.formats.completions import FORMAT as COMPLETIONS
from koala_chat.server.formats.responses import FORMAT as RESPONSES
from koala_chat.server.formats.responses_request import PARAMETERS

NAMES = st.sampled_from(
    [
        "type",
        "role",
        "content",
        "text",
        "call_id",
        "name",
        "arguments",
        "output",
        "format",
        "schema",
        "parameters",
        "description",
        "strict",
    ]
)
LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(-3, 3)
    | st.sampled_from(
        [
            "message",
            "user",
            "developer",
            "input_text",
            "output_text",
            "function",
            "function_call",
            "function_call_output",
            "json_schema",
            "json_object",
            "auto",
            "required",
            "x",
        ]
    )
)
VALUES = st.recursive(
    LEAVES,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(NAMES, children, max_size=4)
    ),
    max_leaves=16,
)
RESPONSES_BODIES = st.dictionaries(
    st.sampled_from(sorted(PARAMETERS)), VALUES, max_size=5
).map(lambda body: {"model": "", "input": "Hi", **body})
COMPLETIONS_BODIES = st.dictionaries(
    st.sampled_from(["prompt", "stop", "max_tokens", "stream_options", "n", "echo"]),
    VALUES,
    max_size=4,
).map(lambda body: {"model": "", **body})


def parsed(fmt: WireFormat[Any], body: dict[str, Any], strict: bool) -> Any:
    """Return the inside request of `body`, or the parameter its error names."""
    try:
        return fmt.parse(body, strict=strict).request
    except UsageError as exc:
        message = str(exc)
    named = re.match(r"[a-z_]+", message)
    assert named is not None, message
    return named.group()


@given(body=RESPONSES_BODIES, strict=st.booleans())
def test_a_responses_body_is_a_request_or_a_usage_error(
    body: dict[str, Any], strict: bool
) -> None:
    outcome = parsed(RESPONSES, body, strict)
    assert outcome in body if isinstance(outcome, str) else outcome.messages


@given(body=COMPLETIONS_BODIES, strict=st.booleans())
def test_a_completions_body_is_a_request_or_a_usage_error(
    body: dict[str, Any], strict: bool
) -> None:
    outcome = parsed(COMPLETIONS, body, strict)
    if isinstance(outcome, str):
        assert outcome in {*body, "prompt"}
    else:
        assert outcome.messages[0]["role"] == "user"


@pytest.mark.parametrize(
    ("item", "words"),
    [
        ({"role": {"a": 1}, "content": "x"}, "input[0].role: must be"),
        (
            {"role": "user", "content": [{"type": ["input_text"]}]},
            "input[0].content[0]: is not a text part",
        ),
        ({"type": "function_call_output", "call_id": "c"}, "input[0].output: missing"),
        ({"role": "user"}, "input[0].content: missing"),
        ("text", "input[0]: must be an object, not a string"),
    ],
)
def test_input_items_name_the_item_and_member(item: Any, words: str) -> None:
    with pytest.raises(UsageError) as caught:
        RESPONSES.parse({"model": "", "input": [item]}, strict=False)
    assert str(caught.value).startswith(words)
