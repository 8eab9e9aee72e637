"""What an attacker or a careless caller tried on the library, and what it gets.

Each case at the level where a caller meets it: `create_async_generator`, the
text APIs and the OpenAI-shaped clients against the sandbox, or a bare asyncio
server for replies the sandbox cannot send.
"""

from __future__ import annotations

import asyncio
import io
import logging
import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hardening import MESSAGES, collect
from koala_chat import (
    Koala,
    KoalaError,
    RateLimitError,
    StatusError,
    UsageError,
)
from koala_chat._contract.params import MAX_STOP_LENGTH, parse_request
from koala_chat._http import parse_retry_after
from koala_chat._http.status import MAX_RETRY_AFTER
from koala_chat._jsonstream import JSONValueDecoder, loads
from koala_chat._urls import redact_url
from koala_chat._values import shown
from koala_chat.client import AsyncClient, Client, ReplyCutter
from koala_chat.messages import normalize_messages, replace_surrogates
from koala_chat.sandbox import Reply, Sandbox

pytestmark = pytest.mark.usefixtures("no_leaks")

LONE = "\ud800"
SURROGATE_EVENT = b'data: "a\\ud800b"\n\ndata: {"text": "\\udc00"}\n\n'


# --- stop sequences: bounded and linear ------------------------------------------


