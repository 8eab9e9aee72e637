"""`koala serve` against hostile and careless clients, over real sockets.

Compressed bodies, slow clients, too many connections, malformed requests,
forged log lines, a taken port and a slow stop: each case talks to a real
server the way the attacker would, with raw bytes where a client library would
refuse to send them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import socket
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from typing import Any

import aiohttp
import brotli
import msgspec
import pytest

from koala_chat import UsageError
from koala_chat.sandbox import Reply, Sandbox
from koala_chat.server.app import ACCESS_LOGGER
from koala_chat.server.config import ServerConfig
from koala_chat.server.logtext import loggable
from server_fixtures import ServerThread

KEY = "sekrit-KEY-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
BODY = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}'


# --- raw HTTP/1.1 over a socket ------------------------------------------------------


class RawResponse:
    """A response read off a raw socket: status, headers, body."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def error(self) -> dict[str, Any]:
        """Return the OpenAI error object of the body (and check its shape)."""
        assert self.headers["content-type"].startswith("application/json")
        document = msgspec.json.decode(self.body)
        assert set(document) == {"error"}
        assert set(document["error"]) == {"message", "type", "param", "code"}
        error: dict[str, Any] = document["error"]
        return error


async def read_response(reader: asyncio.StreamReader) -> RawResponse:
    """Read one response with a Content-Length body."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return RawResponse(int(status_line.split()[1]), headers, body)


async def exchange(port: int, data: bytes, *, logged: bool = False) -> RawResponse:
    """Send `data` on a new connection and return the response.

    With `logged`, return only once the server logged the request: it writes
    the access-log line after the response, before it reads the next request
    of the connection, so a second request is answered only after that.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        response = await asyncio.wait_for(read_response(reader), 10.0)
        if logged:
            writer.write(request("/health", method="GET", body=b""))
            after = await asyncio.wait_for(read_response(reader), 10.0)
            assert after.status == 200
        return response
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bytes:
    """Return what the server sent until it closed the connection."""
    return await asyncio.wait_for(reader.read(), seconds)


def request(
    target: str = "/v1/chat/completions",
    *headers: str,
    method: str = "POST",
    body: bytes = BODY,
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", *headers]
    if body:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


# --- compressed bodies ---------------------------------------------------------------


@functools.cache
def bomb(encoding: str) -> bytes:
    """Return a small body that inflates to hundreds of MiB of zeros."""
    zeros = bytes(1 << 20)
    if encoding == "gzip":
        compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
        return b"".join(compressor.compress(zeros) for _ in range(64)) + (
            compressor.flush()
        )
    packer = brotli.Compressor(quality=5)
    return b"".join(packer.process(zeros) for _ in range(256)) + packer.finish()


async def health_latencies(http: aiohttp.ClientSession, url: str) -> list[float]:
    latencies = []
    for _ in range(10):
        started = time.perf_counter()
        async with http.get(url + "/health") as response:
            assert response.status == 200
        latencies.append(time.perf_counter() - started)
    return latencies


@pytest.mark.parametrize("encoding", ["gzip", "br", "deflate", "x-unknown"])
async def test_a_compressed_body_is_refused_unread_and_health_stays_fast(
    http: aiohttp.ClientSession,
    start_server: Callable[..., ServerThread],
    encoding: str,
) -> None:
    server = start_server(api_key=KEY)
    body = bomb("gzip" if encoding == "gzip" else "br")
    headers = {**AUTH, "Content-Encoding": encoding, "Content-Type": "application/json"}

    async def attack() -> tuple[int, Any]:
        async with http.post(
            server.base_url + "/chat/completions", data=body, headers=headers
        ) as response:
            return response.status, await response.json()

    attacks = [asyncio.create_task(attack()) for _ in range(4)]
    latencies = await health_latencies(http, server.url)
    for status, document in await asyncio.gather(*attacks):
        assert status == 415
        assert document["error"]["code"] == "unsupported_content_encoding"
    assert max(latencies) < 1.0, latencies


async def test_a_compressed_body_without_the_key_gets_401(
    http: aiohttp.ClientSession, start_server: Callable[..., ServerThread]
) -> None:
    server = start_server(api_key=KEY)
    async with http.post(
        server.base_url + "/chat/completions",
        data=bomb("br"),
        headers={"Content-Encoding": "br"},
    ) as response:
        assert response.status == 401


async def test_an_identity_encoding_is_accepted(
    http: aiohttp.ClientSession, start_server: Callable[..., ServerThread]
) -> None:
    server = start_server()
    async with http.post(
        server.base_url + "/chat/completions",
        data=BODY,
        headers={"Content-Encoding": "identity", "Content-Type": "application/json"},
    ) as response:
        assert response.status == 200


async def test_a_chunked_body_over_the_limit_gets_413(
    start_server: Callable[..., ServerThread],
) -> None:
    server = start_server(max_body=1000)
    chunk = b"x" * 4000
    data = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"%x\r\n" % len(chunk)
        + chunk
        + b"\r\n0\r\n\r\n"
    )
    response = await exchange(server.port, data)
    assert response.status == 413
    assert response.error()["code"] == "request_too_large"


