"""Tests of the sandbox: a real server on 127.0.0.1, real clients over TCP.

Most tests read through aiohttp's client; the ones about write boundaries read
the raw HTTP/1.1 exchange, where each write of the server is one chunk of the
chunked encoding.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
import zlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import brotli  # type: ignore[import-untyped]
import msgspec
import pytest
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from koala_chat.errors import UsageError
from koala_chat.providers.dialects import ApiKey, build_request
from koala_chat.sandbox import (
    SANDBOX_API_KEY,
    SANDBOX_PROTOCOLS,
    RecordedRequest,
    Reply,
    Sandbox,
    SandboxState,
    create_runner,
    default_reply,
    render,
)
from koala_chat.sandbox.__main__ import main
from koala_chat.sandbox.script import default_writes

BODY: dict[str, Any] = {
    "input": "How tall do koalas grow?",
    "inputHistory": ["Hi", "Tell me about koalas"],
    "outputHistory": ["Hello!"],
    "model": "gpt-4o-mini",
}


def events(values: list[Any], *, done: bool = False) -> bytes:
    """The event stream of `values`, as docs/protocol.md, "Response" shows it."""
    stream = b"".join(
        b"data: " + json.dumps(v, separators=(",", ":")).encode() + b"\n\n"
        for v in values
    )
    return stream + (b"data: [DONE]\n\n" if done else b"")


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def post(
    session: aiohttp.ClientSession, sandbox: Sandbox, body: Any = BODY
) -> tuple[aiohttp.ClientResponse, bytes]:
    async with session.post(sandbox.api_endpoint, json=body) as response:
        return response, await response.read()


async def read_until_error(
    session: aiohttp.ClientSession,
    sandbox: Sandbox,
    body: Any = BODY,
    headers: dict[str, str] | None = None,
) -> tuple[bytes, BaseException | None]:
    """Read the reply's body until it ends or fails; return it and the error."""
    received = b""
    try:
        async with session.post(
            sandbox.api_endpoint, json=body, headers=headers
        ) as response:
            async for chunk in response.content.iter_any():
                received += chunk
    except aiohttp.ClientError as exc:
        return received, exc
    return received, None


async def raw_chunks(
    sandbox: Sandbox, body: bytes, *, headers: dict[str, str] | None = None
) -> tuple[bytes, list[bytes]]:
    """POST over a raw socket; return the response head and its chunks.

    A reply that is not chunked (an error) comes back as one "chunk".
    """
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items()).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", sandbox.port)
    try:
        writer.write(
            b"POST /api/gpt/ HTTP/1.1\r\nHost: sandbox\r\n%s"
            b"Content-Type: application/json\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (extra, len(body), body)
        )
        head = await reader.readuntil(b"\r\n\r\n")
        if b"transfer-encoding: chunked" not in head.lower():
            return head, [await reader.read()]
        chunks: list[bytes] = []
        while size := int((await reader.readuntil(b"\r\n"))[:-2], 16):
            chunks.append(await reader.readexactly(size))
            assert await reader.readexactly(2) == b"\r\n"
        assert await reader.readexactly(2) == b"\r\n"
        return head, chunks
    finally:
        writer.close()
        await writer.wait_closed()


# The default reply


def test_default_reply_summarises_the_request() -> None:
    pieces = default_reply(BODY)
    assert "".join(pieces) == (
        'You said: "How tall do koalas grow?". History: 2 user, 1 assistant. '
        "Model: gpt-4o-mini."
    )
    assert pieces[:2] == ["You ", "said: "]


def test_default_reply_names_the_default_model_for_an_empty_one() -> None:
    assert "".join(default_reply({**BODY, "model": ""})).endswith("gpt-4o-mini.")


@pytest.mark.parametrize("count", [1, 2, 5, 13, 200])
def test_default_reply_has_exactly_the_pieces_asked(count: int) -> None:
    pieces = default_reply(BODY, pieces=count)
    assert len(pieces) == count
    summary = "".join(default_reply(BODY))
    text = "".join(pieces)
    # Fewer pieces group the words; more append filler after the whole summary.
    assert text.startswith(summary)
    assert text == summary or text[len(summary) :].startswith(" Koalas sleep")


def test_default_reply_refuses_zero_pieces() -> None:
    with pytest.raises(UsageError, match="pieces"):
        default_reply(BODY, pieces=0)


async def test_default_reply_over_tcp(
    sandbox: Sandbox, session: aiohttp.ClientSession
) -> None:
    response, data = await post(session, sandbox)
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/event-stream"
    assert response.headers["Transfer-Encoding"] == "chunked"
    assert data == events(default_reply(BODY))


async def test_pieces_and_interval_shape_the_default_reply() -> None:
    with Sandbox(pieces=7, interval=0.001) as sandbox:
        head, chunks = await raw_chunks(sandbox, msgspec.json.encode(BODY))
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    # Paced: one write, so one chunk, per piece.
    assert chunks == [events([piece]) for piece in default_reply(BODY, pieces=7)]


