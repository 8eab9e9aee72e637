"""The server's hot path: a reply streamed as OpenAI chunk events.

Every event of one stream shares everything but its text, so `ChunkEncoder`
renders the constant bytes once per stream and a content event costs one
`msgspec.json.encode` of the text and one concatenation. `stream_reply` sends the
events, those made during one turn of the event loop in one write
(`coalesce.py`); the handler awaits the first piece before calling it, so early
failures still get a real status (routes.py). Every stream the server ends on
its own ends with `[DONE]`: after the last chunk, after an error event, and
after an error event when the server cuts it at shutdown.

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

import msgspec
from aiohttp import web

from ..contract.replies import Reply
from ..contract.types import ChatCompletionChunk, CompletionUsage, FinishReason
from ..errors import KoalaError
from ..messages import JSONValue
from .coalesce import Coalescer
from .failures import DONE_EVENT, Failure, failure_for

__all__ = ["ChunkEncoder", "RequestLog", "send_chunks", "stream_reply"]

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
    """What the access log says about a completion request (nothing secret)."""

    started: float
    model: str | None = None
    first_piece: float | None = None
    pieces: int = 0

    def saw_first_piece(self) -> None:
        """Note the time of the first piece."""
        self.first_piece = time.perf_counter()


class ChunkEncoder:
    """Render the `chat.completion.chunk` events of one stream as bytes.

    The JSON has the keys and order of the OpenAI API (and of
    `koala_chat.contract.types.ChatCompletionChunk`).
    """

    __slots__ = ("_head", "_prefix")

    _SUFFIX: Final = b'},"logprobs":null,"finish_reason":null}]}\n\n'

    def __init__(self, completion_id: str, created: int, model: str) -> None:
        self._head = b"".join(
            (
                b'data: {"id":',
                msgspec.json.encode(completion_id),
                b',"object":"chat.completion.chunk","created":',
                str(int(created)).encode(),
                b',"model":',
                msgspec.json.encode(model),
                b',"system_fingerprint":null,"choices":',
            )
        )
        self._prefix = self._head + b'[{"index":0,"delta":{"content":'

    def content(self, text: str) -> bytes:
        """Return the event that adds `text` to the reply."""
        return self._prefix + msgspec.json.encode(text) + self._SUFFIX

    def role(self) -> bytes:
        """Return the first event, which names the role."""
        return (
            self._head
            + b'[{"index":0,"delta":{"content":"","role":"assistant"}'
            + self._SUFFIX[1:]
        )

    def finish(self, reason: FinishReason) -> bytes:
        """Return the last event of the choice, with its finish reason."""
        return b"".join(
            (
                self._head,
                b'[{"index":0,"delta":{},"logprobs":null,"finish_reason":"',
                reason.encode(),
                b'"}]}\n\n',
            )
        )

    def usage(self, usage: CompletionUsage) -> bytes:
        """Return the usage event (no choices), sent when `include_usage` asks."""
        return b"".join(
            (
                self._head,
                b'[],"usage":',
                msgspec.json.encode(usage.model_dump()),
                b"}\n\n",
            )
        )


async def stream_reply(
    request: web.Request,
    values: AsyncGenerator[JSONValue, None],
    first: str | None,
    reply: Reply,
    log: RequestLog,
    headers: dict[str, str] | None = None,
) -> web.StreamResponse:
    """Stream the reply whose first text piece is `first` (None: empty reply).

    `values` are the rest of the provider's values; `first` came out of
    `reply` (`contract.replies.next_text`). A failure after the response
    started becomes an error event followed by `[DONE]`. `headers` are added
    to the response's.
    """
    encoder = ChunkEncoder(reply.id, reply.created, reply.model)
    # Rendered before the response starts: a failure here still gets a status
    # of its own instead of text written into a body already under way.
    head = encoder.role()
    if first:
        head += encoder.content(first)
    response = await _start(request, headers)
    ending = False
    try:
        # The head goes out at once, not through the writer task: one turn of
        # the loop less before the client sees the first piece.
        await response.write(head)
        async with Coalescer(response, request.writer) as out:
            tail = await _rest(out, values, reply, encoder)
        # The last events ride with the end of the chunked body: one send.
        ending = True
        await response.write_eof(tail + DONE_EVENT)
    except ConnectionResetError:
        # The client went away; closing `values` (the caller's aclosing)
        # cancels the upstream request.
        pass
    except asyncio.CancelledError:
        if not ending:
            await _end_cut_stream(request, response)
        raise
    finally:
        log.pieces = reply.pieces
    return response


async def send_chunks(
    request: web.Request,
    chunks: list[ChatCompletionChunk],
    headers: dict[str, str] | None = None,
) -> web.StreamResponse:
    """Send a reply known whole (an emulated one) as a stream of `chunks`.

    Not the hot path: each chunk is rendered from its typed object, tool-call
    deltas included, and all go out in one write.
    """
    response = await _start(request, headers)
    body = b"".join(map(_event, chunks))
    with contextlib.suppress(ConnectionResetError):
        await response.write_eof(body + DONE_EVENT)
    return response


def _event(chunk: ChatCompletionChunk) -> bytes:
    """Return the event of `chunk`, whose deltas name only what they carry.

    As `ChunkEncoder`'s events: no `usage` member but on the usage chunk.
    """
    data = chunk.model_dump()
    if data["usage"] is None:
        del data["usage"]
    for choice in data["choices"]:
        choice["delta"] = {
            key: value for key, value in choice["delta"].items() if value is not None
        }
    return b"data: " + msgspec.json.encode(data) + b"\n\n"


async def _start(
    request: web.Request, headers: dict[str, str] | None
) -> web.StreamResponse:
    """Send the head of an event stream, with `headers` beside its own."""
    response = web.StreamResponse(
        headers={**_SSE_HEADERS, **headers} if headers else _SSE_HEADERS
    )
    response.content_type = "text/event-stream"
    response.charset = "utf-8"
    await response.prepare(request)
    transport = request.transport
    if transport is not None:
        transport.set_write_buffer_limits(high=WRITE_BUFFER_HIGH)
    return response


async def _end_cut_stream(request: web.Request, response: web.StreamResponse) -> None:
    """End a stream cancelled while its client still listens, as a failure does.

    The server cancels its completions when its grace period runs out (or at a
    second Ctrl-C); a client should then read an error event and `[DONE]`, not a
    body that stops short. When the client itself left, there is no one to tell.
    """
    transport = request.transport
    if transport is None or transport.is_closing():
        return
    with contextlib.suppress(ConnectionError):
        await response.write_eof(SHUTDOWN_FAILURE.event() + DONE_EVENT)


async def _rest(
    out: Coalescer,
    values: AsyncGenerator[JSONValue, None],
    reply: Reply,
    encoder: ChunkEncoder,
) -> bytes:
    """Push the remaining pieces; return the closing events (or an error event)."""
    try:
        if not reply.done:
            await _pump(out, values, reply, encoder)
    except KoalaError as exc:
        # failure_for logs it.
        return failure_for(exc).event()
    except ConnectionResetError:
        raise
    except Exception as exc:
        logger.exception("unexpected error mid-stream")
        return failure_for(exc).event()
    tail = encoder.finish(reply.finish_reason)
    if reply.request.include_usage:
        tail += encoder.usage(reply.usage())
    return tail


async def _pump(
    out: Coalescer,
    values: AsyncGenerator[JSONValue, None],
    reply: Reply,
    encoder: ChunkEncoder,
) -> None:
    """Push an event per text piece until the reply ends or is cut.

    The loop of `contract.replies.next_text`, written out: the hot path of the
    server, where an awaited call per piece would cost more than the rest.
    """
    push = out.push
    content = encoder.content
    feed = reply.feed
    async for value in values:
        if (text := feed(value)) and push(content(text)):
            await out.wait()
        if reply.done:
            return
    if text := reply.finish():
        push(content(text))
