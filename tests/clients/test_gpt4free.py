"""gpt4free's own client with `Koala` as its provider, against the sandbox.

The real `g4f` package drives the provider the way its users do: `Client` and
`AsyncClient` with `provider=Koala`, and its retry providers. Replies mix JSON
strings and objects (docs/protocol.md, "Response"): gpt4free must get their
text only, while a direct call of `create_async_generator` still yields every
value.
"""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from pathlib import Path

import g4f.cookies
import pytest
from g4f.client import AsyncClient, Client
from g4f.providers.retry_provider import IterListProvider, RetryProvider

from koala_chat import Koala, StatusError
from koala_chat.messages import Messages
from koala_chat.sandbox import Reply, Sandbox

# A reply as the seed's example streams it: strings, objects with text, and an
# object without text, which carries nothing for a text client.
MIXED = ["Hel", {"text": "lo"}, {"status": "thinking"}, ", wor", {"text": "ld"}]
MIXED_TEXT = "Hello, world"
HI: Messages = [{"role": "user", "content": "Hi"}]


@pytest.fixture(autouse=True)
def gpt4free_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keep gpt4free's files (a usage log per request) out of the home directory.

    Its retry providers also remember failures per provider name across calls;
    switched off here so that tests do not depend on each other's order.
    """
    monkeypatch.setattr(g4f.cookies.CookiesConfig, "cookies_dir", str(tmp_path))
    monkeypatch.setenv("G4F_DISABLE_CIRCUIT_BREAKER", "1")
    return tmp_path


# --- the provider as gpt4free sees it ------------------------------------------------


def test_provider_description() -> None:
    assert Koala.get_dict() == {"name": "Koala", "url": Koala.url, "label": None}
    assert Koala.get_parent() == "Koala"
    assert Koala.needs_auth is False
    assert Koala.use_stream_timeout is True
    assert Koala.get_models(api_key="unused") == list(Koala.models)


def test_client_lists_models() -> None:
    assert Client(provider=Koala).models.get_all() == list(Koala.models)


async def test_direct_call_still_yields_every_value(sandbox: Sandbox) -> None:
    sandbox.push(Reply(values=MIXED))
    stream = Koala.create_async_generator("", HI, api_endpoint=sandbox.api_endpoint)
    async with aclosing(stream) as values:
        assert [value async for value in values] == MIXED


async def test_stream_keyword_gives_text_pieces(sandbox: Sandbox) -> None:
    sandbox.push(Reply(values=MIXED))
    stream = Koala.create_async_generator(
        "", HI, api_endpoint=sandbox.api_endpoint, stream=True
    )
    async with aclosing(stream) as pieces:
        assert [piece async for piece in pieces] == ["Hel", "lo", ", wor", "ld"]


async def test_closing_text_pieces_closes_the_response(sandbox: Sandbox) -> None:
    sandbox.push(Reply(values=["one", {"text": "two"}], stall_at=1))
    stream = Koala.create_async_generator(
        "", HI, api_endpoint=sandbox.api_endpoint, stream=True
    )
    assert await stream.__anext__() == "one"
    await stream.aclose()
    assert await sandbox.wait_disconnect_async()


# --- Client --------------------------------------------------------------------------


def test_client_completion(sandbox: Sandbox) -> None:
    sandbox.push(Reply(values=MIXED))
    completion = Client(provider=Koala).chat.completions.create(
        messages=HI, model="gpt-4.1", api_endpoint=sandbox.api_endpoint
    )
    assert completion.choices[0].message.content == MIXED_TEXT
    assert completion.choices[0].finish_reason == "stop"
    assert sandbox.requests[-1].json == {
        "input": "Hi",
        "inputHistory": [],
        "outputHistory": [],
        "model": "gpt-4.1",
    }


def test_client_stream(sandbox: Sandbox) -> None:
    sandbox.push(Reply(values=MIXED))
    chunks = list(
        Client(provider=Koala).chat.completions.create(
            messages=HI, stream=True, api_endpoint=sandbox.api_endpoint
        )
    )
    contents = [chunk.choices[0].delta.content for chunk in chunks]
    assert contents == ["Hel", "lo", ", wor", "ld", None]
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_client_endpoint_from_environment(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KOALA_API_ENDPOINT", sandbox.api_endpoint)
    sandbox.push(Reply(values=["From ", "the environment"]))
    completion = Client(provider=Koala).chat.completions.create(messages=HI)
    assert completion.choices[0].message.content == "From the environment"
    assert len(sandbox.requests) == 1


def test_client_stop(sandbox: Sandbox) -> None:
    sandbox.push(Reply(values=["Count: one", {"text": " two STOP three"}, " four"]))
    completion = Client(provider=Koala).chat.completions.create(
        messages=HI, stop="STOP", api_endpoint=sandbox.api_endpoint
    )
    assert completion.choices[0].message.content == "Count: one two "
    assert completion.choices[0].finish_reason == "stop"


def test_client_max_tokens(sandbox: Sandbox) -> None:
    # gpt4free counts each piece as a token. Its sync client calls
    # `create_completion`, which gives the reply in pieces only when streaming.
    sandbox.push(Reply(values=MIXED))
    chunks = list(
        Client(provider=Koala).chat.completions.create(
            messages=HI, stream=True, max_tokens=2, api_endpoint=sandbox.api_endpoint
        )
    )
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks) == "Hello"
    assert chunks[-1].choices[0].finish_reason == "length"


def test_client_error_is_ours(sandbox: Sandbox) -> None:
    # `auto` tries the messages dialect after a 404: refuse both.
    for _ in range(2):
        sandbox.push(
            Reply(status=404, body=b"no such thing", content_type="text/plain")
        )
    with pytest.raises(StatusError) as caught:
        Client(provider=Koala).chat.completions.create(
            messages=HI, api_endpoint=sandbox.api_endpoint
        )
    assert caught.value.status == 404


# --- AsyncClient ---------------------------------------------------------------------


async def test_async_client_completion(sandbox: Sandbox) -> None:
    sandbox.push(Reply(values=MIXED))
    messages: Messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Again"},
    ]
    completion = await AsyncClient(provider=Koala).chat.completions.create(
        messages=messages, api_endpoint=sandbox.api_endpoint
    )
    assert completion.choices[0].message.content == MIXED_TEXT
    assert completion.provider == "Koala"
    # gpt4free patches a running loop with nest_asyncio only where it drives a
    # provider's async generator from sync code; ours it never needs to.
    assert not hasattr(type(asyncio.get_running_loop()), "_nest_patched")
    assert sandbox.requests[-1].json == {
        "input": "Again Be brief.",
        "inputHistory": ["Hi"],
        "outputHistory": ["Hello!"],
        "model": "gpt-4o-mini",
    }


async def test_async_client_stream(sandbox: Sandbox) -> None:
    sandbox.push(Reply(values=MIXED))
    stream = AsyncClient(provider=Koala).chat.completions.create(
        messages=HI, stream=True, api_endpoint=sandbox.api_endpoint
    )
    contents = [chunk.choices[0].delta.content async for chunk in stream]
    assert contents == ["Hel", "lo", ", wor", "ld", None]


async def test_async_client_stop_in_stream(sandbox: Sandbox) -> None:
    sandbox.push(Reply(values=["Count: one", {"text": " two STOP three"}, " four"]))
    stream = AsyncClient(provider=Koala).chat.completions.create(
        messages=HI, stream=True, stop=["STOP"], api_endpoint=sandbox.api_endpoint
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
    assert text == "Count: one two "
    assert chunks[-1].choices[0].finish_reason == "stop"


async def test_async_client_max_tokens(sandbox: Sandbox) -> None:
    sandbox.push(Reply(values=MIXED))
    completion = await AsyncClient(provider=Koala).chat.completions.create(
        messages=HI, max_tokens=3, api_endpoint=sandbox.api_endpoint
    )
    assert completion.choices[0].message.content == "Hello, wor"
    assert completion.choices[0].finish_reason == "length"


# --- retry providers -----------------------------------------------------------------


async def test_retry_provider_takes_object_replies_as_content(
    sandbox: Sandbox,
) -> None:
    # The retry provider counts only strings as a reply: objects alone would
    # make it report that no provider answered.
    sandbox.push(Reply(values=[{"text": "Only "}, {"text": "objects"}]))
    provider = IterListProvider([Koala], shuffle=False)
    completion = await AsyncClient(provider=provider).chat.completions.create(
        messages=HI, api_endpoint=sandbox.api_endpoint
    )
    assert completion.choices[0].message.content == "Only objects"
    assert completion.provider == "Koala"


async def test_retry_provider_moves_on_after_a_failure(sandbox: Sandbox) -> None:
    sandbox.push(
        Reply(status=400, body=b"bad request", content_type="text/plain"),
        Reply(values=MIXED),
    )
    provider = IterListProvider([Koala, Koala], shuffle=False)
    completion = await AsyncClient(provider=provider).chat.completions.create(
        messages=HI, api_endpoint=sandbox.api_endpoint
    )
    assert completion.choices[0].message.content == MIXED_TEXT
    assert len(sandbox.requests) == 2


def test_single_provider_retry(sandbox: Sandbox) -> None:
    sandbox.push(
        Reply(status=400, body=b"bad request", content_type="text/plain"),
        Reply(values=MIXED),
    )
    provider = RetryProvider([Koala], single_provider_retry=True, max_retries=2)
    chunks = list(
        Client(provider=provider).chat.completions.create(
            messages=HI, stream=True, api_endpoint=sandbox.api_endpoint
        )
    )
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks) == (
        MIXED_TEXT
    )
    assert len(sandbox.requests) == 2


def test_stopping_early_closes_each_stream_once(sandbox: Sandbox) -> None:
    # gpt4free's retry provider leaves the provider's stream it stops early to
    # the loop's shutdown, which closes all open generators at once: none may
    # be closed twice (asyncio reports that to the loop's exception handler).
    sandbox.push(Reply(values=MIXED))
    reports: list[dict[str, object]] = []

    async def ask() -> str | None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, context: reports.append(context))
        provider = IterListProvider([Koala], shuffle=False)
        completion = await AsyncClient(provider=provider).chat.completions.create(
            messages=HI, max_tokens=2, api_endpoint=sandbox.api_endpoint
        )
        return completion.choices[0].message.content

    assert asyncio.run(ask()) == "Hello"
    assert reports == []