async def test_unpaced_events_are_packed_into_few_writes(sandbox: Sandbox) -> None:
    values = [f"piece {i} " for i in range(10_000)]
    sandbox.push(Reply(values=values, done=True))
    _, chunks = await raw_chunks(sandbox, msgspec.json.encode(BODY))
    assert b"".join(chunks) == events(values, done=True)
    assert 1 < len(chunks) < 20
    assert all(len(chunk) <= 16 * 1024 for chunk in chunks)


def test_state_keeps_the_latest_requests_when_bounded() -> None:
    state = SandboxState(keep_requests=2)
    for number in range(3):
        state.record(
            RecordedRequest(
                "POST", f"/{number}", CIMultiDictProxy(CIMultiDict()), b"", None
            )
        )
    assert [request.path for request in state.requests] == ["/1", "/2"]


# Scripted replies


async def test_scripted_values_in_order_then_the_default(
    sandbox: Sandbox, session: aiohttp.ClientSession
) -> None:
    first = ["Hel", "lo", {"text": " there"}, 42, None, ["a"]]
    sandbox.push(Reply(values=first, done=True), Reply(values=[]))
    assert (await post(session, sandbox))[1] == events(first, done=True)
    assert (await post(session, sandbox))[1] == b""
    assert (await post(session, sandbox))[1] == events(default_reply(BODY))


async def test_a_scripted_reply_without_values_is_the_default_one() -> None:
    with Sandbox(pieces=20) as sandbox:
        sandbox.push(Reply(done=True, status=201))
        head, chunks = await raw_chunks(sandbox, msgspec.json.encode(BODY))
    assert head.startswith(b"HTTP/1.1 201 Created\r\n")
    assert b"".join(chunks) == events(default_reply(BODY, pieces=20), done=True)


@pytest.mark.parametrize(
    ("reply", "header", "value"),
    [
        pytest.param(
            Reply(
                status=429,
                body=b'{"error": "quota"}',
                content_type="application/json",
                headers={"Retry-After": "30"},
            ),
            "Retry-After",
            "30",
            id="rate-limit",
        ),
        pytest.param(
            Reply(
                status=500,
                body=b"<html><body><h1>Internal Server Error</h1></body></html>",
                content_type="text/html; charset=utf-8",
            ),
            "Content-Type",
            "text/html; charset=utf-8",
            id="server-error-page",
        ),
        pytest.param(
            Reply(
                status=403,
                body=b"<!DOCTYPE html><html><head><title>Just a moment...</title>",
                content_type="text/html; charset=UTF-8",
                headers={"cf-mitigated": "challenge", "cf-ray": "8f1e2d3c4b5a6978-FRA"},
            ),
            "cf-mitigated",
            "challenge",
            id="cloudflare-challenge",
        ),
        pytest.param(
            Reply(body=b"<html><title>Koala</title></html>", content_type="text/html"),
            "Content-Type",
            "text/html",
            id="html-200",
        ),
    ],
)
async def test_raw_body_status_and_headers(
    sandbox: Sandbox,
    session: aiohttp.ClientSession,
    reply: Reply,
    header: str,
    value: str,
) -> None:
    sandbox.push(reply)
    response, data = await post(session, sandbox)
    assert response.status == reply.status
    assert response.headers[header] == value
    assert data == reply.body


@pytest.mark.parametrize(
    ("reply", "sizes"),
    [
        (Reply(values=["ab", "cd"], write_size=5), [5, 5, 5, 5, 4]),
        (Reply(values=["ab", "cd"], write_size=1), [1] * 24),
        (Reply(values=["ab", "cd"], splits=[1, 10, 11]), [1, 9, 1, 13]),
        (Reply(values=["ab", "cd"], splits=[6, 99]), [6, 18]),
        (Reply(body=b"<html></html>", splits=[3]), [3, 10]),
        (Reply(values=["ab", "cd"], done=True), [38]),
    ],
)
async def test_writes_arrive_as_split(
    sandbox: Sandbox, reply: Reply, sizes: list[int]
) -> None:
    sandbox.push(reply)
    _, chunks = await raw_chunks(sandbox, msgspec.json.encode(BODY))
    assert [len(chunk) for chunk in chunks] == sizes
    expected = reply.body if reply.body is not None else events(["ab", "cd"])
    assert b"".join(chunks) == expected + (b"data: [DONE]\n\n" if reply.done else b"")


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br"])
async def test_compressed_reply(
    sandbox: Sandbox, session: aiohttp.ClientSession, coding: Any
) -> None:
    values = ["Hello", " world", {"text": "!"}]
    sandbox.push(Reply(values=values, done=True, compress=coding))
    response, data = await post(session, sandbox)  # aiohttp decodes it
    assert response.headers["Content-Encoding"] == coding
    assert data == events(values, done=True)


