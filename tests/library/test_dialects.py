"""Tests of the request builders.

The rules: docs/protocol.md, "How koala-chat builds each request".
"""

from __future__ import annotations

import pickle
from collections import Counter
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from koala_chat.errors import UsageError
from koala_chat.messages import NormalizedMessage, normalize_messages
from koala_chat.providers import Koala
from koala_chat.providers.dialects import (
    API,
    DIALECTS,
    HISTORY,
    MESSAGES,
    SHAPE_REJECTED_STATUSES,
    ApiKey,
    PreparedRequest,
    api_body,
    build_request,
    choose_protocol,
    history_body,
    history_headers,
    messages_body,
    messages_headers,
    pair_turns,
)

KEY = "3f2a9c1e-7b4d-4e8a-9f0c-1d2e3f4a5b6c"
VISITOR = "abcdefghij0123456789"
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
)

# docs/protocol.md, "The provider's contract": the example conversation.
EXAMPLE: list[Any] = [
    {"role": "user", "content": "Привет, как дела?"},
    {"role": "assistant", "content": "У меня все отлично, спасибо!"},
    {"role": "user", "content": "Расскажи что-нибудь интересное."},
]
WITH_SYSTEM: list[Any] = [
    {"role": "system", "content": "Be brief."},
    {
        "role": "user",
        "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}],
    },
    {"role": "assistant", "content": "Hello!"},
    {"role": "system", "content": "Use English."},
    {"role": "user", "content": "Koalas?"},
]


def test_the_dialects_are_described() -> None:
    assert (HISTORY.default_model, HISTORY.streams) == ("gpt-4o-mini", True)
    assert HISTORY.models == ("gpt-4o-mini", "gpt-3.5-turbo", "gpt-4.1", "gpt-4.1-mini")
    assert (MESSAGES.default_model, MESSAGES.streams) == ("gemini-3-flash", True)
    assert MESSAGES.models == (
        "gemini-3-flash",
        "gpt-5.3-chat-latest",
        "claude-4.5-haiku",
    )
    assert (API.default_model, API.streams) == ("gpt-4o-mini", False)
    assert API.models == ("gpt-4o-mini", "gpt-4o", "claude-3.7-sonnet")
    assert list(DIALECTS) == ["history", "messages", "api"]
    assert all(info.default_model in info.models for info in DIALECTS.values())
    assert sorted(SHAPE_REJECTED_STATUSES) == [400, 404, 405, 415, 422]


# The history dialect


@pytest.mark.parametrize("conversation", [EXAMPLE, WITH_SYSTEM, EXAMPLE[:1]])
@pytest.mark.parametrize("model", ["", "gpt-4.1", "made-up"])
def test_history_body_is_the_seeds_byte_for_byte(
    conversation: list[Any], model: str
) -> None:
    normalized = normalize_messages(conversation)
    seed = Koala.build_body(Koala.get_model(model), normalized)
    assert msgspec.json.encode(history_body(model, normalized)) == msgspec.json.encode(
        seed
    )
    request = build_request("history", model, conversation, visitor_id=VISITOR)
    assert request.body == msgspec.json.encode(seed)


def test_history_body_of_the_example() -> None:
    request = build_request("history", "", EXAMPLE, visitor_id=VISITOR)
    assert request.body == msgspec.json.encode(
        {
            "input": "Расскажи что-нибудь интересное.",
            "inputHistory": ["Привет, как дела?"],
            "outputHistory": ["У меня все отлично, спасибо!"],
            "model": "gpt-4o-mini",
        }
    )


def test_history_headers_are_the_seeds() -> None:
    seed = {"Content-Type": "application/json", **Koala.build_headers()}
    ours = history_headers(
        visitor_id=seed["Visitor-ID"], accept_encoding=seed["Accept-Encoding"]
    )
    assert list(ours.items()) == list(seed.items())


@pytest.mark.parametrize(
    ("web_search", "flag"), [(None, "false"), (False, "false"), (True, "true")]
)
def test_history_web_search_sets_the_flag(web_search: bool | None, flag: str) -> None:
    headers = build_request(
        "history", "", EXAMPLE, web_search=web_search, visitor_id=VISITOR
    ).headers
    assert headers["Flag-Real-Time-Data"] == flag
    assert headers["Visitor-ID"] == VISITOR


