"""The Anthropic Messages API of `koala serve`, driven by the official `anthropic` SDK.

The SDK's own helpers (`messages.stream` and its `get_final_text`, the
exception classes it picks from a status) read what the server sends, and
byte-level checks pin the event sequence that Claude Code reads. The sandbox
is the upstream, scripted per test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from koala_chat import UsageError
from koala_chat._contract.usage import estimate_tokens
from koala_chat.sandbox import Reply, Sandbox, default_reply
from koala_chat.server.conversation import IGNORED_HEADER
from koala_chat.server.formats.messages_request import parse_messages
from server_fixtures import AccessLog, ServerThread

HELLO: list[Any] = [{"role": "user", "content": "Hello"}]
REPLY = "".join(default_reply({"input": "Hello", "model": "gpt-4o-mini"}))
KEY = "messages-test-key"
WEATHER: Any = {
    "name": "get_weather",
    "description": "The weather in a city now.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
CALL = '{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}}]}'
StartServer = Callable[..., ServerThread]


@pytest.fixture
def client(koala_server: ServerThread) -> Iterator[anthropic.Anthropic]:
    """The official client, pointed at `koala_server` (no retries)."""
    with anthropic.Anthropic(
        base_url=koala_server.url, api_key="anything", max_retries=0
    ) as sdk:
        yield sdk


def named_events(body: bytes) -> list[tuple[str, Any]]:
    """Return the (event name, data) of each event of a stream's body.

    Every event must have both lines, and its data's `type` must be its name.
    """
    result = []
    for block in body.decode().split("\n\n"):
        if not block:
            continue
        event, data = block.split("\n")
        assert event.startswith("event: "), block
        assert data.startswith("data: "), block
        name, value = event[len("event: ") :], json.loads(data[len("data: ") :])
        assert value["type"] == name
        result.append((name, value))
    return result


async def post_messages(
    http: aiohttp.ClientSession,
    server: ServerThread,
    body: Any,
    path: str = "/v1/messages",
    **headers: str,
) -> tuple[int, dict[str, str], bytes]:
    """POST a body to a Messages API route; return status, headers and body."""
    async with http.post(
        server.url + path,
        data=msgspec.json.encode(body),
        headers={"Content-Type": "application/json", **headers},
    ) as response:
        return response.status, dict(response.headers), await response.read()


# --- the SDK ------------------------------------------------------------------------


def test_create_gives_a_message(client: anthropic.Anthropic) -> None:
    message = client.messages.create(
        model="gpt-4o-mini", max_tokens=1000, messages=HELLO
    )
    assert message.type == "message"
    assert message.role == "assistant"
    assert message.id.startswith("msg_")
    assert message.model == "gpt-4o-mini"
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == REPLY
    assert message.stop_reason == "end_turn"
    assert message.stop_sequence is None
    assert message.usage.input_tokens == estimate_tokens("Hello")
    assert message.usage.output_tokens == estimate_tokens(REPLY)


def test_stream_helper_gets_the_final_text(client: anthropic.Anthropic) -> None:
    with client.messages.stream(
        model="gpt-4o-mini", max_tokens=1000, messages=HELLO
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(pieces) == REPLY
    assert len(pieces) > 1
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == estimate_tokens(REPLY)
    with client.messages.stream(
        model="gpt-4o-mini", max_tokens=1000, messages=HELLO
    ) as stream:
        assert stream.get_final_text() == REPLY


def test_system_prompt_as_blocks_reaches_the_upstream(
    client: anthropic.Anthropic, sandbox: Sandbox
) -> None:
    client.messages.create(
        model="gpt-4o-mini",
        max_tokens=100,
        system=[
            {"type": "text", "text": "Be brief."},
            {
                "type": "text",
                "text": "Be kind.",
                "cache_control": {"type": "ephemeral"},
            },
        ],
        messages=[{"role": "user", "content": [{"type": "text", "text": "Hello"}]}],
    )
    assert "Be brief.\\n\\nBe kind." in json.dumps(sandbox.requests[-1].json)


def test_a_system_turn_in_the_conversation_is_kept(
    client: anthropic.Anthropic, sandbox: Sandbox
) -> None:
    # As Claude Code sends its environment, after the first user turn.
    message = client.messages.create(
        model="claude-opus-5-5",
        max_tokens=1000,
        messages=[
            {"role": "user", "content": "Hello"},
            {"role": "system", "content": [{"type": "text", "text": "# Env"}]},
        ],
    )
    assert message.stop_reason == "end_turn"
    assert "# Env" in json.dumps(sandbox.requests[-1].json)


def test_stop_sequence_and_max_tokens_end_the_reply(
    client: anthropic.Anthropic,
) -> None:
    stopped = client.messages.create(
        model="gpt-4o-mini", max_tokens=1000, messages=HELLO, stop_sequences=["Hist"]
    )
    assert stopped.content[0].text == REPLY[: REPLY.index("Hist")]
    assert (stopped.stop_reason, stopped.stop_sequence) == ("stop_sequence", "Hist")
    with client.messages.stream(
        model="gpt-4o-mini", max_tokens=2, messages=HELLO
    ) as stream:
        assert stream.get_final_text() == REPLY[:8]
        assert stream.get_final_message().stop_reason == "max_tokens"


def test_count_tokens_is_the_estimate(client: anthropic.Anthropic) -> None:
    counted = client.messages.count_tokens(
        model="claude-sonnet-4-5", system="Be brief.", messages=HELLO
    )
    assert counted.input_tokens == estimate_tokens("Be brief.") + estimate_tokens(
        "Hello"
    )
    with_tools = client.messages.count_tokens(
        model="claude-sonnet-4-5", messages=HELLO, tools=[WEATHER]
    )
    # The instruction that describes the tools is counted too.
    assert with_tools.input_tokens > counted.input_tokens


def test_count_tokens_refuses_bad_input_in_anthropics_shape(
    client: anthropic.Anthropic,
) -> None:
    with pytest.raises(anthropic.BadRequestError, match=r"messages\[0\]\.content"):
        client.messages.count_tokens(
            model="", messages=[{"role": "user", "content": 3}]
        )


def test_json_mode_of_output_config(
    client: anthropic.Anthropic, sandbox: Sandbox
) -> None:
    sandbox.push(Reply(values=['Here: {"city": "Oslo"}']))
    message = client.messages.create(
        model="",
        max_tokens=100,
        messages=HELLO,
        extra_body={
            "output_config": {
                "format": {
                    "type": "json_schema",
                    "schema": {
                        "type": "object",
                        "properties": {"city": {"type": "string"}},
                        "required": ["city"],
                    },
                }
            }
        },
    )
    assert json.loads(message.content[0].text) == {"city": "Oslo"}


def test_a_dialect_not_allowed_is_the_sdks_permission_error(
    client: anthropic.Anthropic, sandbox: Sandbox
) -> None:
    with pytest.raises(anthropic.PermissionDeniedError) as caught:
        client.messages.create(
            model="", max_tokens=10, messages=HELLO, extra_body={"protocol": "api"}
        )
    assert caught.value.body["error"]["type"] == "permission_error"
    assert not sandbox.requests


def test_claude_names_take_the_default_model(
    client: anthropic.Anthropic, sandbox: Sandbox
) -> None:
    message = client.messages.create(
        model="claude-sonnet-4-5-20250929", max_tokens=100, messages=HELLO
    )
    assert message.model == "gpt-4o-mini"
    assert sandbox.requests[-1].json["model"] == "gpt-4o-mini"
    listed = client.messages.create(
        model="claude-4.5-haiku", max_tokens=100, messages=HELLO
    )
    assert listed.model == "claude-4.5-haiku"


def test_tools_round_trip(client: anthropic.Anthropic, sandbox: Sandbox) -> None:
    sandbox.push(Reply(values=[CALL[:20], CALL[20:]]))
    asked = client.messages.create(
        model="gpt-4o-mini",
        max_tokens=1000,
        messages=[{"role": "user", "content": "Weather in Oslo?"}],
        tools=[WEATHER],
    )
    assert asked.stop_reason == "tool_use"
    (call,) = asked.content
    assert call.type == "tool_use"
    assert (call.name, call.input) == ("get_weather", {"city": "Oslo"})
    assert call.id.startswith("toolu_")
    sandbox.push(Reply(values=["It is 12 C in Oslo."]))
    answer = client.messages.create(
        model="gpt-4o-mini",
        max_tokens=1000,
        tools=[WEATHER],
        messages=[
            {"role": "user", "content": "Weather in Oslo?"},
            {"role": "assistant", "content": asked.content},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": call.id, "content": "12 C"}
                ],
            },
        ],
    )
    assert answer.content[0].text == "It is 12 C in Oslo."
    assert answer.stop_reason == "end_turn"
    upstream = json.dumps(sandbox.requests[-1].json)
    assert f"The tool call {call.id} (get_weather) returned:\\n12 C" in upstream
    assert '\\"city\\":\\"Oslo\\"' in upstream  # the call, written as text


def test_streamed_tool_call_is_a_tool_use_block(
    client: anthropic.Anthropic, sandbox: Sandbox
) -> None:
    sandbox.push(Reply(values=[CALL]))
    with client.messages.stream(
        model="gpt-4o-mini",
        max_tokens=1000,
        messages=[{"role": "user", "content": "Weather?"}],
        tools=[WEATHER],
        tool_choice={"type": "tool", "name": "get_weather"},
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    (call,) = final.content
    assert call.type == "tool_use"
    assert call.input == {"city": "Oslo"}
    assert "You must call the tool 'get_weather' now." in json.dumps(
        sandbox.requests[-1].json
    )


def test_wrong_key_is_the_sdks_authentication_error(start_server: StartServer) -> None:
    server = start_server(api_key=KEY)
    with (
        anthropic.Anthropic(
            base_url=server.url, api_key="wrong", max_retries=0
        ) as wrong,
        pytest.raises(anthropic.AuthenticationError) as caught,
    ):
        wrong.messages.create(model="", max_tokens=10, messages=HELLO)
    assert caught.value.status_code == 401
    assert caught.value.body["error"]["type"] == "authentication_error"
    assert KEY not in str(caught.value)
    # Claude Code's ANTHROPIC_AUTH_TOKEN: the key as a Bearer token.
    with anthropic.Anthropic(
        base_url=server.url, auth_token=KEY, max_retries=0
    ) as bearer:
        assert bearer.messages.create(model="", max_tokens=10, messages=HELLO).content


def test_bad_input_is_the_sdks_bad_request_error(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(
            model="gpt-4o-mini",
            max_tokens=10,
            messages=HELLO,
            stop_sequences=["a", "b", "c", "d", "e"],
        )
    assert caught.value.body == {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": "stop_sequences: at most 4 sequences, not 5",
        },
    }
    with pytest.raises(anthropic.BadRequestError, match=r"tools\[0\]\.input_schema"):
        client.messages.create(
            model="gpt-4o-mini",
            max_tokens=10,
            messages=HELLO,
            tools=[{"name": "f", "input_schema": {"type": 3}}],
        )


def test_upstream_rate_limit_is_the_sdks_rate_limit_error(
    client: anthropic.Anthropic, sandbox: Sandbox
) -> None:
    sandbox.push(Reply(status=429, headers={"Retry-After": "30"}, body=b"quota"))
    with pytest.raises(anthropic.RateLimitError) as caught:
        client.messages.create(model="gpt-4o-mini", max_tokens=10, messages=HELLO)
    assert caught.value.response.headers["Retry-After"] == "30"
    assert caught.value.body["error"]["type"] == "rate_limit_error"


def test_failure_mid_stream_raises_in_the_sdk(
    client: anthropic.Anthropic, sandbox: Sandbox
) -> None:
    sandbox.push(Reply(body=b'data: "Hel"\n\ndata: "lo"\n\ndata: {broken\n\n'))
    pieces: list[str] = []
    with (
        pytest.raises(anthropic.APIStatusError, match="not JSON") as caught,
        client.messages.stream(
            model="gpt-4o-mini", max_tokens=100, messages=HELLO
        ) as stream,
    ):
        pieces.extend(stream.text_stream)
    assert "".join(pieces) == "Hello"
    assert caught.value.body["error"]["type"] == "api_error"


# --- the bytes ----------------------------------------------------------------------


async def test_event_sequence_of_a_claude_code_request(
    http: aiohttp.ClientSession, start_server: StartServer
) -> None:
    server = start_server(api_key=KEY)
    status, headers, body = await post_messages(
        http,
        server,
        {
            "model": "claude-sonnet-4-5",
            "max_tokens": 32000,
            "stream": True,
            "messages": HELLO,
            "metadata": {"user_id": "someone"},
            "temperature": 1,
        },
        "/v1/messages?beta=true",
        **{
            "x-api-key": KEY,
            "anthropic-version": "2023-06-01",
            "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14",
        },
    )
    assert status == 200
    assert headers["Content-Type"] == "text/event-stream; charset=utf-8"
    assert headers[IGNORED_HEADER] == "metadata, temperature"
    events = named_events(body)
    names = [name for name, _ in events]
    deltas = len(default_reply({"input": "Hello"}))
    assert names == [
        "message_start",
        "ping",
        "content_block_start",
        *["content_block_delta"] * deltas,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = events[0][1]["message"]
    assert start["content"] == []
    assert start["stop_reason"] is None
    assert start["usage"]["input_tokens"] == estimate_tokens("Hello")
    assert events[2][1]["content_block"] == {"type": "text", "text": ""}
    text = "".join(data["delta"]["text"] for name, data in events[3:-3])
    assert text == REPLY
    assert events[-2][1]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert events[-2][1]["usage"]["output_tokens"] == estimate_tokens(REPLY)
    # The hot path's bytes, exactly.
    assert body.split(b"\n\n")[3] == (
        b"event: content_block_delta\n"
        b'data: {"type":"content_block_delta","index":0,'
        b'"delta":{"type":"text_delta","text":"You "}}'
    )


async def test_streamed_tool_call_events(
    http: aiohttp.ClientSession, koala_server: ServerThread, sandbox: Sandbox
) -> None:
    sandbox.push(Reply(values=[CALL]))
    status, _, body = await post_messages(
        http,
        koala_server,
        {
            "model": "",
            "max_tokens": 100,
            "stream": True,
            "messages": HELLO,
            "tools": [WEATHER],
            "tool_choice": {"type": "any"},
        },
    )
    assert status == 200
    events = named_events(body)
    assert [name for name, _ in events] == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    block = events[2][1]["content_block"]
    assert (block["type"], block["name"], block["input"]) == (
        "tool_use",
        "get_weather",
        {},
    )
    delta = events[3][1]["delta"]
    assert delta["type"] == "input_json_delta"
    assert json.loads(delta["partial_json"]) == {"city": "Oslo"}
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"


async def test_failure_mid_stream_is_an_error_event(
    http: aiohttp.ClientSession, koala_server: ServerThread, sandbox: Sandbox
) -> None:
    sandbox.push(Reply(body=b'data: "Hel"\n\ndata: {broken\n\n'))
    status, _, body = await post_messages(
        http,
        koala_server,
        {"model": "", "max_tokens": 100, "stream": True, "messages": HELLO},
    )
    assert status == 200
    events = named_events(body)
    assert [name for name, _ in events][-2:] == ["content_block_delta", "error"]
    error = events[-1][1]["error"]
    assert error["type"] == "api_error"
    assert "not JSON" in error["message"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"model": "", "messages": HELLO}, "max_tokens: missing"),
        ({"model": "", "max_tokens": 0, "messages": HELLO}, "max_tokens: must be"),
        (
            {"model": "", "max_tokens": 9, "messages": []},
            "messages: must be a non-empty",
        ),
        (
            {
                "model": "",
                "max_tokens": 9,
                "messages": [{"role": "tool", "content": "x"}],
            },
            "messages[0].role: must be 'user', 'assistant' or 'system'",
        ),
        (
            {
                "model": "",
                "max_tokens": 9,
                "messages": [
                    {"role": "user", "content": [{"type": "image", "source": {}}]}
                ],
            },
            "messages[0].content[0].type: a 'image' block is not supported",
        ),
        (
            {
                "model": "",
                "max_tokens": 9,
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "tool_result", "content": "1"}],
                    }
                ],
            },
            "messages[0].content[0].tool_use_id: must be a string",
        ),
        (
            {
                "model": "",
                "max_tokens": 9,
                "messages": HELLO,
                "tool_choice": {"type": "any"},
            },
            "tool_choice: asks for a tool call, but tools is empty",
        ),
        (
            {"model": "", "max_tokens": 9, "messages": HELLO, "tools": [{"name": "f"}]},
            "tools[0].input_schema: missing",
        ),
        (
            {"model": "", "max_tokens": 9, "messages": HELLO, "mcp_servers": [{}]},
            "mcp_servers: not supported",
        ),
    ],
)
async def test_bad_requests_name_anthropics_parameters(
    http: aiohttp.ClientSession, koala_server: ServerThread, body: Any, message: str
) -> None:
    status, _, raw = await post_messages(http, koala_server, body)
    assert status == 400
    error = msgspec.json.decode(raw)
    assert error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"
    assert error["error"]["message"].startswith(message)


async def test_errors_outside_the_handler_take_anthropics_shape(
    http: aiohttp.ClientSession, start_server: StartServer
) -> None:
    server = start_server(max_body=1000)
    status, _, raw = await post_messages(
        http, server, {"model": "", "max_tokens": 9, "messages": HELLO, "x": "y" * 2000}
    )
    assert status == 413
    assert msgspec.json.decode(raw)["error"]["type"] == "request_too_large"
    async with http.get(server.url + "/v1/messages") as response:
        assert response.status == 405
        error = await response.json()
    assert error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"


async def test_strict_refuses_what_lenient_ignores(
    http: aiohttp.ClientSession, start_server: StartServer
) -> None:
    web_search = {"type": "web_search_20250305", "name": "web_search"}
    body = {
        "model": "",
        "max_tokens": 50,
        "messages": HELLO,
        "tools": [web_search],
        "surprise": 1,
    }
    lenient = start_server()
    status, headers, _ = await post_messages(http, lenient, body)
    assert status == 200
    assert headers[IGNORED_HEADER] == "tools%5B0%5D, surprise"
    strict = start_server(strict=True)
    status, _, raw = await post_messages(http, strict, {**body, "tools": []})
    assert status == 400
    assert msgspec.json.decode(raw)["error"]["message"] == "surprise: unknown parameter"
    status, _, raw = await post_messages(http, strict, {**body, "surprise": None})
    assert status == 400
    assert "tools[0].type: 'web_search_20250305' is not a custom tool" in raw.decode()


async def test_history_with_thinking_and_tool_errors(
    http: aiohttp.ClientSession, koala_server: ServerThread, sandbox: Sandbox
) -> None:
    conversation = [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "hm", "signature": "s"},
                {"type": "text", "text": "Let me look."},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_1",
                    "is_error": True,
                    "content": [{"type": "text", "text": "no city"}],
                },
                {"type": "text", "text": "Oslo, then."},
            ],
        },
    ]
    status, _, _ = await post_messages(
        http,
        koala_server,
        {"model": "", "max_tokens": 50, "messages": conversation, "tools": [WEATHER]},
    )
    assert status == 200
    upstream = json.dumps(sandbox.requests[-1].json)
    assert "hm" not in upstream.replace("them", "")
    assert "Let me look." in upstream
    assert (
        "The tool call toolu_1 (get_weather) returned:\\n(the tool failed) no city"
        in (upstream)
    )
    assert "Oslo, then." in upstream


async def test_access_log_names_the_format(
    http: aiohttp.ClientSession, koala_server: ServerThread, access_log: AccessLog
) -> None:
    body = {"model": "", "max_tokens": 50, "stream": True, "messages": HELLO}
    await post_messages(http, koala_server, body)
    line = await access_log.next()
    assert '"POST /v1/messages" 200 api=messages model=gpt-4o-mini ttfp=' in line
    await post_messages(http, koala_server, body, "/v1/messages/count_tokens")
    assert '"POST /v1/messages/count_tokens" 200 api=messages' in (
        await access_log.next()
    )


# --- limits and bad input -----------------------------------------------------------


async def test_the_limit_of_streams_holds_for_messages_too(
    http: aiohttp.ClientSession, start_server: StartServer, sandbox: Sandbox
) -> None:
    server = start_server(max_streams=1)
    sandbox.push(Reply(values=["first ", "second"], stall_at=1))
    body = {"model": "", "max_tokens": 100, "stream": True, "messages": HELLO}
    async with http.post(server.url + "/v1/messages", json=body) as held:
        assert held.status == 200
        assert await sandbox.wait_stalled_async(5.0)
        status, headers, raw = await post_messages(http, server, body)
        assert status == 429
        assert headers["Retry-After"] == "1"
        assert msgspec.json.decode(raw)["error"]["type"] == "rate_limit_error"
        sandbox.release()
        assert named_events(await held.read())[-1][0] == "message_stop"


async def test_client_disconnect_cancels_the_upstream_request(
    http: aiohttp.ClientSession, koala_server: ServerThread, sandbox: Sandbox
) -> None:
    sandbox.push(Reply(values=["first ", "never"], stall_at=1))
    body = {"model": "", "max_tokens": 100, "stream": True, "messages": HELLO}
    response = await http.post(koala_server.url + "/v1/messages", json=body)
    assert response.status == 200
    assert b"first" in await response.content.readuntil(b"first")
    assert await sandbox.wait_stalled_async(5.0)
    response.close()  # the client leaves mid-stream
    assert await sandbox.wait_disconnect_async(1.0)


@pytest.mark.parametrize("raw", [b"{", b"[1]", b'"x"', b"NaN"])
async def test_a_body_that_is_no_json_object_is_a_400(
    http: aiohttp.ClientSession, koala_server: ServerThread, raw: bytes
) -> None:
    async with http.post(
        koala_server.url + "/v1/messages",
        data=raw,
        headers={"Content-Type": "application/json"},
    ) as response:
        assert response.status == 400
        error = await response.json()
    assert error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)
_TEXT = st.text(max_size=5)
_BLOCK = st.one_of(
    st.builds(lambda text: {"type": "text", "text": text}, _TEXT),
    st.builds(
        lambda i, n, a: {"type": "tool_use", "id": i, "name": n, "input": a},
        _TEXT,
        _TEXT,
        st.dictionaries(_TEXT, _JSON, max_size=2),
    ),
    st.builds(
        lambda i, c: {"type": "tool_result", "tool_use_id": i, "content": c},
        _TEXT,
        _TEXT | st.lists(st.builds(lambda t: {"type": "text", "text": t}, _TEXT)),
    ),
    st.just({"type": "thinking", "thinking": "hm"}),
    st.dictionaries(st.sampled_from(["type", "text", "id", "content"]), _JSON),
)
_MESSAGE = st.fixed_dictionaries(
    {
        "role": st.sampled_from(["user", "assistant", "system", "tool"]),
        "content": _TEXT | st.lists(_BLOCK, max_size=3) | _JSON,
    }
)
_TOOL = st.fixed_dictionaries(
    {"name": _TEXT | _JSON, "input_schema": st.just({"type": "object"}) | _JSON},
    optional={"type": st.sampled_from(["custom", "web_search_20250305"]) | _JSON},
)
#: Mostly well-formed bodies with something odd here and there.
_BODY = st.fixed_dictionaries(
    {
        "model": _TEXT | _JSON,
        "max_tokens": st.integers(1, 5) | _JSON,
        "messages": st.lists(_MESSAGE, min_size=1, max_size=3) | _JSON,
    },
    optional={
        "system": _TEXT | _JSON,
        "stop_sequences": st.lists(_TEXT, max_size=5) | _JSON,
        "tools": st.lists(_TOOL, max_size=2),
        "tool_choice": st.sampled_from(
            [{"type": "auto"}, {"type": "any"}, {"type": "none"}]
        )
        | _JSON,
        "output_config": _JSON,
        "temperature": _JSON,
        "surprise": _JSON,
    },
)


@given(body=_BODY, strict=st.booleans())
def test_any_body_is_a_request_or_a_usage_error(body: Any, strict: bool) -> None:
    try:
        request = parse_messages(body, strict=strict)
    except UsageError as exc:
        name = str(exc).partition(":")[0].split("[")[0].split(".")[0]
        assert name in body or name in ("model", "messages", "max_tokens")
    else:
        assert request.messages
        assert all(isinstance(m["content"], str) for m in request.messages)


# --- Claude Code --------------------------------------------------------------------

#: The `claude` binary: `$KOALA_CLAUDE_CODE`, else the one scripts/bootstrap
#: links into the environment (`KOALA_NEED_CLAUDE_CODE=1`, as .ci/run sets),
#: else `claude` on the PATH.
CLAUDE_CODE = (
    os.environ.get("KOALA_CLAUDE_CODE")
    or shutil.which("claude", path=str(Path(sys.prefix) / "bin"))
    or shutil.which("claude")
)


@pytest.mark.timeout(150)
def test_claude_code_runs_a_tool_through_koala_serve(
    start_server: StartServer, sandbox: Sandbox, tmp_path: Path
) -> None:
    # Fails rather than skips: .ci/run installs it (scripts/bootstrap).
    assert CLAUDE_CODE is not None, (
        "Claude Code is not installed: run KOALA_NEED_CLAUDE_CODE=1 . scripts/bootstrap"
    )
    server = start_server(api_key=KEY)
    command = "echo koala-tool-ran > proof.txt"
    call = {"name": "Bash", "arguments": {"command": command, "description": "proof"}}
    sandbox.push(
        Reply(values=[json.dumps({"tool_calls": [call]})]), Reply(values=["All done."])
    )
    work = tmp_path / "work"
    work.mkdir()
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "ANTHROPIC_BASE_URL": server.url,
        "ANTHROPIC_AUTH_TOKEN": KEY,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
    }
    done = subprocess.run(
        [CLAUDE_CODE, "-p", "Write the proof", "--allowedTools", "Bash"],
        cwd=work,
        env=environment,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "All done."
    assert (work / "proof.txt").read_text() == "koala-tool-ran\n"
    # The result went back as a tool_result, which the upstream read as text.
    asked, answered = sandbox.requests
    assert "(Bash) returned:" in json.dumps(answered.json)
    assert "Write the proof" in json.dumps(asked.json)
