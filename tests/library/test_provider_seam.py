"""The provider seam holds: a provider of the test's own, over `HTTPProvider`.

`WholeAnswer` says only what differs from Koala: its request and how its reply
reads. It is modelled on docs/protocol.md, "The official API": the history
fields plus `realTimeData`, a key header of its own instead of browser headers,
and one JSON object `{"output": ...}` instead of an event stream. (The sandbox
checks the history dialect's fields and ignores the others, so this body can be
served by it.) The client, `koala serve`, the `koala` command and
`open_attempt` drive it unchanged.
"""

from __future__ import annotations

import io
import json
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from typing import Any

import msgspec
import openai
import pytest
from aiohttp import ClientResponse

from koala_chat import AsyncClient, Client, RateLimitError
from koala_chat._cli import main
from koala_chat.messages import JSONValue, Messages, NormalizedMessage
from koala_chat.providers import HTTPProvider, HTTPRequest, RequestOptions
from koala_chat.sandbox import RecordedRequest, Reply, Sandbox
from server_fixtures import ServerThread

KEY = "test-key-not-secret"
ANSWER = "Koalas sleep up to twenty hours a day."
CONVERSATION: Messages = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "How long do koalas sleep?"},
]
WIRE_BODY = {
    "input": "How long do koalas sleep?",
    "inputHistory": ["Hi"],
    "outputHistory": ["Hello!"],
    "model": "whole-1",
    "realTimeData": False,
}


class WholeAnswer(HTTPProvider):
    """The test's provider: another body, another header, a one-object reply."""

    api_endpoint = "http://127.0.0.1:9/api/gpt/"  # the tests name the sandbox's
    default_model = "whole-1"
    models = ("whole-1", "whole-2")

    @classmethod
    def build_request(
        cls, model: str, messages: list[NormalizedMessage], options: RequestOptions
    ) -> HTTPRequest:
        body = {
            "input": messages[-1]["content"],
            "inputHistory": [
                m["content"] for m in messages[:-1] if m["role"] == "user"
            ],
            "outputHistory": [
                m["content"] for m in messages if m["role"] == "assistant"
            ],
            "model": model,
            "realTimeData": False,
        }
        return HTTPRequest(
            url=cls.resolve_endpoint(options.api_endpoint),
            body=msgspec.json.encode(body),
            headers={
                "Content-Type": "application/json",
                "Accept": "application/json",
                # A header of its own: a Bearer key would make the sandbox take
                # the request for the api dialect (docs/protocol.md).
                "X-Whole-Key": options.extra.get("api_key", ""),
            },
        )

    @classmethod
    async def read_reply(
        cls, response: ClientResponse, options: RequestOptions
    ) -> AsyncGenerator[list[JSONValue], None]:
        if response.content_type != "application/json":
            # Not the documented reply: read it as the base does.
            async with aclosing(super().read_reply(response, options)) as batches:
                async for batch in batches:
                    yield batch
            return
        reply = msgspec.json.decode(await response.read())
        yield [reply["output"]]


def whole_reply(text: str = ANSWER, **changes: Any) -> Reply:
    body = msgspec.json.encode({"output": text})
    return Reply(body=body, content_type="application/json", **changes)


def assert_sent_by_whole_answer(request: RecordedRequest, model: str) -> None:
    assert (request.method, request.path) == ("POST", "/api/gpt/")
    assert request.json == {**WIRE_BODY, "model": model}
    assert request.headers["X-Whole-Key"] == KEY
    assert request.headers["Accept"] == "application/json"
    assert "Visitor-ID" not in request.headers  # none of Koala's headers


@pytest.mark.usefixtures("no_leaks")
async def test_open_attempt_shows_the_response_beside_the_values(
    sandbox: Sandbox,
) -> None:
    sandbox.push(whole_reply(headers={"x-request-id": "req-1"}))
    async with WholeAnswer.open_attempt(
        "", CONVERSATION, api_endpoint=sandbox.api_endpoint, api_key=KEY
    ) as attempt:
        assert attempt.response.status == 200
        assert attempt.response.headers["x-request-id"] == "req-1"
        assert attempt.response.content_type == "application/json"
        values = [value async for value in attempt.values()]
    assert values == [ANSWER]
    (request,) = sandbox.requests
    assert_sent_by_whole_answer(request, "whole-1")


@pytest.mark.usefixtures("no_leaks")
async def test_open_attempt_translates_a_status_and_does_not_retry(
    sandbox: Sandbox,
) -> None:
    sandbox.push(Reply(status=429, body=b"quota", headers={"Retry-After": "1"}))
    async with WholeAnswer.open_attempt(
        "", CONVERSATION, api_endpoint=sandbox.api_endpoint, max_retries=5
    ) as attempt:
        assert attempt.response.status == 429
        with pytest.raises(RateLimitError) as caught:
            await anext(attempt.values())
    assert caught.value.retry_after == 1.0
    assert len(sandbox.requests) == 1