# --- slow clients and too many of them ------------------------------------------------


async def test_a_client_slow_to_send_its_head_is_dropped(
    start_server: Callable[..., ServerThread],
) -> None:
    server = start_server(head_timeout=0.5)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    started = time.monotonic()
    closed = asyncio.create_task(reader.read())
    try:
        # A slowloris: a byte of the head every 0.1 s, never the end of it.
        for char in b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:
            if closed.done():
                break
            writer.write(bytes([char]))
            await asyncio.sleep(0.1)  # the attack's pace, not synchronisation
        assert await asyncio.wait_for(closed, 5.0) == b""
    finally:
        closed.cancel()
        writer.close()
    assert time.monotonic() - started < 3.0


async def test_an_idle_connection_is_closed_after_the_head_timeout(
    start_server: Callable[..., ServerThread],
) -> None:
    server = start_server(head_timeout=0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        assert await closed_within(reader, 5.0) == b""
    finally:
        writer.close()


async def test_a_client_slow_to_send_its_body_gets_408(
    start_server: Callable[..., ServerThread],
) -> None:
    server = start_server(body_timeout=0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        json_type = "Content-Type: application/json"
        writer.write(request("/v1/chat/completions", json_type, body=b"")[:-2])
        writer.write(b"Content-Length: 100\r\n\r\n{")
        response = await asyncio.wait_for(read_response(reader), 5.0)
        assert response.status == 408
        assert response.error()["code"] == "request_timeout"
        assert response.headers["connection"] == "close"
    finally:
        writer.close()


async def test_connections_over_the_cap_get_503_and_one_log_line(
    http: aiohttp.ClientSession,
    start_server: Callable[..., ServerThread],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "koala_chat.server")
    server = start_server(max_connections=3)
    held = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(3)]
    try:
        for _ in range(5):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            response = await asyncio.wait_for(read_response(reader), 5.0)
            assert response.status == 503
            assert response.error()["code"] == "too_many_connections"
            assert await closed_within(reader, 5.0) == b""
            writer.close()
    finally:
        for reader, writer in held:
            # The server closes these after answering: once the client sees
            # the close, the server has let go of the connection.
            writer.write(
                request("/health", "Connection: close", method="GET", body=b"")
            )
            await closed_within(reader, 5.0)
            writer.close()
    refusals = [r for r in caplog.records if "open connections" in r.getMessage()]
    assert len(refusals) == 1
    # Once the held connections are gone, the server takes new ones again.
    async with http.get(server.url + "/health") as reply:
        assert reply.status == 200


def _serve_command(*args: str, port: int = 0) -> list[str]:
    return [sys.executable, "-m", "koala_chat", "serve", "--port", str(port), *args]


async def _listening_port(
    process: subprocess.Popen[str], seen: list[str] | None = None
) -> int:
    """Return the port the server logs; put the lines up to there in `seen`."""
    assert process.stderr is not None
    while True:
        line = await asyncio.to_thread(process.stderr.readline)
        assert line, "the server exited before it listened"
        if seen is not None:
            seen.append(line)
        if match := re.search(r"listening on http://127\.0\.0\.1:(\d+)", line):
            return int(match.group(1))


async def test_a_low_file_limit_logs_one_line_not_a_traceback_per_accept(
    sandbox: Sandbox,
) -> None:
    code = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (48, 48))\n"
        "from koala_chat._cli.app import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    process = subprocess.Popen(  # noqa: ASYNC220 (started once, read in a thread)
        [sys.executable, "-c", code, "serve", "--port", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    clients: list[socket.socket] = []
    start_log: list[str] = []
    try:
        port = await _listening_port(process, start_log)
        for _ in range(80):
            with contextlib.suppress(OSError):
                clients.append(socket.create_connection(("127.0.0.1", port), 2.0))
        # Each further accept fails while the clients hold their descriptors:
        # a request on a held connection is served only after those failures.
        await asyncio.to_thread(clients[0].sendall, request("/health", method="GET"))
        reply = await asyncio.to_thread(clients[0].recv, 4096)
        assert reply.startswith(b"HTTP/1.1 200")
    finally:
        for client in clients:
            client.close()
        process.terminate()
        _, rest = await asyncio.to_thread(process.communicate, None, 15.0)
    log = "".join(start_log) + rest
    assert log.count("limit of open files (48)") == 1, log[-2000:]
    assert log.count("cannot accept connections") == 1, log[-2000:]
    assert "Traceback" not in log
    assert process.returncode == 0


# --- a port somebody else holds ---------------------------------------------------


async def test_workers_refuse_a_port_held_with_so_reuseport() -> None:
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = await asyncio.to_thread(
            subprocess.run,
            _serve_command("--workers", "2", port=port),
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        holder.close()
    assert result.returncode == 2
    error = result.stderr.strip()
    assert len(error.splitlines()) == 1, error
    assert f"Port {port}" in error
    assert "in use" in error


async def test_a_second_server_with_workers_is_refused(sandbox: Sandbox) -> None:
    first = subprocess.Popen(  # noqa: ASYNC220 (started once, read in a thread)
        _serve_command("--workers", "2", "--endpoint", sandbox.api_endpoint),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        port = await _listening_port(first)
        second = await asyncio.to_thread(
            subprocess.run,
            _serve_command("--workers", "2", port=port),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert second.returncode == 2
        assert "in use" in second.stderr
    finally:
        first.terminate()
        await asyncio.to_thread(first.communicate, None, 15.0)
    assert first.returncode == 0


# --- logs: no header values, no forged lines ---------------------------------------


def _formatted(records: list[logging.LogRecord]) -> str:
    formatter = logging.Formatter("%(name)s %(message)s")
    return "\n".join(formatter.format(record) for record in records)


@pytest.mark.parametrize(
    "head",
    [
        f"Authorization: Bearer {KEY}\x01",
        f"Authorization: Bearer {KEY}\x00",
        f"Authorization: Bearer {KEY}\x7f",
        f"Authorization: Bearer {KEY}\rX-Other: 1",
        f"Authorization: Bearer {KEY}" + "x" * 9000,
        f"{KEY}: Bearer",
        f"Authorization {KEY}",
    ],
    ids=["soh", "nul", "del", "bare-cr", "too-long", "bad-name", "no-colon"],
)
async def test_a_malformed_header_never_puts_its_value_in_the_log(
    start_server: Callable[..., ServerThread],
    caplog: pytest.LogCaptureFixture,
    head: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("aiohttp", "aiohttp.server", "aiohttp.access", "aiohttp.web"):
        caplog.set_level(logging.DEBUG, name)
    server = start_server(api_key=KEY)
    response = await exchange(server.port, request("/v1/models", head, method="GET"))
    # A header name is no secret to aiohttp: that one is merely a wrong key.
    assert response.status in (400, 401)
    assert response.error()["type"] in ("invalid_request_error", "authentication_error")
    assert KEY.encode() not in response.body
    assert caplog.records
    assert KEY not in _formatted(caplog.records)


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"G@T /health HTTP/1.1\r\nHost: x\r\n\r\n", "invalid_method"),
        (b"GET /health HTTP/1.1 extra\r\n\r\n", None),
        (b"GET /health HTTP/1.1\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n", None),
        (b"GET /health HTTP/1.1\r\n" + b"X-A: 1\r\n" * 200 + b"\r\n", None),
        (b"POST /v1/models HTTP/1.1\r\nContent-Length: x\r\n\r\n", None),
    ],
    ids=["method", "request-line", "long-header", "many-headers", "bad-length"],
)
async def test_aiohttp_parse_errors_have_the_openai_error_shape(
    start_server: Callable[..., ServerThread], data: bytes, code: str | None
) -> None:
    server = start_server()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(data)
        response = await asyncio.wait_for(read_response(reader), 10.0)
        assert response.status == 400
        error = response.error()
        assert error["type"] == "invalid_request_error"
        if code is not None:
            assert error["code"] == code
        assert await closed_within(reader, 5.0) == b""
    finally:
        writer.close()


async def test_a_non_utf8_authorization_gets_401(
    start_server: Callable[..., ServerThread],
) -> None:
    server = start_server(api_key=KEY)
    data = request("/v1/models", method="GET", body=b"").replace(
        b"\r\n\r\n", b"\r\nAuthorization: Bearer \xff\xfe" + KEY.encode() + b"\r\n\r\n"
    )
    response = await exchange(server.port, data)
    assert response.status == 401
    assert response.error()["code"] == "invalid_api_key"


@pytest.mark.parametrize(
    "target",
    [
        "/v1/models%0a2026-01-01%20koala_chat.server.access:%20FORGED",
        "/v1/models%0d%0aFORGED",
        "/nowhere%e2%80%a8FORGED",
        "/nowhere%ff%1b[2JFORGED",
    ],
)
async def test_a_path_cannot_forge_a_line_of_the_access_log(
    start_server: Callable[..., ServerThread],
    caplog: pytest.LogCaptureFixture,
    target: str,
) -> None:
    caplog.set_level(logging.INFO, ACCESS_LOGGER)
    server = start_server()
    data = request(target, method="GET", body=b"")
    response = await exchange(server.port, data, logged=True)
    assert response.status == 404
    lines = [
        r.getMessage()
        for r in caplog.records
        if r.name == ACCESS_LOGGER and "/health" not in r.getMessage()
    ]
    assert len(lines) == 1
    assert "FORGED" in lines[0]
    assert lines[0].isprintable()
    lines[0].encode("ascii", "backslashreplace").decode("ascii")


async def test_a_model_name_cannot_forge_a_line_of_the_access_log(
    start_server: Callable[..., ServerThread],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, ACCESS_LOGGER)
    server = start_server()
    model = "gpt-4o-mini\n2026-01-01 koala_chat.server.access: FORGED\u2028x"
    payload = {"model": model, "messages": [{"role": "user", "content": "Hi"}]}
    # One connection: the request that follows is read after the line is logged.
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector) as one_connection:
        async with one_connection.post(
            server.base_url + "/chat/completions", json=payload
        ) as response:
            assert response.status == 200
            await response.read()
        async with one_connection.get(server.url + "/health") as response:
            assert response.status == 200
    lines = [
        r.getMessage()
        for r in caplog.records
        if r.name == ACCESS_LOGGER and "/health" not in r.getMessage()
    ]
    assert len(lines) == 1
    assert "model=gpt-4o-mini\\x0a2026" in lines[0]
    assert lines[0].isprintable()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain /v1/models é", "plain /v1/models é"),
        ("a\nb\rc\td", "a\\x0ab\\x0dc\\x09d"),
        ('quote " and \\', 'quote \\" and \\\\'),
        ("\u2028\x85\ud800\U000e0001", "\\u2028\\x85\\ud800\\U000e0001"),
    ],
)
def test_loggable_escapes_what_could_break_a_line(text: str, expected: str) -> None:
    assert loggable(text) == expected


