"""A client that stops reading its stream pauses the upstream (server/streaming.py).

Each test stalls one raw client (A) on a long sandbox reply and uses a second
client (B), which reads a reply of the same length through the same server, as
its clock: had the server kept reading A's upstream, A's reply would have been
written out by the time B's was. How far the sandbox wrote shows what the server
let through (`SandboxState.sent`, `finished`). The memory this saves is measured
by benchmarks/bench_stalled.py, not here.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import aiohttp
import msgspec

from koala_chat.sandbox import Reply, Sandbox
from server_fixtures import ServerThread

# 24 MiB of reply: far more than the kernel's socket buffers take (on loopback
# each sender's autotunes up to tcp_wmem's 4 MiB) with the server's own
# per-stream bound. Each piece is distinct, so that a piece lost, doubled or
# moved shows in the text.
PIECES = 6 * 1024
PIECE_SIZE = 4 * 1024
# A's socket takes little from the server itself: what it does not read stays
# on the server's side of the connection.
CLIENT_RCVBUF = 16 * 1024
TIMEOUT = 30.0


def pieces(tag: str) -> list[str]:
    """Return the distinct pieces of a reply, each `PIECE_SIZE` characters."""
    return [f"{tag}{index:07d} ".ljust(PIECE_SIZE, "k") for index in range(PIECES)]


def reply_bytes(values: list[str]) -> int:
    """Return the size of the sandbox's body for `values` (history dialect)."""
    return sum(
        len(b"data: " + msgspec.json.encode(value) + b"\n\n") for value in values
    )


def chat_request(port: int) -> bytes:
    """Return a streaming chat-completion request, head and body."""
    body = msgspec.json.encode(
        {"model": "", "stream": True, "messages": [{"role": "user", "content": "Hi"}]}
    )
    return (
        "POST /v1/chat/completions HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body


def dechunked(raw: bytes) -> bytes:
    """Return the body of a whole raw response with a chunked body."""
    head, _, chunked = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head[:80]
    assert b"chunked" in head.lower()
    body = bytearray()
    at = 0
    while True:
        line_end = chunked.index(b"\r\n", at)
        size = int(chunked[at:line_end], 16)
        if size == 0:
            return bytes(body)
        body += chunked[line_end + 2 : line_end + 2 + size]
        at = line_end + 2 + size + 2


def text_of_stream(body: bytes) -> str:
    """Return the reply text of a whole event stream from `koala serve`."""
    *events, done, end = body.split(b"\n\n")
    assert (done, end) == (b"data: [DONE]", b"")
    text = []
    for event in events:
        choices = msgspec.json.decode(event.removeprefix(b"data: "))["choices"]
        text.append(choices[0]["delta"].get("content", ""))
    return "".join(text)


async def open_stalled(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect with a small receive buffer and send a request; read nothing."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, CLIENT_RCVBUF)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    except BaseException:
        sock.close()
        raise
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(chat_request(port))
    await writer.drain()
    return reader, writer


async def read_through(server: ServerThread) -> str:
    """Return the whole text of one streamed reply, read as it comes (B)."""
    payload = {
        "model": "",
        "stream": True,
        "messages": [{"role": "user", "content": "Hi"}],
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(server.base_url + "/chat/completions", json=payload) as response,
    ):
        assert response.status == 200
        return text_of_stream(await response.read())


@asynccontextmanager
async def stalled_behind_a_reader(
    sandbox: Sandbox, start_server: Callable[..., ServerThread]
) -> AsyncIterator[tuple[list[str], asyncio.StreamReader, asyncio.StreamWriter]]:
    """Stall A, let B read a whole reply; yield A's pieces and connection.

    On entry B has its whole reply and A's upstream reply is not written out.
    """
    server = start_server()
    stalled, read = pieces("a"), pieces("b")
    sandbox.push(Reply(values=stalled), Reply(values=read))
    reader, writer = await open_stalled(server.port)
    try:
        # A's reply is under way before B asks for the second one.
        assert await sandbox.state.wait_sent_async(1, TIMEOUT)
        assert await asyncio.wait_for(read_through(server), TIMEOUT) == "".join(read)
        assert sandbox.state.finished == 1, "A's upstream reply was read to its end"
        written_for_a = sandbox.state.sent - reply_bytes(read)
        assert 0 < written_for_a < reply_bytes(stalled) // 2
        yield stalled, reader, writer
    finally:
        writer.close()
        await writer.wait_closed()


async def test_a_stalled_reader_pauses_its_upstream_then_gets_the_whole_reply(
    sandbox: Sandbox, start_server: Callable[..., ServerThread]
) -> None:
    async with stalled_behind_a_reader(sandbox, start_server) as (stalled, reader, _):
        raw = await asyncio.wait_for(reader.read(), TIMEOUT)
        assert text_of_stream(dechunked(raw)) == "".join(stalled)
        assert sandbox.state.finished == 2
        assert sandbox.disconnects == 0


async def test_a_stalled_reader_that_leaves_closes_its_upstream(
    sandbox: Sandbox, start_server: Callable[..., ServerThread]
) -> None:
    async with stalled_behind_a_reader(sandbox, start_server) as (_, _, writer):
        writer.close()
        await writer.wait_closed()
        assert await sandbox.wait_disconnect_async(TIMEOUT)
        assert sandbox.state.finished == 1


async def test_the_sandbox_counts_the_body_bytes_and_the_replies_it_wrote(
    sandbox: Sandbox,
) -> None:
    values = ["Hel", "lo"]
    sandbox.push(Reply(values=values, write_size=5), Reply(values=values, cut_at=7))
    body = {"input": "Hi", "inputHistory": [], "outputHistory": [], "model": ""}
    async with aiohttp.ClientSession() as session:
        async with session.post(sandbox.api_endpoint, json=body) as response:
            whole = await response.read()
        assert len(whole) == reply_bytes(values) == sandbox.state.sent
        assert sandbox.state.finished == 1
        with contextlib.suppress(aiohttp.ClientError):
            async with session.post(sandbox.api_endpoint, json=body) as response:
                await response.read()
    # A cut reply counts the bytes it wrote, and does not count as finished.
    assert sandbox.state.sent == reply_bytes(values) + 7
    assert sandbox.state.finished == 1
