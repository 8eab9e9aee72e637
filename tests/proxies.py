"""Real proxy servers on loopback for the proxy tests.

- `pproxy`: one pproxy process (a real HTTP/SOCKS proxy from PyPI) serving an
  HTTP proxy with and without credentials, SOCKS4, and SOCKS5 with and without
  credentials, each on its own 127.0.0.1 port. It runs with `--auth 0`: by
  default pproxy lets an address that once logged in through without
  credentials, which would make a wrong-password test pass for the wrong reason.
  Its verbose log records each target as the client named it, which shows where
  host names were resolved.
- `socks5_server`: a SOCKS5 server of our own (RFC 1928) on the test's event
  loop. It records the address type and host of every request, resolves names
  from its own table only (so a name that only it knows proves remote
  resolution), and can refuse every target.

Fixtures start the servers, wait for them by connecting (never by sleeping),
and stop them in `finally`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Final

import pytest

__all__ = ["PproxyServer", "Socks5Server", "pproxy", "socks5_server"]

USER: Final = "koala"
PASSWORD: Final = "s3cret-p@ss"
#: The password as it appears in a proxy URL (percent-encoded).
PASSWORD_IN_URL: Final = "s3cret-p%40ss"

# name: pproxy listen URI scheme and whether it asks for credentials
_LISTENERS: Final = (
    ("http", "http", False),
    ("http-auth", "http", True),
    ("socks4", "socks4", False),
    ("socks5", "socks5", False),
    ("socks5-auth", "socks5", True),
)
_SERVING = re.compile(r"Serving on \S+ 127\.0\.0\.1:(\d+) by")
_START_TIMEOUT: Final = 15.0


class PproxyServer:
    """A running pproxy process with one port per listener, and its log."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.ports: dict[str, int] = {}
        self._log: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self._log.append(line.rstrip("\n"))
                self._changed.notify_all()

    def wait_for(self, predicate: Callable[[list[str]], bool], timeout: float) -> bool:
        """Wait until `predicate(log lines)` holds; return whether it did."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self._log), timeout)

    @property
    def log(self) -> list[str]:
        """The lines the proxy has printed so far."""
        with self._changed:
            return list(self._log)

    def url(self, name: str, *, password: str | None = None) -> str:
        """Return the proxy URL of listener `name`.

        Listeners with credentials get `USER` and `password` (default: the right
        one); others none unless `password` is given.
        """
        scheme = "socks5" if name.startswith("socks5") else name.split("-")[0]
        if password is None and name.endswith("-auth"):
            password = PASSWORD_IN_URL
        auth = f"{USER}:{password}@" if password is not None else ""
        return f"{scheme}://{auth}127.0.0.1:{self.ports[name]}"

    def stop(self) -> None:
        """Stop the process and its log reader; harmless when already stopped."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.fixture(scope="session")
def pproxy() -> Iterator[PproxyServer]:
    """Start pproxy with the listeners of `_LISTENERS` on free loopback ports."""
    command = [sys.executable, "-u", "-m", "pproxy", "-v", "--auth", "0"]
    for _name, scheme, auth in _LISTENERS:
        credentials = f"#{USER}:{PASSWORD}" if auth else ""
        command += ["-l", f"{scheme}://127.0.0.1:0{credentials}"]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    server = PproxyServer(process)
    try:
        # pproxy starts its listeners in order and prints each one's port.
        started = server.wait_for(
            lambda log: (
                sum(bool(_SERVING.match(line)) for line in log) >= len(_LISTENERS)
                or process.poll() is not None
            ),
            _START_TIMEOUT,
        )
        ports = [int(m[1]) for line in server.log if (m := _SERVING.match(line))]
        if not started or len(ports) != len(_LISTENERS):
            pytest.fail(f"pproxy did not start: {server.log}")
        names = [name for name, _, _ in _LISTENERS]
        server.ports = dict(zip(names, ports, strict=True))
        yield server
    finally:
        server.stop()


@dataclass
class SocksRequest:
    """One CONNECT request as a SOCKS5 server received it."""

    address_type: str  # "ipv4", "domain" or "ipv6"
    host: str
    port: int


@dataclass
class Socks5Server:
    """A minimal SOCKS5 server (RFC 1928, CONNECT, no authentication).

    `names` maps host names to the addresses it connects to; any other name
    fails as unknown. With `refuse` set it answers every request with
    "connection not allowed by ruleset" (reply 0x02).
    """

    names: dict[str, str] = field(default_factory=dict)
    refuse: bool = False
    requests: list[SocksRequest] = field(default_factory=list)
    port: int = 0
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    def url(self, scheme: str = "socks5h") -> str:
        """Return the proxy URL of this server."""
        return f"{scheme}://127.0.0.1:{self.port}"

    async def handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Serve one client connection."""
        self._writers.add(writer)
        try:
            await self._serve(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client left
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        version, count = await reader.readexactly(2)
        methods = await reader.readexactly(count)
        if version != 5 or 0 not in methods:
            writer.write(b"\x05\xff")  # no acceptable method
            return
        writer.write(b"\x05\x00")
        _, command, _, kind = await reader.readexactly(4)
        if kind == 1:
            host = str(ipaddress.IPv4Address(await reader.readexactly(4)))
            address_type = "ipv4"
        elif kind == 3:
            length = (await reader.readexactly(1))[0]
            host = (await reader.readexactly(length)).decode("ascii")
            address_type = "domain"
        else:
            host = str(ipaddress.IPv6Address(await reader.readexactly(16)))
            address_type = "ipv6"
        port = int.from_bytes(await reader.readexactly(2), "big")
        self.requests.append(SocksRequest(address_type, host, port))
        target = self.names.get(host, host if address_type != "domain" else None)
        if command != 1 or self.refuse:
            await self._reply(writer, 0x02 if self.refuse else 0x07)
            return
        if target is None:
            await self._reply(writer, 0x04)  # host unreachable: we do not know it
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                target, port
            )
        except OSError:
            await self._reply(writer, 0x05)  # connection refused
            return
        self._writers.add(upstream_writer)
        try:
            await self._reply(writer, 0x00)
            await asyncio.gather(
                _pipe(reader, upstream_writer), _pipe(upstream_reader, writer)
            )
        finally:
            self._writers.discard(upstream_writer)
            upstream_writer.close()

    @staticmethod
    async def _reply(writer: asyncio.StreamWriter, code: int) -> None:
        writer.write(bytes([5, code, 0, 1, 0, 0, 0, 0, 0, 0]))
        await writer.drain()

    async def close(self) -> None:
        """Close every connection still open."""
        for writer in list(self._writers):
            writer.close()
        for writer in list(self._writers):
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy `reader` to `writer` until the end, then half-close `writer`."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except ConnectionError:
        writer.close()


@pytest.fixture
async def socks5_server() -> AsyncIterator[Socks5Server]:
    """Run a `Socks5Server` on 127.0.0.1 (a free port) on the test's event loop."""
    socks = Socks5Server()
    server = await asyncio.start_server(socks.handle, "127.0.0.1", 0)
    socks.port = server.sockets[0].getsockname()[1]
    try:
        yield socks
    finally:
        server.close()
        await socks.close()
        await server.wait_closed()
