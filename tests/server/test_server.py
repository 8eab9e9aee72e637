"""`koala serve` over real TCP with aiohttp, the sandbox as its upstream."""

from __future__ import annotations

import io
import logging
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import aiohttp
import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from koala_chat import Koala, UsageError
from koala_chat._contract import replies
from koala_chat._contract.params import parse_request
from koala_chat._contract.types import (
    ChatCompletionChunk,
    ChoiceDelta,
    ChunkChoice,
)
from koala_chat.sandbox import Reply, Sandbox, default_reply
from koala_chat.server.__main__ import main as server_main
from koala_chat.server.config import API_KEY_VARIABLE, ServerConfig, is_loopback
from koala_chat.server.formats.chat import ChunkEncoder
from koala_chat.server.formats.framing import event
from server_fixtures import AccessLog, ServerProcess, ServerThread

HELLO = [{"role": "user", "content": "Hello"}]
REPLY = "".join(default_reply({"input": "Hello", "model": "gpt-4o-mini"}))

StartServer = Callable[..., ServerThread]


def completion(**params: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": HELLO, **params}


def events(body: str) -> list[Any]:
    """Return the data of each event of an event-stream body (`[DONE]` as is)."""
    result: list[Any] = []
    for block in body.split("\n\n"):
        if not block:
            continue
        assert block.startswith("data: "), block
        data = block[len("data: ") :]
        result.append(data if data == "[DONE]" else msgspec.json.decode(data))
    return result


async def post(
    http: aiohttp.ClientSession, server: ServerThread, body: Any, **kwargs: Any
) -> tuple[int, dict[str, str], Any]:
    """POST a completion; return the status, headers and JSON or event list."""
    data = body if isinstance(body, bytes | io.BytesIO) else msgspec.json.encode(body)
    headers = {"Content-Type": "application/json", **kwargs.pop("headers", {})}
    async with http.post(
        server.base_url + "/chat/completions", data=data, headers=headers, **kwargs
    ) as response:
        text = await response.text()
        if response.content_type == "text/event-stream":
            return response.status, dict(response.headers), events(text)
        return response.status, dict(response.headers), msgspec.json.decode(text)


def assert_error(body: Any, code: str | None, *words: str) -> None:
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code
    for word in words:
        assert word in error["message"]


# --- routes ------------------------------------------------------------------


async def test_health(http: aiohttp.ClientSession, koala_server: ServerThread) -> None:
    async with http.get(koala_server.url + "/health") as response:
        assert response.status == 200
        assert await response.json() == {"status": "ok"}


async def test_models_list_and_get(
    http: aiohttp.ClientSession, koala_server: ServerThread
) -> None:
    async with http.get(koala_server.base_url + "/models") as response:
        listing = await response.json()
    assert listing["object"] == "list"
    assert [model["id"] for model in listing["data"]] == list(Koala.models)
    assert all(model["object"] == "model" for model in listing["data"])
    async with http.get(koala_server.base_url + "/models/gpt-4.1") as response:
        assert (await response.json())["id"] == "gpt-4.1"
    async with http.get(koala_server.base_url + "/models/nope") as response:
        assert response.status == 404
        assert_error(await response.json(), "model_not_found", "nope")


async def test_unknown_route_and_method_in_the_error_shape(
    http: aiohttp.ClientSession, koala_server: ServerThread
) -> None:
    async with http.get(koala_server.base_url + "/nothing") as response:
        assert response.status == 404
        assert_error(await response.json(), "not_found")
    async with http.get(koala_server.base_url + "/chat/completions") as response:
        assert response.status == 405
        assert_error(await response.json(), "method_not_allowed")
        assert response.headers["Allow"] == "POST"


async def test_whole_completion(
    http: aiohttp.ClientSession, koala_server: ServerThread, sandbox: Sandbox
) -> None:
    status, _, body = await post(http, koala_server, completion())
    assert status == 200
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert body["model"] == "gpt-4o-mini"
    (choice,) = body["choices"]
    assert choice["message"] == {
        "content": REPLY,
        "role": "assistant",
        "refusal": None,
    }
    assert choice["finish_reason"] == "stop"
    # Estimated at four characters per token, rounded up.
    assert body["usage"] == {
        "prompt_tokens": 2,
        "completion_tokens": -(-len(REPLY) // 4),
        "total_tokens": 2 - (-len(REPLY) // 4),
    }
    assert sandbox.requests[0].json["input"] == "Hello"


async def test_streamed_completion(
    http: aiohttp.ClientSession, koala_server: ServerThread
) -> None:
    status, headers, chunks = await post(http, koala_server, completion(stream=True))
    assert status == 200
    assert headers["Content-Type"].startswith("text/event-stream")
    assert chunks[-1] == "[DONE]"
    first, *middle, last, _ = chunks
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert "".join(c["choices"][0]["delta"]["content"] for c in middle) == REPLY
    assert len(middle) == len(default_reply({"input": "Hello"}))
    assert last["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }
    assert {c["id"] for c in chunks[:-1]} == {first["id"]}
    assert {c["object"] for c in chunks[:-1]} == {"chat.completion.chunk"}


async def test_stream_options_include_usage(
    http: aiohttp.ClientSession, koala_server: ServerThread
) -> None:
    body = completion(stream=True, stream_options={"include_usage": True})
    _, _, chunks = await post(http, koala_server, body)
    usage_chunk = chunks[-2]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["completion_tokens"] == -(-len(REPLY) // 4)


@pytest.mark.parametrize("stream", [False, True])
async def test_stop_sequence_is_cut_across_pieces(
    http: aiohttp.ClientSession,
    koala_server: ServerThread,
    sandbox: Sandbox,
    stream: bool,
) -> None:
    sandbox.push(Reply(values=["Hello, wo", "rld! Then", " more"], done=True))
    _, _, body = await post(http, koala_server, completion(stream=stream, stop="ld!"))
    if stream:
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in body[:-1])
        reason = body[-2]["choices"][0]["finish_reason"]
    else:
        text = body["choices"][0]["message"]["content"]
        reason = body["choices"][0]["finish_reason"]
    assert text == "Hello, wor"
    assert reason == "stop"


async def test_max_tokens_cuts_at_the_estimate(
    http: aiohttp.ClientSession, koala_server: ServerThread
) -> None:
    _, _, body = await post(http, koala_server, completion(max_tokens=3))
    assert body["choices"][0]["message"]["content"] == REPLY[:12]
    assert body["choices"][0]["finish_reason"] == "length"


# --- malformed requests --------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "code", "words"),
    [
        (b"{not json", "invalid_json", ["not JSON"]),
        (b"[1, 2]", "invalid_request", ["JSON object"]),
        ({"messages": HELLO}, "invalid_request", ["model"]),
        ({"model": "gpt-4o-mini"}, "invalid_request", ["messages"]),
        (completion(messages=[{"role": "user"}]), "invalid_request", ["content"]),
        (completion(temperature="hot"), "invalid_request", ["temperature"]),
        (completion(n=2), "invalid_request", ["n:"]),
        (completion(tools=[{"type": "function"}]), "invalid_request", ["tools"]),
        (
            completion(response_format={"type": "yaml"}),
            "invalid_request",
            ["response_format"],
        ),
        (completion(logprobs=True), "invalid_request", ["logprobs"]),
        (completion(provider="OpenAI"), "invalid_request", ["provider", "Koala"]),
        (completion(stream="yes"), "invalid_request", ["stream"]),
    ],
)
async def test_malformed_request_is_400_naming_the_field(
    http: aiohttp.ClientSession,
    koala_server: ServerThread,
    sandbox: Sandbox,
    body: Any,
    code: str,
    words: list[str],
) -> None:
    status, _, answer = await post(http, koala_server, body)
    assert status == 400
    assert answer["error"]["type"] == "invalid_request_error"
    assert_error(answer, code, *words)
    assert sandbox.requests == []


async def test_ignored_sampling_options_are_accepted(
    http: aiohttp.ClientSession, koala_server: ServerThread
) -> None:
    body = completion(temperature=0.2, top_p=0.9, seed=7, user="u", n=1, stop=None)
    status, _, answer = await post(http, koala_server, body)
    assert status == 200
    assert answer["choices"][0]["message"]["content"] == REPLY


async def test_body_over_one_mib_is_413(
    http: aiohttp.ClientSession, koala_server: ServerThread, sandbox: Sandbox
) -> None:
    big = completion(messages=[{"role": "user", "content": "x" * (1024 * 1024)}])
    # A file-like body: aiohttp warns about sending large bytes in one piece.
    status, _, answer = await post(
        http, koala_server, io.BytesIO(msgspec.json.encode(big))
    )
    assert status == 413
    assert_error(answer, "request_too_large", "1048576")
    assert sandbox.requests == []


# --- upstream failures ---------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
async def test_upstream_rate_limit_is_429_with_retry_after(
    http: aiohttp.ClientSession,
    koala_server: ServerThread,
    sandbox: Sandbox,
    stream: bool,
) -> None:
    sandbox.push(Reply(status=429, headers={"Retry-After": "7"}, body=b"slow down"))
    status, headers, answer = await post(http, koala_server, completion(stream=stream))
    assert status == 429
    assert headers["Retry-After"] == "7"
    assert answer["error"]["type"] == "rate_limit_error"
    assert_error(answer, "rate_limit_exceeded")


async def test_cloudflare_challenge_is_502(
    http: aiohttp.ClientSession, koala_server: ServerThread, sandbox: Sandbox
) -> None:
    sandbox.push(
        Reply(
            status=403,
            headers={"cf-mitigated": "challenge"},
            content_type="text/html",
            body=b"<title>Just a moment...</title>",
        )
    )
    status, _, answer = await post(http, koala_server, completion(stream=True))
    assert status == 502
    assert_error(answer, "upstream_challenge", "Cloudflare")


async def test_unreachable_upstream_is_502(
    http: aiohttp.ClientSession, start_server: StartServer
) -> None:
    # Port 9 (discard) on loopback: nothing listens there on a test machine.
    server = start_server(
        provider_options={"api_endpoint": "http://127.0.0.1:9/api/gpt/"}
    )
    status, _, answer = await post(http, server, completion())
    assert status == 502
    assert_error(answer, "upstream_unreachable")


async def test_upstream_timeout_is_504(
    http: aiohttp.ClientSession, start_server: StartServer, sandbox: Sandbox
) -> None:
    server = start_server(provider_options={"timeout": 0.5})
    sandbox.push(Reply(values=["late"], stall_at=0))
    try:
        status, _, answer = await post(http, server, completion(stream=True))
    finally:
        sandbox.release()
    assert status == 504
    assert_error(answer, "upstream_timeout")


async def test_provider_refusing_the_servers_options_is_500(
    http: aiohttp.ClientSession, start_server: StartServer
) -> None:
    server = start_server(provider_options={"api_endpoint": "ftp://example.org/"})
    status, _, answer = await post(http, server, completion())
    assert status == 500
    assert_error(answer, "server_misconfigured", "http(s) URL")


async def test_model_the_provider_rejects_is_404(
    http: aiohttp.ClientSession, start_server: StartServer, sandbox: Sandbox
) -> None:
    class StrictKoala(Koala):
        accept_unknown_models = False

    server = start_server(StrictKoala)
    status, _, answer = await post(http, server, completion(model="gpt-9"))
    assert status == 404
    assert_error(answer, "model_not_found", "gpt-9")
    assert sandbox.requests == []


async def test_failure_mid_stream_is_an_error_event_then_done(
    http: aiohttp.ClientSession, koala_server: ServerThread, sandbox: Sandbox
) -> None:
    sandbox.push(Reply(body=b'data: "Hel"\n\ndata: "lo"\n\ndata: {broken\n\n'))
    status, _, chunks = await post(http, koala_server, completion(stream=True))
    assert status == 200
    assert [c["choices"][0]["delta"].get("content") for c in chunks[1:3]] == [
        "Hel",
        "lo",
    ]
    assert_error(chunks[3], "upstream_protocol_error")
    assert chunks[4:] == ["[DONE]"]


# --- limits, disconnects, security ---------------------------------------------


async def test_streams_over_the_limit_get_429(
    http: aiohttp.ClientSession, start_server: StartServer, sandbox: Sandbox
) -> None:
    server = start_server(max_streams=1)
    sandbox.push(Reply(values=["first ", "second"], stall_at=1))
    url = server.base_url + "/chat/completions"
    async with http.post(url, json=completion(stream=True)) as held:
        assert held.status == 200
        assert await sandbox.wait_stalled_async(5.0)
        status, headers, answer = await post(http, server, completion())
        assert status == 429
        assert headers["Retry-After"] == "1"
        assert_error(answer, "too_many_streams")
        sandbox.release()
        assert events(await held.text())[-1] == "[DONE]"
    # The slot is free again.
    status, _, _ = await post(http, server, completion())
    assert status == 200


async def test_client_disconnect_cancels_the_upstream_request(
    http: aiohttp.ClientSession, koala_server: ServerThread, sandbox: Sandbox
) -> None:
    sandbox.push(Reply(values=["first ", "never"], stall_at=1))
    url = koala_server.base_url + "/chat/completions"
    response = await http.post(url, json=completion(stream=True))
    assert response.status == 200
    assert b"first" in await response.content.readuntil(b"first")
    assert await sandbox.wait_stalled_async(5.0)
    response.close()  # the client leaves mid-stream
    assert await sandbox.wait_disconnect_async(1.0)


async def test_api_key_is_required_on_v1_routes(
    http: aiohttp.ClientSession,
    start_server: StartServer,
    sandbox: Sandbox,
    access_log: AccessLog,
    caplog: pytest.LogCaptureFixture,
) -> None:
    key = "s3cret-key-4711"
    caplog.set_level(logging.DEBUG)
    server = start_server(api_key=key)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": key}):
        status, answer_headers, answer = await post(
            http, server, completion(), headers=headers
        )
        assert status == 401
        assert answer_headers["WWW-Authenticate"].startswith("Bearer")
        assert_error(answer, "invalid_api_key")
    async with http.get(server.base_url + "/models") as response:
        assert response.status == 401
    async with http.get(server.url + "/health") as response:
        assert response.status == 200
    good = {"Authorization": f"Bearer {key}"}
    status, _, _ = await post(http, server, completion(stream=True), headers=good)
    assert status == 200
    # Never forwarded upstream, never logged.
    (upstream,) = sandbox.requests
    assert key not in repr(dict(upstream.headers))
    assert "Authorization" not in (upstream.headers)
    lines = [await access_log.next() for _ in range(6)]  # one per request
    assert all(key not in line for line in lines)
    assert key not in caplog.text
    assert key not in repr(server.config)


async def test_access_log_line_per_request(
    http: aiohttp.ClientSession, koala_server: ServerThread, access_log: AccessLog
) -> None:
    await post(http, koala_server, completion(stream=True))
    streamed = await access_log.next()
    await post(http, koala_server, completion(n=3))
    refused = await access_log.next()
    pieces = len(default_reply({"input": "Hello"}))
    assert (
        '"POST /v1/chat/completions" 200 api=chat model=gpt-4o-mini ttfp=' in streamed
    )
    assert f"pieces={pieces} " in streamed
    assert '" 400 api=chat model=- ttfp=- pieces=0' in refused


# --- configuration and the command ---------------------------------------------


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.5", False),
        ("example.com", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_non_loopback_without_a_key_is_refused() -> None:
    with pytest.raises(UsageError, match="without an API key"):
        ServerConfig(host="0.0.0.0").check_exposure()
    ServerConfig(
        host="0.0.0.0", api_key="k", allowed_hosts=("chat.lan",)
    ).check_exposure()


def test_serve_command_refuses_exposure_in_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(API_KEY_VARIABLE, raising=False)
    assert server_main(["--host", "0.0.0.0", "--port", "0", "--quiet"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "Refusing to listen on 0.0.0.0 without an API key" in error


def test_serve_command_checks_the_endpoint_at_start(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert server_main(["--port", "0", "--endpoint", "ftp://example.org/"]) == 2
    assert "The API endpoint must be an http(s) URL" in capsys.readouterr().err


def test_cli_module_does_not_import_aiohttp() -> None:
    code = (
        "import sys, koala_chat.server.cli; "
        "print(sorted(m for m in sys.modules if m.startswith('aiohttp')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30
    )
    assert result.stdout.strip() == "[]", result.stderr


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--port", "70000"], "not a port number"),
        (["--workers", "0"], "--workers: must be 1 or more"),
        (["--grace", "soon"], "--grace: expected a number"),
        (["--timeout", "0"], "--timeout: must be more than 0 seconds"),
    ],
)
def test_both_entry_points_parse_alike(
    capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    """`koala serve` and `python -m koala_chat.server` share one parser."""
    from koala_chat._cli import main as koala

    assert server_main(argv) == 2
    alone = capsys.readouterr()
    assert koala(["serve", *argv]) == 2
    through_koala = capsys.readouterr()
    for captured in (alone, through_koala):
        assert captured.out == ""
        assert captured.err.count("\n") == 1
        assert says in captured.err


def test_koala_serve_refuses_exposure_as_python_dash_m_does(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from koala_chat._cli import main as koala

    monkeypatch.delenv(API_KEY_VARIABLE, raising=False)
    assert koala(["serve", "--host", "0.0.0.0", "--port", "0", "--quiet"]) == 2
    assert "without an API key" in capsys.readouterr().err


# --- the chunk encoder ---------------------------------------------------------


def chat_reply(completion_id: str, created: int, model: str) -> replies.Reply:
    """Return a reply to "Hi" with this id, creation time and model."""
    hi = [{"role": "user", "content": "Hi"}]
    reply = replies.Reply(parse_request({"model": "m", "messages": hi}))
    reply.id, reply.created, reply.model = completion_id, created, model
    return reply


@given(id_=st.text(), model=st.text(), text=st.text())
def test_a_content_event_is_the_encoding_of_its_chunk(
    id_: str, model: str, text: str
) -> None:
    # The encoder cuts a content event's bytes around the text once per
    # stream; this proves them the struct's encoding, whatever the strings.
    encoder = ChunkEncoder(chat_reply(id_, 1700000000, model))
    chunk = ChatCompletionChunk(
        id=id_,
        created=1700000000,
        model=model,
        choices=[ChunkChoice(index=0, delta=ChoiceDelta(content=text))],
    )
    assert encoder.content(text) == event(chunk)
    assert event(chunk) == b"data: " + msgspec.json.encode(chunk) + b"\n\n"


def test_chunk_events_have_the_openai_keys_in_the_openai_order() -> None:
    reply = chat_reply("chatcmpl-x", 1700000000, 'model "quoted"')
    reply.feed("Hi there")  # 1 prompt token ("Hi"), 2 completion tokens
    encoder = ChunkEncoder(reply)
    head = b'data: {"id":"chatcmpl-x","object":"chat.completion.chunk",'
    head += b'"created":1700000000,"model":"model \\"quoted\\"",'
    head += b'"system_fingerprint":null,"choices":'
    choice = b'[{"index":0,"delta":%s,"logprobs":null,"finish_reason":%s}]}\n\n'
    assert encoder.role() == head + choice % (
        b'{"content":"","role":"assistant"}',
        b"null",
    )
    assert encoder.content("Hi") == head + choice % (b'{"content":"Hi"}', b"null")
    assert encoder.finish("length") == head + choice % (b"{}", b'"length"')
    assert encoder.usage() == head + (
        b'[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}\n\n'
    )


# --- the process: graceful stop and workers ----------------------------------------


async def test_sigterm_lets_open_streams_finish(
    http: aiohttp.ClientSession,
    sandbox: Sandbox,
    server_process: Callable[..., ServerProcess],
) -> None:
    server = server_process("--endpoint", sandbox.api_endpoint, "--grace", "10")
    url = f"http://127.0.0.1:{await server.port()}"
    sandbox.push(Reply(values=["before ", "after"], stall_at=1))
    async with http.post(
        url + "/v1/chat/completions", json=completion(stream=True)
    ) as response:
        assert b"before" in await response.content.readuntil(b"before")
        await response.content.readuntil(b"\n\n")  # the rest of that event
        assert await sandbox.wait_stalled_async(5.0)
        server.process.send_signal(signal.SIGTERM)
        await server.wait_for("no longer accepting; 1 open completion")
        with pytest.raises(aiohttp.ClientConnectionError):
            await http.get(url + "/health")
        sandbox.release()
        rest = events(await response.text())
    assert rest[-1] == "[DONE]"
    assert rest[0]["choices"][0]["delta"]["content"] == "after"
    assert await server.exit_code() == 0


async def test_streams_are_cut_after_the_grace_period(
    http: aiohttp.ClientSession,
    sandbox: Sandbox,
    server_process: Callable[..., ServerProcess],
) -> None:
    server = server_process("--endpoint", sandbox.api_endpoint, "--grace", "0.2")
    url = f"http://127.0.0.1:{await server.port()}"
    sandbox.push(Reply(values=["before ", "never"], stall_at=1))
    async with http.post(
        url + "/v1/chat/completions", json=completion(stream=True)
    ) as response:
        assert b"before" in await response.content.readuntil(b"before")
        server.process.send_signal(signal.SIGTERM)
        assert await server.exit_code() == 0
        # The stream cut by the shutdown ends as a failure does: an error
        # event, then [DONE], and never the rest of the reply.
        rest = await response.read()
    assert b'"code":"server_shutting_down"' in rest
    assert rest.endswith(b"data: [DONE]\n\n")
    assert b"never" not in rest
    assert await sandbox.wait_disconnect_async(5.0)
    sandbox.release()


async def test_workers_share_one_port(
    http: aiohttp.ClientSession,
    sandbox: Sandbox,
    server_process: Callable[..., ServerProcess],
) -> None:
    server = server_process("--endpoint", sandbox.api_endpoint, "--workers", "2")
    first = await server.wait_for(r"listening on http://127\.0\.0\.1:(\d+).*pid (\d+)")
    second = await server.wait_for(r"listening on http://127\.0\.0\.1:(\d+).*pid (\d+)")
    assert first.group(1) == second.group(1)
    assert first.group(2) != second.group(2)
    url = f"http://127.0.0.1:{first.group(1)}/v1/chat/completions"
    for _ in range(4):
        async with http.post(url, json=completion()) as response:
            assert response.status == 200
    server.process.send_signal(signal.SIGTERM)
    assert await server.exit_code() == 0
