"""Helpers shared by the hardening tests.

`no_leaks` runs after a test, on the test's event loop, and fails it when an
aiohttp `ClientSession` or connector bound to that loop is still open, or a
client socket transport of that loop is not closing. Objects that nothing refers
to any more are caught as well: aiohttp and asyncio warn when they are
collected, and warnings are errors in this suite.
"""

from __future__ import annotations

import asyncio
import gc
import socket
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import aiohttp
import pytest

from koala_chat import JSONValue, Koala, Messages
from koala_chat.sandbox import RecordedRequest, Sandbox, default_reply

__all__ = [
    "MESSAGES",
    "closed_port",
    "closed_port_fixture",
    "closed_port_url",
    "collect",
    "collect_from",
    "collect_into",
    "no_leaks",
    "open_resources",
    "reply_text",
]

MESSAGES: Messages = [{"role": "user", "content": "Hi"}]


def closed_port() -> int:
    """Return a loopback port on which nothing listens."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def closed_port_url() -> str:
    """Return a Koala URL on a loopback port that nobody listens on."""
    return f"http://127.0.0.1:{closed_port()}/api/gpt/"


@pytest.fixture(name="closed_port")
def closed_port_fixture() -> int:
    """A loopback port on which nothing listens."""
    return closed_port()


async def collect_from(
    sandbox: Sandbox,
    messages: Messages,
    *,
    model: str = "",
    into: list[Any] | None = None,
    **kwargs: Any,
) -> list[Any]:
    """Return the values of one call to the sandbox, also appended to `into`.

    What arrived before an error stays in `into`. The call does not retry
    unless `max_retries` says so.
    """
    received = [] if into is None else into
    kwargs.setdefault("api_endpoint", sandbox.api_endpoint)
    kwargs.setdefault("max_retries", 0)
    async with aclosing(Koala.create_async_generator(model, messages, **kwargs)) as s:
        async for value in s:
            received.append(value)
    return received


async def collect(
    messages: Messages = MESSAGES, *, model: str = "", **kwargs: Any
) -> list[JSONValue]:
    """Return every value `Koala.create_async_generator` yields for `messages`."""
    received: list[JSONValue] = []
    await collect_into(received, messages, model=model, **kwargs)
    return received


async def collect_into(
    received: list[JSONValue],
    messages: Messages = MESSAGES,
    *,
    model: str = "",
    **kwargs: Any,
) -> None:
    """Append each value Koala yields to `received` as it arrives.

    What arrived before an error stays in `received`.
    """
    stream = Koala.create_async_generator(model, messages, **kwargs)
    async with aclosing(stream) as values:
        async for value in values:
            received.append(value)


def reply_text(request: RecordedRequest) -> str:
    """Return the text of the sandbox's default reply to `request`."""
    assert isinstance(request.json, dict)
    return "".join(default_reply(request.json))


def open_resources(loop: asyncio.AbstractEventLoop) -> list[object]:
    """Return the sessions, connectors and client transports open on `loop`.

    Garbage that is not collected yet counts too: it was not closed either.
    """
    found: list[object] = []
    for obj in gc.get_objects():
        kind = _KINDS.get(type(obj))
        if kind is None:
            kind = _KINDS[type(obj)] = _kind(type(obj))
        if not kind or getattr(obj, "_loop", None) is not loop:
            continue
        if kind == "client":
            is_open = not obj.closed
        else:
            # Transports of servers a test runs on this loop (a proxy) are theirs.
            is_open = getattr(obj, "_server", None) is None and not obj.is_closing()
        if is_open:
            found.append(obj)
    return found


# The kind of each type met in the heap: a dict look-up per object keeps a scan
# of the whole heap after every test cheap.
_KINDS: dict[type, str] = {}


def _kind(cls: type) -> str:
    if issubclass(cls, aiohttp.ClientSession | aiohttp.BaseConnector):
        return "client"
    if issubclass(cls, asyncio.Transport):
        return "transport"
    return ""


@pytest.fixture
async def no_leaks() -> AsyncIterator[None]:
    """Fail the test if it leaves a session, connector or client socket open."""
    yield
    leaked = open_resources(asyncio.get_running_loop())
    assert not leaked, f"left open: {leaked}"