@pytest.mark.parametrize(
    ("coding", "decode"),
    [
        ("gzip", gzip.decompress),
        ("deflate", zlib.decompress),
        ("br", brotli.decompress),
    ],
)
async def test_compressed_writes_decode_one_by_one(
    sandbox: Sandbox, coding: Any, decode: Any
) -> None:
    values = ["Hello", " world"]
    sandbox.push(Reply(values=values, compress=coding, interval=0.001))
    _, chunks = await raw_chunks(sandbox, msgspec.json.encode(BODY))
    assert len(chunks) == 2
    assert decode(b"".join(chunks)) == events(values)
    # A sync flush after each event: the first write alone decodes to it.
    if coding == "br":
        first = brotli.Decompressor().process(chunks[0])
    else:
        first = zlib.decompressobj(wbits=47).decompress(chunks[0])  # gzip or zlib
    assert first == events(values[:1])


# Stalls, cuts and disconnects


async def test_stall_holds_until_release(
    sandbox: Sandbox, session: aiohttp.ClientSession
) -> None:
    sandbox.push(Reply(values=["one ", "two"], stall_at=1))
    async with session.post(sandbox.api_endpoint, json=BODY) as response:
        first = await response.content.readexactly(len(events(["one "])))
        assert await sandbox.wait_stalled_async()
        assert first == events(["one "])
        sandbox.release()
        assert await response.read() == events(["two"])
    assert sandbox.disconnects == 0


async def test_stall_before_the_first_write_still_sends_the_head(
    sandbox: Sandbox, session: aiohttp.ClientSession
) -> None:
    sandbox.push(Reply(status=201, values=["x"], stall_at=0))
    async with session.post(sandbox.api_endpoint, json=BODY) as response:
        assert response.status == 201
        assert await sandbox.wait_stalled_async()
        sandbox.release()
        assert await response.read() == events(["x"])


async def test_wait_stalled_counts_replies_held_at_once(
    sandbox: Sandbox, session: aiohttp.ClientSession
) -> None:
    sandbox.push(Reply(values=["a"], stall_at=0), Reply(values=["b"], stall_at=1))
    requests = [asyncio.create_task(post(session, sandbox)) for _ in range(2)]
    assert await sandbox.wait_stalled_async(count=2)
    sandbox.release()
    bodies = sorted(data for _, data in await asyncio.gather(*requests))
    assert bodies == [events(["a"]), events(["b"])]
    assert not await sandbox.wait_stalled_async(0.01)


async def test_a_release_before_the_stall_is_not_lost(
    sandbox: Sandbox, session: aiohttp.ClientSession
) -> None:
    sandbox.push(Reply(values=["a"], stall_at=0))
    sandbox.release()
    assert (await post(session, sandbox))[1] == events(["a"])


@pytest.mark.parametrize("cut_at", [0, 1, 7, 13, 20, 39, 500])
async def test_cut_aborts_after_exactly_n_bytes(
    sandbox: Sandbox, session: aiohttp.ClientSession, cut_at: int
) -> None:
    values = ["abc", "def", "ghi"]
    sandbox.push(Reply(values=values, cut_at=cut_at))
    received, error = await read_until_error(session, sandbox)
    assert isinstance(error, aiohttp.ClientPayloadError | aiohttp.ClientOSError)
    assert received == events(values)[:cut_at]
    assert sandbox.disconnects == 0


async def test_cut_of_a_raw_body(
    sandbox: Sandbox, session: aiohttp.ClientSession
) -> None:
    sandbox.push(Reply(body=b'data: "cut here', write_size=4, cut_at=9))
    received, error = await read_until_error(session, sandbox)
    assert error is not None
    assert received == b'data: "cu'


async def test_client_leaving_during_a_stall_is_seen(
    sandbox: Sandbox, session: aiohttp.ClientSession
) -> None:
    sandbox.push(Reply(values=["one ", "two"], stall_at=1))
    async with session.post(sandbox.api_endpoint, json=BODY) as response:
        await response.content.readexactly(len(events(["one "])))
        assert await sandbox.wait_stalled_async()
        response.close()
    assert await sandbox.wait_disconnect_async()
    assert sandbox.disconnects == 1
    # The handler let go of its stall: nothing is held any more.
    assert not await sandbox.wait_stalled_async(0.01)


async def test_client_leaving_a_paced_reply_is_seen(
    sandbox: Sandbox, session: aiohttp.ClientSession
) -> None:
    sandbox.push(Reply(values=["word "] * 100_000, interval=0.001))
    async with session.post(sandbox.api_endpoint, json=BODY) as response:
        await response.content.readexactly(len(events(["word "])) * 3)
    assert await sandbox.wait_disconnect_async()
    assert sandbox.disconnects == 1


