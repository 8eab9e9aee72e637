"""Recording: pass each request on to an upstream, relay and keep its answer.

`Recorder` is the sandbox's responder for `koala sandbox --record CASSETTE
--upstream URL`. Each request goes to the upstream endpoint (koala.sh, any
other endpoint, another sandbox), through a proxy if one is given. Its answer
goes back to the client as it arrives, with its status and headers, one write
per chunk of the upstream's body (an HTTP chunk when the upstream sends chunked
coding, else each piece as read): the same splits the upstream made. Once the
body ended, the exchange is scrubbed (`scrubbing.py`) and appended to the
cassette (docs/protocol.md, "Cassettes").

The upstream is asked for an uncompressed body (`Accept-Encoding: identity`),
so that the cassette holds text that can be read and scrubbed. The upstream
is read to the end of its answer even when the client leaves earlier (as one
that stops at `[DONE]` does), so what is recorded is the whole answer. One the
upstream cut short is recorded as cut (`complete` false), and the client's
connection is cut too. An upstream that cannot be reached gets the client a
`502` and leaves no line.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, MultiMapping

from .._http import (
    FOREIGN_ERRORS,
    Timeouts,
    get_connector,
    http_proxy,
    proxy_scheme,
    translate_errors,
)
from .._urls import check_endpoint, redact_url
from ..errors import KoalaError, TransportError
from .app import STATE_KEY
from .cassette import (
    CassetteResponse,
    Exchange,
    Timing,
    append_exchange,
)
from .matching import normalise_request
from .responder import abort, error_response, stream
from .scrubbing import ExchangeScrubber
from .state import Gauge

__all__ = ["Recorder"]

# Hop-by-hop headers (RFC 9110, section 7.6.1) and the framing of each side's
# own connection: never passed on in either direction.
_NOT_PASSED: Final = frozenset(
    {
        "connection",
        "content-length",
        "host",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


class Recorder:
    """Answer from `upstream` and append every exchange to `cassette`.

    Example:
        >>> recorder = Recorder("koala.jsonl", "https://koala.sh/api/gpt/")
        >>> with Sandbox(responder=recorder) as sandbox:  # doctest: +SKIP
        ...     ...  # point the application at sandbox.api_endpoint

    `proxy` is the proxy to reach the upstream through (http, https, socks4(a),
    socks5(h)); `scrub` holds the extra patterns whose matches are removed
    (`--scrub REGEX`); `timeouts` bound the connection and the silence between
    two chunks (not the whole reply).

    Raises:
        UsageError: the upstream or the proxy is not a valid URL.
        OSError: the cassette cannot be opened for appending.
    """

    def __init__(
        self,
        cassette: str | os.PathLike[str],
        upstream: str,
        *,
        proxy: str | None = None,
        scrub: Sequence[re.Pattern[str]] = (),
        timeouts: Timeouts | None = None,
    ) -> None:
        self.cassette = os.fspath(cassette)
        self.upstream = check_endpoint(upstream)
        # Fail now, not after the first answer, if the cassette is not writable.
        with open(self.cassette, "ab"):
            pass
        if proxy:
            proxy_scheme(proxy)
        self.proxy = proxy or None
        self.scrub = tuple(scrub)
        self.timeouts = timeouts or Timeouts(total=None)
        #: Called with each exchange once it is in the cassette.
        self.on_recorded: Callable[[Exchange], None] | None = None
        self._begun = 0
        self._ended = Gauge()

    def describe(self) -> str:
        """Return the banner's line: what is recorded where."""
        via = f" through {redact_url(self.proxy)}" if self.proxy else ""
        return f"# recording to {self.cassette} from {redact_url(self.upstream)}{via}\n"

    async def __call__(self, request: web.Request, raw: bytes) -> web.StreamResponse:
        """Relay the upstream's answer to `request` as it arrives; record it.

        The upstream is read by a task of its own, which owns the connection:
        a client that leaves early (one that stops at `[DONE]`, before the
        body's last chunk) does not keep the answer from being recorded whole.
        """
        loop = asyncio.get_running_loop()
        head: asyncio.Future[_Head] = loop.create_future()
        chunks: asyncio.Queue[bytes | _End] = asyncio.Queue()
        state = request.app[STATE_KEY]
        task = asyncio.create_task(
            self._exchange(request.headers.copy(), raw, head, chunks)
        )
        self._begun += 1
        task.add_done_callback(lambda _: self._ended.add(1))
        state.track(task)
        task.add_done_callback(state.untrack)
        # Read, so that a failure nobody awaits any more (the client left) is
        # not reported as "never retrieved".
        head.add_done_callback(_retrieve)
        try:
            status, headers = await asyncio.shield(head)
        except KoalaError as exc:
            return error_response(502, f"the recorder's upstream failed: {exc}")
        ends: list[_End] = []

        async def body() -> AsyncIterator[bytes]:
            while not isinstance(chunk := await chunks.get(), _End):
                yield chunk
            ends.append(chunk)

        response, finished = await stream(request, status, headers, body())
        if finished:
            # In the cassette before the client sees the end of the body.
            await asyncio.shield(task)
            if ends[0].cut:
                abort(request)
        return response

    def wait_recorded(self, timeout: float = 5.0) -> bool:
        """Block until every exchange begun so far is in the cassette.

        A client that stops reading at `[DONE]` may have its answer's end
        still on the way: this waits for it. Returns False after `timeout`.
        """
        return self._ended.wait(self._begun, timeout)

    async def wait_recorded_async(
        self,
        timeout: float = 5.0,  # noqa: ASYNC109 (returns False, as Gauge does)
    ) -> bool:
        """Like `wait_recorded`, without blocking the running loop."""
        return await self._ended.wait_async(self._begun, timeout)

    async def _exchange(
        self,
        headers: CIMultiDict[str],
        raw: bytes,
        head: asyncio.Future[_Head],
        chunks: asyncio.Queue[bytes | _End],
    ) -> None:
        """Ask the upstream, pass its answer on as it comes, then record it.

        Whatever ends this task early (the sandbox closing), the handler is
        never left waiting: it gets an error for the head, or the end of the
        body as a cut.
        """
        try:
            answer = await self._ask(headers, raw, head, chunks)
        finally:
            if not head.done():
                head.set_exception(
                    TransportError("the recorder stopped before the upstream answered")
                )
            chunks.put_nowait(_End(cut=True))  # ignored after the real end
        if answer is None:
            return
        upstream, body, times, cut = answer
        scrubber = ExchangeScrubber(headers, upstream.headers, self.scrub)
        self._keep(
            Exchange(
                request=normalise_request(
                    raw, headers.get("Authorization"), scrubber.text
                ),
                response=_response(scrubber, upstream, body, times, complete=not cut),
                recorded=datetime.now(UTC).isoformat(timespec="seconds"),
            )
        )

    async def _ask(
        self,
        headers: CIMultiDict[str],
        raw: bytes,
        head: asyncio.Future[_Head],
        chunks: asyncio.Queue[bytes | _End],
    ) -> tuple[aiohttp.ClientResponse, list[bytes], list[float], bool] | None:
        """Send the request on; return the response, its chunks, their times
        (the head's first) and whether it was cut; None if it failed."""
        passed = _passed(headers)
        passed["Accept-Encoding"] = "identity"
        connector = get_connector(None, self.proxy)
        loop = asyncio.get_running_loop()
        async with aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            timeout=self.timeouts.client_timeout(None),
            skip_auto_headers=("User-Agent",),
        ) as session:
            start = loop.time()
            try:
                async with translate_errors(
                    self.upstream, self.timeouts, self.proxy, headers=passed
                ):
                    upstream = await session.post(
                        self.upstream,
                        data=raw,
                        headers=passed,
                        proxy=http_proxy(self.proxy, None),
                        allow_redirects=False,
                    )
            except KoalaError as exc:
                head.set_exception(exc)
                return None
            async with upstream:
                head.set_result((upstream.status, _passed(upstream.headers)))
                times = [round(loop.time() - start, 6)]
                body: list[bytes] = []
                cut = False
                try:
                    async for chunk in _chunks(upstream):
                        chunks.put_nowait(chunk)
                        body.append(chunk)
                        times.append(round(loop.time() - start, 6))
                except FOREIGN_ERRORS:
                    cut = True
                chunks.put_nowait(_End(cut))
        return upstream, body, times, cut

    def _keep(self, exchange: Exchange) -> None:
        """Append `exchange` to the cassette and tell the listener.

        A cassette that cannot be written any more is said in one line on
        stderr: the answer has gone to the client already.
        """
        try:
            append_exchange(self.cassette, exchange)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            sys.stderr.write(f"cannot write the cassette {self.cassette}: {reason}\n")
            return
        if self.on_recorded is not None:
            self.on_recorded(exchange)


