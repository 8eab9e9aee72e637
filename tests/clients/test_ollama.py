"""The `ollama` Python client pointed at `koala serve`, the sandbox upstream.

The Ollama API is one adapter on the inside model (server/formats/ollama.py):
NDJSON streams by default, one object with `"stream": false`, errors as
`{"error": "..."}`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import msgspec
import ollama
import pytest

from koala_chat import Koala
from koala_chat.sandbox import Reply, Sandbox, default_reply
from koala_chat.server.formats.ollama import OLLAMA_VERSION
from server_fixtures import ServerThread

HELLO = [{"role": "user", "content": "Hello"}]
REPLY = "".join(default_reply({"input": "Hello", "model": "gpt-4o-mini"}))
KEY = "ollama-test-key-not-secret"


@pytest.fixture
def client(koala_server: ServerThread) -> Iterator[ollama.Client]:
    with ollama.Client(host=koala_server.url, timeout=10) as client:
        yield client


def test_chat_streams_by_default(client: ollama.Client) -> None:
    parts = list(client.chat(model="gpt-4o-mini", messages=HELLO, stream=True))
    assert "".join(part.message.content or "" for part in parts) == REPLY
    assert [part.done for part in parts] == [False] * (len(parts) - 1) + [True]
    last = parts[-1]
    assert last.done_reason == "stop"
    assert last.message.content == ""
    assert last.eval_count == -(-len(REPLY) // 4)
    assert last.prompt_eval_count is not None
    assert last.prompt_eval_count > 0
    assert last.total_duration is not None
    assert last.total_duration > 0
    assert all(part.model == "gpt-4o-mini" for part in parts)


def test_chat_whole(client: ollama.Client) -> None:
    answer = client.chat(model="gpt-4o-mini", messages=HELLO)
    assert answer.message.role == "assistant"
    assert answer.message.content == REPLY
    assert answer.done is True
    assert answer.done_reason == "stop"
    assert answer.created_at is not None
    assert answer.created_at.endswith("Z")


def test_the_latest_tag_names_the_model_itself(
    client: ollama.Client, sandbox: Sandbox
) -> None:
    answer = client.chat(model="gpt-4o-mini:latest", messages=HELLO)
    assert answer.model == "gpt-4o-mini"
    assert sandbox.requests[-1].json["model"] == "gpt-4o-mini"


def test_num_predict_and_stop(client: ollama.Client) -> None:
    short = client.chat(model="gpt-4o-mini", messages=HELLO, options={"num_predict": 1})
    assert short.message.content == REPLY[:4]
    assert short.done_reason == "length"
    cut = client.chat(
        model="gpt-4o-mini", messages=HELLO, options={"stop": ["History"]}
    )
    assert cut.message.content == REPLY.split("History")[0]


def test_generate(client: ollama.Client, sandbox: Sandbox) -> None:
    parts = list(client.generate(model="gpt-4o-mini", prompt="Hello", stream=True))
    assert "".join(part.response for part in parts) == REPLY
    assert parts[-1].done
    assert parts[-1].done_reason == "stop"
    whole = client.generate(model="gpt-4o-mini", prompt="Hello", system="Be brief")
    assert whole.done
    assert "Be brief" in sandbox.requests[-1].json["input"]


def test_list_show_version(client: ollama.Client, koala_server: ServerThread) -> None:
    listed = client.list()
    assert [model.model for model in listed.models] == list(Koala.models)
    shown = client.show("gpt-4o-mini")
    assert shown.capabilities is not None
    assert "completion" in shown.capabilities
    with pytest.raises(ollama.ResponseError) as refused:
        client.show("no-such-model")
    assert refused.value.status_code == 404
    assert "no-such-model" in refused.value.error


async def test_version_and_unknown_routes(
    http: aiohttp.ClientSession, koala_server: ServerThread
) -> None:
    async with http.get(f"{koala_server.url}/api/version") as response:
        assert (await response.json())["version"] == OLLAMA_VERSION
    async with http.post(
        f"{koala_server.url}/api/pull", json={"model": "gpt-4o-mini"}
    ) as response:
        assert response.status == 404
        assert set(await response.json()) == {"error"}


def test_json_format_is_emulated(client: ollama.Client, sandbox: Sandbox) -> None:
    sandbox.push(Reply(values=['{"city": "Oslo"}']))
    answer = client.chat(model="gpt-4o-mini", messages=HELLO, format="json")
    assert json.loads(answer.message.content or "") == {"city": "Oslo"}


def test_tools_round_trip(client: ollama.Client, sandbox: Sandbox) -> None:
    call = '{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}}]}'
    sandbox.push(Reply(values=[call]))
    weather = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
    answer = client.chat(model="gpt-4o-mini", messages=HELLO, tools=[weather])
    calls = answer.message.tool_calls or []
    assert [(c.function.name, dict(c.function.arguments)) for c in calls] == [
        ("get_weather", {"city": "Oslo"})
    ]
    history: list[Any] = [
        *HELLO,
        answer.message,
        {"role": "tool", "content": "12 C", "tool_name": "get_weather"},
    ]
    client.chat(model="gpt-4o-mini", messages=history, tools=[weather])
    sent = sandbox.requests[-1].json
    assert "The tool call call_get_weather (get_weather) returned:\n12 C" in (
        msgspec.json.encode(sent).decode().replace("\\n", "\n")
    )


def test_streamed_tool_calls(client: ollama.Client, sandbox: Sandbox) -> None:
    call = '{"tool_calls": [{"name": "now", "arguments": {}}]}'
    sandbox.push(Reply(values=[call]))
    now = {"type": "function", "function": {"name": "now", "parameters": {}}}
    parts = list(
        client.chat(model="gpt-4o-mini", messages=HELLO, tools=[now], stream=True)
    )
    assert [c.function.name for c in parts[0].message.tool_calls or []] == ["now"]
    assert parts[-1].done


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"model": "gpt-4o-mini"}, "messages: required"),
        ({"messages": HELLO}, "model: required"),
        (
            {
                "model": "m",
                "messages": [{"role": "user", "content": "Hi", "images": ["x"]}],
            },
            "messages[0].images: Koala takes text only",
        ),
        (
            {"model": "m", "messages": HELLO, "options": {"num_predict": "9"}},
            "num_predict",
        ),
        ({"model": "m", "messages": HELLO, "format": 3}, "format:"),
        ({"model": "m", "messages": HELLO, "stream": "yes"}, "stream:"),
    ],
)
def test_bad_requests_are_400_in_ollamas_shape(
    client: ollama.Client, body: dict[str, Any], words: str
) -> None:
    with pytest.raises(ollama.ResponseError) as refused:
        client._request_raw("POST", "/api/chat", json=body)
    assert refused.value.status_code == 400
    assert words in refused.value.error


def test_generate_refuses_an_empty_prompt(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError, match="prompt: required"):
        client.generate(model="gpt-4o-mini", prompt="")


def test_a_failure_mid_stream_is_an_error_line(
    client: ollama.Client, sandbox: Sandbox
) -> None:
    sandbox.push(Reply(values=["Hello", " there"], cut_at=15))
    with pytest.raises(ollama.ResponseError) as broken:
        for _ in client.chat(model="gpt-4o-mini", messages=HELLO, stream=True):
            pass
    assert broken.value.error


def test_the_key_guards_the_ollama_routes(
    start_server: Callable[..., ServerThread],
) -> None:
    server = start_server(api_key=KEY)
    with (
        ollama.Client(host=server.url, timeout=10) as anonymous,
        pytest.raises(ollama.ResponseError) as refused,
    ):
        anonymous.list()
    assert refused.value.status_code == 401
    assert "API key" in refused.value.error
    keyed = {"Authorization": f"Bearer {KEY}"}
    with ollama.Client(host=server.url, timeout=10, headers=keyed) as client:
        answer = client.chat(model="gpt-4o-mini", messages=HELLO)
    assert answer.message.content == REPLY


def test_strict_refuses_what_lenient_ignores(
    start_server: Callable[..., ServerThread],
) -> None:
    body = {
        "model": "gpt-4o-mini",
        "messages": HELLO,
        "stream": False,
        "keep_alive": "5m",
    }
    with ollama.Client(host=start_server().url, timeout=10) as lenient:
        assert lenient._request_raw("POST", "/api/chat", json=body).json()["done"]
    with (
        ollama.Client(host=start_server(strict=True).url, timeout=10) as strict,
        pytest.raises(ollama.ResponseError, match="keep_alive: unknown parameter"),
    ):
        strict._request_raw("POST", "/api/chat", json=body)