@pytest.mark.usefixtures("no_leaks")
async def test_leaving_an_attempt_early_closes_everything(sandbox: Sandbox) -> None:
    sandbox.push(Reply(values=["one", "two"], stall_at=1))
    try:
        async with WholeAnswer.open_attempt(
            "", CONVERSATION, api_endpoint=sandbox.api_endpoint
        ) as attempt:
            values = attempt.values()
            assert await anext(values) == "one"
            await values.aclose()
    finally:
        sandbox.release()
    assert attempt.response.closed


@pytest.mark.usefixtures("no_leaks")
async def test_the_base_retries_for_the_subclass(sandbox: Sandbox) -> None:
    sandbox.push(Reply(status=503, body=b"busy"), whole_reply())
    text = await WholeAnswer.create_async(
        "whole-2",
        CONVERSATION,
        api_endpoint=sandbox.api_endpoint,
        api_key=KEY,
        retry_backoff=0.01,
    )
    assert text == ANSWER
    assert len(sandbox.requests) == 2
    assert_sent_by_whole_answer(sandbox.requests[1], "whole-2")


@pytest.mark.usefixtures("no_leaks")
async def test_the_reader_decides_by_content_type(sandbox: Sandbox) -> None:
    sandbox.push(Reply(values=["an event", {"text": " stream"}]))
    values = [
        value
        async for value in WholeAnswer.create_async_generator(
            "", CONVERSATION, api_endpoint=sandbox.api_endpoint
        )
    ]
    assert values == ["an event", {"text": " stream"}]


def test_through_the_sync_client(sandbox: Sandbox) -> None:
    sandbox.push(whole_reply())
    with Client(
        WholeAnswer, api_endpoint=sandbox.api_endpoint, max_retries=0, api_key=KEY
    ) as client:
        assert [model.id for model in client.models.list()] == ["whole-1", "whole-2"]
        completion = client.chat.completions.create(
            model="whole-2", messages=CONVERSATION
        )
    assert completion.choices[0].message.content == ANSWER
    assert_sent_by_whole_answer(sandbox.requests[0], "whole-2")


async def test_through_the_async_client_streaming(sandbox: Sandbox) -> None:
    sandbox.push(whole_reply())
    async with AsyncClient(
        WholeAnswer, api_endpoint=sandbox.api_endpoint, max_retries=0, api_key=KEY
    ) as client:
        stream = await client.chat.completions.create(
            model="whole-1", messages=CONVERSATION, stream=True
        )
        pieces = [
            chunk.choices[0].delta.content
            async for chunk in stream
            if chunk.choices and chunk.choices[0].delta.content
        ]
    assert "".join(pieces) == ANSWER
    assert_sent_by_whole_answer(sandbox.requests[0], "whole-1")


def test_through_koala_serve_and_the_openai_sdk(
    sandbox: Sandbox, start_server: Callable[..., ServerThread]
) -> None:
    server = start_server(WholeAnswer, provider_options={"api_key": KEY})
    sandbox.push(whole_reply(), whole_reply())
    with openai.OpenAI(
        base_url=server.base_url, api_key="anything", max_retries=0
    ) as sdk:
        assert [model.id for model in sdk.models.list()] == ["whole-1", "whole-2"]
        messages: Any = CONVERSATION
        completion = sdk.chat.completions.create(model="whole-2", messages=messages)
        with sdk.chat.completions.create(
            model="whole-1", messages=messages, stream=True
        ) as stream:
            streamed = "".join(
                chunk.choices[0].delta.content or ""
                for chunk in stream
                if chunk.choices
            )
    assert completion.choices[0].message.content == ANSWER
    assert streamed == ANSWER
    first, second = sandbox.requests
    assert_sent_by_whole_answer(first, "whole-2")
    assert_sent_by_whole_answer(second, "whole-1")


def test_through_the_command_line(
    sandbox: Sandbox,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO())  # piped, and empty
    sandbox.push(whole_reply(), whole_reply())
    endpoint = ["--endpoint", sandbox.api_endpoint, "--retries", "0"]

    assert main(["models"], provider=WholeAnswer) == 0
    assert capsys.readouterr().out.split() == ["whole-1", "(default)", "whole-2"]

    question = "How long do koalas sleep?"
    assert (
        main(["chat", *endpoint, "-m", "whole-2", question], provider=WholeAnswer) == 0
    )
    assert capsys.readouterr().out == ANSWER + "\n"

    assert main(["check", *endpoint, "--json"], provider=WholeAnswer) == 0
    checked = json.loads(capsys.readouterr().out)
    assert (checked["works"], checked["status"], checked["pieces"]) == (True, 200, 1)
    assert checked["model"] == "whole-1"

    chatted, probed = sandbox.requests
    assert chatted.json is not None
    assert probed.json is not None
    assert (chatted.json["model"], chatted.json["input"]) == ("whole-2", question)
    assert probed.json["model"] == "whole-1"
    assert "Visitor-ID" not in chatted.headers