def test_history_draws_a_fresh_visitor_id() -> None:
    first, second = (build_request("history", "", EXAMPLE) for _ in range(2))
    ids = {first.headers["Visitor-ID"], second.headers["Visitor-ID"]}
    assert len(ids) == 2
    assert all(len(i) == 20 and i.isalnum() and i.islower() for i in ids)


# The messages dialect


def test_messages_body_byte_for_byte() -> None:
    request = build_request("messages", "", WITH_SYSTEM)
    assert request.body == (
        b'{"messages":['
        b'{"role":"system","content":"Be brief.","attachments":[]},'
        b'{"role":"user","content":"Hi there","attachments":[]},'
        b'{"role":"assistant","content":"Hello!","attachments":[]},'
        b'{"role":"system","content":"Use English.","attachments":[]},'
        b'{"role":"user","content":"Koalas?","attachments":[]}],'
        b'"model":"gemini-3-flash"}'
    )


def test_messages_body_keeps_the_model_named() -> None:
    body = messages_body("claude-4.5-haiku", normalize_messages(EXAMPLE))
    assert body["model"] == "claude-4.5-haiku"


def test_messages_headers_byte_for_byte() -> None:
    request = build_request("messages", "gpt-5.3-chat-latest", EXAMPLE)
    assert list(request.headers.items()) == [
        ("accept", "text/event-stream"),
        ("content-type", "application/json"),
        ("flag-real-time-data", "true"),
        ("origin", "https://koala.sh"),
        ("referer", "https://koala.sh/chat"),
        ("user-agent", CHROME),
    ]


@pytest.mark.parametrize(
    ("web_search", "flag"), [(None, "true"), (True, "true"), (False, "false")]
)
def test_messages_web_search_sets_the_flag(web_search: bool | None, flag: str) -> None:
    assert messages_headers(web_search=web_search)["flag-real-time-data"] == flag


# The api dialect


def test_api_request_byte_for_byte() -> None:
    request = build_request("api", "", WITH_SYSTEM, api_key=ApiKey(KEY))
    assert request.body == (
        b'{"input":"Koalas? Be brief. Use English.",'
        b'"inputHistory":["Hi there"],"outputHistory":["Hello!"],'
        b'"model":"gpt-4o-mini","realTimeData":false}'
    )
    assert list(request.headers.items()) == [
        ("Authorization", f"Bearer {KEY}"),
        ("Content-Type", "application/json"),
        ("Accept", "application/json"),
    ]


@pytest.mark.parametrize(
    ("web_search", "flag"), [(None, False), (False, False), (True, True)]
)
def test_api_web_search_sets_real_time_data(
    web_search: bool | None, flag: bool
) -> None:
    body = api_body("gpt-4o", normalize_messages(EXAMPLE), web_search=web_search)
    assert body["realTimeData"] is flag
    assert body["model"] == "gpt-4o"


def n(*turns: tuple[str, str]) -> list[NormalizedMessage]:
    return normalize_messages([{"role": r, "content": c} for r, c in turns])


@pytest.mark.parametrize(
    ("conversation", "paired"),
    [
        pytest.param(n(("user", "a")), ([], [], "a"), id="one-question"),
        pytest.param(
            n(("user", "a"), ("assistant", "b"), ("user", "c")),
            (["a"], ["b"], "c"),
            id="alternating",
        ),
        pytest.param(
            n(("user", "a"), ("user", "b"), ("assistant", "c"), ("user", "d")),
            (["a\n\nb"], ["c"], "d"),
            id="consecutive-users-join",
        ),
        pytest.param(
            n(("user", "a"), ("assistant", "b"), ("assistant", "c"), ("user", "d")),
            (["a"], ["b\n\nc"], "d"),
            id="consecutive-assistants-join",
        ),
        pytest.param(
            n(("assistant", "hello"), ("user", "a")),
            ([""], ["hello"], "a"),
            id="assistant-first-pairs-with-empty-input",
        ),
        pytest.param(
            n(("user", "a"), ("assistant", "b")),
            (["a"], ["b"], ""),
            id="ends-with-the-assistant",
        ),
        pytest.param(
            n(("user", "a"), ("user", "b")),
            ([], [], "a\n\nb"),
            id="unanswered-users-join-into-input",
        ),
        pytest.param(
            n(("system", "s"), ("user", "a"), ("system", "t"), ("user", "b")),
            ([], [], "a\n\nb"),
            id="system-messages-do-not-split-turns",
        ),
    ],
)
def test_pair_turns(
    conversation: list[NormalizedMessage], paired: tuple[list[str], list[str], str]
) -> None:
    assert pair_turns(conversation) == paired


