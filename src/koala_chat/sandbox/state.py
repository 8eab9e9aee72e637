"""The sandbox's state, shared between the server's loop and the tests.

`SandboxState` holds the reply queue, the recorded requests, the stalls, the
disconnect count and how far the replies were written (`sent`, `finished`: a
test sees how much of a reply a client let through). It is thread-safe, so a
test on one thread (or event loop) can script and watch a server running on
another.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import UsageError
from .checks import SANDBOX_API_KEY, SandboxProtocol, check_protocol
from .images import ImageSettings
from .script import RecordedRequest, Reply

if TYPE_CHECKING:
    from .responder import Responder

__all__ = ["Gauge", "SandboxState"]


class Gauge:
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
        self.gauge = Gauge()

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


class SandboxState:
    """What a sandbox server shares with the test that scripts it.

    Every method is safe to call from any thread. `pieces` and `interval` shape
    the default reply (see `default_reply`); `keep_requests` bounds how many
    recorded requests are kept (the latest ones), for long-running servers.
    `protocol` is the dialect the sandbox accepts (`any`: each request's own,
    recognised by its shape) and `api_key` the key the api dialect wants
    (docs/protocol.md, "The sandbox's dialects"). `raw_text` streams the
    messages dialect's default reply as raw text (see `Reply`). `images` is
    how its KoalaImages behaves (`images.py`). `responder`, when set, answers
    every API request instead (`responder.py`).
    """

    def __init__(
        self,
        *,
        pieces: int | None = None,
        interval: float = 0.0,
        keep_requests: int | None = None,
        protocol: SandboxProtocol = "any",
        api_key: str = SANDBOX_API_KEY,
        raw_text: bool = False,
        images: ImageSettings | None = None,
    ) -> None:
        if pieces is not None and pieces < 1:
            raise UsageError(f"pieces must be at least 1, not {pieces}")
        if not api_key:
            raise UsageError("the sandbox's api_key must not be empty")
        self.protocol = check_protocol(protocol)
        self.api_key = api_key
        self.images = images or ImageSettings()
        self.pieces = pieces
        self.interval = interval
        # Reply raises UsageError if the interval is negative.
        self.default = Reply(interval=interval, raw_text=raw_text)
        self._replies: collections.deque[Reply] = collections.deque()
        self._requests: collections.deque[RecordedRequest] = collections.deque(
            maxlen=keep_requests
        )
        self._requests_lock = threading.Lock()
        self.responder: Responder | None = None
        self._stalls = _Stalls()
        self._disconnects = Gauge()
        self._sent = Gauge()
        self._finished = Gauge()
        self._tasks: set[asyncio.Task[object]] = set()
        self._tasks_lock = threading.Lock()
        self.closing = False

    def push(self, *replies: Reply) -> None:
        """Queue replies for the next requests, in order."""
        self._replies.extend(replies)

    def peek_reply(self) -> Reply | None:
        """Return the next queued reply without taking it; None when none is."""
        try:
            return self._replies[0]
        except IndexError:
            return None

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
        timeout: float = 5.0,  # noqa: ASYNC109 (returns False, see Gauge)
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
        timeout: float = 5.0,  # noqa: ASYNC109 (returns False, see Gauge)
        *,
        count: int = 1,
    ) -> bool:
        """Like `wait_disconnect`, without blocking the running loop."""
        return await self._disconnects.wait_async(count, timeout)

    @property
    def sent(self) -> int:
        """How many body bytes the replies have written so far, all replies together.

        A write counts once it returned, so once the transport took it: a client
        that does not read holds a reply here (TCP backpressure).
        """
        return self._sent.value

    def count_sent(self, size: int) -> None:
        """Note that a reply wrote `size` more body bytes."""
        self._sent.add(size)

    async def wait_sent_async(
        self,
        size: int,
        timeout: float = 5.0,  # noqa: ASYNC109 (returns False, see Gauge)
    ) -> bool:
        """Wait until `size` body bytes were written; False after `timeout`."""
        return await self._sent.wait_async(size, timeout)

    @property
    def finished(self) -> int:
        """How many replies wrote their whole body (not cut, not left)."""
        return self._finished.value

    def count_finished(self) -> None:
        """Note that a reply wrote the last byte of its body."""
        self._finished.add(1)

    async def wait_finished_async(
        self,
        count: int = 1,
        timeout: float = 5.0,  # noqa: ASYNC109 (returns False, see Gauge)
    ) -> bool:
        """Wait until `count` replies wrote their whole body; False after `timeout`."""
        return await self._finished.wait_async(count, timeout)

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
