"""The Koala provider against the local Koala-protocol server over real TCP."""

from __future__ import annotations

import asyncio
import copy
import functools
import inspect
import re
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

import aiohttp
import pytest

from hardening import collect_from
from koala_chat import (
    CloudflareChallengeError,
    IncompleteEventError,
    InvalidJSONError,
    Koala,
    KoalaTimeoutError,
    Messages,
    NotEventStreamError,
    RateLimitError,
    ServerError,
    StatusError,
    UsageError,
)
from koala_chat.providers.koala import ENDPOINT_VARIABLE
from koala_chat.sandbox import Reply, Sandbox, default_reply

# The specification's example conversation
# (docs/protocol.md, "The provider's contract").
SEED: Messages = [
    {"role": "user", "content": "Привет, как дела?"},
    {"role": "assistant", "content": "У меня все отлично, спасибо!"},
    {"role": "user", "content": "Расскажи что-нибудь интересное."},
]


collect = functools.partial(collect_from, messages=SEED)


# --- the request -------------------------------------------------------------


async def test_seed_conversation_is_sent_as_the_protocol_says(sandbox: Sandbox) -> None:
    messages: Messages = [{"role": "system", "content": "Будь кратким."}, *SEED]
    messages.append({"role": "system", "content": "Отвечай по-русски."})
    messages.insert(3, {"role": "user", "content": "Ещё вопрос"})
    await collect(sandbox, messages=messages, model="gpt-4.1")
    (request,) = sandbox.requests
    assert request.method == "POST"
    assert request.path == "/api/gpt/"
    assert request.json == {
        # docs/protocol.md, "Request": last content, then a space and the system texts.
        "input": "Отвечай по-русски. Будь кратким. Отвечай по-русски.",
        "inputHistory": [
            "Привет, как дела?",
            "Ещё вопрос",
            "Расскажи что-нибудь интересное.",
        ],
        "outputHistory": ["У меня все отлично, спасибо!"],
        "model": "gpt-4.1",
    }


async def test_empty_model_means_the_default(sandbox: Sandbox) -> None:
    await collect(sandbox, model="")
    assert sandbox.requests[0].json["model"] == "gpt-4o-mini"


async def test_unknown_models_pass_through_to_the_service(sandbox: Sandbox) -> None:
    await collect(sandbox, model="koala-9000")
    assert sandbox.requests[0].json["model"] == "koala-9000"


async def test_headers_imitate_the_browser(sandbox: Sandbox) -> None:
    await collect(sandbox)
    await collect(sandbox)
    first, second = (request.headers for request in sandbox.requests)
    assert first["Accept"] == "text/event-stream"
    assert first["Referer"] == "https://koala.sh/chat"
    assert first["Origin"] == "https://koala.sh"
    assert first["Alt-Used"] == "koala.sh"
    assert first["Flag-Real-Time-Data"] == "false"
    assert first["TE"] == "trailers"
    assert first["Content-Type"] == "application/json"
    assert "Firefox" in first["User-Agent"]
    assert re.fullmatch(r"[a-z0-9]{20}", first["Visitor-ID"])
    assert first["Visitor-ID"] != second["Visitor-ID"]
    encodings = first["Accept-Encoding"]
    assert ("br" in encodings) == aiohttp.compression_utils.HAS_BROTLI


async def test_messages_and_class_are_not_mutated(sandbox: Sandbox) -> None:
    messages = copy.deepcopy(SEED)
    attributes = dict(vars(Koala))
    await collect(sandbox, messages=messages)
    assert messages == SEED
    assert dict(vars(Koala)) == attributes


async def test_text_parts_are_joined_into_the_input(sandbox: Sandbox) -> None:
    parts = [{"type": "text", "text": "one "}, {"type": "text", "text": "two"}]
    await collect(sandbox, messages=[{"role": "user", "content": parts}])  # type: ignore[list-item]
    assert sandbox.requests[0].json["input"] == "one two"


@pytest.mark.parametrize(
    "messages", [[], [{"role": "user"}], [{"content": "x"}], "hello"]
)
async def test_bad_messages_fail_before_any_request(
    sandbox: Sandbox, messages: Any
) -> None:
    with pytest.raises(UsageError):
        await collect(sandbox, messages=messages)
    assert sandbox.requests == []


async def test_endpoint_from_the_environment(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENDPOINT_VARIABLE, sandbox.api_endpoint)
    values = await collect(sandbox, api_endpoint=None)
    assert values
    assert len(sandbox.requests) == 1


@pytest.mark.parametrize("endpoint", ["ftp://u:s3cret@x/", "http://", 42])
async def test_a_bad_endpoint_is_a_usage_error_without_secrets(endpoint: Any) -> None:
    with pytest.raises(UsageError, match="http") as caught:
        await collect_all(api_endpoint=endpoint)
    assert "s3cret" not in str(caught.value)


async def collect_all(**kwargs: Any) -> list[Any]:
    async with aclosing(Koala.create_async_generator("", SEED, **kwargs)) as stream:
        return [value async for value in stream]


