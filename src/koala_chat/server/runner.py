"""Run `koala serve` until Ctrl-C or SIGTERM, in one process or several.

Stopping is graceful: the listening socket closes at once, idle connections are
closed, open streams get `grace` seconds to finish and are then cancelled. A
second Ctrl-C stops at once.

With `workers` > 1 the parent binds the listening socket once and forks that
many processes, which all accept from it; the server keeps no state a process
would need to share, but for the limits of `--keys`, which live in SQLite or
Redis (`koala_chat.server.gateway`). The parent forwards SIGTERM and Ctrl-C
to them and waits (and SIGHUP with `--keys`).
The socket is bound without SO_REUSEPORT, so a port that anything else holds,
another `koala serve` included, is refused at start instead of shared.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import multiprocessing
import os
import resource
import signal
import socket
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Final

from aiohttp import web

from .._contract.provider import ChatProvider
from .._http import proxy_scheme
from .._sentences import sentence
from .._urls import check_endpoint, redact_url
from ..errors import UsageError
from .app import create_app, create_runner
from .config import ServerConfig, default_provider
from .gateway.gate import reload_on_hangup
from .limits import ResourceShortageLog
from .metrics import shared_across_processes
from .state import STATE_KEY

__all__ = ["serve", "serve_async"]

logger = logging.getLogger("koala_chat.server")

#: Pending connections the kernel queues per socket (a burst of clients).
BACKLOG: Final = 2048
_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)


def serve(config: ServerConfig, provider: ChatProvider | None = None) -> int:
    """Serve until Ctrl-C or SIGTERM; return the exit code (0: a clean stop).

    Raises:
        UsageError: the configuration exposes the server without an API key,
            or the port is in use.
        OSError: the address cannot be bound.
    """
    config.check_exposure()
    _check_upstream(config)
    provider = provider or default_provider()
    _raise_file_limit(config.max_connections)
    # Everything alive now (the modules) lives as long as the process: keep it
    # out of the collector's full passes, which otherwise cost a busy server
    # about a tenth of its CPU time.
    gc.freeze()
    try:
        if config.workers == 1:
            asyncio.run(serve_async(config, provider))
            return 0
        with shared_across_processes():
            return _serve_workers(config, provider)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        raise UsageError(
            f"port {config.port} on {config.host} is in use (another server, or "
            "another koala serve, listens there): stop it or choose another --port"
        ) from exc


async def serve_async(
    config: ServerConfig,
    provider: ChatProvider | None = None,
    *,
    stop: asyncio.Event | None = None,
    started: Callable[[int], None] | None = None,
    escalate: bool = True,
    sock: socket.socket | None = None,
) -> None:
    """Serve on the running loop until `stop` is set or a signal arrives.

    `started` is called with the bound port once the server listens. Signal
    handlers are installed when this runs in the main thread; with `escalate`
    a second signal cancels the open completions instead of waiting for them.
    `sock` is a socket bound already (the workers share one); without it the
    server binds `config.host` and `config.port`.
    """
    stop = stop or asyncio.Event()
    app = create_app(config, provider)
    state = app[STATE_KEY]
    runner = create_runner(app)
    await runner.setup()
    loop = asyncio.get_running_loop()
    with (
        ResourceShortageLog(loop),
        _signals_set(stop, state.cancel_all if escalate else None),
        reload_on_hangup(state.gateway),
    ):
        try:
            site: web.BaseSite = (
                web.TCPSite(runner, config.host, config.port, backlog=BACKLOG)
                if sock is None
                else web.SockSite(runner, sock, backlog=BACKLOG)
            )
            await site.start()
            port = int(runner.addresses[0][1])
            _log_start(config, port)
            if started is not None:
                started(port)
            await stop.wait()
            await site.stop()  # closes the listening socket at once
            logger.info(
                "stopping: no longer accepting; %d open completion(s) get up to "
                "%g s to finish",
                len(state.tasks),
                config.grace,
            )
        finally:
            # aiohttp waits up to the grace for each request, then once more
            # for the handler it cancelled; a streaming handler notices
            # nothing but a cancellation of its task, so cancel the
            # completions when the grace runs out: the stop takes the grace.
            deadline = loop.call_later(config.grace, state.cancel_all)
            try:
                await runner.cleanup()
            finally:
                deadline.cancel()
    logger.info("stopped")


def _check_upstream(config: ServerConfig) -> None:
    """Refuse a bad endpoint or proxy now rather than on every request.

    Raises:
        UsageError: the endpoint is not an http(s) URL, or the proxy URL is bad.
    """
    endpoint = config.provider_options.get("api_endpoint")
    if endpoint is not None:
        check_endpoint(endpoint)
    proxy = config.provider_options.get("proxy")
    if proxy is not None:
        proxy_scheme(proxy)


def _raise_file_limit(max_connections: int) -> None:
    """Let the process hold its connections: raise its limit of open files.

    Each client connection may need an upstream one too. The soft limit is
    raised toward the hard one; if that is still too low, say so once now
    rather than once per failed `accept()` later.
    """
    needed = 2 * max_connections + 64  # and the log, the listening socket...
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if target > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    if soft < needed:
        logger.warning(
            "the limit of open files (%d) is below the %d that --max-connections "
            "%d may need: raise it (ulimit -n) or lower --max-connections",
            soft,
            needed,
            max_connections,
        )


def _log_start(config: ServerConfig, port: int) -> None:
    host = f"[{config.host}]" if ":" in config.host else config.host
    endpoint = config.provider_options.get("api_endpoint")
    logger.info(
        "listening on http://%s:%d (OpenAI base URL http://%s:%d/v1)%s%s%s, pid %d",
        host,
        port,
        host,
        port,
        f", upstream {redact_url(endpoint)}" if endpoint else "",
        ", API key required" if config.api_key else "",
        ", keys of --keys required" if config.keys_file else "",
        os.getpid(),
    )
    logger.info("the chat page: %s (open it in a browser)", page_url(config.host, port))


#: The loopback address to browse to for a server listening on every address.
_BROWSABLE: Final = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}


def page_url(host: str, port: int) -> str:
    """Return the URL of the chat page of a server listening on `host`, `port`.

    A server listening on every address is browsed to on loopback.
    """
    host = _BROWSABLE.get(host, host)
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


@contextlib.contextmanager
def _signals_set(
    stop: asyncio.Event, insist: Callable[[], None] | None
) -> Iterator[None]:
    """Let SIGINT and SIGTERM set `stop`; a second one calls `insist`."""
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if stop.is_set() and insist is not None:
            logger.info("stopping at once")
            insist()
        stop.set()

    installed = []
    for signum in _SIGNALS:
        try:
            loop.add_signal_handler(signum, on_signal)
        except (RuntimeError, ValueError):
            continue  # not the main thread (tests host the server in a thread)
        installed.append(signum)
    try:
        yield
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)


def _serve_workers(config: ServerConfig, provider: ChatProvider) -> int:
    """Run `config.workers` forked processes on one socket; wait for them.

    Raises:
        OSError: the address cannot be bound (in use, not ours).
    """
    with _listening_socket(config.host, config.port) as sock:
        context = multiprocessing.get_context("fork")
        processes = [
            context.Process(
                target=_worker, args=(config, provider, sock), name=f"koala-serve-{n}"
            )
            for n in range(config.workers)
        ]
        for process in processes:
            process.start()
    # The workers hold the socket now: once the last one stops, it closes.
    signals_seen = 0

    def send_to_workers(sent: signal.Signals) -> None:
        for process in processes:
            if process.pid is not None and process.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, sent)

    def forward(signum: int, frame: FrameType | None) -> None:
        nonlocal signals_seen
        signals_seen += 1
        # The first signal asks for a graceful stop, a second one insists.
        send_to_workers(signal.SIGTERM if signals_seen == 1 else signal.SIGKILL)

    def hang_up(signum: int, frame: FrameType | None) -> None:
        # Each worker re-reads the keys file (`gateway.gate.reload_on_hangup`).
        send_to_workers(signal.SIGHUP)

    previous = {signum: signal.signal(signum, forward) for signum in _SIGNALS}
    if config.keys_file is not None:
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, hang_up)
    try:
        for process in processes:
            process.join()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0 if all(process.exitcode == 0 for process in processes) else 1


def _worker(config: ServerConfig, provider: ChatProvider, sock: socket.socket) -> None:
    """One worker process: serve until told to stop (signals never escalate)."""
    # Ctrl-C on a terminal reaches every process of the group; the parent also
    # forwards it. Either way each signal only asks for the graceful stop.
    if config.keys_file is not None:
        # The parent passes SIGHUP on: until the worker's loop takes it (and
        # the worker has read the keys file), it must not end the worker.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        asyncio.run(serve_async(config, provider, escalate=False, sock=sock))
    except (UsageError, OSError) as exc:
        # What the parent reports in one line (a state file it cannot open,
        # say), a worker reports so too, not as a traceback; the parent then
        # exits 1, as for any worker that failed.
        logger.error("worker %d could not serve: %s", os.getpid(), sentence(str(exc)))
        raise SystemExit(2 if isinstance(exc, UsageError) else 1) from None


def _listening_socket(host: str, port: int) -> socket.socket:
    """Return a socket listening on `host` and `port`, for the workers to share.

    SO_REUSEADDR lets it rebind a port whose old connections linger in
    TIME_WAIT, as aiohttp's own sites do; SO_REUSEPORT is left off, so the bind
    fails when anyone listens there already.

    Raises:
        OSError: the address cannot be resolved or bound.
    """
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
    except BaseException:
        sock.close()
        raise
    return sock