def steps_for(size: int, stop: list[str], piece: str) -> int:
    cutter = ReplyCutter(stop)
    for _ in range(size // len(piece)):
        cutter.feed(piece)
    cutter.flush()
    return cutter.steps


@pytest.mark.parametrize(
    ("stop", "piece"),
    [
        # The case that stalled the server: long stops whose every prefix
        # matches the end of the text, fed a little at a time.
        (["a" * 999 + c for c in "bcde"], "a"),
        (["a" * 999 + c for c in "bcde"], "aaaaaaa"),
        (["ab" * 499 + "c", "ab" * 499 + "d"], "ab"),
        (["\n\n", "END", "</answer>"], "some text\n"),
    ],
)
def test_the_cutter_works_in_linear_time(stop: list[str], piece: str) -> None:
    small = steps_for(20_000, stop, piece)
    large = steps_for(40_000, stop, piece)
    # Twice the text, at most twice the work (plus the warm-up of one stop).
    assert large <= 2 * small + 4 * MAX_STOP_LENGTH
    # And the work is a small multiple of the text, whatever the stops' length.
    assert large <= 2 * len(stop) * 40_000


def test_the_cutter_keeps_at_most_a_stop_length_held_back() -> None:
    stop = "a" * 999 + "b"
    cutter = ReplyCutter([stop])
    emitted = "".join(cutter.feed("a") for _ in range(5000))
    assert emitted == "a" * (5000 - 999)
    assert cutter.feed("b") == ""
    assert (cutter.done, cutter.finish_reason) == (True, "stop")


def test_a_stop_sequence_at_the_limit_is_accepted() -> None:
    request = parse_request(
        {"model": "", "messages": MESSAGES, "stop": ["x" * MAX_STOP_LENGTH]}
    )
    assert request.stop == ("x" * MAX_STOP_LENGTH,)


@pytest.mark.parametrize(
    "stop",
    ["x" * (MAX_STOP_LENGTH + 1), ["ok", "y" * 190_000], ["a", "b", "c", "d", "e"]],
)
def test_longer_or_more_stop_sequences_are_refused(stop: Any) -> None:
    with pytest.raises(UsageError, match=r"^stop: "):
        parse_request({"model": "", "messages": MESSAGES, "stop": stop})


async def test_the_client_refuses_a_long_stop_before_any_traffic(
    sandbox: Sandbox,
) -> None:
    async with AsyncClient(api_endpoint=sandbox.api_endpoint) as client:
        with pytest.raises(UsageError, match="at most 1000 characters"):
            await client.chat.completions.create(
                model="", messages=MESSAGES, stop="s" * 5000
            )
    assert sandbox.requests == []


# --- numbers that overflow ------------------------------------------------------

HUGE = [10**400, -(10**400), 10**5000, math.nan, math.inf, -math.inf, 1e308]


def whole(value: float) -> bool:
    return isinstance(value, int) or (math.isfinite(value) and value.is_integer())


@pytest.mark.parametrize("value", HUGE, ids=shown)
@pytest.mark.parametrize(
    "name",
    [
        "temperature",
        "top_p",
        "presence_penalty",
        "frequency_penalty",
        "max_tokens",
        "max_completion_tokens",
        "seed",
        "n",
        "top_logprobs",
    ],
)
def test_numbers_that_overflow_are_usage_errors(name: str, value: float) -> None:
    params = {"model": "", "messages": MESSAGES, name: value}
    accepted = whole(value) and (
        name == "seed" or (name.startswith("max_") and value > 0)
    )
    if accepted:
        parse_request(params)
        return
    with pytest.raises(UsageError) as caught:
        parse_request(params)
    assert str(caught.value).startswith(f"{name}: ")
    assert len(str(caught.value)) < 200


# --- lone surrogates: one rule, U+FFFD -------------------------------------------


def test_replace_surrogates() -> None:
    assert replace_surrogates("a\ud800b") == "a\ufffdb"
    assert replace_surrogates("\udc00\ud800") == "\ufffd\ufffd"
    # A pair held as two code points is the character it encodes.
    assert replace_surrogates("\ud83d\ude00") == "\U0001f600"
    assert replace_surrogates("plain é") == "plain é"


def test_loads_replaces_lone_surrogates_everywhere() -> None:
    value = loads('{"\\ud800": ["\\udfff", {"k": "x\\ud800"}], "ok": "\\ud83d\\ude00"}')
    assert value == {"\ufffd": ["\ufffd", {"k": "x\ufffd"}], "ok": "\U0001f600"}
    assert loads('"\\ud800"') == "\ufffd"


def test_the_decoder_replaces_lone_surrogates_split_anywhere() -> None:
    for split in range(len(SURROGATE_EVENT) + 1):
        decoder = JSONValueDecoder()
        values = decoder.feed(SURROGATE_EVENT[:split])
        values += decoder.feed(SURROGATE_EVENT[split:]) + decoder.close()
        assert values == ["a\ufffdb", {"text": "\ufffd"}]


def surrogate_reply() -> Reply:
    return Reply(body=SURROGATE_EVENT, content_type="text/event-stream")


async def test_upstream_surrogates_reach_the_caller_replaced(sandbox: Sandbox) -> None:
    sandbox.push(surrogate_reply())
    values = await collect(api_endpoint=sandbox.api_endpoint)
    assert values == ["a\ufffdb", {"text": "\ufffd"}]
    # Every value can be encoded, which was the failure.
    assert all(str(value).encode() for value in values)


async def test_upstream_surrogates_through_the_text_api(sandbox: Sandbox) -> None:
    sandbox.push(surrogate_reply())
    text = await Koala.create_async("", MESSAGES, api_endpoint=sandbox.api_endpoint)
    assert text == "a\ufffdb\ufffd"


def test_upstream_surrogates_through_the_sync_client(sandbox: Sandbox) -> None:
    sandbox.push(surrogate_reply(), surrogate_reply())
    with Client(api_endpoint=sandbox.api_endpoint) as client:
        completion = client.chat.completions.create(model="", messages=MESSAGES)
        assert completion.choices[0].message.content == "a\ufffdb\ufffd"
        stream = client.chat.completions.create(
            model="", messages=MESSAGES, stream=True
        )
        pieces = [chunk.choices[0].delta.content for chunk in stream if chunk.choices]
    assert "".join(piece or "" for piece in pieces) == "a\ufffdb\ufffd"
    completion.model_dump_json().encode()


@pytest.mark.parametrize(
    "content",
    [
        f"x{LONE}y",
        [{"type": "text", "text": f"x{LONE}"}, {"type": "text", "text": "y"}],
    ],
)
async def test_the_callers_surrogates_are_sent_replaced(
    sandbox: Sandbox, content: Any
) -> None:
    await collect(
        [{"role": "user", "content": content}], api_endpoint=sandbox.api_endpoint
    )
    (request,) = sandbox.requests
    assert isinstance(request.json, dict)
    assert request.json["input"] == "x\ufffdy"


def test_normalize_messages_replaces_surrogates() -> None:
    (message,) = normalize_messages([{"role": "user", "content": f"{LONE}!"}])
    assert message["content"] == "\ufffd!"


def test_koala_chat_prints_upstream_surrogates_replaced(
    sandbox: Sandbox,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from koala_chat._cli import main

    monkeypatch.setattr("sys.stdin", io.StringIO())
    sandbox.push(surrogate_reply())
    code = main(["chat", "--endpoint", sandbox.api_endpoint, f"Hi {LONE}"])
    out = capsys.readouterr().out
    assert code == 0
    assert out == "a\ufffdb\ufffd\n"
    (request,) = sandbox.requests
    assert isinstance(request.json, dict)
    assert request.json["input"] == "Hi \ufffd"


# --- Retry-After, strictly -------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("²", None),
        ("٣", None),
        ("1.5", None),
        ("-1", None),
        ("+5", None),
        ("7 s", None),
        ("1" + "0" * 400, float(MAX_RETRY_AFTER)),
        ("86401", float(MAX_RETRY_AFTER)),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
        ("Fri, 31 Dec 9999 23:59:59 GMT", float(MAX_RETRY_AFTER)),
        ("Wed, 21 Oct 99999 07:28:00 GMT", None),
        ("x" * 10_000, None),
        ("", None),
    ],
)
def test_parse_retry_after(header: str, seconds: float | None) -> None:
    assert parse_retry_after(header) == seconds


