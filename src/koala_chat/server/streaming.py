"""The server's hot path: a reply streamed as the events of its wire format.

`stream_reply` sends the events that the format's encoder renders
(`formats/base.py`), those made during one turn of the event loop in one write
(`coalesce.py`); the driver awaits the first piece before calling it, so early
failures still get a real status (`conversation.py`). Every stream the server
ends on its own ends as its format ends one: after the last piece, after an
error, and after an error when the server cuts it at shutdown.

Disconnects: the server runs with `handler_cancellation=True`, so aiohttp
cancels the handler when its client goes away (as starlette's streaming response
listens for `http.disconnect`); the cancellation closes the upstream generator
through `aclosing` at once. A write to a closed connection ends the stream the
same way.

Slow readers: a client that reads slowly, or not at all, makes its stream hold
a fixed amount, not its reply. Its writes wait for the transport
(`WRITE_BUFFER_HIGH`, `coalesce.py`); while they wait no value is taken from the
provider, which then reads nothing, so aiohttp stops reading the upstream
socket (the provider's session's `read_bufsize`, the pool's small receive
buffer in `app.py`) and TCP makes the upstream wait in turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Final

from aiohttp import web

from .._contract.replies import Reply
from ..errors import KoalaError
from ..messages import JSONValue
from .coalesce import Coalescer
from .failures import Failure, failure_for
from .formats.base import Encoder
from .outcomes import upstream_reason

__all__ = ["RequestLog", "send_events", "stream_reply"]

logger = logging.getLogger("koala_chat.server")

#: What a client reads when the server stops its completion mid-stream.
SHUTDOWN_FAILURE: Final = Failure(
    503,
    "server_error",
    "server_shutting_down",
    "the server is shutting down and cut this reply short; retry",
)

#: The high-water mark of a stream's transport: past it, the stream's writer
#: waits until the kernel took all but a quarter of it (asyncio's low-water
#: mark). asyncio's default is 64 KiB; a reader that never reads would make
#: every stream hold that much (see `coalesce.py` for the whole bound).
WRITE_BUFFER_HIGH: Final = 16 * 1024

_SSE_HEADERS: Final = {
    "Cache-Control": "no-cache",
    # Ask reverse proxies (nginx) not to buffer the stream.
    "X-Accel-Buffering": "no",
}


@dataclass(slots=True)
class RequestLog:
    """What the access log, the metrics and the span say about a completion.

    Nothing secret, and no text of the conversation: counts, names, times.
    """

    started: float
    #: The wire format of the request (`WireFormat.name`).
    format: str = "-"
    model: str | None = None
    first_piece: float | None = None
    pieces: int = 0
    #: Whether the reply was asked for as a stream.
    stream: bool = False
    #: The estimated tokens of the request's messages (`_contract.usage`).
    input_tokens: int = 0
    #: The characters of the reply let through (the output tokens' estimate).
    chars: int = 0
    #: How the reply ended ("stop", "length", "tool_calls"); None: it did not.
    finish_reason: str | None = None
    #: The reason the upstream failed (`outcomes.upstream_reason`), or None.
    error: str | None = None
    #: The reply, once it started: the gateway's usage reads its size.
    reply: Reply | None = None

    def saw_first_piece(self) -> None:
        """Note the time of the first piece."""
        self.first_piece = time.perf_counter()


async def stream_reply(
    request: web.Request,
    values: AsyncGenerator[JSONValue, None],
    first: str | None,
    reply: Reply,
    encoder: Encoder,
    media_type: str,
    log: RequestLog,
    headers: dict[str, str] | None = None,
) -> web.StreamResponse:
    """Stream the reply whose first text piece is `first` (None: empty reply).

    `values` are the rest of the provider's values; `first` came out of
    `reply` (`_contract.replies.next_text`). `encoder` renders the events as
    `media_type`. A failure after the response started ends the stream as the
    format ends a failed one. `headers` are added to the response's.
    """
    # Rendered before the response starts: a failure here still gets a status
    # of its own instead of text written into a body already under way.
    head = encoder.head()
    if first:
        head += encoder.text(first)
    response = await _start(request, media_type, headers)
    ending = False
    try:
        # The head goes out at once, not through the writer task: one turn of
        # the loop less before the client sees the first piece.
        await response.write(head)
        async with Coalescer(response, request.writer) as out:
            tail = await _rest(out, values, reply, encoder, log)
        # The last events ride with the end of the chunked body: one send.
        ending = True
        await response.write_eof(tail)
    except ConnectionResetError:
        # The client went away; closing `values` (the caller's aclosing)
        # cancels the upstream request.
        pass
    except asyncio.CancelledError:
        if not ending:
            await _end_cut_stream(request, response, encoder)
        raise
    finally:
        log.pieces = reply.pieces
        log.chars = reply.chars
    return response


async def send_events(
    request: web.Request,
    body: bytes,
    media_type: str,
    headers: dict[str, str] | None = None,
) -> web.StreamResponse:
    """Send a reply known whole (an emulated one) as one write of its events."""
    response = await _start(request, media_type, headers)
    with contextlib.suppress(ConnectionResetError):
        await response.write_eof(body)
    return response


async def _start(
    request: web.Request, media_type: str, headers: dict[str, str] | None
) -> web.StreamResponse:
    """Send the head of an event stream, with `headers` beside its own."""
    response = web.StreamResponse(
        headers={**_SSE_HEADERS, **headers} if headers else _SSE_HEADERS
    )
    response.content_type = media_type
    response.charset = "utf-8"
    await response.prepare(request)
    transport = request.transport
    if transport is not None:
        transport.set_write_buffer_limits(high=WRITE_BUFFER_HIGH)
    return response


async def _end_cut_stream(
    request: web.Request, response: web.StreamResponse, encoder: Encoder
) -> None:
    """End a stream cancelled while its client still listens, as a failure does.

    The server cancels its completions when its grace period runs out (or at a
    second Ctrl-C); a client should then read the end of a failed stream, not a
    body that stops short. When the client itself left, there is no one to tell.
    """
    transport = request.transport
    if transport is None or transport.is_closing():
        return
    with contextlib.suppress(ConnectionError):
        await response.write_eof(encoder.failed(SHUTDOWN_FAILURE))


async def _rest(
    out: Coalescer,
    values: AsyncGenerator[JSONValue, None],
    reply: Reply,
    encoder: Encoder,
    log: RequestLog,
) -> bytes:
    """Push the remaining pieces; return the closing events (or the failure's).

    `log` learns how the reply ended, or why the upstream failed.
    """
    try:
        if not reply.done:
            await _pump(out, values, reply, encoder)
    except KoalaError as exc:
        log.error = upstream_reason(exc)
        # failure_for logs it.
        return encoder.failed(failure_for(exc))
    except ConnectionResetError:
        raise
    except Exception as exc:
        logger.exception("unexpected error mid-stream")
        return encoder.failed(failure_for(exc))
    log.finish_reason = reply.finish_reason
    return encoder.tail(reply.finish_reason)


async def _pump(
    out: Coalescer,
    values: AsyncGenerator[JSONValue, None],
    reply: Reply,
    encoder: Encoder,
) -> None:
    """Push an event per text piece until the reply ends or is cut.

    The loop of `_contract.replies.next_text`, written out: the hot path of the
    server, where an awaited call per piece would cost more than the rest.
    """
    push = out.push
    content = encoder.text
    feed = reply.feed
    async for value in values:
        if (text := feed(value)) and push(content(text)):
            await out.wait()
        if reply.done:
            return
    if text := reply.finish():
        push(content(text))