@pytest.mark.parametrize(
    ("conversation", "text"),
    [
        (n(("user", "a"), ("system", "s")), "a s"),
        (n(("system", "s"), ("user", "a"), ("assistant", "b")), "s"),
        (n(("system", "s"), ("system", "t")), "s t"),
        (n(("user", "a")), "a"),
    ],
)
def test_api_input_carries_the_system_messages(
    conversation: list[NormalizedMessage], text: str
) -> None:
    assert api_body("", conversation)["input"] == text


conversations = st.lists(
    st.tuples(
        st.sampled_from(["system", "user", "assistant"]),
        st.text(alphabet="abc \n", max_size=6),
    ),
    min_size=1,
    max_size=12,
)


def found_in_order(texts: list[str], fields: list[str]) -> bool:
    """Whether every text occurs in `fields`, in order, none overlapping."""
    field, offset = 0, 0
    for text in texts:
        while field < len(fields):
            at = fields[field].find(text, offset)
            if at >= 0:
                offset = at + len(text)
                break
            field, offset = field + 1, 0
        else:
            return False
    return True


@given(conversations)
def test_api_pairing_is_equal_and_loses_no_text(turns: list[tuple[str, str]]) -> None:
    conversation = n(*turns)
    body = api_body("", conversation)
    inputs, outputs = body["inputHistory"], body["outputHistory"]
    assert len(inputs) == len(outputs)
    _, _, last = pair_turns(conversation)
    users = [c for r, c in turns if r == "user"]
    assistants = [c for r, c in turns if r == "assistant"]
    systems = [c for r, c in turns if r == "system"]
    assert found_in_order(users, [*inputs, last])
    assert found_in_order(assistants, outputs)
    assert found_in_order(systems, [body["input"]])
    assert body["input"].startswith(last)
    # Nothing is sent twice or made up: the letters sent are the letters given
    # (the separators added are blank lines and spaces).
    sent = "".join([*inputs, *outputs, body["input"]])
    assert letters(sent) == letters("".join(c for _, c in turns))


def letters(text: str) -> Counter[str]:
    return Counter(ch for ch in text if ch not in " \n")


# The key


def test_api_needs_a_key() -> None:
    with pytest.raises(UsageError, match="KOALA_API_KEY"):
        build_request("api", "", EXAMPLE)


@pytest.mark.parametrize("bad", ["", "two words", "tab\tkey", "new\nline"])
def test_a_key_that_cannot_be_a_header_is_refused(bad: str) -> None:
    with pytest.raises(UsageError, match="KOALA_API_KEY") as info:
        ApiKey(bad)
    if bad:
        assert bad not in str(info.value)


def test_the_key_is_in_no_repr_or_str() -> None:
    key = ApiKey(KEY)
    request = build_request("api", "", EXAMPLE, api_key=key)
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    for thing in (key, request, [request], {"key": key}):
        assert KEY not in repr(thing)
        assert KEY not in str(thing)
        assert KEY not in f"{thing}"
    assert "Authorization" in repr(request)
    assert repr(key) == "ApiKey('***')"


def test_prepared_request_is_frozen() -> None:
    request = build_request("messages", "", EXAMPLE)
    assert isinstance(request, PreparedRequest)
    with pytest.raises(AttributeError):
        request.body = b""  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(request)) == request


def test_bad_messages_and_dialects_are_refused() -> None:
    with pytest.raises(UsageError, match="empty"):
        build_request("messages", "", [])
    with pytest.raises(UsageError, match="unknown dialect"):
        build_request("smoke", "", EXAMPLE)  # type: ignore[arg-type]


# Choosing a protocol


@pytest.mark.parametrize(
    ("setting", "has_key", "protocol"),
    [
        (None, False, "auto"),
        ("", False, "auto"),
        (None, True, "api"),
        ("messages", True, "messages"),
        ("history", False, "history"),
        ("auto", True, "auto"),
        ("api", False, "api"),
    ],
)
def test_choose_protocol(setting: str | None, has_key: bool, protocol: str) -> None:
    assert choose_protocol(setting, has_key=has_key) == protocol


def test_choose_protocol_refuses_unknown_names() -> None:
    with pytest.raises(UsageError, match="auto, history, messages or api"):
        choose_protocol("HISTORY", has_key=False)