@pytest.mark.parametrize(
    ("header", "seconds"), [("²", None), ("1" + "0" * 400, float(MAX_RETRY_AFTER))]
)
async def test_odd_retry_after_is_a_rate_limit_error(
    sandbox: Sandbox, header: str, seconds: float | None
) -> None:
    sandbox.push(Reply(status=429, headers={"Retry-After": header}, body=b"slow"))
    with pytest.raises(RateLimitError) as caught:
        await collect(api_endpoint=sandbox.api_endpoint, max_retries=0)
    assert caught.value.retry_after == seconds


# --- URLs: checked whole, redacted whatever their shape --------------------------


# What breaks a parse: URL delimiters, escapes, white space, characters that
# Unicode normalization turns into delimiters (fullwidth # and @), non-Latin-1.
SEPARATORS = [
    *"#/?@:%\\ é[]",
    "",
    "%4",
    "%40",
    "\uff03",
    "\uff20",
    "\u00a0",
    "\u0100",
    "\u2028",
]

SECRET = st.text(
    alphabet=st.characters(
        codec="utf-8", exclude_categories=("Cs",), exclude_characters="@:/?#"
    ),
    min_size=6,
    max_size=12,
).map(lambda text: "S3" + text)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    first=SECRET,
    second=SECRET,
    separator=st.sampled_from(SEPARATORS),
    port=st.sampled_from([":9", ":99999", ":0", ":x", ":"]),
    where=st.sampled_from(["api_endpoint", "proxy", "socks"]),
)
def test_no_password_reaches_a_message_or_the_log(
    caplog: pytest.LogCaptureFixture,
    first: str,
    second: str,
    separator: str,
    port: str,
    where: str,
) -> None:
    password = first + separator + second
    scheme = "socks5" if where == "socks" else "http"
    url = f"{scheme}://user:{password}@127.0.0.1{port}/api/"
    options: dict[str, Any] = {"api_endpoint": "http://127.0.0.1:9/", "max_retries": 0}
    options["api_endpoint" if where == "api_endpoint" else "proxy"] = url
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        try:
            asyncio.run(collect(timeout=5, **options))
        except KoalaError as exc:
            texts = [str(exc), repr(exc), repr(vars(exc)), str(exc.__cause__ or "")]
        else:
            pytest.fail("the request cannot succeed")
    texts += [record.getMessage() for record in caplog.records]
    texts.append(redact_url(url))
    for text in texts:
        for secret in (first, second):
            assert secret not in text


# --- redirects are reported, not followed ----------------------------------------