# --- stopping and settings ----------------------------------------------------------


async def test_the_stop_takes_the_grace_not_twice_the_grace(
    http: aiohttp.ClientSession,
    sandbox: Sandbox,
    start_server: Callable[..., ServerThread],
) -> None:
    grace = 1.5
    server = start_server(grace=grace)
    sandbox.push(Reply(values=["before ", "never"], stall_at=1))
    async with http.post(
        server.base_url + "/chat/completions",
        json={
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "Hi"}],
            "stream": True,
        },
    ) as response:
        assert b"before" in await response.content.readuntil(b"before")
        assert await sandbox.wait_stalled_async(5.0)
        started = time.monotonic()
        await asyncio.to_thread(server.stop)
        took = time.monotonic() - started
        with contextlib.suppress(aiohttp.ClientPayloadError):
            await response.read()
    sandbox.release()
    assert grace - 0.1 <= took < grace + 0.8, took


@pytest.mark.parametrize(
    ("key", "words"),
    [
        (" key", "whitespace"),
        ("key\n", "whitespace"),
        ("key\r", "whitespace"),
        ("ke\ry", "control character"),
        ("   ", "empty"),
    ],
)
def test_an_api_key_no_client_can_send_is_refused_at_start(
    key: str, words: str
) -> None:
    with pytest.raises(UsageError, match=words):
        ServerConfig(api_key=key)


def test_koala_serve_refuses_a_key_with_a_newline(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from koala_chat._cli.app import main

    assert main(["serve", "--port", "0", "--api-key", "key\n"]) == 2
    error = capsys.readouterr().err
    assert "whitespace" in error
    assert "key\n" not in error


@pytest.mark.parametrize(
    "changes",
    [
        {"head_timeout": 0},
        {"body_timeout": -1.0},
        {"body_timeout": float("inf")},
        {"max_connections": 0},
        {"grace": float("nan")},
    ],
)
def test_bad_limits_are_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(UsageError):
        ServerConfig(**changes)