# --- the reply ---------------------------------------------------------------


async def test_default_reply_arrives_piece_by_piece(sandbox: Sandbox) -> None:
    values = await collect(sandbox)
    assert values == default_reply(sandbox.requests[0].json)
    assert len(values) > 1


async def test_any_json_value_passes_through(sandbox: Sandbox) -> None:
    script = ["a", {"text": "b"}, 1, None, [1, 2], {"nested": {"x": True}}]
    sandbox.push(Reply(values=script, write_size=3))
    assert await collect(sandbox) == script


async def test_done_ends_the_stream(sandbox: Sandbox) -> None:
    sandbox.push(Reply(body=b'data: "a"\n\ndata: [DONE]\n\ndata: "after"\n\n'))
    assert await collect(sandbox) == ["a"]


async def test_text_api_accepts_both_shapes(sandbox: Sandbox) -> None:
    sandbox.push(Reply(values=["Hel", {"text": "lo"}, 5, " world"]))
    text = await Koala.create_async(
        "", SEED, api_endpoint=sandbox.api_endpoint, max_retries=0
    )
    assert text == "Hello world"


async def test_a_large_event_arrives_intact(sandbox: Sandbox) -> None:
    big = "ж" * (4 * 1024 * 1024)
    sandbox.push(Reply(values=["start", big, "end"], write_size=65536))
    assert await collect(sandbox) == ["start", big, "end"]


async def test_a_last_event_without_blank_line_is_delivered(sandbox: Sandbox) -> None:
    sandbox.push(Reply(body=b'data: "a"\n\ndata: "b"'))
    assert await collect(sandbox) == ["a", "b"]


async def test_a_cut_last_event_is_an_error_after_the_rest(sandbox: Sandbox) -> None:
    sandbox.push(Reply(body=b'data: "a"\n\ndata: "b'))
    received: list[Any] = []
    with pytest.raises(IncompleteEventError):
        await collect(sandbox, into=received)
    assert received == ["a"]


async def test_bad_json_is_an_error_after_the_values_before_it(
    sandbox: Sandbox,
) -> None:
    sandbox.push(Reply(body=b'data: "a"\n\ndata: {oops\n\ndata: "c"\n\n'))
    received: list[Any] = []
    with pytest.raises(InvalidJSONError) as caught:
        await collect(sandbox, into=received)
    assert received == ["a"]
    assert "{oops" in str(caught.value)


# --- errors --------------------------------------------------------------------


async def test_html_with_status_200_is_not_an_empty_reply(sandbox: Sandbox) -> None:
    page = b"<html><head><title>Koala</title></head><body>Hi</body></html>"
    sandbox.push(Reply(body=page, content_type="text/html"))
    with pytest.raises(NotEventStreamError) as caught:
        await collect(sandbox)
    assert caught.value.content_type == "text/html"
    assert "Koala" in str(caught.value)


async def test_rate_limit(sandbox: Sandbox) -> None:
    sandbox.push(Reply(status=429, body=b"slow down", headers={"Retry-After": "7"}))
    with pytest.raises(RateLimitError) as caught:
        await collect(sandbox)
    assert caught.value.status == 429
    assert caught.value.retry_after == 7.0
    assert "slow down" in str(caught.value)


async def test_payment_required_is_a_rate_limit(sandbox: Sandbox) -> None:
    sandbox.push(Reply(status=402, body=b"quota"))
    with pytest.raises(RateLimitError) as caught:
        await collect(sandbox)
    assert caught.value.status == 402
    assert caught.value.retry_after is None


async def test_cloudflare_challenge(sandbox: Sandbox) -> None:
    page = b"<html><head><title>Just a moment...</title></head></html>"
    sandbox.push(
        Reply(
            status=403,
            body=page,
            content_type="text/html",
            headers={"cf-mitigated": "challenge", "cf-ray": "abc123"},
        )
    )
    with pytest.raises(CloudflareChallengeError) as caught:
        await collect(sandbox)
    assert caught.value.request_id == "abc123"
    assert caught.value.status == 403


async def test_server_error_carries_status_url_and_excerpt(sandbox: Sandbox) -> None:
    page = b"<html><head><title>Internal trouble</title></head>" + b"x" * 5000
    sandbox.push(Reply(status=500, body=page, content_type="text/html"))
    with pytest.raises(ServerError) as caught:
        await collect(sandbox)
    error = caught.value
    assert error.status == 500
    assert error.url == sandbox.api_endpoint
    assert error.body == "Internal trouble"


async def test_other_status_is_a_status_error(sandbox: Sandbox) -> None:
    # `auto` tries the messages dialect after a 404: refuse both.
    for _ in range(2):
        sandbox.push(
            Reply(status=404, body=b"no such thing", content_type="text/plain")
        )
    with pytest.raises(StatusError) as caught:
        await collect(sandbox)
    assert type(caught.value) is StatusError
    assert caught.value.body == "no such thing"


