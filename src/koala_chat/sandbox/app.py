"""The sandbox's aiohttp.web application.

`create_app(state)` serves `POST /api/gpt/` in the dialects docs/protocol.md
describes (the state's `protocol` says which), plus a small JSON status at
`GET /` and `GET /health`, and KoalaImages (`images.py`), for the
`SandboxState` (see `state.py`) that tests script and watch.

Disconnects are noticed the way starlette's streaming response does it: the
handler is cancelled when its client goes away, which needs the server built
with `handler_cancellation=True` (`create_runner` does that); a write to a closed
connection fails as well.
"""

from __future__ import annotations

import asyncio
import math
import socket
import struct
from collections.abc import Iterable, Iterator, Sequence

import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler
from multidict import CIMultiDict, CIMultiDictProxy

from ..messages import JSONValue
from .checks import InvalidRequestError, UnauthorizedError, check_request
from .images import add_image_routes
from .script import (
    RecordedRequest,
    Reply,
    content_type,
    default_reply,
    default_writes,
    render,
)
from .state import SandboxState

__all__ = ["STATE_KEY", "create_app", "create_runner"]

API_PATH = "/api/gpt/"

# Request bodies carry whole conversations; aiohttp's default limit is 1 MiB.
_MAX_REQUEST_SIZE = 64 * 1024 * 1024

# SO_LINGER on with a zero timeout: closing the socket sends a TCP reset.
_LINGER_RESET = struct.pack("ii", 1, 0)


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
    add_image_routes(app, state)
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
        parsed: JSONValue | None = msgspec.json.decode(body) if body else None
    except (msgspec.DecodeError, RecursionError):
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
            "protocol": state.protocol,
            "requests": len(state.requests),
            "queued": state.queued,
            "disconnects": state.disconnects,
        },
        dumps=_dumps,
    )


def _dumps(value: JSONValue) -> str:
    return msgspec.json.encode(value).decode()


async def _handle_api(request: web.Request) -> web.StreamResponse:
    """Answer a Koala request with the next scripted or the default reply."""
    if request.method != "POST":
        return web.json_response(
            {"error": f"{request.method} is not allowed: use POST"},
            status=405,
            headers={"Allow": "POST"},
            dumps=_dumps,
        )
    state = request.app[STATE_KEY]
    raw = await request.read()
    if state.responder is not None:  # a recorder or a replayer
        return await state.responder(request, raw)
    # No await from here to next_reply, and other threads only append: the
    # reply looked at is the one taken (when one was queued).
    upcoming = state.peek_reply()
    try:
        checked = check_request(
            state.protocol,
            raw,
            request.headers.get("Authorization"),
            state.api_key,
            any_body=upcoming is not None and upcoming.any_body,
        )
    except UnauthorizedError as exc:
        return web.json_response(
            {"error": str(exc)},
            status=401,
            headers={"WWW-Authenticate": "Bearer"},
            dumps=_dumps,
        )
    except InvalidRequestError as exc:
        return web.json_response({"error": str(exc)}, status=400, dumps=_dumps)
    dialect, body = checked.dialect, checked.body
    reply = state.next_reply()
    writes: Sequence[bytes]
    if reply is None:
        reply = state.default
        writes = default_writes(
            body,
            pieces=state.pieces,
            interval=reply.interval,
            dialect=dialect,
            raw_text=reply.raw_text,
        )
    elif reply.values is None and reply.body is None:
        values = default_reply(body, pieces=state.pieces, dialect=dialect)
        writes = render(reply, values, dialect)
    else:
        writes = render(reply, reply.values or [], dialect)
    kind = content_type(reply, dialect)
    headers = CIMultiDict({"Content-Type": kind})
    if kind.startswith("text/event-stream"):
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
                state.count_sent(reply.cut_at - sent)
            await _reset(request)
            return
        if chunk is None:
            state.count_finished()
        else:
            await response.write(chunk)
            sent += len(chunk)
            state.count_sent(len(chunk))


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
