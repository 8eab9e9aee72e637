"""`Client` and `AsyncClient` against the sandbox, and their pure parts."""

from __future__ import annotations

import re
from typing import Any

import pytest

import koala_chat
from koala_chat import AsyncClient, Client, RateLimitError, UsageError
from koala_chat._contract.params import IGNORED
from koala_chat.client import (
    ChatCompletion,
    ChatCompletionChunk,
    estimate_tokens,
)
from koala_chat.errors import ModelNotFoundError
from koala_chat.sandbox import Reply, Sandbox, default_reply

HELLO = [{"role": "user", "content": "Hello"}]
REPLY = "".join(default_reply({"input": "Hello", "model": "gpt-4o-mini"}))


def client_for(sandbox: Sandbox, **options: Any) -> Client:
    return Client(api_endpoint=sandbox.api_endpoint, max_retries=0, **options)


def async_client_for(sandbox: Sandbox, **options: Any) -> AsyncClient:
    return AsyncClient(api_endpoint=sandbox.api_endpoint, max_retries=0, **options)


def text_of_chunks(chunks: list[ChatCompletionChunk]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_exported_from_the_package() -> None:
    assert {"Client", "AsyncClient"} <= set(koala_chat.__all__)
    assert koala_chat.Client is Client


# --- sync -----------------------------------------------------------------------


def test_sync_completion(sandbox: Sandbox) -> None:
    completion = client_for(sandbox).chat.completions.create(
        model="gpt-4o-mini", messages=HELLO
    )
    assert isinstance(completion, ChatCompletion)
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == "gpt-4o-mini"
    (choice,) = completion.choices
    assert choice.message.content == REPLY
    assert choice.message.role == "assistant"
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == estimate_tokens("Hello") == 2
    assert completion.usage.completion_tokens == -(-len(REPLY) // 4)
    assert completion.usage.total_tokens == 2 + completion.usage.completion_tokens


def test_sync_stream(sandbox: Sandbox) -> None:
    client = client_for(sandbox)
    with client.chat.completions.create(model="", messages=HELLO, stream=True) as s:
        chunks = list(s)
    first, *middle, last = chunks
    assert first.choices[0].delta.role == "assistant"
    assert first.choices[0].delta.content == ""
    assert text_of_chunks(middle) == REPLY
    assert all(c.choices[0].finish_reason is None for c in middle)
    assert last.choices[0].finish_reason == "stop"
    assert last.choices[0].delta.content is None
    assert {c.id for c in chunks} == {first.id}
    assert {c.model for c in chunks} == {"gpt-4o-mini"}


def test_sync_stream_closed_early_closes_the_upstream(sandbox: Sandbox) -> None:
    sandbox.push(Reply(values=["one ", "two ", "never"], stall_at=2))
    stream = client_for(sandbox).chat.completions.create(
        model="", messages=HELLO, stream=True
    )
    assert next(stream).choices[0].delta.role == "assistant"
    assert next(stream).choices[0].delta.content == "one "
    assert sandbox.wait_stalled(5.0)
    stream.close()
    assert sandbox.wait_disconnect(1.0)
    stream.close()  # harmless twice


def test_sync_errors_raise_at_create(sandbox: Sandbox) -> None:
    sandbox.push(Reply(status=429, headers={"Retry-After": "3"}, body=b"quota"))
    client = client_for(sandbox)
    with pytest.raises(RateLimitError) as caught:
        client.chat.completions.create(model="", messages=HELLO, stream=True)
    assert caught.value.retry_after == 3


def test_closed_client_fails_plainly(sandbox: Sandbox) -> None:
    with client_for(sandbox) as client:
        pass
    with pytest.raises(UsageError, match="closed"):
        client.chat.completions.create(model="", messages=HELLO)


# --- async ----------------------------------------------------------------------


async def test_async_completion(sandbox: Sandbox) -> None:
    async with async_client_for(sandbox) as client:
        completion = await client.chat.completions.create(
            model="gpt-4.1", messages=HELLO
        )
    assert completion.model == "gpt-4.1"
    assert completion.choices[0].message.content == REPLY.replace(
        "gpt-4o-mini", "gpt-4.1"
    )


async def test_async_stream_is_awaited_then_iterated(sandbox: Sandbox) -> None:
    client = async_client_for(sandbox)
    stream = await client.chat.completions.create(
        model="", messages=HELLO, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    *content, finish, usage = chunks
    assert text_of_chunks(content) == REPLY
    assert finish.choices[0].finish_reason == "stop"
    assert usage.choices == []
    assert usage.usage is not None
    assert usage.usage.completion_tokens == -(-len(REPLY) // 4)


async def test_async_stream_break_closes_the_upstream(sandbox: Sandbox) -> None:
    sandbox.push(Reply(values=["one ", "never"], stall_at=1))
    client = async_client_for(sandbox)
    async with await client.chat.completions.create(
        model="", messages=HELLO, stream=True
    ) as stream:
        async for chunk in stream:
            if chunk.choices[0].delta.content == "one ":
                break
    assert await sandbox.wait_disconnect_async(1.0)


async def test_async_errors_raise_when_awaited(sandbox: Sandbox) -> None:
    sandbox.push(Reply(status=429, body=b"quota"))
    client = async_client_for(sandbox)
    with pytest.raises(RateLimitError):
        await client.chat.completions.create(model="", messages=HELLO, stream=True)


# --- options ----------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
async def test_stop_sequences_are_cut_on_our_side(
    sandbox: Sandbox, stream: bool
) -> None:
    sandbox.push(Reply(values=["Hello wo", "rld, and ", "more"]))
    client = async_client_for(sandbox)
    result = await client.chat.completions.create(
        model="", messages=HELLO, stream=stream, stop=["ld,", "zzz"]
    )
    if isinstance(result, ChatCompletion):
        text, reason = (
            result.choices[0].message.content,
            result.choices[0].finish_reason,
        )
    else:
        chunks = [chunk async for chunk in result]
        text, reason = text_of_chunks(chunks), chunks[-1].choices[0].finish_reason
    assert text == "Hello wor"
    assert reason == "stop"


def test_max_tokens_cuts_at_the_estimate(sandbox: Sandbox) -> None:
    completion = client_for(sandbox).chat.completions.create(
        model="", messages=HELLO, max_tokens=2
    )
    assert completion.choices[0].message.content == REPLY[:8]
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 2


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"n": 2}, "n: not supported"),
        ({"tools": [{"type": "function"}]}, "tools[0].function: must be an object"),
        ({"tool_choice": "required"}, "tool_choice: asks for a tool call"),
        ({"response_format": {"type": "yaml"}}, "response_format.type: must be"),
        ({"logprobs": True}, "logprobs: not supported"),
        ({"top_logprobs": 3}, "top_logprobs: not supported"),
        ({"modalities": ["text", "audio"]}, "modalities: not supported"),
        ({"audio": {"voice": "alloy"}}, "audio: not supported"),
        ({"temperature": 3}, "temperature: must be a number from 0 to 2"),
        ({"temperature": True}, "temperature: must be a number"),
        ({"seed": 1.5}, "seed: must be a whole number"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop: at most 4"),
        ({"stop": 7}, "stop: must be a string or a list"),
        ({"max_tokens": 0}, "max_tokens: must be a whole number >= 1"),
        ({"stream_options": {"include_obfuscation": True}}, "stream_options."),
        ({"frobnicate": 1}, "frobnicate: unknown parameter"),
        ({"extra_headers": {"X-A": "1"}}, "extra_headers: not supported"),
    ],
)
def test_options_koala_cannot_honour_are_refused(
    sandbox: Sandbox, params: dict[str, Any], words: str
) -> None:
    client = client_for(sandbox)
    with pytest.raises(UsageError, match=re.escape(words)):
        client.chat.completions.create(model="", messages=HELLO, **params)
    assert sandbox.requests == []


def test_ignored_options_are_accepted(sandbox: Sandbox) -> None:
    client = client_for(sandbox)
    completion = client.chat.completions.create(
        model="",
        messages=HELLO,
        temperature=0.7,
        top_p=0.5,
        presence_penalty=1,
        frequency_penalty=-1,
        seed=3,
        user="me",
        n=1,
        tool_choice="none",
        response_format={"type": "text"},
        logprobs=False,
        extra_body={"metadata": {"k": "v"}},
    )
    assert completion.choices[0].message.content == REPLY
    assert {"temperature", "top_p", "seed", "user"} <= IGNORED


@pytest.mark.parametrize("params", [{"max_tokens": 2.0}, {"seed": 3.0, "n": 1.0}])
def test_whole_numbers_written_with_a_point_are_accepted(
    sandbox: Sandbox, params: dict[str, Any]
) -> None:
    # JSON (and so JSON Schema, which /openapi.json uses) has one number type:
    # 2.0 is the whole number 2. Found by schemathesis (tests/test_openapi.py).
    completion = client_for(sandbox).chat.completions.create(
        model="", messages=HELLO, **params
    )
    expected = REPLY[:8] if "max_tokens" in params else REPLY
    assert completion.choices[0].message.content == expected


def test_developer_messages_are_system_messages(sandbox: Sandbox) -> None:
    messages = [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]
    client_for(sandbox).chat.completions.create(model="", messages=messages)
    assert sandbox.requests[0].json["input"] == "Hi Be brief."


def test_provider_options_pass_through(sandbox: Sandbox) -> None:
    # max_retries=1 retries the 429 (Retry-After 0) and then succeeds.
    sandbox.push(Reply(status=429, headers={"Retry-After": "0"}, body=b"wait"))
    client = Client(
        api_endpoint=sandbox.api_endpoint,
        max_retries=1,
        timeout=30,
        protocol="history",
    )
    completion = client.chat.completions.create(model="", messages=HELLO)
    assert completion.choices[0].message.content == REPLY
    assert len(sandbox.requests) == 2


def test_models(sandbox: Sandbox) -> None:
    client = client_for(sandbox)
    assert [model.id for model in client.models.list()] == list(koala_chat.Koala.models)
    assert client.models.retrieve("gpt-4.1").model_dump() == {
        "id": "gpt-4.1",
        "created": 0,
        "owned_by": "koala",
        "object": "model",
    }
    with pytest.raises(ModelNotFoundError):
        client.models.retrieve("gpt-9")


def test_model_dump_has_the_openai_shape(sandbox: Sandbox) -> None:
    completion = client_for(sandbox).chat.completions.create(model="", messages=HELLO)
    dumped = completion.model_dump()
    assert dumped == completion.to_dict()
    assert set(dumped) == {
        "id",
        "object",
        "created",
        "model",
        "choices",
        "usage",
        "system_fingerprint",
    }
    assert dumped["choices"][0]["message"]["content"] == REPLY
    assert dumped["usage"]["total_tokens"] == completion.usage.total_tokens  # type: ignore[union-attr]
    assert '"object":"chat.completion"' in completion.model_dump_json()
