"""Fixtures for `koala serve`: the server on 127.0.0.1 port 0, in a thread.

The server runs on an event loop of its own in a daemon thread (as the sandbox
does), so sync tests (the openai SDK's blocking client) and async tests (whose
loop runs the client) can both talk to it. conftest.py imports the fixtures.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import webbrowser
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from typing import Any

import aiohttp
import openai
import pytest

from koala_chat._contract.provider import ChatProvider
from koala_chat.providers import Koala
from koala_chat.sandbox import Sandbox
from koala_chat.server.app import ACCESS_LOGGER
from koala_chat.server.config import ServerConfig
from koala_chat.server.runner import serve_async

_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 15.0


class ThreadedServer:
    """A server of the tests on a thread and event loop of its own.

    Subclasses write `serve`; `start` returns once it listens (its port in
    `port`), `stop` ends it and joins the thread (harmless twice).
    """

    def __init__(self) -> None:
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    async def serve(self, stop: asyncio.Event, started: Callable[[int], None]) -> None:
        """Listen, call `started` with the port, return once `stop` is set."""
        raise NotImplementedError

    def start(self) -> None:
        """Start serving; return once the server listens."""
        ready: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=asyncio.run, args=(self._run(ready),), daemon=True
        )
        self._thread.start()
        self.port = ready.result(_START_TIMEOUT)

    async def _run(self, ready: concurrent.futures.Future[int]) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            await self.serve(self._stop, ready.set_result)
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            raise

    def stop(self) -> None:
        """Stop and join the thread; harmless twice."""
        if self._thread is None:
            return
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(_STOP_TIMEOUT)
        assert not self._thread.is_alive(), "the server thread did not stop"
        self._thread = None


class ServerThread(ThreadedServer):
    """`koala serve` on a thread of its own; `url` once started."""

    def __init__(self, config: ServerConfig, provider: ChatProvider = Koala) -> None:
        super().__init__()
        self.config = config
        self.provider = provider

    @property
    def url(self) -> str:
        """The base URL, `http://127.0.0.1:PORT`."""
        return f"http://{self.config.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI base URL, `url + "/v1"`."""
        return self.url + "/v1"

    async def serve(self, stop: asyncio.Event, started: Callable[[int], None]) -> None:
        await serve_async(self.config, self.provider, stop=stop, started=started)


def server_config(sandbox: Sandbox, **changes: Any) -> ServerConfig:
    """Return a test config: port 0, the sandbox upstream, no retries."""
    options = {"api_endpoint": sandbox.api_endpoint, "max_retries": 0}
    options.update(changes.pop("provider_options", {}))
    config = ServerConfig(port=0, grace=2.0, provider_options=options)
    return replace(config, **changes)


@pytest.fixture
def start_server(
    sandbox: Sandbox,
) -> Iterator[Callable[..., ServerThread]]:
    """Return a function that starts a server: `start_server(**config_changes)`.

    `provider=` picks another provider class; every server is stopped at the end.
    """
    servers: list[ServerThread] = []

    def start(provider: ChatProvider = Koala, **changes: Any) -> ServerThread:
        server = ServerThread(server_config(sandbox, **changes), provider)
        server.start()
        servers.append(server)
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def koala_server(start_server: Callable[..., ServerThread]) -> ServerThread:
    """A server with the default settings in front of the sandbox."""
    return start_server()


@pytest.fixture
def sdk(koala_server: ServerThread) -> Iterator[openai.OpenAI]:
    """The official openai client, pointed at `koala_server` (no retries)."""
    with openai.OpenAI(
        base_url=koala_server.base_url, api_key="anything", max_retries=0
    ) as client:
        yield client


class AccessLog(logging.Handler):
    """Collect the access log's lines in a queue that a test can wait on."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: queue.Queue[str] = queue.Queue()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.put(record.getMessage())

    async def next(self) -> str:
        """Return the next line (5 s at most)."""
        # The server logs on its own thread after the client saw the end.
        return await asyncio.to_thread(self.lines.get, True, 5.0)


@pytest.fixture
def access_log() -> Iterator[AccessLog]:
    """The access log's lines of the test's servers, at level INFO."""
    logger = logging.getLogger(ACCESS_LOGGER)
    handler = AccessLog()
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """An aiohttp client session for the test, closed at its end."""
    async with aiohttp.ClientSession() as session:
        yield session


def fetch(
    url: str, data: bytes | None = None, **headers: str
) -> tuple[int, dict[str, str], bytes]:
    """Return the status, headers and body of one request (urllib, 10 s limit).

    For tests on a thread of their own (the browser's), where no event loop runs.
    A body is sent as JSON unless `headers` say otherwise.
    """
    if data is not None:
        headers = {"Content-Type": "application/json", **headers}
    request = urllib.request.Request(url, data, headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, dict(error.headers), error.read()


Fetched = tuple[int, dict[str, str], bytes]


def stand_in_browser(
    monkeypatch: pytest.MonkeyPatch, *, load_page: bool = True
) -> list[Fetched]:
    """Replace the browser `koala chat --web` opens; return what it will fetch.

    The stand-in loads the page (with `load_page`) and asks for one reply, as a
    person would, then presses Ctrl-C, which ends the command.
    """
    seen: list[Fetched] = []

    def open_page(url: str) -> bool:
        try:
            if load_page:
                seen.append(fetch(url))
            hello = {"model": "", "messages": [{"role": "user", "content": "Hi"}]}
            seen.append(fetch(url + "v1/chat/completions", json.dumps(hello).encode()))
        finally:
            os.kill(os.getpid(), signal.SIGINT)
        return True

    monkeypatch.setattr(webbrowser, "open", open_page)
    return seen


class ServerProcess:
    """`python -m koala_chat.server` in a subprocess, its log lines in a queue."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "koala_chat.server", "--port", "0", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.put(line)

    async def wait_for(self, pattern: str) -> re.Match[str]:
        """Return the match of the next log line matching `pattern` (5 s)."""
        while True:
            line = await asyncio.to_thread(self.lines.get, True, 5.0)
            if match := re.search(pattern, line):
                return match

    async def port(self) -> int:
        match = await self.wait_for(r"listening on http://127\.0\.0\.1:(\d+)")
        return int(match.group(1))

    async def exit_code(self) -> int:
        return await asyncio.to_thread(self.process.wait, 15.0)

    def close(self) -> None:
        if self.process.poll() is None:
            # Gracefully first: a server with --workers stops its workers,
            # which would otherwise outlive it and hold its stderr open.
            self.process.terminate()
            try:
                self.process.wait(15.0)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(15.0)
        self._reader.join(15.0)
        assert self.process.stderr is not None
        self.process.stderr.close()


@pytest.fixture
def server_process() -> Iterator[Callable[..., ServerProcess]]:
    started: list[ServerProcess] = []

    def start(*args: str) -> ServerProcess:
        started.append(ServerProcess(*args))
        return started[-1]

    try:
        yield start
    finally:
        for process in started:
            process.close()