@asynccontextmanager
async def raw_server(
    make_reply: Callable[[str], bytes],
) -> AsyncIterator[tuple[str, list[bytes]]]:
    """Answer every request with `make_reply(url)`; yield the URL and the heads."""
    received: list[bytes] = []
    url = ""

    async def answer(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            received.append(await reader.readuntil(b"\r\n\r\n"))
            writer.write(make_reply(url))
            await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/api/gpt/"
    try:
        yield url, received
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_redirects_are_not_followed(sandbox: Sandbox, status: int) -> None:
    target = "http://mallory:hunter2@elsewhere.example/steal"
    sandbox.push(Reply(status=status, headers={"Location": target}, body=b""))
    with pytest.raises(StatusError) as caught:
        await collect(api_endpoint=sandbox.api_endpoint)
    error = caught.value
    assert error.status == status
    assert "http://mallory:***@elsewhere.example/steal" in str(error)
    assert "hunter2" not in str(error)
    assert "redirects are not followed" in str(error)
    assert len(sandbox.requests) == 1


async def test_a_redirect_loop_is_one_clear_error() -> None:
    def to_itself(url: str) -> bytes:
        return (
            f"HTTP/1.1 302 Found\r\nLocation: {url}\r\nContent-Length: 0\r\n"
            "Connection: close\r\n\r\n"
        ).encode()

    async with raw_server(to_itself) as (url, received):
        with pytest.raises(StatusError, match=f"302 Found, a redirect to {url}"):
            await collect(api_endpoint=url, max_retries=0)
    assert len(received) == 1


# --- odd values of every option are usage errors ----------------------------------


class Odd:
    """An object whose repr and str fail, as a careless caller's might."""

    def __repr__(self) -> str:
        raise RuntimeError("no repr")

    __str__ = __repr__


ODD_VALUES = [
    123,
    -1,
    1.5,
    b"bytes",
    [],
    ["x"],
    {"a": 1},
    math.nan,
    math.inf,
    10**400,
    -(10**5000),
    True,
    Odd(),
]
OPTIONS = [
    "proxy",
    "connector",
    "api_endpoint",
    "timeout",
    "connect_timeout",
    "idle_timeout",
    "max_retries",
    "retry_backoff",
    "max_retry_wait",
    "max_event_size",
]


def is_valid(name: str, value: Any) -> bool:
    """Tell whether `value` is a good value of the option `name` (it is sent)."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if name in ("timeout", "connect_timeout", "idle_timeout"):
        return number and 0 < value < 1e308
    if name in ("retry_backoff", "max_retry_wait"):
        return number and 0 <= value < 1e308
    if name in ("max_retries", "max_event_size"):
        return type(value) is int and value >= 1
    if name == "stream":
        return isinstance(value, bool)
    # A false proxy is no proxy.
    return name == "proxy" and isinstance(value, list | dict) and not value


def refused_cases(names: list[str]) -> list[tuple[str, Any]]:
    return [
        (name, value)
        for name in names
        for value in ODD_VALUES
        if not is_valid(name, value)
    ]


@pytest.mark.parametrize(("name", "value"), refused_cases(OPTIONS), ids=shown)
async def test_odd_options_are_usage_errors(
    sandbox: Sandbox, name: str, value: Any
) -> None:
    with pytest.raises(UsageError) as caught:
        await collect(**{"api_endpoint": sandbox.api_endpoint, name: value})
    assert str(caught.value)
    assert sandbox.requests == []


@pytest.mark.parametrize(
    "value", [*ODD_VALUES, None, "Hi", (), {"role": "user"}], ids=shown
)
async def test_odd_messages_are_usage_errors(sandbox: Sandbox, value: Any) -> None:
    with pytest.raises(UsageError):
        await collect(value, api_endpoint=sandbox.api_endpoint)
    async with AsyncClient(api_endpoint=sandbox.api_endpoint) as client:
        with pytest.raises(UsageError):
            await client.chat.completions.create(model="", messages=value)
    assert sandbox.requests == []


@pytest.mark.parametrize(
    "message",
    [{"role": value, "content": "x"} for value in ODD_VALUES]
    + [{"role": "user", "content": value} for value in ODD_VALUES if value != []],
    ids=lambda message: shown(message["role"]) + shown(message["content"]),
)
async def test_odd_message_fields_are_usage_errors(
    sandbox: Sandbox, message: dict[str, Any]
) -> None:
    with pytest.raises(UsageError, match=r"messages\[0\]"):
        await collect([message], api_endpoint=sandbox.api_endpoint)
    assert sandbox.requests == []


@pytest.mark.parametrize(
    ("name", "value"), refused_cases(["model", "stream", *OPTIONS]), ids=shown
)
def test_odd_values_through_the_sync_client(
    sandbox: Sandbox, name: str, value: Any
) -> None:
    # An option of the wrong type is refused when the client is made (the
    # options are parsed once); a wrong value of the right type at the call.
    call: dict[str, Any] = {"model": "", "messages": MESSAGES}
    options: dict[str, Any] = {"api_endpoint": sandbox.api_endpoint}
    if name in ("model", "stream"):
        call[name] = value
    else:
        options[name] = value
    with pytest.raises(UsageError), Client(**options) as client:
        client.chat.completions.create(**call)
    assert sandbox.requests == []


async def test_a_connector_of_another_kind_is_refused(sandbox: Sandbox) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(UsageError, match="connector must be an aiohttp connector"):
            await collect(api_endpoint=sandbox.api_endpoint, connector=session)
    assert sandbox.requests == []


def test_upstream_surrogates_through_the_sync_text_api(sandbox: Sandbox) -> None:
    sandbox.push(surrogate_reply())
    pieces = Koala.create_completion(
        "", MESSAGES, stream=True, api_endpoint=sandbox.api_endpoint
    )
    assert "".join(pieces) == "a\ufffdb\ufffd"


@pytest.mark.parametrize(
    "option",
    [
        ("--endpoint", "http://koala:Xq7Zw9@127.0.0.1:99999/api/"),
        ("--endpoint", "http://koala:Xq7#Zw9@127.0.0.1/api/"),
        ("--proxy", "http://koala:Xq7/Zw9@127.0.0.1:8080"),
        ("--proxy", "socks5://koala:Xq7?Zw9@127.0.0.1:1080"),
    ],
)
def test_the_cli_refuses_a_bad_url_without_its_password(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    option: tuple[str, str],
) -> None:
    from koala_chat._cli import main

    monkeypatch.setattr("sys.stdin", io.StringIO())
    code = main(["chat", *option, "Hi"])
    err = capsys.readouterr().err
    assert code != 0
    assert err.count("\n") == 1
    assert "Xq7" not in err
    assert "Zw9" not in err
