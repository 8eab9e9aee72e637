"""The sandbox's aiohttp.web application and the state it shares with tests.

`create_app(state)` serves `POST /api/gpt/` as PROTOCOL.md describes, plus a
small JSON status at `GET /` and `GET /health`. `SandboxState` holds the reply
queue, the recorded requests, the stalls and the disconnect count. It is
thread-safe, so a test on one thread (or event loop) can script and watch a
server running on another.

Disconnects are noticed the way starlette's streaming response does it: the
handler is cancelled when its client goes away, which needs the server built
with `handler_cancellation=True` (`create_runner` does that); a write to a closed
connection fails as well.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import math
import socket
import struct
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler
from multidict import CIMultiDict, CIMultiDictProxy

from ..errors import UsageError
from ..messages import JSONValue
from .script import (
    InvalidRequestError,
    RecordedRequest,
    Reply,
    default_reply,
    default_writes,
    render,
    validate_body,
)

__all__ = ["STATE_KEY", "SandboxState", "create_app", "create_runner"]

API_PATH = "/api/gpt/"

# Request bodies carry whole conversations; aiohttp's default limit is 1 MiB.
_MAX_REQUEST_SIZE = 64 * 1024 * 1024

# SO_LINGER on with a zero timeout: closing the socket sends a TCP reset.
_LINGER_RESET = struct.pack("ii", 1, 0)


class _Gauge:
    """A thread-safe number that threads and event loops can wait on."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value = 0
        self._waiters: list[tuple[int, concurrent.futures.Future[bool]]] = []

    @property
    def value(self) -> int:
        """The current value."""
        return self._value

    def set(self, value: int) -> None:
        """Set the value and wake the waiters whose target it reaches."""
        self._change(lambda _: value)

    def add(self, delta: int) -> None:
        """Change the value by `delta`."""
        self._change(lambda value: value + delta)

    def _change(self, update: Callable[[int], int]) -> None:
        with self._lock:
            value = self._value = update(self._value)
            ready = [fut for target, fut in self._waiters if value >= target]
            self._waiters = [(t, f) for t, f in self._waiters if value < t]
        for fut in ready:
            # A waiter may have been cancelled on another thread meanwhile.
            if fut.set_running_or_notify_cancel():
                fut.set_result(True)

    def wait(self, target: int, timeout: float) -> bool:
        """Block until the value is at least `target`; False after `timeout`."""
        fut = self._waiter(target)
        if fut is None:
            return True
        try:
            return fut.result(timeout)
        except TimeoutError:
            return False
        finally:
            self._discard(fut)

    # The timeout is part of the promised API (ASYNC109 prefers the caller's own
    # asyncio.timeout, but then a timed-out wait would raise instead of False).
    async def wait_async(self, target: int, timeout: float) -> bool:  # noqa: ASYNC109
        """Wait without blocking the running loop; False after `timeout`."""
        fut = self._waiter(target)
        if fut is None:
            return True
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.wrap_future(fut)
        except TimeoutError:
            return False
        finally:
            self._discard(fut)

    def _waiter(self, target: int) -> concurrent.futures.Future[bool] | None:
        with self._lock:
            if self._value >= target:
                return None
            fut: concurrent.futures.Future[bool] = concurrent.futures.Future()
            self._waiters.append((target, fut))
            return fut

    def _discard(self, fut: concurrent.futures.Future[bool]) -> None:
        with self._lock:
            self._waiters = [(t, f) for t, f in self._waiters if f is not fut]