async def test_stop_does_not_hang_on_a_stalled_reply(
    session: aiohttp.ClientSession,
) -> None:
    sandbox = Sandbox()
    sandbox.start()
    try:
        sandbox.push(Reply(values=["a", "b"], stall_at=1))
        async with session.post(sandbox.api_endpoint, json=BODY) as response:
            assert await sandbox.wait_stalled_async()
            await asyncio.to_thread(sandbox.stop)
            with pytest.raises(aiohttp.ClientPayloadError):
                await response.read()
    finally:
        sandbox.stop()
    sandbox.stop()  # idempotent
    assert sandbox.disconnects == 0  # closing is no client disconnect


# Request validation and recording


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "JSON object, not an array"),
        (b"null", "JSON object, not null"),
        (
            msgspec.json.encode({**BODY, "input": 3}),
            "'input' must be a string, not a number",
        ),
        (
            msgspec.json.encode({**BODY, "model": None}),
            "'model' must be a string, not null",
        ),
        (
            msgspec.json.encode({**BODY, "inputHistory": "Hi"}),
            "'inputHistory' must be an",
        ),
        (
            msgspec.json.encode({**BODY, "outputHistory": [1]}),
            "'outputHistory' must be a list",
        ),
        *[
            (
                msgspec.json.encode({k: v for k, v in BODY.items() if k != field}),
                repr(field),
            )
            for field in BODY
        ],
    ],
)
async def test_invalid_requests_get_400(
    sandbox: Sandbox, session: aiohttp.ClientSession, body: bytes, named: str
) -> None:
    sandbox.push(Reply(values=["kept for the next valid request"]))
    async with session.post(sandbox.api_endpoint, data=body) as response:
        assert response.status == 400
        error = (await response.json())["error"]
    assert named in error
    assert sandbox.requests[-1].body == body
    assert (await post(session, sandbox))[1] == events(
        ["kept for the next valid request"]
    )


async def test_other_methods_get_405(
    sandbox: Sandbox, session: aiohttp.ClientSession
) -> None:
    async with session.get(sandbox.api_endpoint) as response:
        assert response.status == 405
        assert response.headers["Allow"] == "POST"
    assert sandbox.requests[0].method == "GET"


async def test_requests_are_recorded(
    sandbox: Sandbox, session: aiohttp.ClientSession
) -> None:
    headers = {"Visitor-ID": "abcdefghij0123456789", "Accept": "text/event-stream"}
    async with session.post(sandbox.api_endpoint, json=BODY, headers=headers) as r:
        await r.read()
    (request,) = sandbox.requests
    assert isinstance(request, RecordedRequest)
    assert (request.method, request.path) == ("POST", "/api/gpt/")
    assert request.headers["visitor-id"] == "abcdefghij0123456789"
    assert request.headers["ACCEPT"] == "text/event-stream"
    assert request.json == BODY
    assert msgspec.json.decode(request.body) == BODY


async def test_health(sandbox: Sandbox, session: aiohttp.ClientSession) -> None:
    sandbox.push(Reply(values=[]))
    for path in ("/", "/health"):
        async with session.get(sandbox.url + path) as response:
            assert response.status == 200
            status = await response.json()
        assert status["status"] == "ok"
        assert status["endpoint"] == "/api/gpt/"
        assert status["queued"] == 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"values": [], "body": b""}, "not both"),
        ({"body": b"", "done": True}, "raw body"),
        ({"write_size": 2, "splits": [1]}, "not both"),
        ({"write_size": 0}, "write_size"),
        ({"splits": [3, 2]}, "increasing"),
        ({"splits": [0]}, "positive"),
        ({"interval": -1.0}, "interval"),
        ({"stall_at": -1}, "stall_at"),
        ({"cut_at": -1}, "cut_at"),
        ({"compress": "zstd"}, "compress"),
    ],
)
def test_impossible_replies_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        Reply(**options)


def test_render_is_the_body_split_into_writes() -> None:
    reply = Reply(values=["a", "b"], splits=[2, 11])
    assert render(reply, ["a", "b"]) == [b"da", b'ta: "a"\n\n', b'data: "b"\n\n']


# Hosting