async def test_silence_is_a_timeout_not_a_hang(sandbox: Sandbox) -> None:
    sandbox.push(Reply(values=["a", "b"], stall_at=1))
    received: list[Any] = []
    try:
        with pytest.raises(KoalaTimeoutError) as caught:
            await collect(sandbox, into=received, idle_timeout=0.3)
    finally:
        sandbox.release()
    assert received == ["a"]
    assert isinstance(caught.value, TimeoutError)
    assert caught.value.limit == "idle"


# --- resources -----------------------------------------------------------------


async def test_break_closes_the_response_at_once(sandbox: Sandbox) -> None:
    sandbox.push(Reply(values=["a", "b"], stall_at=1))
    try:
        async with aclosing(
            Koala.create_async_generator("", SEED, api_endpoint=sandbox.api_endpoint)
        ) as stream:
            async for value in stream:
                assert value == "a"
                break
        assert await sandbox.wait_disconnect_async(timeout=5)
    finally:
        sandbox.release()


async def test_cancellation_closes_the_response(sandbox: Sandbox) -> None:
    sandbox.push(Reply(values=["a", "b"], stall_at=1))
    first = asyncio.Event()

    async def consume() -> None:
        async for _ in Koala.create_async_generator(
            "", SEED, api_endpoint=sandbox.api_endpoint
        ):
            first.set()

    task = asyncio.create_task(consume())
    try:
        await asyncio.wait_for(first.wait(), timeout=5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await sandbox.wait_disconnect_async(timeout=5)
    finally:
        sandbox.release()


async def test_a_borrowed_connector_is_never_closed(sandbox: Sandbox) -> None:
    async with aiohttp.TCPConnector() as connector:
        for _ in range(3):
            assert await collect(sandbox, connector=connector)
        assert not connector.closed


# --- the seed's class shape ----------------------------------------------------


def test_create_async_generator_is_an_async_generator_classmethod() -> None:
    # Tools that inspect providers (gpt4free's own helpers among them) know a
    # streaming provider by this shape, as the seed defines it.
    assert inspect.isasyncgenfunction(Koala.create_async_generator)
    assert inspect.ismethod(Koala.create_async_generator)
    assert Koala.create_async_generator.__self__ is Koala


def test_create_async_generator_has_the_seeds_signature() -> None:
    parameters = inspect.signature(Koala.create_async_generator).parameters
    shape = [(p.name, p.kind, p.default) for p in parameters.values()]
    assert shape == [
        ("model", inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.empty),
        ("messages", inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.empty),
        ("proxy", inspect.Parameter.POSITIONAL_OR_KEYWORD, None),
        ("connector", inspect.Parameter.POSITIONAL_OR_KEYWORD, None),
        ("kwargs", inspect.Parameter.VAR_KEYWORD, inspect.Parameter.empty),
    ]


@pytest.mark.parametrize(
    "kwargs", [{}, {"stream": True}], ids=["values", "gpt4free-text"]
)
async def test_a_call_returns_an_async_generator_and_sends_nothing_yet(
    sandbox: Sandbox, kwargs: dict[str, Any]
) -> None:
    # gpt4free's text-only call too gives a true async generator, not a
    # look-alike: nothing is sent before the first value is asked for.
    stream = Koala.create_async_generator(
        "", SEED, api_endpoint=sandbox.api_endpoint, **kwargs
    )
    assert inspect.isasyncgen(stream)
    await stream.aclose()
    assert sandbox.requests == []


# --- the seed's stand-in response ---------------------------------------------


class MockResponse:
    """The stand-in of the seed's `_parse_event_stream` example.

    The seed writes its lines as Cyrillic bytes literals, which Python rejects;
    these are the UTF-8 bytes it means.
    """

    async def __aiter__(self) -> AsyncGenerator[bytes, None]:
        yield 'data: {"text": "Первый фрагмент"} '.encode()
        yield 'data: {"text": "Второй фрагмент"} '.encode()
        yield 'data: {"text": "Третий фрагмент"} '.encode()

    @property
    def content(self) -> MockResponse:
        return self


async def test_the_seeds_stand_in_example_yields_its_three_dicts() -> None:
    items = [item async for item in Koala._parse_event_stream(MockResponse())]
    assert items == [
        {"text": "Первый фрагмент"},
        {"text": "Второй фрагмент"},
        {"text": "Третий фрагмент"},
    ]


# --- the sync API --------------------------------------------------------------


def test_sync_completion_streams_the_reply(sandbox: Sandbox) -> None:
    pieces = list(Koala.create_completion("", SEED, api_endpoint=sandbox.api_endpoint))
    assert pieces == default_reply(sandbox.requests[0].json)


def test_sync_early_stop_closes_the_stream(sandbox: Sandbox) -> None:
    sandbox.push(Reply(values=["a", "b"], stall_at=1))
    try:
        pieces = Koala.create_completion("", SEED, api_endpoint=sandbox.api_endpoint)
        assert next(pieces) == "a"
        pieces.close()
        assert sandbox.wait_disconnect(timeout=5)
    finally:
        sandbox.release()
