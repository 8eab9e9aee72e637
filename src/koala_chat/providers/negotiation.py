"""The `auto` protocol: which dialect each endpoint accepted, and the switch.

docs/protocol.md, "Choosing a dialect": `auto` sends the history request first
and, only when the endpoint refuses its shape before any value, the same
conversation once more in the messages dialect. What an endpoint accepted is
remembered for the life of the process, so that later calls go straight to it.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from typing import cast

from .._http.status import status_text
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
    call: Call,
    request: HTTPRequest,
    reader_for: Callable[[HTTPRequest], ReplyReader],
    memory: DialectMemory,
) -> AsyncGenerator[list[JSONValue], None]:
    """Yield the reply's batches: `request`'s, or its fallback's after a refusal.

    Each reply is read by `reader_for(request)`, in its own dialect. A request
    without a `fallback` is sent as it is (with the call's retries). With one,
    the endpoint sees each of the two at most once (a connection that could
    not be made is still retried), so that one call costs at most two upstream
    requests (docs/protocol.md, "Choosing a dialect"). A refusal of the first
    request's shape (400, 404, 405, 415, 422) before any value sends the
    fallback; anything else is raised as it is. The dialect that gave a reply
    is remembered for the URL.

    Raises:
        StatusError: both requests refused; the message names both.
        KoalaError: any other failure, as the attempt loop raises it.
    """
    fallback = request.fallback
    # Only `auto` builds a fallback, and only `auto` learns from the reply.
    learn = memory if fallback is not None else None
    refused: StatusError | None = None
    # One generator for both requests, learning inline: every layer between
    # the socket and the caller costs each piece a hop (bench_load.py).
    for current in (request, fallback):
        if current is None:
            break
        delivered = False
        try:
            replies = call.batches(
                current, reader_for(current), resend=fallback is None
            )
            async with aclosing(replies) as batches:
                async for batch in batches:
                    if not delivered:
                        delivered = True
                        _learn(learn, current)
                    yield batch
        except StatusError as exc:
            if delivered or not refused_shape(exc) or fallback is None:
                raise
            if refused is None:
                refused = exc
                continue
            raise StatusError(
                f"{exc.url} refused both dialects ({_refusal(request, refused)}; "
                f"{_refusal(fallback, exc)})",
                status=exc.status,
                url=exc.url,
                body=exc.body,
                request_id=exc.request_id,
                # Attempts at one request, as everywhere: each dialect's
                # request was one, the second no retry of the first.
                attempts=max(refused.attempts, exc.attempts),
            ) from exc
        if not delivered:
            _learn(learn, current)  # an empty reply is an accepted one too
        return


def _learn(memory: DialectMemory | None, request: HTTPRequest) -> None:
    if memory is not None and request.dialect is not None:
        memory.remember(request.url, cast(Dialect, request.dialect))


def _refusal(request: HTTPRequest, exc: StatusError) -> str:
    return f"{request.dialect}: {status_text(exc.status, exc.body)}"