def test_the_fixture_works_from_sync_code(sandbox: Sandbox) -> None:
    sandbox.push(Reply(values=["held"], stall_at=0))
    replies: list[bytes] = []

    def fetch() -> None:
        request = urllib.request.Request(
            sandbox.api_endpoint,
            data=msgspec.json.encode(BODY),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            replies.append(response.read())

    thread = threading.Thread(target=fetch)
    thread.start()
    assert sandbox.wait_stalled()
    sandbox.release()
    thread.join(10)
    fetch()
    assert replies == [events(["held"]), events(default_reply(BODY))]
    assert [r.json for r in sandbox.requests] == [BODY, BODY]


def test_sandbox_url_needs_start() -> None:
    sandbox = Sandbox()
    with pytest.raises(UsageError, match="start"):
        _ = sandbox.url
    sandbox.stop()  # stopping an unstarted sandbox is harmless


def test_a_taken_port_fails_start() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        sandbox = Sandbox(port=taken.getsockname()[1])
        with pytest.raises(OSError, match="address already in use"):
            sandbox.start()
        sandbox.stop()


async def test_create_runner_hosts_it_on_the_callers_loop(
    session: aiohttp.ClientSession,
) -> None:
    state = SandboxState(pieces=3)
    runner = create_runner(state)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        async with session.post(
            f"http://127.0.0.1:{port}/api/gpt/", json=BODY
        ) as response:
            assert await response.read() == events(default_reply(BODY, pieces=3))
    finally:
        state.close()
        await runner.cleanup()
    assert len(state.requests) == 1


def test_main_reports_a_taken_port_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        status = main(["--port", str(taken.getsockname()[1])])
    assert status == 1
    error = capsys.readouterr().err
    assert error.startswith("python -m koala_chat.sandbox: error: ")
    assert error.count("\n") == 1


@pytest.mark.parametrize("port", ["70000", "-1", "http"])
def test_main_refuses_a_bad_port(port: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--port", port]) == 2
    error = capsys.readouterr().err
    assert "not a port number" in error
    assert error.count("\n") == 1


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--pieces", "0"], "--pieces: must be 1 or more"),
        (["--port", "70000"], "not a port number"),
        (["--interval", "-1"], "--interval: must be 0 seconds or more"),
        (["--no-such-option"], "Unrecognized arguments"),
    ],
)
def test_both_entry_points_parse_alike(
    capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    """`koala sandbox` and `python -m koala_chat.sandbox` share one parser."""
    from koala_chat._cli import main as koala

    assert main(argv) == 2
    alone = capsys.readouterr()
    assert koala(["sandbox", *argv]) == 2
    through_koala = capsys.readouterr()
    for captured in (alone, through_koala):
        assert captured.out == ""
        assert captured.err.count("\n") == 1
        assert says in captured.err


def test_command_serves_until_interrupted() -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "koala_chat.sandbox", "--port", "0", "--pieces", "3"],
        stdout=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stdout is not None
        try:
            listening = process.stdout.readline()
            export = process.stdout.readline()
            assert listening.startswith("Koala sandbox listening on http://127.0.0.1:")
            url = listening.split()[-1]
            assert export == f"export KOALA_API_ENDPOINT={url}/api/gpt/\n"
            request = urllib.request.Request(
                f"{url}/api/gpt/",
                data=msgspec.json.encode(BODY),
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                assert response.read() == events(default_reply(BODY, pieces=3))
            process.send_signal(signal.SIGINT)
            assert process.wait(10) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


# Dialects: docs/protocol.md, "The sandbox's dialects"

KEY = "0b7c5d1e-2f3a-4b5c-8d9e-0f1a2b3c4d5e"
BEARER = {"Authorization": f"Bearer {KEY}"}
MESSAGES_BODY: dict[str, Any] = {
    "messages": [
        {"role": "system", "content": "Be brief.", "attachments": []},
        {"role": "user", "content": "Hi", "attachments": []},
        {"role": "assistant", "content": "Hello!", "attachments": []},
        {"role": "user", "content": "How tall do koalas grow?", "attachments": []},
    ],
    "model": "",
}
API_BODY: dict[str, Any] = {
    "input": "How tall do koalas grow?",
    "inputHistory": ["Hi"],
    "outputHistory": ["Hello!"],
    "model": "gpt-4o",
    "realTimeData": False,
}
# What each dialect sends, and the headers it needs (docs/protocol.md).
REQUESTS: dict[str, tuple[dict[str, Any], dict[str, str]]] = {
    "history": (BODY, {}),
    "messages": (MESSAGES_BODY, {}),
    "api": (API_BODY, BEARER),
}


async def post_as(
    session: aiohttp.ClientSession,
    sandbox: Sandbox,
    dialect: str,
    **changes: Any,
) -> tuple[aiohttp.ClientResponse, bytes]:
    body, headers = REQUESTS[dialect]
    async with session.post(
        sandbox.api_endpoint, json={**body, **changes}, headers=headers
    ) as response:
        return response, await response.read()


def test_default_reply_of_a_messages_body() -> None:
    text = "".join(default_reply(MESSAGES_BODY, dialect="messages"))
    assert text == (
        'You said: "How tall do koalas grow?". History: 1 user, 1 assistant. '
        "Model: gemini-3-flash."
    )
    named = {**MESSAGES_BODY, "model": "claude-4.5-haiku"}
    assert "".join(default_reply(named, dialect="messages")).endswith(
        "Model: claude-4.5-haiku."
    )


def test_default_reply_of_an_api_body() -> None:
    text = "".join(default_reply({**API_BODY, "model": ""}, dialect="api"))
    assert text == (
        'You said: "How tall do koalas grow?". History: 1 user, 1 assistant. '
        "Model: gpt-4o-mini."
    )


async def test_messages_dialect_streams_and_ends_with_done(
    sandbox: Sandbox, session: aiohttp.ClientSession
) -> None:
    response, data = await post_as(session, sandbox, "messages")
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/event-stream"
    pieces = default_reply(MESSAGES_BODY, dialect="messages")
    assert data == events(pieces, done=True)
    assert "gemini-3-flash" in pieces[-1]


async def test_api_dialect_answers_one_json_object() -> None:
    with Sandbox(api_key=KEY, pieces=30) as sandbox:
        async with aiohttp.ClientSession() as session:
            response, data = await post_as(session, sandbox, "api")
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/json"
    text = "".join(default_reply(API_BODY, pieces=30, dialect="api"))
    assert data == msgspec.json.encode({"output": text})
    assert "Model: gpt-4o. Koalas sleep up to" in text
    assert len(default_reply(API_BODY, pieces=30, dialect="api")) == 30


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "missing API key"),
        ({"Authorization": "Basic a29hbGE6a2V5"}, "missing API key"),
        ({"Authorization": "Bearer"}, "missing API key"),
        ({"Authorization": "Bearer not-the-key"}, "invalid API key"),
        ({"Authorization": f"Bearer {KEY}x"}, "invalid API key"),
    ],
)
async def test_api_dialect_refuses_a_missing_or_wrong_key(
    session: aiohttp.ClientSession, headers: dict[str, str], message: str
) -> None:
    with Sandbox(protocol="api", api_key=KEY) as sandbox:
        sandbox.push(Reply(values=["kept"]))
        async with session.post(
            sandbox.api_endpoint, json=API_BODY, headers=headers
        ) as response:
            assert response.status == 401
            assert response.headers["WWW-Authenticate"] == "Bearer"
            assert response.content_type == "application/json"
            error = (await response.json())["error"]
        assert message in error
        assert KEY not in error
        assert "not-the-key" not in error
        assert sandbox.requests[-1].headers.get("Authorization") == headers.get(
            "Authorization"
        )
        assert (await post_as(session, sandbox, "api"))[1] == b'{"output":"kept"}'


