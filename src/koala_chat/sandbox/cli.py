"""The command line of the sandbox: `koala sandbox` and `python -m koala_chat.sandbox`.

Both start the same way: `add_arguments` defines the options of either parser
and `run(args)` serves in the foreground, printing the URL to export, until
Ctrl-C or SIGTERM. Only the standard library and the light helpers are imported
at module level; aiohttp is imported inside `run`, so that `koala --help` stays
fast.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from .._args import (
    HelpFormatter,
    Parser,
    Subparsers,
    add_debug,
    port,
    positive_count,
    seconds,
)
from ..defaults import (
    ENDPOINT_VARIABLE,
    SANDBOX_HOST,
    SANDBOX_INTERVAL,
    SANDBOX_KEEP_REQUESTS,
    SANDBOX_PORT,
)

if TYPE_CHECKING:
    from .state import SandboxState

__all__ = ["add_arguments", "add_parser", "build_parser", "run"]

DESCRIPTION = "Run a local server that speaks the Koala chat protocol."

EPILOG = f"""\
The server answers POST /api/gpt/ as koala.sh does, with a reply that quotes
the input and counts the turns of history. It prints the line to export as
${ENDPOINT_VARIABLE}; Ctrl-C stops it (exit code 0).

examples:
  koala sandbox
  koala sandbox --port 0                      # any free port
  koala sandbox --pieces 200 --interval 0.05  # a long, slow reply
  export {ENDPOINT_VARIABLE}=http://127.0.0.1:{SANDBOX_PORT}/api/gpt/; koala chat
"""


def add_parser(subparsers: Subparsers) -> None:
    """Register `sandbox` on the `koala` command's subparsers."""
    parser = subparsers.add_parser(
        "sandbox",
        formatter_class=HelpFormatter,
        help="run the local Koala-protocol server (for offline use and tests)",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    add_arguments(parser)
    add_debug(parser)
    parser.set_defaults(handler=run)


def build_parser(prog: str) -> Parser:
    """Return the parser of the command on its own (`python -m`)."""
    parser = Parser(
        prog=prog,
        formatter_class=HelpFormatter,
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of the sandbox command to `parser`."""
    parser.add_argument(
        "--host",
        default=SANDBOX_HOST,
        help=f"the address to listen on ({SANDBOX_HOST})",
    )
    parser.add_argument(
        "--port",
        type=port,
        default=SANDBOX_PORT,
        help=f"the port ({SANDBOX_PORT}); 0 picks a free one",
    )
    parser.add_argument(
        "--pieces",
        type=positive_count,
        metavar="N",
        help="make the default reply N pieces long (filler words after the summary)",
    )
    parser.add_argument(
        "--interval",
        type=seconds,
        default=SANDBOX_INTERVAL,
        metavar="SECONDS",
        help=f"wait this long between pieces ({SANDBOX_INTERVAL:g})",
    )


def run(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C or SIGTERM; return 0.

    Raises:
        UsageError: a bad setting.
        OSError: the address cannot be bound.
    """
    import asyncio
    import contextlib

    from .state import SandboxState

    state = SandboxState(
        pieces=args.pieces,
        interval=args.interval,
        keep_requests=SANDBOX_KEEP_REQUESTS,
    )
    # asyncio.run turns Ctrl-C into a cancellation of `_serve`, then raises it
    # here: the way this server is meant to stop.
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(state, args.host, args.port))
    return 0


async def _serve(state: SandboxState, host: str, port: int) -> None:
    """Serve until SIGTERM or cancellation (asyncio.run's answer to Ctrl-C)."""
    import asyncio
    import contextlib
    import signal

    from aiohttp import web

    from .app import create_runner
    from .runner import format_url

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
            f"export {ENDPOINT_VARIABLE}={url}/api/gpt/\n"
        )
        sys.stdout.flush()
        await stop.wait()
    finally:
        state.close()
        await runner.cleanup()
