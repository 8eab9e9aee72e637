"""The `auto` protocol: which dialect each endpoint accepted, and the switch.

docs/protocol.md, "Choosing a dialect": `auto` sends the history request first
and, only when the endpoint refuses its shape before any value, the same
conversation once more in the messages dialect. What an endpoint accepted is
remembered for the life of the process, so that later calls go straight to it.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import cast

from ..errors import StatusError
from ..messages import JSONValue
from .attempts import Call, HTTPRequest, ReplyReader
from .dialects import SHAPE_REJECTED_STATUSES, Dialect

__all__ = ["DialectMemory", "negotiate"]


class DialectMemory:
    """What dialect each endpoint URL accepted last; safe to share between threads."""

    __slots__ = ("_accepted", "_lock")

    def __init__(self) -> None:
        self._accepted: dict[str, Dialect] = {}
        self._lock = threading.Lock()

    def recall(self, url: str) -> Dialect | None:
        """Return the dialect `url` accepted last, or None."""
        with self._lock:
            return self._accepted.get(url)

    def remember(self, url: str, dialect: Dialect) -> None:
        """Note that `url` accepted `dialect`."""
        with self._lock:
            self._accepted[url] = dialect

    def forget(self, url: str | None = None) -> None:
        """Forget what `url` accepted (None: every endpoint)."""
        with self._lock:
            if url is None:
                self._accepted.clear()
            else:
                self._accepted.pop(url, None)


def refused_shape(exc: StatusError) -> bool:
    """Tell whether `exc` says the endpoint refused the request's shape."""
    return type(exc) is StatusError and exc.status in SHAPE_REJECTED_STATUSES


async def negotiate(
    call: Call, request: HTTPRequest, reader: ReplyReader, memory: DialectMemory
) -> AsyncGenerator[list[JSONValue], None]:
    """Yield the reply's batches: `request`'s, or its fallback's after a refusal.

    A request without a `fallback` is sent as it is (with the call's retries).
    With one, a refusal of the first request's shape (400, 404, 405, 415, 422)
    before any value sends the fallback; anything else is raised as it is. The
    dialect that gave a reply is remembered for the URL.

    Raises:
        StatusError: both requests refused; the message names both.
        KoalaError: any other failure, as the attempt loop raises it.
    """
    fallback = request.fallback
    # Only `auto` builds a fallback, and only `auto` learns from the reply.
    learn = memory if fallback is not None else None
    try:
        async with aclosing(_remembering(call, request, reader, learn)) as batches:
            async for batch in batches:
                yield batch
        return
    except StatusError as exc:
        if fallback is None or not refused_shape(exc):
            raise
        first = exc
    try:
        async with aclosing(_remembering(call, fallback, reader, learn)) as batches:
            async for batch in batches:
                yield batch
    except StatusError as exc:
        if not refused_shape(exc):
            raise
        raise StatusError(
            f"{exc.url} refused both dialects: {_refusal(request, first)}; "
            f"{_refusal(fallback, exc)}",
            status=exc.status,
            url=exc.url,
            body=exc.body,
            request_id=exc.request_id,
            attempts=first.attempts + exc.attempts,
        ) from exc


async def _remembering(
    call: Call,
    request: HTTPRequest,
    reader: ReplyReader,
    memory: DialectMemory | None,
) -> AsyncGenerator[list[JSONValue], None]:
    """Yield `request`'s batches; once the reply is accepted, remember its dialect."""
    dialect = cast(Dialect | None, request.dialect)
    pending = memory is not None and dialect is not None
    async with aclosing(call.batches(request, reader)) as batches:
        async for batch in batches:
            if pending:
                _learn(memory, request.url, dialect)
                pending = False
            yield batch
    if pending:
        _learn(memory, request.url, dialect)


def _learn(memory: DialectMemory | None, url: str, dialect: Dialect | None) -> None:
    if memory is not None and dialect is not None:
        memory.remember(url, dialect)


def _refusal(request: HTTPRequest, exc: StatusError) -> str:
    return f"{request.dialect}: {exc.status}" + (f" {exc.body}" if exc.body else "")