async def test_the_default_key_is_the_sandboxs(
    sandbox: Sandbox, session: aiohttp.ClientSession
) -> None:
    assert sandbox.api_key == SANDBOX_API_KEY
    headers = {"Authorization": f"Bearer {SANDBOX_API_KEY}"}
    async with session.post(
        sandbox.api_endpoint, json=API_BODY, headers=headers
    ) as response:
        assert response.status == 200
        assert (await response.json())["output"].startswith("You said")
    async with session.post(
        sandbox.api_endpoint, json=API_BODY, headers=BEARER
    ) as response:
        assert response.status == 401


@pytest.mark.parametrize(
    ("dialect", "changes", "named"),
    [
        ("api", {"outputHistory": []}, "same length, not 1 and 0"),
        ("api", {"inputHistory": ["a", "b"]}, "same length, not 2 and 1"),
        ("api", {"realTimeData": "yes"}, "'realTimeData' must be a boolean"),
        ("api", {"realTimeData": 1}, "'realTimeData' must be a boolean"),
        ("api", {"input": None}, "'input' must be a string, not null"),
        ("api", {"model": 4}, "'model' must be a string"),
        ("api", {"inputHistory": [1]}, "must be a list of strings"),
        ("messages", {"messages": []}, "'messages' must not be empty"),
        ("messages", {"messages": "Hi"}, "'messages' must be an array"),
        ("messages", {"messages": ["Hi"]}, "messages[0] must be an object"),
        (
            "messages",
            {"messages": [{"role": "user", "content": "Hi"}]},
            "has no 'attachments'",
        ),
        (
            "messages",
            {"messages": [{"role": "user", "attachments": []}]},
            "messages[0] has no 'content'",
        ),
        (
            "messages",
            {"messages": [{"content": "Hi", "attachments": []}]},
            "has no 'role'",
        ),
        (
            "messages",
            {"messages": [{"role": "bot", "content": "Hi", "attachments": []}]},
            "role must be system, user or assistant, not 'bot'",
        ),
        (
            "messages",
            {
                "messages": [
                    {"role": "user", "content": [{"type": "text"}], "attachments": []}
                ]
            },
            "'messages[0].content' must be a string, not an array",
        ),
        (
            "messages",
            {"messages": [{"role": "user", "content": "Hi", "attachments": {}}]},
            "'messages[0].attachments' must be an array, not an object",
        ),
        ("messages", {"model": None}, "'model' must be a string, not null"),
    ],
)
async def test_malformed_bodies_of_each_dialect_get_400(
    session: aiohttp.ClientSession,
    dialect: str,
    changes: dict[str, Any],
    named: str,
) -> None:
    with Sandbox(api_key=KEY) as sandbox:
        sandbox.push(Reply(values=["kept"]))
        response, data = await post_as(session, sandbox, dialect, **changes)
        assert response.status == 400
        assert response.content_type == "application/json"
        assert named in msgspec.json.decode(data)["error"]
        assert sandbox.state.queued == 1


