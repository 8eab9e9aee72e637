"""Host the sandbox on its own event loop in a daemon thread.

A thread of its own lets both kinds of tests use the same server over real TCP:
sync tests, which run no loop, and async tests, whose loop must stay free to run
the client.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from types import TracebackType
from typing import TYPE_CHECKING

from aiohttp import web

from ..errors import UsageError
from .app import create_runner
from .checks import SANDBOX_API_KEY, SandboxProtocol
from .images import ImageSettings
from .script import RecordedRequest, Reply
from .state import SandboxState

if TYPE_CHECKING:
    from .responder import Responder

__all__ = ["Sandbox", "format_url"]

# How long start() waits for the server to listen, and stop() for it to end.
_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 10.0


def format_url(host: str, port: int) -> str:
    """Return the base URL of a server on `host` and `port` (IPv6 in brackets)."""
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


class Sandbox:
    """A local server speaking the Koala protocol, scriptable per test.

    Example:
        >>> with Sandbox() as sandbox:  # doctest: +SKIP
        ...     sandbox.push(Reply(values=["Hel", "lo"], done=True))
        ...     Koala.create_completion(..., api_endpoint=sandbox.api_endpoint)

    `pieces` and `interval` shape the default reply (see `default_reply`).
    `protocol` is the dialect it accepts: `history`, `messages`, `api`, or `any`
    (the default), each request's own, recognised by its shape; `api_key` is the
    key the api dialect wants (docs/protocol.md, "The sandbox's dialects");
    `raw_text` streams the messages dialect's default reply as raw text.
    `responder` answers every request instead of the scripts: a `Recorder` or
    a `Replayer` (docs/protocol.md, "Cassettes").
    `image_delay` is the seconds until each of its KoalaImages images is
    ready, `image_models` the models its plan includes (None: all; see
    `images.py`).
    `state` is the `SandboxState` the server shares with the test; the methods
    here delegate to it, and all of them are safe to call from any thread.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        pieces: int | None = None,
        interval: float = 0.0,
        protocol: SandboxProtocol = "any",
        api_key: str = SANDBOX_API_KEY,
        raw_text: bool = False,
        responder: Responder | None = None,
        image_delay: float = 0.0,
        image_models: tuple[str, ...] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.state = SandboxState(
            pieces=pieces,
            interval=interval,
            protocol=protocol,
            api_key=api_key,
            raw_text=raw_text,
            images=ImageSettings(image_delay, image_models),
        )
        self.state.responder = responder
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._stopped = False

    def start(self) -> None:
        """Start serving; return once the server listens.

        Raises:
            UsageError: The sandbox was started before.
            OSError: The address cannot be bound.
        """
        if self._thread is not None:
            raise UsageError("this sandbox was started already; make a new one")
        ready: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="koala-sandbox", daemon=True
        )
        self._thread.start()
        try:
            self.port = ready.result(_START_TIMEOUT)
        except BaseException:
            self._thread.join(_STOP_TIMEOUT)
            self._stopped = True
            raise

    def stop(self) -> None:
        """Stop serving: end every reply in progress, close, join the thread.

        Stalled replies are cut, not released. Calling it again does nothing.
        """
        if self._stopped or self._thread is None:
            self._stopped = True
            return
        self._stopped = True
        loop, stop_event = self._loop, self._stop_event
        if loop is not None and stop_event is not None:
            # The loop may have ended already (a crash): then there is no one
            # left to tell.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop_event.set)
        self._thread.join(_STOP_TIMEOUT)
        if self._thread.is_alive():
            raise RuntimeError("the sandbox thread did not stop")

    def __enter__(self) -> Sandbox:
        """Start the sandbox."""
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop the sandbox."""
        self.stop()

    @property
    def url(self) -> str:
        """The server's base URL, `http://127.0.0.1:PORT`.

        Raises:
            UsageError: The sandbox has not been started.
        """
        if self._thread is None:
            raise UsageError("the sandbox is not started: call start() first")
        return format_url(self.host, self.port)

    @property
    def api_endpoint(self) -> str:
        """The URL of the Koala API, `url + "/api/gpt/"`."""
        return self.url + "/api/gpt/"

    @property
    def images_endpoint(self) -> str:
        """The URL of its KoalaImages, `url + "/api/image-generation/"`."""
        return self.url + "/api/image-generation/"

    @property
    def protocol(self) -> SandboxProtocol:
        """The dialect the sandbox accepts, or `any`."""
        return self.state.protocol

    @property
    def api_key(self) -> str:
        """The key the api dialect wants, `Bearer <api_key>`."""
        return self.state.api_key

    def push(self, *replies: Reply) -> None:
        """Queue replies for the next requests, in order.

        When the queue is empty the server sends the default reply.
        """
        self.state.push(*replies)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, in order (a copy)."""
        return self.state.requests

    def release(self) -> None:
        """Let stalled replies continue; if none is stalled, the next one passes."""
        self.state.release()

    def wait_stalled(self, timeout: float = 5.0, *, count: int = 1) -> bool:
        """Block until `count` replies are held at their stall.

        Returns False if that did not happen within `timeout` seconds.
        """
        return self.state.wait_stalled(timeout, count=count)

    async def wait_stalled_async(
        self,
        timeout: float = 5.0,  # noqa: ASYNC109 (False on timeout)
        *,
        count: int = 1,
    ) -> bool:
        """Like `wait_stalled`, without blocking the calling loop."""
        return await self.state.wait_stalled_async(timeout, count=count)

    def wait_disconnect(self, timeout: float = 5.0, *, count: int = 1) -> bool:
        """Block until `count` clients went away in the middle of a reply.

        Returns False if that did not happen within `timeout` seconds.
        """
        return self.state.wait_disconnect(timeout, count=count)

    async def wait_disconnect_async(
        self,
        timeout: float = 5.0,  # noqa: ASYNC109 (False on timeout)
        *,
        count: int = 1,
    ) -> bool:
        """Like `wait_disconnect`, without blocking the calling loop."""
        return await self.state.wait_disconnect_async(timeout, count=count)

    @property
    def disconnects(self) -> int:
        """How many clients went away in the middle of a streamed reply."""
        return self.state.disconnects

    def _run(self, ready: concurrent.futures.Future[int]) -> None:
        """Run the server on a fresh loop until `stop`."""
        try:
            asyncio.run(self._serve(ready))
        except Exception as exc:
            # A failure before listening (a taken port) belongs to start();
            # a later one ends the thread loudly.
            if ready.done():
                raise
            ready.set_exception(exc)

    async def _serve(self, ready: concurrent.futures.Future[int]) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        runner = create_runner(self.state)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
            ready.set_result(_bound_port(runner))
            await self._stop_event.wait()
        finally:
            if self.state.responder is not None:  # the last recordings' ends
                await self.state.responder.wait_recorded_async()
            self.state.close()
            await runner.cleanup()


def _bound_port(runner: web.AppRunner) -> int:
    """Return the port the runner listens on (the real one for port 0)."""
    address = runner.addresses[0]
    return int(address[1])
