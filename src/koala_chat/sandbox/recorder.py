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
so that the cassette holds text that can be read and scrubbed. An exchange
whose client left before its end is not recorded; one the upstream cut short is
recorded as cut (`complete` false), and the client's connection is cut too. An
upstream that cannot be reached gets the client a `502` and leaves no line.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator, Sequence
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
from ..errors import KoalaError
from ..urls import check_endpoint, redact_url
from .cassette import (
    CassetteResponse,
    Exchange,
    Timing,
    append_exchange,
)
from .matching import normalise_request
from .responder import abort, error_response, stream
from .scrubbing import ExchangeScrubber

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

    def describe(self) -> str:
        """Return the banner's line: what is recorded where."""
        via = f" through {redact_url(self.proxy)}" if self.proxy else ""
        return f"# recording to {self.cassette} from {redact_url(self.upstream)}{via}\n"

    async def __call__(self, request: web.Request, raw: bytes) -> web.StreamResponse:
        """Relay the upstream's answer to `request`; record it."""
        response, _ = await self.record(request, raw)
        return response

    async def record(
        self, request: web.Request, raw: bytes
    ) -> tuple[web.StreamResponse, Exchange | None]:
        """Relay the upstream's answer; return it and the exchange recorded.

        The exchange is None when nothing was recorded: the upstream could not
        be reached (the response is then a `502`), or the client left.

        Raises:
            OSError: the cassette cannot be written.
        """
        headers = _passed(request.headers)
        headers["Accept-Encoding"] = "identity"
        connector = get_connector(None, self.proxy)
        timeout = self.timeouts.client_timeout(None)
        loop = asyncio.get_running_loop()
        async with aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            timeout=timeout,
            skip_auto_headers=("User-Agent",),
        ) as session:
            start = loop.time()
            try:
                async with translate_errors(
                    self.upstream, self.timeouts, self.proxy, headers=headers
                ):
                    upstream = await session.post(
                        self.upstream,
                        data=raw,
                        headers=headers,
                        proxy=http_proxy(self.proxy, None),
                        allow_redirects=False,
                    )
            except KoalaError as exc:
                message = f"the recorder's upstream failed: {exc}"
                return error_response(502, message), None
            async with upstream:
                return await self._relay(request, raw, upstream, start)

    async def _relay(
        self,
        request: web.Request,
        raw: bytes,
        upstream: aiohttp.ClientResponse,
        start: float,
    ) -> tuple[web.StreamResponse, Exchange | None]:
        loop = asyncio.get_running_loop()
        head = round(loop.time() - start, 6)
        chunks: list[bytes] = []
        times: list[float] = []
        cut = False

        async def body() -> AsyncIterator[bytes]:
            nonlocal cut
            try:
                async for chunk in _chunks(upstream):
                    chunks.append(chunk)
                    times.append(round(loop.time() - start, 6))
                    yield chunk
            except FOREIGN_ERRORS:
                cut = True

        response, finished = await stream(
            request, upstream.status, _passed(upstream.headers), body()
        )
        if not finished:  # the client left
            return response, None
        if cut:
            abort(request)
        scrubber = ExchangeScrubber(request.headers, upstream.headers, self.scrub)
        kept = scrubber.chunks(chunks)
        if len(kept) != len(chunks):  # merged around a secret: one time
            times = times[-1:]
        exchange = Exchange(
            request=normalise_request(
                raw, request.headers.get("Authorization"), scrubber.text
            ),
            response=CassetteResponse.of_bytes(
                upstream.status,
                scrubber.headers(upstream.headers.items()),
                kept,
                timing=Timing(head, times),
                complete=not cut,
            ),
            recorded=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        append_exchange(self.cassette, exchange)
        return response, exchange


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
