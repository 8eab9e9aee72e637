"""A real `redis-server` on a free loopback port, for the gateway's Redis tests.

CI installs Debian's `redis-server` (scripts/bootstrap, KOALA_NEED_REDIS=1):
a test that needs it fails when it is missing, never skips. The server keeps
nothing on disk, and is ready once its log says it accepts connections.
"""

from __future__ import annotations

import queue
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator

import pytest

_READY_TIMEOUT = 10.0


def free_port() -> int:
    """Return a loopback port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """`redis-server` on 127.0.0.1:`port`; `stop()` and `start()` again."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The URL of its database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server; return once it accepts connections."""
        binary = shutil.which("redis-server")
        assert binary, "the Redis tests need redis-server: apt-get install redis-server"
        self.process = subprocess.Popen(
            [
                binary,
                *("--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--logfile", ""),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, args=(lines,), daemon=True)
        self._reader.start()
        while "Ready to accept connections" not in (
            line := lines.get(timeout=_READY_TIMEOUT)
        ):
            assert line, "redis-server stopped before it was ready"

    def _read(self, lines: queue.Queue[str]) -> None:
        assert self.process is not None
        assert self.process.stdout is not None
        for line in self.process.stdout:
            lines.put(line)
        lines.put("")

    def stop(self) -> None:
        """Stop the server and wait for it; harmless twice."""
        if self.process is None:
            return
        self.process.terminate()
        self.process.wait(10)
        if self._reader is not None:
            self._reader.join(10)
        assert self.process.stdout is not None
        self.process.stdout.close()
        self.process = None


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A running `redis-server` on a free loopback port, stopped at the end."""
    server = RedisServer(free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()
