"""Run the sandbox in the foreground.

    python -m koala_chat.sandbox [--host 127.0.0.1] [--port 8000] [--pieces N]
                                 [--interval S]

It prints its URL and an `export KOALA_API_ENDPOINT=...` line, then serves until
Ctrl-C (or SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence

from aiohttp import web

from ..errors import UsageError
from .app import create_runner
from .runner import format_url
from .state import SandboxState

__all__ = ["main"]

# A long-running server keeps only the latest requests it received.
_KEEP_REQUESTS = 1000


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until interrupted; return the exit status.

    Expected failures (a taken port, a bad option) print one line on stderr and
    return 1.
    """
    args = _parser().parse_args(argv)
    try:
        state = SandboxState(
            pieces=args.pieces, interval=args.interval, keep_requests=_KEEP_REQUESTS
        )
        asyncio.run(_serve(state, args.host, args.port))
    except KeyboardInterrupt:
        return 0
    except (OSError, UsageError) as exc:
        sys.stderr.write(f"koala sandbox: {exc}\n")
        return 1
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m koala_chat.sandbox",
        description="A local server that speaks the Koala chat protocol.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1")
    parser.add_argument(
        "--port", type=_port, default=8000, help="default: 8000; 0 picks a free port"
    )
    parser.add_argument(
        "--pieces", type=int, default=None, help="pieces in the default reply"
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=0.0,
        help="seconds between the pieces of the default reply",
    )
    return parser


def _port(text: str) -> int:
    """Parse a TCP port number for argparse."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"not a port number (0 to 65535): {text!r}")
    return port


async def _serve(state: SandboxState, host: str, port: int) -> None:
    """Serve until SIGTERM or cancellation (asyncio.run's answer to Ctrl-C)."""
    runner = create_runner(state)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        stop = asyncio.Event()
        # Not every platform lets a loop handle signals; Ctrl-C works regardless.
        with contextlib.suppress(NotImplementedError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        # Announce only once a signal would be handled.
        url = format_url(host, int(runner.addresses[0][1]))
        sys.stdout.write(
            f"Koala sandbox listening on {url}\n"
            f"export KOALA_API_ENDPOINT={url}/api/gpt/\n"
        )
        sys.stdout.flush()
        await stop.wait()
    finally:
        state.close()
        await runner.cleanup()


if __name__ == "__main__":
    sys.exit(main())
