"""Coalesce the events of a stream: one socket write per turn of the event loop.

A send on a TCP socket costs far more than rendering an event (over loopback
the kernel delivers the data inside the send), and the upstream often hands
over many pieces at once: a reply that is not paced arrives in large chunks,
and a busy server finds several events waiting on each read. `Coalescer`
collects what the stream produces while it runs without waiting and lets a
writer task send it as one write when the stream next waits for the upstream.
A stream paced like a model still gets each event sent as soon as it is made.

Backpressure, so that a client that reads slowly or not at all makes the server
hold a fixed amount, whatever the length of the reply: once `limit` bytes wait,
`push` asks the producer to wait until the writer has handed them to the
transport, and the writer hands nothing more over until the transport's buffer
is below its low-water mark (`writer.drain()` after each write; aiohttp's own
`write` drains only every 64 KiB). While the producer waits it reads nothing
from the upstream, whose socket aiohttp then stops reading too. Per stream, at
most `limit` bytes wait here, one write of about as much is in flight, and the
transport holds at most its high-water mark (`streaming.WRITE_BUFFER_HIGH`)
plus that write.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

__all__ = ["Coalescer"]

#: Bytes that may wait for the writer before the producer must wait too. Large
#: enough that an unpaced reply still goes out in few sends (a hundred events
#: a write), small enough that a stalled stream holds little.
DEFAULT_LIMIT: Final = 16 * 1024


class Coalescer:
    """Write the bytes pushed during one turn of the loop with one `write`.

    Use as an async context manager around the producing loop: leaving it
    normally sends what is left; leaving it with an exception (the client left,
    the handler was cancelled) stops the writer without sending more. `writer`
    is the connection's (`request.writer`), drained after each write.
    """

    __slots__ = (
        "_buffer",
        "_closing",
        "_limit",
        "_ready",
        "_response",
        "_room",
        "_size",
        "_task",
        "_writer",
    )

    def __init__(
        self,
        response: web.StreamResponse,
        writer: AbstractStreamWriter,
        limit: int = DEFAULT_LIMIT,
    ) -> None:
        self._response = response
        self._writer = writer
        self._limit = limit
        self._buffer: list[bytes] = []
        self._size = 0
        self._ready = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Coalescer:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        task = self._task
        assert task is not None
        if exc_type is None:
            self._closing = True
            self._ready.set()
            await task  # raises the writer's error, if any
            return
        task.cancel()
        # The writer's own end (cancelled, or the connection gone) is no news
        # beside the exception already leaving this block.
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await task

    def push(self, data: bytes) -> bool:
        """Queue `data`; return True when the producer should `await wait()`.

        Raises:
            ConnectionResetError: the writer failed (the client went away).
        """
        task = self._task
        if task is not None and task.done():
            task.result()  # raises the writer's error
            raise ConnectionResetError("the stream's writer has stopped")
        self._buffer.append(data)
        self._size += len(data)
        self._ready.set()
        if self._size >= self._limit:
            self._room.clear()
            return True
        return False

    async def wait(self) -> None:
        """Wait until the queued bytes went to the transport (backpressure).

        Raises:
            ConnectionResetError: the writer failed (the client went away).
        """
        await self._room.wait()
        task = self._task
        if task is not None and task.done():
            task.result()
            raise ConnectionResetError("the stream's writer has stopped")

    async def _run(self) -> None:
        try:
            while True:
                await self._ready.wait()
                self._ready.clear()
                if self._buffer:
                    data = b"".join(self._buffer)
                    self._buffer.clear()
                    self._size = 0
                    self._room.set()
                    await self._response.write(data)
                    del data  # the transport holds what is left to send
                    await self._writer.drain()
                if self._closing and not self._buffer:
                    return
        finally:
            self._room.set()  # never leave the producer waiting
