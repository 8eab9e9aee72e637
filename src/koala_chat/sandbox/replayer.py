"""Replay: answer each request from a cassette, byte for byte as it was recorded.

`Replayer` is the sandbox's responder for `koala sandbox --replay CASSETTE`.
A request is normalised (`matching.py`) and answered with its recording: the
same status, the kept headers, and the body in the same chunks, one write
each; with `timing`, each at the moment it came when it was recorded (counted
from when the request arrived). A request recorded several times gets the
recordings in order, then the last one again.

A request the cassette lacks gets a `404` whose JSON body names the cassette,
the request and the nearest recorded one (docs/protocol.md, "Cassettes"); it
never reaches the network. Given a `Recorder` (`--record-mode new`), the
replayer passes such a request on instead, records it, and replays it from
then on.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator, Sequence

from aiohttp import web
from multidict import CIMultiDict

from .cassette import CassetteRequest, Exchange, load_cassette
from .matching import CassetteIndex, describe, normalise_request
from .recorder import Recorder
from .responder import abort, error_response, stream
from .scrubbing import ExchangeScrubber

__all__ = ["NO_RECORDING_STATUS", "Replayer"]

NO_RECORDING_STATUS = 404
"""The status of the answer to a request the cassette has no recording of."""


class Replayer:
    """Answer from the cassette at `cassette`, loaded and validated at once.

    Example:
        >>> replayer = Replayer("koala.jsonl")  # doctest: +SKIP
        >>> with Sandbox(responder=replayer) as sandbox:  # doctest: +SKIP
        ...     ...  # point the application at sandbox.api_endpoint

    `timing` paces the answers as recorded; `recorder` (whose cassette must be
    the same file) records the requests the cassette lacks; `scrub` holds the
    patterns the recording was scrubbed with (`--scrub`), applied to each
    request before it is matched, so that a request matches its scrubbed
    recording. With a recorder the cassette may not exist yet.

    Raises:
        CassetteError: the cassette cannot be read or a line is invalid.
    """

    def __init__(
        self,
        cassette: str | os.PathLike[str],
        *,
        timing: bool = False,
        recorder: Recorder | None = None,
        scrub: Sequence[re.Pattern[str]] = (),
    ) -> None:
        self.cassette = os.fspath(cassette)
        self.timing = timing
        self.recorder = recorder
        self.scrub = tuple(scrub) or (recorder.scrub if recorder else ())
        missing = recorder is not None and not os.path.exists(self.cassette)
        exchanges = [] if missing else load_cassette(self.cassette)
        self.index = CassetteIndex(exchanges)
        self._next_line = max((line for line, _ in exchanges), default=0) + 1
        #: The message of each request answered with "no recording", in order.
        self.misses: list[str] = []
        if recorder is not None:
            recorder.on_recorded = self._learn

    def describe(self) -> str:
        """Return the banner's line: which cassette, and what a miss does."""
        line = f"# replaying {self.cassette} ({len(self.index)} recorded requests)"
        if self.recorder is not None:
            line += "; recording what it lacks: " + self.recorder.describe()[2:]
            return line
        return line + "\n"

    def wait_recorded(self, timeout: float = 5.0) -> bool:
        """Block until the recorder, if any, wrote what it began; False on timeout."""
        return self.recorder is None or self.recorder.wait_recorded(timeout)

    async def wait_recorded_async(
        self,
        timeout: float = 5.0,  # noqa: ASYNC109 (False on timeout)
    ) -> bool:
        """Like `wait_recorded`, without blocking the running loop."""
        if self.recorder is None:
            return True
        return await self.recorder.wait_recorded_async(timeout)

    async def __call__(self, request: web.Request, raw: bytes) -> web.StreamResponse:
        """Answer `request` from the cassette, or say it has no recording."""
        start = asyncio.get_running_loop().time()
        scrubber = ExchangeScrubber(request.headers, None, self.scrub)
        wanted = normalise_request(
            raw, request.headers.get("Authorization"), scrubber.text
        )
        exchange = self.index.take(wanted)
        if exchange is not None:
            return await self._replay(request, exchange, start)
        if self.recorder is None:
            return self._no_recording(wanted)
        return await self.recorder(request, raw)

    def _learn(self, exchange: Exchange) -> None:
        """Replay what the recorder recorded from now on; it answered once."""
        self.index.add(exchange, self._next_line)
        self._next_line += 1
        self.index.take(exchange.request)

    async def _replay(
        self, request: web.Request, exchange: Exchange, start: float
    ) -> web.StreamResponse:
        recorded = exchange.response
        timing = recorded.timing if self.timing else None
        loop = asyncio.get_running_loop()

        async def until(offset: float) -> None:
            await asyncio.sleep(max(0.0, start + offset - loop.time()))

        async def body() -> AsyncIterator[bytes]:
            for index, chunk in enumerate(recorded.body_chunks()):
                if timing is not None:
                    await until(timing.chunks[index])
                yield chunk

        response, finished = await stream(
            request,
            recorded.status,
            CIMultiDict(recorded.headers),
            body(),
            wait=None if timing is None else (lambda: until(timing.head)),
        )
        if finished and not recorded.complete:
            abort(request)
        return response

    def _no_recording(self, wanted: CassetteRequest) -> web.Response:
        """The 404 naming the cassette, the request and the nearest recording."""
        nearest = self.index.nearest(wanted)
        message = f"no recording in the cassette {self.cassette} for this request"
        if nearest is None:
            message += f" ({describe(wanted)}): the cassette is empty"
        else:
            message += (
                f": the nearest recorded request, on line {nearest.line}, differs "
                f"in {nearest.differs}; this request: {describe(wanted)}; the "
                f"nearest: {describe(nearest.request)}"
            )
        self.misses.append(message)
        return error_response(
            NO_RECORDING_STATUS,
            message,
            cassette=self.cassette,
            request=wanted,
            nearest=None if nearest is None else nearest.request,
            nearest_line=None if nearest is None else nearest.line,
        )