@pytest.mark.parametrize(
    ("protocol", "sent", "status", "named"),
    [
        ("history", "messages", 400, "missing field 'input'"),
        ("messages", "history", 400, "missing field 'messages'"),
        ("messages", "api", 400, "missing field 'messages'"),
        ("api", "history", 401, "missing API key"),
        ("api", "messages", 400, "missing field 'input'"),
    ],
)
async def test_a_body_of_another_dialect_is_refused(
    session: aiohttp.ClientSession,
    protocol: Any,
    sent: str,
    status: int,
    named: str,
) -> None:
    body, headers = REQUESTS[sent]
    with Sandbox(protocol=protocol, api_key=KEY) as sandbox:
        # A scripted reply is checked like the default one, and stays queued.
        sandbox.push(Reply(values=["kept"]))
        async with session.post(
            sandbox.api_endpoint,
            json=body,
            headers={
                **headers,
                **(BEARER if protocol == "api" and sent != "history" else {}),
            },
        ) as response:
            assert response.status == status
            assert named in (await response.json())["error"]
        response, _ = await post_as(session, sandbox, protocol)
        assert response.status == 200
        assert sandbox.protocol == protocol


@pytest.mark.parametrize("dialect", ["history", "messages", "api"])
async def test_any_recognises_each_dialect_by_shape(
    session: aiohttp.ClientSession, dialect: str
) -> None:
    with Sandbox(api_key=KEY) as sandbox:
        assert sandbox.protocol == "any"
        response, data = await post_as(session, sandbox, dialect)
        (recorded,) = sandbox.requests
    assert response.status == 200
    body = REQUESTS[dialect][0]
    expected = default_writes(body, dialect=dialect)  # type: ignore[arg-type]
    assert data == b"".join(expected)
    assert recorded.json == body
    assert recorded.path == "/api/gpt/"


async def test_scripted_values_in_each_dialect() -> None:
    values: list[Any] = ["Hel", "lo", {"text": "!"}, 42]
    async with aiohttp.ClientSession() as session:
        with Sandbox(api_key=KEY) as sandbox:
            sandbox.push(*(Reply(values=values) for _ in range(3)))
            sandbox.push(
                Reply(values=values, done=False), Reply(values=values, done=True)
            )
            replies = [(await post_as(session, sandbox, d))[1] for d in REQUESTS]
            no_done = (await post_as(session, sandbox, "messages"))[1]
            done = (await post_as(session, sandbox, "history"))[1]
    assert replies == [
        events(values),
        events(values, done=True),
        b'{"output":"Hello{\\"text\\":\\"!\\"}42"}',
    ]
    assert no_done == events(values)
    assert done == events(values, done=True)


@pytest.mark.parametrize("dialect", ["history", "messages", "api"])
@pytest.mark.parametrize(
    "script",
    [
        pytest.param({"splits": [3, 7]}, id="splits"),
        pytest.param({"write_size": 4}, id="write-size"),
        pytest.param({"compress": "gzip"}, id="gzip"),
        pytest.param({"interval": 0.001, "status": 201}, id="paced"),
    ],
)
async def test_fault_scripts_work_in_every_dialect(
    dialect: str, script: dict[str, Any]
) -> None:
    body, headers = REQUESTS[dialect]
    values = ["one ", "two"]
    with Sandbox(api_key=KEY) as sandbox:
        sandbox.push(Reply(values=values, **script))
        head, chunks = await raw_chunks(
            sandbox, msgspec.json.encode(body), headers=headers
        )
    expected = render(Reply(values=values), values, dialect)  # type: ignore[arg-type]
    data = b"".join(chunks)
    if "compress" in script:
        data = gzip.decompress(data)
    # The api dialect's one JSON object is one write unless split.
    elif "interval" not in script or dialect != "api":
        assert len(chunks) > 1
    assert data == b"".join(expected)
    assert head.startswith(b"HTTP/1.1 %d " % script.get("status", 200))


