"""Koala's three dialects end to end against the sandbox over real TCP.

docs/protocol.md, "How koala-chat builds each request" and "Choosing a
dialect": each dialect's bytes, the `auto` negotiation and its memory, the key
and its errors, replies read by what they are.
"""

from __future__ import annotations

import functools
import pickle
from collections.abc import Iterator
from typing import Any

import pytest

from hardening import collect_from
from koala_chat import (
    AuthenticationError,
    Client,
    CloudflareChallengeError,
    CreditsExhaustedError,
    InvalidJSONError,
    Koala,
    KoalaError,
    KoalaTimeoutError,
    Messages,
    NotEventStreamError,
    RateLimitError,
    ServerError,
    StatusError,
    UnexpectedReplyError,
    UsageError,
)
from koala_chat.providers import RequestOptions, dialects
from koala_chat.providers.koala import _ACCEPT_ENCODING
from koala_chat.sandbox import SANDBOX_API_KEY, Reply, Sandbox, default_reply

CONVERSATION: Messages = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello!"},
    {
        "role": "user",
        "content": [{"type": "text", "text": "Tell "}, {"type": "text", "text": "me"}],
    },
]
WRONG_KEY = "wrong-key-0123456789"


@pytest.fixture(params=["history", "messages", "api"])
def dialect_sandbox(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    """A sandbox that accepts one dialect only."""
    server = Sandbox(protocol=request.param)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def start_sandbox(protocol: str) -> Sandbox:
    server = Sandbox(protocol=protocol)  # type: ignore[arg-type]
    server.start()
    return server


collect = functools.partial(collect_from, messages=CONVERSATION)


def sent_headers(request: Any, expected: dict[str, str]) -> list[tuple[str, str]]:
    """Return the recorded headers that `expected` names, in the order sent.

    Names in lower case: HTTP names are case-insensitive (RFC 9110, section
    5.1), and aiohttp spells the ones it also knows in its own way.
    """
    names = {name.lower() for name in expected}
    return [(k.lower(), v) for k, v in request.headers.items() if k.lower() in names]


# --- each dialect, byte for byte ----------------------------------------------


async def test_each_dialect_sends_its_bytes_and_reads_its_reply(
    dialect_sandbox: Sandbox,
) -> None:
    dialect = dialect_sandbox.state.protocol
    values = await collect(dialect_sandbox, protocol=dialect, api_key=SANDBOX_API_KEY)
    (request,) = dialect_sandbox.requests
    expected = dialects.build_request(
        dialect,
        "",
        CONVERSATION,
        api_key=dialects.ApiKey(SANDBOX_API_KEY),
        visitor_id=request.headers.get("Visitor-ID"),
        accept_encoding=_ACCEPT_ENCODING,
    )
    assert request.body == expected.body
    assert sent_headers(request, dict(expected.headers)) == [
        (name.lower(), value) for name, value in expected.headers.items()
    ]
    if dialect == "api":
        # One JSON object: the whole answer, yielded once.
        assert values == ["".join(default_reply(request.json, dialect="api"))]
    else:
        assert values == default_reply(request.json, dialect=dialect)
        assert "Authorization" not in request.headers
    assert SANDBOX_API_KEY not in repr(values)


async def test_empty_model_is_each_dialect_s_default(dialect_sandbox: Sandbox) -> None:
    dialect = dialect_sandbox.state.protocol
    await collect(dialect_sandbox, protocol=dialect, api_key=SANDBOX_API_KEY)
    (request,) = dialect_sandbox.requests
    assert request.json["model"] == dialects.DIALECTS[dialect].default_model


@pytest.mark.parametrize(
    ("dialect", "web_search", "header", "value"),
    [
        ("history", True, "Flag-Real-Time-Data", "true"),
        ("history", None, "Flag-Real-Time-Data", "false"),
        ("messages", False, "flag-real-time-data", "false"),
        ("messages", None, "flag-real-time-data", "true"),
    ],
)
async def test_web_search_sets_the_flag(
    sandbox: Sandbox, dialect: str, web_search: bool | None, header: str, value: str
) -> None:
    await collect(sandbox, protocol=dialect, web_search=web_search)
    assert sandbox.requests[0].headers[header] == value


async def test_web_search_in_the_api_dialect_is_real_time_data(
    sandbox: Sandbox,
) -> None:
    await collect(sandbox, api_key=SANDBOX_API_KEY, web_search=True)
    assert sandbox.requests[0].json["realTimeData"] is True


# --- choosing -------------------------------------------------------------------


async def test_a_key_without_a_protocol_means_api(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KOALA_API_KEY", SANDBOX_API_KEY)
    values = await collect(sandbox)
    (request,) = sandbox.requests
    assert request.headers["Authorization"] == f"Bearer {SANDBOX_API_KEY}"
    assert set(request.json) == {
        "input",
        "inputHistory",
        "outputHistory",
        "model",
        "realTimeData",
    }
    assert len(values) == 1


async def test_the_environment_names_the_protocol(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KOALA_PROTOCOL", "messages")
    await collect(sandbox)
    assert "messages" in sandbox.requests[0].json


@pytest.mark.parametrize(
    ("options", "names"),
    [
        ({"protocol": "gopher"}, "protocol"),
        ({"protocol": 3}, "protocol"),
        ({"protocol": "api"}, "KOALA_API_KEY"),
        ({"web_search": "yes"}, "web_search"),
        ({"api_key": 42}, "api_key"),
        ({"api_key": "two words"}, "KOALA_API_KEY"),
    ],
)
async def test_bad_options_fail_before_any_traffic(
    sandbox: Sandbox, options: dict[str, Any], names: str
) -> None:
    with pytest.raises(UsageError) as caught:
        await collect(sandbox, **options)
    assert names in str(caught.value)
    assert sandbox.requests == []


# --- auto -----------------------------------------------------------------------


async def test_auto_finds_the_messages_dialect_and_remembers_it(
    messages_only: Sandbox,
) -> None:
    first = await collect(messages_only)
    history, messages = messages_only.requests
    assert "input" in history.json
    assert history.headers["Visitor-ID"]
    assert "messages" in messages.json
    assert messages.json["model"] == "gemini-3-flash"
    assert first == default_reply(messages.json, dialect="messages")

    await collect(messages_only)
    assert len(messages_only.requests) == 3
    assert "messages" in messages_only.requests[2].json

    Koala.forget_dialects(messages_only.api_endpoint)
    await collect(messages_only)
    assert len(messages_only.requests) == 5


async def test_auto_keeps_the_history_dialect_where_it_works(sandbox: Sandbox) -> None:
    for _ in range(2):
        await collect(sandbox)
    assert [set(r.json) for r in sandbox.requests] == [
        {"input", "inputHistory", "outputHistory", "model"}
    ] * 2


async def test_auto_names_both_refusals(sandbox: Sandbox) -> None:
    sandbox.push(Reply(status=400, body=b'{"error": "bad shape"}', any_body=True))
    sandbox.push(Reply(status=422, body=b'{"error": "still bad"}', any_body=True))
    with pytest.raises(StatusError) as caught:
        await collect(sandbox)
    message = str(caught.value)
    assert "history: 400" in message
    assert "messages: 422" in message
    assert "bad shape" in message
    assert "still bad" in message
    assert caught.value.status == 422
    # Two dialects, each sent once: no request was retried.
    assert caught.value.attempts == 1
    assert "attempts" not in message


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (Reply(status=429, body=b"slow down"), RateLimitError),
        (Reply(status=402, body=b"quota"), RateLimitError),
        (
            Reply(
                status=403,
                headers={"cf-mitigated": "challenge"},
                content_type="text/html",
                body=b"<title>Just a moment...</title>",
            ),
            CloudflareChallengeError,
        ),
        (Reply(status=503, body=b"down"), ServerError),
        (Reply(status=401, body=b"who?"), StatusError),
        (
            Reply(content_type="text/html", body=b"<title>Hi</title>"),
            NotEventStreamError,
        ),
    ],
)
async def test_auto_never_switches_on_other_failures(
    sandbox: Sandbox, reply: Reply, error: type[KoalaError]
) -> None:
    sandbox.push(reply)
    with pytest.raises(error):
        await collect(sandbox)
    assert len(sandbox.requests) == 1


async def test_auto_never_switches_on_a_time_out(sandbox: Sandbox) -> None:
    sandbox.push(Reply(values=["a"], stall_at=0))
    try:
        with pytest.raises(KoalaTimeoutError):
            await collect(sandbox, idle_timeout=0.3)
    finally:
        sandbox.release()
    assert len(sandbox.requests) == 1


async def test_auto_never_switches_after_a_value(sandbox: Sandbox) -> None:
    sandbox.push(Reply(body=b'data: "a"\n\ndata: {broken\n\n'))
    received: list[Any] = []
    with pytest.raises(InvalidJSONError):
        await collect(sandbox, into=received)
    assert received == ["a"]
    assert len(sandbox.requests) == 1


async def test_a_chosen_dialect_never_switches(messages_only: Sandbox) -> None:
    with pytest.raises(StatusError) as caught:
        await collect(messages_only, protocol="history")
    assert caught.value.status == 400
    assert len(messages_only.requests) == 1


async def test_open_attempt_uses_one_dialect_and_says_which(
    messages_only: Sandbox,
) -> None:
    endpoint = messages_only.api_endpoint
    async with Koala.open_attempt("", CONVERSATION, api_endpoint=endpoint) as attempt:
        assert attempt.dialect == "history"
        assert attempt.response.status == 400
    async with Koala.open_attempt(
        "", CONVERSATION, api_endpoint=endpoint, protocol="messages"
    ) as attempt:
        assert attempt.dialect == "messages"
        values = [value async for value in attempt.values()]
    assert values == default_reply(messages_only.requests[-1].json, dialect="messages")
    assert len(messages_only.requests) == 2  # no fallback in an attempt

    await collect(messages_only)  # auto learns the dialect
    async with Koala.open_attempt("", CONVERSATION, api_endpoint=endpoint) as attempt:
        assert attempt.dialect == "messages"


# --- replies read by what they are ------------------------------------------


async def test_a_json_output_is_the_whole_reply(sandbox: Sandbox) -> None:
    sandbox.push(
        Reply(body=b'{"output": "All of it."}', content_type="application/json")
    )
    assert await collect(sandbox) == ["All of it."]


async def test_a_json_error_with_2xx_is_an_error_with_an_excerpt(
    sandbox: Sandbox,
) -> None:
    sandbox.push(
        Reply(body=b'{"error": "model overloaded"}', content_type="application/json")
    )
    with pytest.raises(UnexpectedReplyError) as caught:
        await collect(sandbox)
    assert "model overloaded" in caught.value.body
    assert isinstance(caught.value, NotEventStreamError)
    assert len(sandbox.requests) == 1


@pytest.mark.parametrize(
    ("protocol", "expected"),
    [
        ("history", "abcd"),
        # docs/protocol.md, "Raw text in the messages dialect": a bare number
        # there is a raw token, as it would be in `data: 7`.
        ("messages", "abcd7"),
    ],
)
async def test_text_comes_out_of_every_streamed_shape(
    sandbox: Sandbox, protocol: str, expected: str
) -> None:
    sandbox.push(
        Reply(
            values=[
                "a",
                {"text": "b"},
                {"content": "c"},
                {"choices": [{"delta": {"content": "d"}}]},
                {"choices": [{"delta": {}}]},
                7,
            ]
        )
    )
    text = await Koala.create_async(
        "", CONVERSATION, api_endpoint=sandbox.api_endpoint, protocol=protocol
    )
    assert text == expected


# --- the key ----------------------------------------------------------------------


def assert_no_key(error: BaseException, key: str) -> None:
    for shown in (str(error), repr(error), repr(error.args)):
        assert key not in shown
    copy = pickle.loads(pickle.dumps(error))
    assert key not in repr(copy.__dict__) + str(copy)
    assert key.encode() not in pickle.dumps(error)


async def test_a_wrong_key_is_an_authentication_error(sandbox: Sandbox) -> None:
    with pytest.raises(AuthenticationError) as caught:
        await collect(sandbox, api_key=WRONG_KEY, max_retries=2)
    assert caught.value.status == 401
    assert "KOALA_API_KEY" in str(caught.value)
    assert len(sandbox.requests) == 1
    assert_no_key(caught.value, WRONG_KEY)


async def test_a_403_to_a_key_is_an_authentication_error(sandbox: Sandbox) -> None:
    sandbox.push(Reply(status=403, body=f"bad key {SANDBOX_API_KEY}".encode()))
    with pytest.raises(AuthenticationError) as caught:
        await collect(sandbox, api_key=SANDBOX_API_KEY)
    assert "bad key ***" in str(caught.value)
    assert_no_key(caught.value, SANDBOX_API_KEY)


async def test_out_of_credits_is_not_a_rate_limit_and_is_not_retried(
    sandbox: Sandbox,
) -> None:
    sandbox.push(Reply(status=402, body=b'{"error": "no credits"}'))
    with pytest.raises(CreditsExhaustedError) as caught:
        await collect(sandbox, api_key=SANDBOX_API_KEY, max_retries=2)
    assert not isinstance(caught.value, RateLimitError)
    assert "out of credits" in str(caught.value)
    assert len(sandbox.requests) == 1
    assert_no_key(caught.value, SANDBOX_API_KEY)


async def test_429_to_a_key_stays_a_rate_limit(sandbox: Sandbox) -> None:
    sandbox.push(Reply(status=429, body=b"slow"))
    with pytest.raises(RateLimitError) as caught:
        await collect(sandbox, api_key=SANDBOX_API_KEY)
    assert type(caught.value) is RateLimitError
    assert_no_key(caught.value, SANDBOX_API_KEY)


async def test_the_key_shows_nowhere_but_the_header(sandbox: Sandbox) -> None:
    options = RequestOptions.from_kwargs({"api_key": SANDBOX_API_KEY})
    request = Koala.prepare("", CONVERSATION, options)
    for shown in (repr(options), repr(request), str(request)):
        assert SANDBOX_API_KEY not in shown
    assert request.headers["Authorization"] == f"Bearer {SANDBOX_API_KEY}"
    assert SANDBOX_API_KEY.encode() not in request.body
    with pytest.raises(UsageError) as caught:
        await collect(sandbox, api_key=SANDBOX_API_KEY + " x")
    assert_no_key(caught.value, SANDBOX_API_KEY)


# --- models -------------------------------------------------------------------------


def test_models_per_protocol(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Koala.get_models(protocol="messages")[0] == "gemini-3-flash"
    assert Koala.get_models(protocol="api") == list(dialects.API.models)
    assert Koala.get_models() == list(Koala.models)
    assert Koala.get_models()[:4] == list(dialects.HISTORY.models)
    assert Koala.get_model("", protocol="messages") == "gemini-3-flash"
    assert Koala.get_model("", protocol="auto") == "gpt-4o-mini"
    assert Koala.get_model("my-own-model", protocol="api") == "my-own-model"
    monkeypatch.setenv("KOALA_PROTOCOL", "messages")
    assert Koala.get_models() == list(dialects.MESSAGES.models)
    assert Koala.get_model(None) == "gemini-3-flash"
    with pytest.raises(UsageError, match="protocol"):
        Koala.get_models(protocol="gopher")


def test_the_client_passes_the_dialect_of_a_call(sandbox: Sandbox) -> None:
    with Client(provider=Koala, api_endpoint=sandbox.api_endpoint) as client:
        completion = client.chat.completions.create(
            model="", messages=CONVERSATION, protocol="messages", web_search=False
        )
    (request,) = sandbox.requests
    assert request.json is not None
    assert "messages" in request.json
    assert request.json["model"] == "gemini-3-flash"
    assert request.headers["flag-real-time-data"] == "false"
    text = "".join(default_reply(request.json, dialect="messages"))
    assert completion.choices[0].message.content == text