_Head = tuple[int, CIMultiDict[str]]


def _retrieve(head: asyncio.Future[_Head]) -> None:
    if not head.cancelled():
        head.exception()


@dataclass(frozen=True, slots=True)
class _End:
    """The end of the upstream's body: whole, or cut short."""

    cut: bool


def _response(
    scrubber: ExchangeScrubber,
    upstream: aiohttp.ClientResponse,
    body: list[bytes],
    times: list[float],
    *,
    complete: bool,
) -> CassetteResponse:
    """The recorded response: kept headers, scrubbed chunks, their times."""
    kept = scrubber.chunks(body)
    if len(kept) != len(body):  # merged around a secret: one time
        times = [times[0], times[-1]]
    return CassetteResponse.of_bytes(
        upstream.status,
        scrubber.headers(upstream.headers.items()),
        kept,
        timing=Timing(times[0], times[1:]),
        complete=complete,
    )


def _passed(headers: MultiMapping[str]) -> CIMultiDict[str]:
    """Return the headers to pass on, without the hop-by-hop ones."""
    return CIMultiDict(
        (name, value)
        for name, value in headers.items()
        if name.lower() not in _NOT_PASSED
    )


async def _chunks(upstream: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """Yield the upstream's body as it wrote it: whole HTTP chunks when chunked.

    aiohttp's `iter_chunks` gives what has arrived and says where an HTTP
    chunk ends; a chunk that came in pieces is joined before it is yielded.
    Without chunked coding each piece is yielded as it was read.
    """
    chunked = "chunked" in upstream.headers.get("Transfer-Encoding", "").lower()
    pending = b""
    async for data, end in upstream.content.iter_chunks():
        pending += data
        if pending and (end or not chunked):
            yield pending
            pending = b""
    if pending:
        yield pending
