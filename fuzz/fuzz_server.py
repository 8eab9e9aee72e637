"""Coverage-guided fuzz target for the request parsing of `koala serve`.

Each input is cut into split points and a byte stream: the raw bytes a client
sends on one connection. They go, in those chunks, into the server's own
connection protocol (aiohttp's parser with our `GuardedHandler`, the
middlewares, the routes) over an in-memory transport, on one event loop, with
a provider that answers without any network. The target fails when

- the server logs an error (an unexpected exception, a 500), or the API key
  reaches any log record;
- a response it wrote has no HTTP status line, or an error response (4xx, 5xx) is not
  the OpenAI error shape `{"error": {"message", "type", "param", "code"}}`.

Run it with `fuzz/run.sh server SECONDS` (needs `pip install atheris`); it is
not part of CI. Any other argument is passed to libFuzzer, for instance a
crash file to replay it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import pathlib
import re
import sys
from collections.abc import AsyncGenerator, Sequence
from typing import Any, ClassVar

import atheris

with atheris.instrument_imports():
    import msgspec
    from aiohttp import web

    from koala_chat.server.app import create_app, create_runner
    from koala_chat.server.config import ServerConfig

KEY = "fuzz-KEY-7f3a9c"
_AUTH = b"Host: 127.0.0.1\r\nAuthorization: Bearer " + KEY.encode() + b"\r\n"
_BODY = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}'
_STREAM = (
    b'{"model": "", "stream": true, "messages": [{"role": "user", "content": "Hi"}]}'
)

SEEDS: tuple[bytes, ...] = (
    b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /v1/models HTTP/1.1\r\n" + _AUTH + b"\r\n",
    b"POST /v1/chat/completions HTTP/1.1\r\n"
    + _AUTH
    + b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(_BODY)
    + _BODY,
    b"POST /v1/chat/completions HTTP/1.1\r\n"
    + _AUTH
    + b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n"
    % len(_STREAM)
    + _STREAM
    + b"\r\n0\r\n\r\n",
    b"POST /v1/chat/completions HTTP/1.1\r\nContent-Encoding: gzip\r\n"
    + _AUTH
    + b"Content-Length: 3\r\n\r\nabc",
    b"GET /v1/models%0aforged HTTP/1.1\r\n"
    + _AUTH[:-2]
    + b"\x01\r\n\r\nG@T / HTTP/1.1\r\n\r\n",
)


class Echo:
    """A provider that answers every conversation with two pieces, offline."""

    models: ClassVar[list[str]] = ["gpt-4o-mini"]

    @classmethod
    async def create_async_generator(
        cls, model: str, messages: Any, **kwargs: Any
    ) -> AsyncGenerator[str, None]:
        yield "Hello"
        yield " there"

    @classmethod
    def get_model(cls, model: str | None) -> str:
        return model or cls.models[0]

    @classmethod
    def get_models(cls) -> list[str]:
        return list(cls.models)


class MemoryTransport(asyncio.Transport):
    """A transport that keeps what the server writes."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 1337)}.get(
            name, default
        )

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def abort(self) -> None:
        self.closed = True


class Records(logging.Handler):
    """Collect every log record (the target checks them after each input)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


LOOP = asyncio.new_event_loop()
RECORDS = Records()
RUNNER: web.AppRunner | None = None


async def start() -> web.AppRunner:
    config = ServerConfig(
        port=0, api_key=KEY, max_body=4096, head_timeout=5.0, body_timeout=0.05
    )
    runner = create_runner(create_app(config, Echo))
    await runner.setup()
    return runner


async def settle(transport: MemoryTransport, rounds: int = 30) -> None:
    """Let the server work on what it got (a fixed number of loop turns)."""
    for _ in range(rounds):
        if transport.closed:
            return
        await asyncio.sleep(0)


async def converse(chunks: Sequence[bytes]) -> bytes:
    """Send `chunks` on one connection; return what the server wrote."""
    assert RUNNER is not None
    assert RUNNER.server is not None
    transport = MemoryTransport()
    protocol = RUNNER.server()
    protocol.connection_made(transport)
    try:
        for chunk in chunks:
            if transport.closed:
                break
            protocol.data_received(chunk)
            await settle(transport)
        await settle(transport, 200)
    finally:
        protocol.connection_lost(None)
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        if pending:
            await asyncio.wait(pending, timeout=1.0)
    return bytes(transport.written)


def check_responses(output: bytes) -> None:
    """Check every whole response in `output`; a cut one at the end is fine."""
    rest = output
    while rest:
        head, found, rest = rest.partition(b"\r\n\r\n")
        if not found:
            return
        status_line, *lines = head.decode("latin-1").split("\r\n")
        # aiohttp answers in the request's version (1.0 when it read none).
        match = re.fullmatch(r"HTTP/\d\.\d (\d{3}) .*", status_line)
        assert match is not None, status_line
        status = int(match.group(1))
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines)
        }
        if "content-length" in headers:
            size = int(headers["content-length"])
            if len(rest) < size:
                return
            body, rest = rest[:size], rest[size:]
        else:
            return  # a stream: its events are the streaming tests' concern
        if status >= 400:
            assert headers.get("content-type", "").startswith("application/json")
            document = msgspec.json.decode(body)
            assert set(document) == {"error"}, document
            assert set(document["error"]) == {"message", "type", "param", "code"}


def split(stream: bytes, cuts: Sequence[int]) -> list[bytes]:
    """Return `stream` cut at the given offsets (sorted, clipped to its length)."""
    bounds = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
    return [stream[a:b] for a, b in itertools.pairwise(bounds)]


def test_one_input(data: bytes) -> None:
    """Serve one fuzzer input; raise AssertionError on a finding."""
    provider = atheris.FuzzedDataProvider(data)
    cuts = provider.ConsumeIntListInRange(provider.ConsumeIntInRange(0, 8), 0, 4096)
    stream = provider.ConsumeBytes(provider.remaining_bytes())
    RECORDS.records.clear()
    output = LOOP.run_until_complete(converse(split(stream, cuts)))
    check_responses(output)
    for record in RECORDS.records:
        text = logging.Formatter().format(record)
        assert KEY not in text, text
        assert record.levelno < logging.ERROR, text


def write_seeds(directory: str) -> None:
    """Put the seed inputs into an empty corpus directory."""
    path = pathlib.Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    if any(path.iterdir()):
        return
    for number, seed in enumerate(SEEDS):
        # The byte for the cut count comes first, as it is read.
        (path / f"seed-{number}").write_bytes(b"\x00" + seed)


def main(argv: list[str]) -> None:
    """Seed the corpus directories named in `argv`, then hand over to libFuzzer."""
    global RUNNER
    for arg in argv[1:]:
        if not arg.startswith("-") and not os.path.isfile(arg):
            write_seeds(arg)
    root = logging.getLogger()
    root.addHandler(RECORDS)
    root.setLevel(logging.DEBUG)
    asyncio.set_event_loop(LOOP)
    RUNNER = LOOP.run_until_complete(start())
    # The package comes through the editable install's own import hook, which
    # `instrument_imports` skips: instrument everything loaded by now instead.
    atheris.instrument_all()
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
