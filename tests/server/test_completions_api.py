"""OpenAI legacy completions of `koala serve`, driven by the official SDK."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import aiohttp
import openai
import pytest
from hypothesis import given
from hypothesis import strategies as st

from koala_chat._contract.replies import Reply as ChatReply
from koala_chat.sandbox import Reply, Sandbox, default_reply
from koala_chat.server.formats.completions import FORMAT, TextChoice, TextCompletion
from koala_chat.server.formats.framing import event
from server_fixtures import ServerThread

REPLY = "".join(default_reply({"input": "Hello", "model": "gpt-4o-mini"}))
KEY = "completions-test-key"


def test_create_answers_with_a_text_completion(
    sdk: openai.OpenAI, sandbox: Sandbox
) -> None:
    completion = sdk.completions.create(model="gpt-4o-mini", prompt="Hello")
    assert completion.object == "text_completion"
    assert completion.id.startswith("cmpl-")
    assert completion.model == "gpt-4o-mini"
    (choice,) = completion.choices
    assert (choice.text, choice.index, choice.finish_reason) == (REPLY, 0, "stop")
    assert completion.usage is not None
    assert completion.usage.completion_tokens == -(-len(REPLY) // 4)
    assert sandbox.requests[-1].json["input"] == "Hello"


def test_a_list_of_one_prompt_is_the_prompt(sdk: openai.OpenAI) -> None:
    completion = sdk.completions.create(model="", prompt=["Hello"])
    assert completion.choices[0].text == REPLY


def test_stop_and_max_tokens_cut_the_text(sdk: openai.OpenAI) -> None:
    stopped = sdk.completions.create(model="", prompt="Hello", stop=["History"])
    assert stopped.choices[0].text == REPLY.split("History")[0]
    short = sdk.completions.create(model="", prompt="Hello", max_tokens=2)
    assert (short.choices[0].text, short.choices[0].finish_reason) == (
        REPLY[:8],
        "length",
    )


def test_stream_gives_text_chunks_and_the_usage(sdk: openai.OpenAI) -> None:
    with sdk.completions.create(
        model="gpt-4o-mini",
        prompt="Hello",
        stream=True,
        stream_options={"include_usage": True},
    ) as stream:
        chunks = list(stream)
    assert {chunk.object for chunk in chunks} == {"text_completion"}
    assert "".join(c.choices[0].text for c in chunks if c.choices) == REPLY
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == -(-len(REPLY) // 4)


async def test_stream_bytes_are_data_lines_ending_with_done(
    koala_server: ServerThread, http: aiohttp.ClientSession
) -> None:
    body = {"model": "", "prompt": "Hello", "stream": True}
    async with http.post(koala_server.base_url + "/completions", json=body) as r:
        assert r.content_type == "text/event-stream"
        raw = await r.read()
    assert raw.endswith(b"\n\ndata: [DONE]\n\n")
    events = raw.decode().split("\n\n")[:-2]
    assert all(event.startswith("data: {") for event in events)
    chunks = [json.loads(event.removeprefix("data: ")) for event in events]
    assert len({chunk["id"] for chunk in chunks}) == 1
    assert [c["choices"][0]["finish_reason"] for c in chunks][-2:] == [None, "stop"]
    assert "".join(c["choices"][0]["text"] for c in chunks) == REPLY
    assert all("usage" not in chunk for chunk in chunks)


async def test_failure_mid_stream_raises_in_the_sdk(
    koala_server: ServerThread, sandbox: Sandbox
) -> None:
    sandbox.push(Reply(body=b'data: "Hel"\n\ndata: "lo"\n\ndata: {broken\n\n'))
    pieces: list[str] = []

    async def read(client: openai.AsyncOpenAI) -> None:
        stream = await client.completions.create(model="", prompt="Hi", stream=True)
        async with stream:
            async for chunk in stream:
                pieces.append(chunk.choices[0].text)

    async with openai.AsyncOpenAI(
        base_url=koala_server.base_url, api_key="k", max_retries=0
    ) as client:
        with pytest.raises(openai.APIError, match="not JSON"):
            await read(client)
    assert "".join(pieces) == "Hello"


def test_wrong_key_is_the_sdks_authentication_error(
    start_server: Callable[..., ServerThread],
) -> None:
    server = start_server(api_key=KEY)
    with (
        openai.OpenAI(base_url=server.base_url, api_key="wrong", max_retries=0) as c,
        pytest.raises(openai.AuthenticationError),
    ):
        c.completions.create(model="", prompt="Hello")
    with openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0) as c:
        assert c.completions.create(model="", prompt="Hello").choices[0].text == REPLY


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"prompt": ["a", "b"]}, "prompt: must be a string or a list of one string"),
        ({"prompt": [1, 2, 3]}, "prompt: must be a string or a list of one string"),
        ({"n": 2}, "n: not supported"),
        ({"echo": True}, "echo: not supported"),
        ({"suffix": "}"}, "suffix: not supported"),
        ({"logprobs": 2}, "logprobs: not supported"),
        ({"max_tokens": 0}, "max_tokens: must be a whole number"),
    ],
)
def test_bad_input_is_the_sdks_bad_request_error_naming_the_parameter(
    sdk: openai.OpenAI, params: dict[str, Any], words: str
) -> None:
    body = {"model": "gpt-4o-mini", "prompt": "Hello", **params}
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.completions.create(**body)
    assert words in caught.value.message


async def test_missing_prompt_and_strict_unknown_names_are_refused(
    start_server: Callable[..., ServerThread], http: aiohttp.ClientSession
) -> None:
    lenient = start_server()
    url = lenient.base_url + "/completions"
    async with http.post(url, json={"model": ""}) as response:
        assert response.status == 400
        error = (await response.json())["error"]
    assert error["message"].startswith("prompt: missing")
    body = {"model": "", "prompt": "Hello", "best_of": 1, "frobnicate": True}
    async with http.post(url, json=body) as response:
        assert response.status == 200
        assert response.headers["X-Koala-Ignored-Params"] == "frobnicate"
    strict = start_server(strict=True)
    async with http.post(strict.base_url + "/completions", json=body) as response:
        assert response.status == 400
        error = (await response.json())["error"]
    assert error["message"] == "frobnicate: unknown parameter"


async def test_replies_validate_as_the_sdks_own_types(
    koala_server: ServerThread, http: aiohttp.ClientSession
) -> None:
    """Strictly, field by field: the SDK itself reads its replies unchecked."""
    url = koala_server.base_url + "/completions"
    body = {"model": "", "prompt": "Hello"}
    async with http.post(url, json=body) as response:
        whole = openai.types.Completion.model_validate_json(await response.read())
    assert whole.choices[0].text == REPLY
    usage = {"stream": True, "stream_options": {"include_usage": True}}
    async with http.post(url, json={**body, **usage}) as response:
        raw = await response.read()
    # The chunks before the last carry `finish_reason: null`, as the API's do,
    # which the SDK's type of a whole completion does not allow.
    events = raw.decode().split("\n\n")[-4:-2]
    finish, usage_chunk = (
        openai.types.Completion.model_validate_json(e.removeprefix("data: "))
        for e in events
    )
    assert finish.choices[0].finish_reason == "stop"
    assert usage_chunk.usage is not None


@given(model=st.text(), text=st.text())
def test_a_text_event_is_the_encoding_of_its_struct(model: str, text: str) -> None:
    # The encoder cuts a text event's bytes around the text once per stream;
    # this proves them the struct's encoding, whatever the strings.
    inbound = FORMAT.parse({"model": model, "prompt": "Hi"}, strict=False)
    reply = ChatReply(inbound.request, model)
    expected = TextCompletion(
        id="cmpl-" + reply.id.removeprefix("chatcmpl-"),
        created=reply.created,
        model=model,
        choices=[TextChoice(text=text)],
    )
    assert FORMAT.encoder(inbound, reply).text(text) == event(expected)
    assert event(expected).startswith(
        b'data: {"id":"cmpl-%s","object":"text_completion","created":%d,'
        % (reply.id.removeprefix("chatcmpl-").encode(), reply.created)
    )
