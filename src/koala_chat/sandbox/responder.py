"""The seam where a sandbox answers from somewhere else than its scripts.

A `Responder` given to the sandbox (`Sandbox(responder=...)`, or
`SandboxState.responder`) answers every `POST /api/gpt/` in place of the
scripted and default replies: the recorder (`recorder.py`) from an upstream,
the replayer (`replayer.py`) from a cassette. The requests are still recorded
in the state, and `stream` counts what was sent, the clients that left and
the replies that finished, as the scripted replies do.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Awaitable, Callable, Mapping
from typing import Protocol

import msgspec
from aiohttp import web
from multidict import CIMultiDict

from .app import STATE_KEY

__all__ = ["Responder", "abort", "error_response", "stream"]


class Responder(Protocol):
    """Answers a sandbox's API requests (see the module's docstring)."""

    async def __call__(self, request: web.Request, raw: bytes) -> web.StreamResponse:
        """Answer `request`, whose body is `raw`; return the response sent."""
        ...

    def describe(self) -> str:
        """Return the line the sandbox prints on start about where answers come from."""
        ...

    def wait_recorded(self, timeout: float = 5.0) -> bool:
        """Block until every exchange begun so far is recorded; False on timeout."""
        ...

    async def wait_recorded_async(
        self,
        timeout: float = 5.0,  # noqa: ASYNC109 (False on timeout)
    ) -> bool:
        """Like `wait_recorded`, without blocking the running loop."""
        ...


async def stream(
    request: web.Request,
    status: int,
    headers: CIMultiDict[str],
    chunks: AsyncIterable[bytes],
    *,
    wait: Callable[[], Awaitable[None]] | None = None,
) -> tuple[web.StreamResponse, bool]:
    """Send the head at once (after `wait`, if given), then each chunk as one write.

    Returns the response and whether it was sent whole: False when the
    client's connection closed before the end (counted as a disconnect unless
    the sandbox is closing). A cancellation (the client left, or the sandbox
    closes) propagates, as in the scripted replies.
    """
    state = request.app[STATE_KEY]
    task = asyncio.current_task()
    assert task is not None  # a handler always runs in a task
    state.track(task)
    response = web.StreamResponse(status=status, headers=headers)
    try:
        if wait is not None:
            await wait()
        await response.prepare(request)
        await response.write(b"")
        async for chunk in chunks:
            await response.write(chunk)
            state.count_sent(len(chunk))
        state.count_finished()
    except asyncio.CancelledError:
        if not state.closing:
            state.count_disconnect()
        raise
    except ConnectionError:
        if not state.closing:
            state.count_disconnect()
        return response, False
    finally:
        state.untrack(task)
    return response, True


def abort(request: web.Request) -> None:
    """Cut the client's connection: the body ends without its last chunk."""
    if request.transport is not None:
        request.transport.abort()


def error_response(status: int, message: str, **facts: object) -> web.Response:
    """Return the sandbox's JSON error `{"error": message, ...facts}`."""
    body: Mapping[str, object] = {"error": message, **facts}
    return web.json_response(
        body, status=status, dumps=lambda value: msgspec.json.encode(value).decode()
    )