@pytest.mark.parametrize("dialect", ["history", "messages", "api"])
async def test_stalls_and_cuts_work_in_every_dialect(
    session: aiohttp.ClientSession, dialect: str
) -> None:
    body, headers = REQUESTS[dialect]
    with Sandbox(api_key=KEY) as sandbox:
        sandbox.push(Reply(values=["a"], stall_at=0), Reply(values=["abc"], cut_at=5))
        async with session.post(
            sandbox.api_endpoint, json=body, headers=headers
        ) as response:
            assert await sandbox.wait_stalled_async()
            sandbox.release()
            first = await response.read()
        received, error = await read_until_error(session, sandbox, body, headers)
    assert isinstance(error, aiohttp.ClientPayloadError)
    whole = b"".join(render(Reply(), ["abc"], dialect))  # type: ignore[arg-type]
    assert first == b"".join(render(Reply(), ["a"], dialect))  # type: ignore[arg-type]
    assert received == whole[:5]


async def test_an_api_reply_with_a_raw_body_is_sent_as_it_is(
    session: aiohttp.ClientSession,
) -> None:
    with Sandbox(protocol="api", api_key=KEY) as sandbox:
        sandbox.push(
            Reply(status=402, body=b'{"error":"out of credits"}'),
            Reply(body=b"<html>oops</html>", content_type="text/html"),
        )
        response, data = await post_as(session, sandbox, "api")
        assert (response.status, data) == (402, b'{"error":"out of credits"}')
        assert response.headers["Content-Type"] == "application/json"
        response, data = await post_as(session, sandbox, "api")
        assert (response.status, data) == (200, b"<html>oops</html>")
        assert response.headers["Content-Type"] == "text/html"


@pytest.mark.parametrize(
    ("protocol", "raw", "expected"),
    [
        ("any", b'{"prompt": "made up"}', events(["x"])),
        ("any", b"not json at all", events(["x"])),
        ("history", b"[1, 2, 3]", events(["x"])),
        ("messages", b'{"prompt": "made up"}', events(["x"], done=True)),
    ],
)
async def test_a_reply_for_any_body_answers_a_made_up_shape(
    protocol: Any, raw: bytes, expected: bytes
) -> None:
    with Sandbox(protocol=protocol) as sandbox:
        sandbox.push(Reply(values=["x"], any_body=True))
        _, chunks = await raw_chunks(sandbox, raw)
        assert b"".join(chunks) == expected
        assert sandbox.requests[0].body == raw
        # Only that reply: the next request of that shape is checked again.
        head, _ = await raw_chunks(sandbox, raw)
    assert head.startswith(b"HTTP/1.1 400 ")


async def test_a_reply_for_any_body_without_values_summarises_what_it_can(
    sandbox: Sandbox,
) -> None:
    sandbox.push(Reply(any_body=True))
    _, chunks = await raw_chunks(sandbox, b'{"input": 3, "inputHistory": "x"}')
    assert b"".join(chunks) == events(default_reply({}, dialect="history"))
    assert "".join(default_reply({})) == (
        'You said: "". History: 0 user, 0 assistant. Model: gpt-4o-mini.'
    )


async def test_a_reply_for_any_body_still_wants_the_api_key() -> None:
    with Sandbox(protocol="api", api_key=KEY) as sandbox:
        sandbox.push(Reply(values=["x"], any_body=True))
        head, _ = await raw_chunks(sandbox, b"{}")
        assert head.startswith(b"HTTP/1.1 401 ")
        _, chunks = await raw_chunks(sandbox, b"{}", headers=BEARER)
    assert b"".join(chunks) == b'{"output":"x"}'


async def test_what_our_builders_send_is_accepted_in_each_dialect(
    session: aiohttp.ClientSession,
) -> None:
    conversation: list[Any] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
        {"role": "user", "content": "there"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Koalas?"},
    ]
    for dialect in ("history", "messages", "api"):
        request = build_request(
            dialect,  # type: ignore[arg-type]
            "",
            conversation,
            api_key=ApiKey(KEY),
        )
        with Sandbox(protocol=dialect, api_key=KEY) as sandbox:  # type: ignore[arg-type]
            async with session.post(
                sandbox.api_endpoint, data=request.body, headers=request.headers
            ) as response:
                assert response.status == 200, await response.text()
                await response.read()
            (recorded,) = sandbox.requests
        assert recorded.body == request.body
        for name, value in request.headers.items():
            assert recorded.headers[name] == value


def test_unknown_protocols_and_empty_keys_are_refused() -> None:
    with pytest.raises(UsageError, match="unknown sandbox protocol 'auto'"):
        SandboxState(protocol="auto")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="api_key"):
        Sandbox(api_key="")
    assert SANDBOX_PROTOCOLS == ("any", "history", "messages", "api")


async def test_health_names_the_protocol(session: aiohttp.ClientSession) -> None:
    with Sandbox(protocol="messages") as sandbox:
        async with session.get(sandbox.url + "/health") as response:
            assert (await response.json())["protocol"] == "messages"


def test_the_key_is_not_in_the_sandboxs_repr() -> None:
    sandbox = Sandbox(api_key=KEY)
    assert KEY not in repr(sandbox)
    assert KEY not in repr(sandbox.state)