class _Stalls:
    """Replies held at their stall until `release`, on whatever loop they run."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: list[asyncio.Future[None]] = []
        self._permits = 0
        self._closed = False
        self.gauge = _Gauge()

    async def hold(self) -> None:
        """Wait here until released (or pass at once if a release came first)."""
        fut = asyncio.get_running_loop().create_future()
        with self._lock:
            if self._closed:
                return
            if self._permits:
                self._permits -= 1
                return
            self._held.append(fut)
            self.gauge.set(len(self._held))
        try:
            await fut
        finally:
            with self._lock:
                if fut in self._held:  # cancelled while held
                    self._held.remove(fut)
                    self.gauge.set(len(self._held))

    def release(self, *, closing: bool = False) -> None:
        """Let every held reply continue; if none is held, the next one passes."""
        with self._lock:
            held, self._held = self._held, []
            self._closed = self._closed or closing
            if not held and not closing:
                self._permits += 1
            self.gauge.set(0)
        for fut in held:
            fut.get_loop().call_soon_threadsafe(_resolve, fut)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class _Timers:
    """Sleeps that share their timers, for many paced replies on one loop.

    A thousand replies sleeping on a thousand timers cost a timer heap operation
    each per piece. Here every wake-up time is rounded up to the millisecond
    (the resolution of the loop's epoll wait in any case) and replies due in the
    same millisecond share one timer, so a sleep costs little more than a list
    append, and never ends early.
    """

    def __init__(self) -> None:
        self._slots: dict[int, list[asyncio.Future[None]]] = {}

    async def sleep(self, seconds: float) -> None:
        """Wait at least `seconds`."""
        loop = asyncio.get_running_loop()
        slot = math.ceil((loop.time() + seconds) * 1000)
        fut = loop.create_future()
        waiters = self._slots.get(slot)
        if waiters is None:
            waiters = self._slots[slot] = []
            loop.call_at(slot / 1000, self._fire, slot)
        waiters.append(fut)
        await fut

    def _fire(self, slot: int) -> None:
        for fut in self._slots.pop(slot):
            if not fut.done():  # a cancelled handler's future is done
                fut.set_result(None)


class SandboxState:
    """What a sandbox server shares with the test that scripts it.

    Every method is safe to call from any thread. `pieces` and `interval` shape
    the default reply (see `default_reply`); `keep_requests` bounds how many
    recorded requests are kept (the latest ones), for long-running servers.
    """

    def __init__(
        self,
        *,
        pieces: int | None = None,
        interval: float = 0.0,
        keep_requests: int | None = None,
    ) -> None:
        if pieces is not None and pieces < 1:
            raise UsageError(f"pieces must be at least 1, not {pieces}")
        self.pieces = pieces
        self.interval = interval
        self.default = Reply(interval=interval)  # raises UsageError if negative
        self._replies: collections.deque[Reply] = collections.deque()
        self._requests: collections.deque[RecordedRequest] = collections.deque(
            maxlen=keep_requests
        )
        self._requests_lock = threading.Lock()
        self._stalls = _Stalls()
        self._disconnects = _Gauge()
        self._tasks: set[asyncio.Task[object]] = set()
        self._tasks_lock = threading.Lock()
        self.closing = False

    def push(self, *replies: Reply) -> None:
        """Queue replies for the next requests, in order."""
        self._replies.extend(replies)

    def next_reply(self) -> Reply | None:
        """Take the next queued reply; None when none is queued (the default)."""
        try:
            return self._replies.popleft()
        except IndexError:
            return None

    @property
    def queued(self) -> int:
        """How many scripted replies are waiting."""
        return len(self._replies)

    def record(self, request: RecordedRequest) -> None:
        """Append a received request."""
        with self._requests_lock:
            self._requests.append(request)

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of the requests received so far, in order."""
        with self._requests_lock:
            return list(self._requests)

    async def hold(self) -> None:
        """Hold the calling reply at its stall until `release`."""
        await self._stalls.hold()

    def release(self) -> None:
        """Let every stalled reply continue; if none is stalled, the next one."""
        self._stalls.release()

    def wait_stalled(self, timeout: float = 5.0, *, count: int = 1) -> bool:
        """Block until `count` replies are held at once; False after `timeout`."""
        return self._stalls.gauge.wait(count, timeout)

    async def wait_stalled_async(
        self,
        timeout: float = 5.0,  # noqa: ASYNC109 (returns False, see _Gauge)
        *,
        count: int = 1,
    ) -> bool:
        """Like `wait_stalled`, without blocking the running loop."""
        return await self._stalls.gauge.wait_async(count, timeout)

    @property
    def disconnects(self) -> int:
        """How many clients went away in the middle of a streamed reply."""
        return self._disconnects.value

    def count_disconnect(self) -> None:
        """Note that a client went away mid-reply."""
        self._disconnects.add(1)

    def wait_disconnect(self, timeout: float = 5.0, *, count: int = 1) -> bool:
        """Block until `count` disconnects were seen; False after `timeout`."""
        return self._disconnects.wait(count, timeout)

    async def wait_disconnect_async(
        self,
        timeout: float = 5.0,  # noqa: ASYNC109 (returns False, see _Gauge)
        *,
        count: int = 1,
    ) -> bool:
        """Like `wait_disconnect`, without blocking the running loop."""
        return await self._disconnects.wait_async(count, timeout)

    def track(self, task: asyncio.Task[object]) -> None:
        """Remember a streaming handler so that `close` can cancel it."""
        with self._tasks_lock:
            self._tasks.add(task)

    def untrack(self, task: asyncio.Task[object]) -> None:
        """Forget a finished streaming handler."""
        with self._tasks_lock:
            self._tasks.discard(task)

    def close(self) -> None:
        """Stop every reply in progress: release the stalls, cancel the handlers.

        Cancellations from here are not counted as disconnects.
        """
        self.closing = True
        self._stalls.release(closing=True)
        with self._tasks_lock:
            tasks = list(self._tasks)
        for task in tasks:
            task.get_loop().call_soon_threadsafe(task.cancel)


STATE_KEY = web.AppKey("koala_chat.sandbox.state", SandboxState)
_TIMERS_KEY = web.AppKey("koala_chat.sandbox.timers", _Timers)


def create_app(state: SandboxState) -> web.Application:
    """Return the sandbox application serving `state`.

    Host it with `create_runner`, or with `handler_cancellation=True` on your own
    runner, so that a client leaving during a stall is noticed.
    """
    app = web.Application(middlewares=[_record], client_max_size=_MAX_REQUEST_SIZE)
    app[STATE_KEY] = state
    app[_TIMERS_KEY] = _Timers()
    app.router.add_route("*", API_PATH, _handle_api)
    app.router.add_get("/", _handle_health)
    app.router.add_get("/health", _handle_health)
    return app


def create_runner(state: SandboxState) -> web.AppRunner:
    """Return an `AppRunner` for the sandbox: handlers cancelled on disconnect."""
    return web.AppRunner(
        create_app(state),
        handler_cancellation=True,
        access_log=None,
        shutdown_timeout=1.0,
    )


@web.middleware
async def _record(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Record every request before it is handled."""
    body = await request.read()
    try:
        parsed: JSONValue | None = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        parsed = None
    request.app[STATE_KEY].record(
        RecordedRequest(
            method=request.method,
            path=request.path,
            headers=CIMultiDictProxy(CIMultiDict(request.headers)),
            body=body,
            json=parsed,
        )
    )
    return await handler(request)


async def _handle_health(request: web.Request) -> web.Response:
    """Report that the sandbox is up, with a few counts."""
    state = request.app[STATE_KEY]
    return web.json_response(
        {
            "status": "ok",
            "endpoint": API_PATH,
            "requests": len(state.requests),
            "queued": state.queued,
            "disconnects": state.disconnects,
        },
        dumps=_dumps,
    )


def _dumps(value: JSONValue) -> str:
    return orjson.dumps(value).decode()


async def _handle_api(request: web.Request) -> web.StreamResponse:
    """Answer a Koala request with the next scripted or the default reply."""
    if request.method != "POST":
        return web.json_response(
            {"error": f"{request.method} is not allowed: use POST"},
            status=405,
            headers={"Allow": "POST"},
            dumps=_dumps,
        )
    try:
        body = validate_body(await request.read())
    except InvalidRequestError as exc:
        return web.json_response({"error": str(exc)}, status=400, dumps=_dumps)
    state = request.app[STATE_KEY]
    reply = state.next_reply()
    writes: Sequence[bytes]
    if reply is None:
        reply = state.default
        writes = default_writes(body, pieces=state.pieces, interval=reply.interval)
    elif reply.values is None and reply.body is None:
        writes = render(reply, default_reply(body, pieces=state.pieces))
    else:
        writes = render(reply, reply.values or [])
    headers = CIMultiDict({"Content-Type": reply.content_type})
    if reply.content_type.startswith("text/event-stream"):
        headers["Cache-Control"] = "no-cache"
    if reply.compress is not None:
        headers["Content-Encoding"] = reply.compress
    headers.update(reply.headers)
    response = web.StreamResponse(status=reply.status, headers=headers)
    task = asyncio.current_task()
    assert task is not None  # a handler always runs in a task
    state.track(task)
    try:
        await _stream(request, response, reply, writes, state)
    finally:
        state.untrack(task)
    return response


async def _stream(
    request: web.Request,
    response: web.StreamResponse,
    reply: Reply,
    writes: Sequence[bytes],
    state: SandboxState,
) -> None:
    """Send the response, counting a client that leaves before its end."""
    await response.prepare(request)
    try:
        await _send(request, response, reply, writes, state)
    except asyncio.CancelledError:
        # aiohttp cancels the handler when the client leaves (handler_cancellation);
        # the sandbox cancels it when closing, which is no disconnect.
        if not state.closing:
            state.count_disconnect()
        raise
    except ConnectionError:
        # A write found the connection closed. Returning lets aiohttp finish
        # quietly ("Ignored premature client disconnection").
        if not state.closing:
            state.count_disconnect()


async def _send(
    request: web.Request,
    response: web.StreamResponse,
    reply: Reply,
    writes: Sequence[bytes],
    state: SandboxState,
) -> None:
    """Make the writes as `reply` paces, stalls and cuts them."""
    # Send the head at once, as streaming servers do, so that the client has the
    # status even while the first write is held or paced.
    await response.write(b"")
    timers = request.app[_TIMERS_KEY]
    stall_at = None if reply.stall_at is None else min(reply.stall_at, len(writes))
    sent = 0
    for index, chunk in enumerate(_with_end(writes)):
        if index and reply.interval and chunk is not None:
            await timers.sleep(reply.interval)
        if index == stall_at:
            await state.hold()
        if reply.cut_at is not None and (
            chunk is None or sent + len(chunk) >= reply.cut_at
        ):
            if chunk is not None:
                await response.write(chunk[: reply.cut_at - sent])
            await _reset(request)
            return
        if chunk is not None:
            await response.write(chunk)
            sent += len(chunk)


def _with_end(writes: Iterable[bytes]) -> Iterator[bytes | None]:
    """Yield the writes, then None for the end of the body."""
    yield from writes
    yield None


async def _reset(request: web.Request) -> None:
    """Abort the connection with a TCP reset once everything written has left."""
    transport = request.transport
    if transport is None or transport.is_closing():
        return
    if transport.get_write_buffer_size():
        # With a zero high-water mark the writer counts as paused until the
        # buffer is empty, and drain() waits exactly for that.
        transport.set_write_buffer_limits(high=0)
        await request.writer.drain()
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    transport.abort()
