"""The official `openai` package pointed at `koala serve`, the sandbox upstream.

The server runs on a thread of its own (server_fixtures.py), so the SDK's
blocking client works in plain tests and its async client in async tests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import openai
import pytest

from koala_chat import Koala
from koala_chat.sandbox import Reply, Sandbox, default_reply
from server_fixtures import ServerThread

HELLO: list[openai.types.chat.ChatCompletionMessageParam] = [
    {"role": "user", "content": "Hello"}
]
REPLY = "".join(default_reply({"input": "Hello", "model": "gpt-4o-mini"}))
KEY = "test-key-not-secret"


@pytest.fixture
async def async_sdk(koala_server: ServerThread) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=koala_server.base_url, api_key="anything", max_retries=0
    ) as client:
        yield client


# --- sync ---------------------------------------------------------------------------


def test_sync_completion(sdk: openai.OpenAI) -> None:
    completion = sdk.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert completion.object == "chat.completion"
    assert completion.model == "gpt-4o-mini"
    assert completion.choices[0].message.content == REPLY
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == -(-len(REPLY) // 4)


def test_sync_stream(sdk: openai.OpenAI) -> None:
    with sdk.chat.completions.create(
        model="gpt-4o-mini",
        messages=HELLO,
        stream=True,
        stream_options={"include_usage": True},
    ) as stream:
        chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == REPLY
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 2 - (-len(REPLY) // 4)


def test_sync_models(sdk: openai.OpenAI) -> None:
    assert [model.id for model in sdk.models.list()] == list(Koala.models)
    model = sdk.models.retrieve("gpt-4.1")
    assert (model.id, model.object, model.owned_by) == ("gpt-4.1", "model", "koala")


def test_sync_stop_and_max_tokens(sdk: openai.OpenAI) -> None:
    completion = sdk.chat.completions.create(
        model="gpt-4o-mini", messages=HELLO, stop=["History"], max_tokens=100
    )
    assert completion.choices[0].message.content == REPLY.split("History")[0]
    short = sdk.chat.completions.create(
        model="gpt-4o-mini", messages=HELLO, max_tokens=1
    )
    assert short.choices[0].message.content == REPLY[:4]
    assert short.choices[0].finish_reason == "length"


# --- async --------------------------------------------------------------------------


async def test_async_completion(async_sdk: openai.AsyncOpenAI) -> None:
    completion = await async_sdk.chat.completions.create(
        model="gpt-4o-mini", messages=HELLO, temperature=0.3
    )
    assert completion.choices[0].message.content == REPLY


async def test_async_stream(async_sdk: openai.AsyncOpenAI) -> None:
    stream = await async_sdk.chat.completions.create(
        model="gpt-4o-mini", messages=HELLO, stream=True
    )
    async with stream:
        pieces = [c.choices[0].delta.content or "" async for c in stream]
    assert "".join(pieces) == REPLY


async def test_async_models(async_sdk: openai.AsyncOpenAI) -> None:
    page = await async_sdk.models.list()
    assert [model.id for model in page.data] == list(Koala.models)


# --- errors -------------------------------------------------------------------------


def test_upstream_rate_limit_is_the_sdks_rate_limit_error(
    sdk: openai.OpenAI, sandbox: Sandbox
) -> None:
    sandbox.push(Reply(status=429, headers={"Retry-After": "30"}, body=b"quota"))
    with pytest.raises(openai.RateLimitError) as caught:
        sdk.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert caught.value.status_code == 429
    assert caught.value.code == "rate_limit_exceeded"
    assert caught.value.response.headers["retry-after"] == "30"


def test_wrong_key_is_the_sdks_authentication_error(
    start_server: Callable[..., ServerThread],
) -> None:
    server = start_server(api_key=KEY)
    with openai.OpenAI(base_url=server.base_url, api_key="wrong", max_retries=0) as c:
        with pytest.raises(openai.AuthenticationError) as caught:
            c.models.list()
        assert caught.value.code == "invalid_api_key"
    with openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0) as c:
        assert c.chat.completions.create(model="", messages=HELLO).choices


def test_unknown_model_is_the_sdks_not_found_error(
    sdk: openai.OpenAI, start_server: Callable[..., ServerThread]
) -> None:
    with pytest.raises(openai.NotFoundError):
        sdk.models.retrieve("gpt-9")

    class StrictKoala(Koala):
        accept_unknown_models = False

    server = start_server(StrictKoala)
    with (
        openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0) as c,
        pytest.raises(openai.NotFoundError) as caught,
    ):
        c.chat.completions.create(model="gpt-9", messages=HELLO, stream=True)
    assert caught.value.code == "model_not_found"


@pytest.mark.parametrize(
    "params",
    [{"n": 2}, {"response_format": {"type": "yaml"}}, {"logprobs": True}],
)
def test_unsupported_option_is_the_sdks_bad_request_error(
    sdk: openai.OpenAI, params: dict[str, object]
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(model="gpt-4o-mini", messages=HELLO, **params)  # type: ignore[call-overload]
    assert next(iter(params)) in caught.value.message


def test_upstream_challenge_is_an_sdk_server_error(
    sdk: openai.OpenAI, sandbox: Sandbox
) -> None:
    sandbox.push(Reply(status=403, headers={"cf-mitigated": "challenge"}, body=b"x"))
    with pytest.raises(openai.InternalServerError) as caught:
        sdk.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True)
    assert caught.value.status_code == 502


async def test_failure_mid_stream_raises_in_the_sdk(
    async_sdk: openai.AsyncOpenAI, sandbox: Sandbox
) -> None:
    sandbox.push(Reply(body=b'data: "Hel"\n\ndata: "lo"\n\ndata: {broken\n\n'))
    stream = await async_sdk.chat.completions.create(
        model="gpt-4o-mini", messages=HELLO, stream=True
    )
    pieces: list[str] = []

    async def read() -> None:
        async with stream:
            async for chunk in stream:
                pieces.append(chunk.choices[0].delta.content or "")

    with pytest.raises(openai.APIError, match="not JSON"):
        await read()
    assert "".join(pieces) == "Hello"
