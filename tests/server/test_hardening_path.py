"""What an attacker or a careless client tried on `koala serve`'s request and reply.

Over real sockets: the server on a thread (or on the test's loop where the test
must reach inside), the sandbox or a closed port as its upstream.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import aiohttp
import msgspec
import pytest

from hardening import closed_port
from koala_chat import defaults
from koala_chat._contract.params import MAX_STOP_LENGTH
from koala_chat._http.status import MAX_RETRY_AFTER
from koala_chat.sandbox import Reply, Sandbox
from koala_chat.server.__main__ import main as server_main
from koala_chat.server.app import create_app, create_runner
from koala_chat.server.state import STATE_KEY
from server_fixtures import ServerThread, server_config

StartServer = Callable[..., ServerThread]
HELLO = [{"role": "user", "content": "Hello"}]


def events(body: str) -> list[Any]:
    """Return the data of each event of a stream body, `[DONE]` as is."""
    blocks = [block for block in body.split("\n\n") if block]
    assert all(block.startswith("data: ") for block in blocks), body
    return [
        data if (data := block[6:]) == "[DONE]" else msgspec.json.decode(data)
        for block in blocks
    ]


async def post_raw(
    http: aiohttp.ClientSession, server: ServerThread, body: bytes
) -> tuple[int, dict[str, str], str]:
    async with http.post(
        server.base_url + "/chat/completions",
        data=body,
        headers={"Content-Type": "application/json"},
    ) as response:
        return response.status, dict(response.headers), await response.text()


def body_with(**params: Any) -> bytes:
    return msgspec.json.encode({"model": "gpt-4o-mini", "messages": HELLO, **params})


# --- numbers that overflow, stop sequences that are too long ------------------------


@pytest.mark.parametrize(
    "name", ["temperature", "top_p", "presence_penalty", "frequency_penalty"]
)
@pytest.mark.parametrize("number", ["1" + "0" * 400, "-1" + "0" * 400, "1e400"])
async def test_numbers_that_overflow_are_400(
    http: aiohttp.ClientSession, koala_server: ServerThread, name: str, number: str
) -> None:
    body = (
        b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}], '
        + f'"{name}": {number}}}'.encode()
    )
    status, _, text = await post_raw(http, koala_server, body)
    assert status == 400
    error = msgspec.json.decode(text)["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith(f"{name}: must be a number")


async def test_a_long_stop_sequence_is_400_naming_stop(
    http: aiohttp.ClientSession, koala_server: ServerThread, sandbox: Sandbox
) -> None:
    body = body_with(stream=True, stop=["ok", "x" * (MAX_STOP_LENGTH + 1)])
    status, _, text = await post_raw(http, koala_server, body)
    assert status == 400
    assert msgspec.json.decode(text)["error"]["message"].startswith("stop: ")
    assert sandbox.requests == []


async def test_long_stop_sequences_within_the_limit_cost_little(
    http: aiohttp.ClientSession, koala_server: ServerThread, sandbox: Sandbox
) -> None:
    # The case that stalled the server, at the limit: four stops whose every
    # prefix matches the reply, which arrives a character at a time.
    stops = ["a" * (MAX_STOP_LENGTH - 1) + c for c in "bcde"]
    sandbox.push(Reply(values=["a"] * 5000 + ["b"]))
    status, _, text = await post_raw(
        http, koala_server, body_with(stream=True, stop=stops)
    )
    assert status == 200
    chunks = events(text)
    content = "".join(
        chunk["choices"][0]["delta"].get("content") or ""
        for chunk in chunks[:-1]
        if chunk["choices"]
    )
    assert content == "a" * (5001 - MAX_STOP_LENGTH)
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"


# --- lone surrogates ----------------------------------------------------------


SURROGATES = b'data: "a\\ud800b"\n\ndata: "\\udc00"\n\n'


@pytest.mark.parametrize(
    "body",
    [SURROGATES, b'data: "Hello"\n\n' + SURROGATES],
    ids=["first piece", "mid-stream"],
)
async def test_upstream_surrogates_are_streamed_replaced(
    http: aiohttp.ClientSession,
    koala_server: ServerThread,
    sandbox: Sandbox,
    body: bytes,
) -> None:
    sandbox.push(Reply(body=body, content_type="text/event-stream"))
    async with http.post(
        koala_server.base_url + "/chat/completions",
        json={"model": "gpt-4o-mini", "messages": HELLO, "stream": True},
    ) as response:
        assert response.status == 200
        raw = await response.read()
    # One response: no second status line inside the body.
    assert b"HTTP/1.1" not in raw
    chunks = events(raw.decode())
    content = "".join(
        chunk["choices"][0]["delta"].get("content") or ""
        for chunk in chunks[:-1]
        if chunk["choices"]
    )
    assert content.endswith("a\ufffdb\ufffd")
    assert chunks[-1] == "[DONE]"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"


async def test_upstream_surrogates_whole_reply(
    http: aiohttp.ClientSession, koala_server: ServerThread, sandbox: Sandbox
) -> None:
    sandbox.push(Reply(body=SURROGATES, content_type="text/event-stream"))
    status, _, text = await post_raw(http, koala_server, body_with())
    assert status == 200
    answer = msgspec.json.decode(text)
    assert answer["choices"][0]["message"]["content"] == "a\ufffdb\ufffd"


async def test_the_clients_surrogates_are_replaced(
    http: aiohttp.ClientSession, koala_server: ServerThread, sandbox: Sandbox
) -> None:
    body = (
        b'{"model": "gpt-4o-mini", "stop": "\\ud800", '
        b'"messages": [{"role": "user", "content": "x\\ud800y\\ud83d\\ude00"}]}'
    )
    status, _, _ = await post_raw(http, koala_server, body)
    assert status == 200
    (request,) = sandbox.requests
    assert isinstance(request.json, dict)
    assert request.json["input"] == "x\ufffdy\U0001f600"


@pytest.mark.parametrize(
    "body",
    [
        b'{"model": NaN}',
        b'{"model": "\\ud800',
        b"\xff",
        '{"model": "\\ud800"}'.encode("utf-16"),
    ],
)
async def test_what_is_not_json_stays_refused(
    http: aiohttp.ClientSession, koala_server: ServerThread, body: bytes
) -> None:
    status, _, text = await post_raw(http, koala_server, body)
    assert status == 400
    assert msgspec.json.decode(text)["error"]["code"] == "invalid_json"


# --- Retry-After ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "passed_on"),
    [
        ("²", str(defaults.SERVER_RETRY_AFTER)),
        ("1" + "0" * 400, str(MAX_RETRY_AFTER)),
        ("Fri, 31 Dec 9999 23:59:59 GMT", str(MAX_RETRY_AFTER)),
        ("3", "3"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
async def test_odd_upstream_retry_after_is_a_clean_429(
    http: aiohttp.ClientSession,
    koala_server: ServerThread,
    sandbox: Sandbox,
    header: str,
    passed_on: str,
    stream: bool,
) -> None:
    sandbox.push(Reply(status=429, headers={"Retry-After": header}, body=b"slow"))
    status, headers, text = await post_raw(http, koala_server, body_with(stream=stream))
    assert status == 429
    assert headers["Retry-After"] == passed_on
    assert msgspec.json.decode(text)["error"]["code"] == "rate_limit_exceeded"


# --- upstream failures: the URL goes to the log, not to the client -----------------


async def test_502_messages_do_not_show_the_upstream(
    http: aiohttp.ClientSession,
    start_server: StartServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = closed_port()
    endpoint = f"http://koala:hunter2@127.0.0.1:{port}/api/gpt/"
    server = start_server(provider_options={"api_endpoint": endpoint})
    with caplog.at_level(logging.WARNING, logger="koala_chat.server"):
        status, _, text = await post_raw(http, server, body_with())
    assert status == 502
    message = msgspec.json.decode(text)["error"]["message"]
    assert message == (
        "could not connect to the Koala API (details in the server's log)"
    )
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert f"http://koala:***@127.0.0.1:{port}/api/gpt/" in logged
    assert "hunter2" not in logged


@pytest.mark.parametrize(
    ("reply", "words"),
    [
        (Reply(status=500, body=b"boom"), "the Koala API answered 500: boom"),
        (
            Reply(status=302, headers={"Location": "http://u:hunter2@x.example/"}),
            "the Koala API answered 302",
        ),
        (
            Reply(status=200, content_type="text/html", body=b"<p>hi</p>"),
            "answered with text/html instead of an event stream",
        ),
    ],
)
async def test_upstream_status_messages_do_not_show_the_upstream(
    http: aiohttp.ClientSession,
    koala_server: ServerThread,
    sandbox: Sandbox,
    reply: Reply,
    words: str,
) -> None:
    sandbox.push(reply)
    status, _, text = await post_raw(http, koala_server, body_with())
    assert status == 502
    message = msgspec.json.decode(text)["error"]["message"]
    assert words in message
    assert "127.0.0.1" not in message
    assert "hunter2" not in message


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://koala:hunter2@127.0.0.1:99999/api/",
        "http://koala:hun#ter2@127.0.0.1/api/",
        "http://koala:hun/ter2@127.0.0.1/api/",
        "http://koala:hun?ter2@127.0.0.1/api/",
    ],
)
def test_the_server_refuses_a_bad_endpoint_without_its_password(
    capsys: pytest.CaptureFixture[str], endpoint: str
) -> None:
    assert server_main(["--port", "0", "--endpoint", endpoint]) == 2
    error = capsys.readouterr().err
    assert "The API endpoint must be an http(s) URL" in error
    assert "hunter2" not in error
    assert "ter2" not in error


def test_the_server_refuses_a_bad_proxy_without_its_password(
    capsys: pytest.CaptureFixture[str],
) -> None:
    proxy = "socks5://koala:hun#ter2@127.0.0.1:1080"
    assert server_main(["--port", "0", "--proxy", proxy]) == 2
    error = capsys.readouterr().err
    assert "Invalid proxy URL" in error
    assert "ter2" not in error


# --- streams cut at shutdown ------------------------------------------------------


async def test_a_huge_max_tokens_is_no_limit(
    http: aiohttp.ClientSession, koala_server: ServerThread
) -> None:
    body = body_with()[:-1] + b', "max_tokens": 1' + b"0" * 400 + b"}"
    status, _, text = await post_raw(http, koala_server, body)
    assert status == 200
    assert msgspec.json.decode(text)["choices"][0]["finish_reason"] == "stop"


async def test_a_stream_cut_by_the_server_ends_with_an_error_and_done(
    http: aiohttp.ClientSession, sandbox: Sandbox
) -> None:
    app = create_app(server_config(sandbox))
    runner = create_runner(app)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    sandbox.push(Reply(values=["before ", "never"], stall_at=1))
    try:
        async with http.post(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            json={"model": "gpt-4o-mini", "messages": HELLO, "stream": True},
        ) as response:
            await response.content.readuntil(b"before")
            await response.content.readuntil(b"\n\n")
            assert await sandbox.wait_stalled_async(5.0)
            # What the server does when its grace period runs out.
            app[STATE_KEY].cancel_all()
            rest = events((await response.read()).decode())
    finally:
        sandbox.release()
        await runner.cleanup()
    assert rest[-2]["error"]["code"] == "server_shutting_down"
    assert rest[-1] == "[DONE]"
    assert await sandbox.wait_disconnect_async(5.0)
