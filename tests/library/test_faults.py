"""Faults of the network and the server, each against a real socket.

Whatever goes wrong, the caller gets the complete reply or a typed error within
its time limits: never a hang, a duplicate or a silently missing piece. The
`no_leaks` fixture checks after each test that no session, connector or client
socket is left open.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp.compression_utils import HAS_BROTLI

from hardening import collect, collect_into, reply_text
from koala_chat import (
    ConnectError,
    EventTooLargeError,
    JSONValue,
    KoalaTimeoutError,
    NotEventStreamError,
    TransportError,
)
from koala_chat.sandbox import Reply, Sandbox, default_reply

pytestmark = pytest.mark.usefixtures("no_leaks")

FAST: dict[str, Any] = {"retry_backoff": 0.01}
ONCE: dict[str, Any] = {"max_retries": 0}


def events(*values: JSONValue) -> bytes:
    """Return the event-stream bytes the sandbox sends for `values`."""
    return b"".join(
        b"data: " + msgspec.json.encode(value) + b"\n\n" for value in values
    )


async def test_connection_refused() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    with pytest.raises(ConnectError, match=f"127.0.0.1:{port}") as caught:
        await collect(api_endpoint=f"http://127.0.0.1:{port}/api/gpt/", **FAST)

    assert caught.value.attempts == 3


class SilentServer:
    """A raw TCP server that accepts and closes before any status line."""

    def __init__(self, *, reset: bool) -> None:
        self.reset = reset
        self.connections = 0
        self.port = 0

    async def handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.connections += 1
        await reader.readuntil(b"\r\n\r\n")  # the request head has arrived
        if self.reset:
            # SO_LINGER with a zero timeout: close() sends a TCP reset.
            sock = writer.get_extra_info("socket")
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
        writer.close()


@pytest.fixture(params=[False, True], ids=["close", "reset"])
async def silent_server(request: pytest.FixtureRequest) -> AsyncIterator[SilentServer]:
    silent = SilentServer(reset=request.param)
    server = await asyncio.start_server(silent.handle, "127.0.0.1", 0)
    silent.port = server.sockets[0].getsockname()[1]
    try:
        yield silent
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    ("protocol", "sent"),
    [
        ("history", 3),  # nothing was yielded: retried
        ("auto", 1),  # the request may have arrived: auto sends it once
    ],
)
async def test_reset_before_the_status_line(
    silent_server: SilentServer, protocol: str, sent: int
) -> None:
    endpoint = f"http://127.0.0.1:{silent_server.port}/api/gpt/"

    with pytest.raises(TransportError) as caught:
        await collect(api_endpoint=endpoint, protocol=protocol, **FAST)

    assert caught.value.attempts == sent
    assert silent_server.connections == sent


async def test_reset_mid_event(sandbox: Sandbox) -> None:
    sandbox.push(Reply(values=["Hello", " world"], cut_at=len(events("Hello")) + 10))
    received: list[JSONValue] = []

    with pytest.raises(TransportError, match="closed the connection"):
        await collect_into(received, api_endpoint=sandbox.api_endpoint, **FAST)

    assert received == ["Hello"]
    assert len(sandbox.requests) == 1


async def test_headers_then_silence_hits_the_idle_limit(sandbox: Sandbox) -> None:
    sandbox.push(Reply(values=["never"], stall_at=0))
    loop = asyncio.get_running_loop()
    start = loop.time()
    try:
        with pytest.raises(KoalaTimeoutError) as caught:
            await collect(api_endpoint=sandbox.api_endpoint, idle_timeout=0.3, **ONCE)
        # The client hung up on the stalled reply instead of keeping it open.
        assert await sandbox.wait_disconnect_async(5)
    finally:
        sandbox.release()

    assert (caught.value.limit, caught.value.seconds) == ("idle", 0.3)
    assert isinstance(caught.value, TimeoutError)
    assert 0.3 <= loop.time() - start < 1.5


async def test_trickle_hits_the_total_limit(sandbox: Sandbox) -> None:
    # One byte every 0.3 s never trips the idle limit, only the total one.
    sandbox.push(Reply(values=["a" * 50], write_size=1, interval=0.3))
    loop = asyncio.get_running_loop()
    start = loop.time()

    with pytest.raises(KoalaTimeoutError) as caught:
        await collect(
            api_endpoint=sandbox.api_endpoint, timeout=1.5, idle_timeout=1.0, **FAST
        )

    assert (caught.value.limit, caught.value.seconds) == ("total", 1.5)
    assert 1.4 <= loop.time() - start < 2.5
    assert len(sandbox.requests) == 1  # no time was left to retry


async def test_chunked_body_cut_without_its_last_chunk(sandbox: Sandbox) -> None:
    # Every event arrives, then a reset instead of the final zero-size chunk:
    # the reply may have gone on, so the caller learns that it was cut.
    body = events("a", "b")
    sandbox.push(Reply(values=["a", "b"], cut_at=len(body)))
    received: list[JSONValue] = []

    with pytest.raises(TransportError, match="closed the connection"):
        await collect_into(received, api_endpoint=sandbox.api_endpoint, **FAST)

    assert received == ["a", "b"]
    assert len(sandbox.requests) == 1


async def test_chunked_body_cut_after_done_is_complete(sandbox: Sandbox) -> None:
    body = events("a", "b") + b"data: [DONE]\n\n"
    sandbox.push(Reply(values=["a", "b"], done=True, cut_at=len(body)))

    assert await collect(api_endpoint=sandbox.api_endpoint, **ONCE) == ["a", "b"]


@pytest.mark.parametrize(
    "coding",
    [
        "gzip",
        "deflate",
        pytest.param(
            "br", marks=pytest.mark.skipif(not HAS_BROTLI, reason="needs brotli")
        ),
    ],
)
async def test_compressed_body(sandbox: Sandbox, coding: Any) -> None:
    # Small writes split the compressed bytes at arbitrary places.
    sandbox.push(Reply(compress=coding, write_size=7))

    values = await collect(api_endpoint=sandbox.api_endpoint, **ONCE)

    (request,) = sandbox.requests
    assert "".join(values) == reply_text(request)
    assert coding in request.headers["Accept-Encoding"]


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/html", b"<html><title>Koala Chat</title><body>Sign in</body></html>"),
        ("application/json", b'{"error": "not here"}'),
        ("text/plain", b'data: "looks like a stream"\n\n'),
    ],
)
async def test_wrong_content_type(
    sandbox: Sandbox, content_type: str, body: bytes
) -> None:
    sandbox.push(Reply(body=body, content_type=content_type))

    with pytest.raises(NotEventStreamError) as caught:
        await collect(api_endpoint=sandbox.api_endpoint, **FAST)

    assert caught.value.content_type == content_type
    assert caught.value.body
    assert len(sandbox.requests) == 1  # not retried


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Enormous": "x" * 20_000},
        {f"X-Header-{n}": "x" for n in range(500)},
    ],
    ids=["one-enormous-header", "too-many-headers"],
)
async def test_enormous_header(sandbox: Sandbox, headers: dict[str, str]) -> None:
    sandbox.push(Reply(headers=headers))

    with pytest.raises(TransportError) as caught:
        await collect(api_endpoint=sandbox.api_endpoint, **ONCE)

    message = str(caught.value)
    assert "reply head that cannot be parsed" in message
    assert len(message) < 400  # one readable line, not the header


async def test_event_over_the_size_limit(sandbox: Sandbox) -> None:
    sandbox.push(Reply(values=["small", "x" * 5000, "after"]))
    received: list[JSONValue] = []

    with pytest.raises(EventTooLargeError) as caught:
        await collect_into(
            received, api_endpoint=sandbox.api_endpoint, max_event_size=1024, **FAST
        )

    assert received == ["small"]
    assert caught.value.limit == 1024
    assert len(sandbox.requests) == 1


async def test_large_event_under_the_limit_arrives_whole(sandbox: Sandbox) -> None:
    big = "koala " * 50_000  # 300 KB, more than aiohttp's line buffer
    sandbox.push(Reply(values=[big, "end"], write_size=4096))

    values = await collect(api_endpoint=sandbox.api_endpoint, **ONCE)

    assert values == [big, "end"]


async def test_invalid_utf8_inside_an_event(sandbox: Sandbox) -> None:
    body = 'data: "caf\xe9 \u20ac"\n\n'.encode()
    bad = b'data: "bad \xff\xfe byte"\n\ndata: "cut \xe2\x82"\n\n'
    # Split inside the two-byte "é" and the three-byte "€".
    sandbox.push(Reply(body=body + bad, splits=[len(b'data: "caf\xc3'), 12]))

    values = await collect(api_endpoint=sandbox.api_endpoint, **ONCE)

    # HTML standard, section 9.2.5: decode as UTF-8, replacing invalid bytes.
    assert values == ["caf\xe9 \u20ac", "bad \ufffd\ufffd byte", "cut \ufffd"]


async def test_100_concurrent_streams_through_one_borrowed_connector(
    sandbox: Sandbox,
) -> None:
    count = 100
    connector = aiohttp.TCPConnector()  # aiohttp's default limit: 100
    try:
        replies = await asyncio.gather(
            *(
                collect(
                    [{"role": "user", "content": f"stream {n}"}],
                    connector=connector,
                    api_endpoint=sandbox.api_endpoint,
                    **ONCE,
                )
                for n in range(count)
            )
        )
        assert not connector.closed
    finally:
        await connector.close()

    for n, values in enumerate(replies):
        body = {"input": f"stream {n}", "inputHistory": [], "outputHistory": []}
        assert values == default_reply({**body, "model": "gpt-4o-mini"})
    assert len(sandbox.requests) == count
