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
    Parser,
    Subparsers,
    add_command,
    port,
    positive_count,
    read_key_file,
    seconds,
    standalone_parser,
)
from ..defaults import (
    API_KEY_VARIABLE,
    ENDPOINT_VARIABLE,
    PROTOCOL_VARIABLE,
    SANDBOX_HOST,
    SANDBOX_INTERVAL,
    SANDBOX_KEEP_REQUESTS,
    SANDBOX_PORT,
    SANDBOX_PROTOCOLS,
)
from .cassette_options import CASSETTE_EPILOG, add_cassette_arguments, responder_from

if TYPE_CHECKING:
    from .state import SandboxState

__all__ = [
    "add_arguments",
    "add_parser",
    "banner",
    "build_parser",
    "run",
]


DESCRIPTION = "Run a local server that speaks the Koala chat protocol."

EPILOG = f"""\
The server answers POST /api/gpt/ as koala.sh does, with a reply that quotes
the input and counts the turns of history. It prints the line to export as
${ENDPOINT_VARIABLE}; Ctrl-C stops it (exit code 0).

--protocol picks the dialects it accepts (docs/protocol.md, "The sandbox's
dialects"): one of history, messages and api, refusing the others' bodies as
the real service would, or any (each request read in the dialect its shape
names). The api dialect wants a Bearer key: the sandbox's test key, printed
on start, or the one in --api-key-file. It serves KoalaImages as well, at
POST /api/image-generation/, with the same key (docs/images.md, "The sandbox").

{CASSETTE_EPILOG}
examples:
  koala sandbox
  koala sandbox --port 0                      # any free port
  koala sandbox --pieces 200 --interval 0.05  # a long, slow reply
  koala sandbox --protocol messages           # only the chat page's dialect
  koala sandbox --protocol messages --raw-text  # its pieces as raw text
  koala sandbox --protocol api --api-key-file ~/.koala-test-key
  koala sandbox --record koala.jsonl --upstream https://koala.sh/api/gpt/
  koala sandbox --replay koala.jsonl --replay-timing
  koala sandbox --image-delay 3               # images ready 3 s after asked
  export {ENDPOINT_VARIABLE}=http://127.0.0.1:{SANDBOX_PORT}/api/gpt/; koala chat
"""


def add_parser(subparsers: Subparsers) -> None:
    """Register `sandbox` on the `koala` command's subparsers."""
    add_command(
        subparsers,
        "sandbox",
        summary="run the local Koala-protocol server (for offline use and tests)",
        description=DESCRIPTION,
        epilog=EPILOG,
        add_arguments=add_arguments,
        run=run,
    )


def build_parser(prog: str) -> Parser:
    """Return the parser of the command on its own (`python -m`)."""
    return standalone_parser(
        prog, description=DESCRIPTION, epilog=EPILOG, add_arguments=add_arguments
    )


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
    parser.add_argument(
        "--protocol",
        choices=SANDBOX_PROTOCOLS,
        default="any",
        help="the dialects to accept (any)",
    )
    parser.add_argument(
        "--raw-text",
        action="store_true",
        help="stream the messages dialect's pieces as raw text (data: Koalas), "
        "not as JSON strings",
    )
    parser.add_argument(
        "--image-delay",
        type=seconds,
        default=0.0,
        metavar="SECONDS",
        help="the seconds until each KoalaImages image is ready (0)",
    )
    parser.add_argument(
        "--api-key-file",
        metavar="PATH",
        help="the key the api dialect accepts, read from this file (default: "
        "the sandbox's test key, printed on start)",
    )
    add_cassette_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C or SIGTERM; return 0.

    Raises:
        UsageError: a bad setting.
        OSError: the address cannot be bound.
    """
    import asyncio
    import contextlib

    from .checks import SANDBOX_API_KEY
    from .images import ImageSettings
    from .state import SandboxState

    key_file: str | None = args.api_key_file
    state = SandboxState(
        pieces=args.pieces,
        interval=args.interval,
        keep_requests=SANDBOX_KEEP_REQUESTS,
        protocol=args.protocol,
        api_key=read_key_file(key_file) if key_file else SANDBOX_API_KEY,
        raw_text=args.raw_text,
        images=ImageSettings(delay=args.image_delay),
    )
    state.responder = responder_from(args)
    # asyncio.run turns Ctrl-C into a cancellation of `_serve`, then raises it
    # here: the way this server is meant to stop.
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(state, args.host, args.port, key_file))
    return 0


def banner(url: str, protocol: str, key_file: str | None) -> str:
    """Return what the sandbox prints once it listens: the lines to export.

    The test key is printed only when the api dialect is accepted and the key
    is that test key; a key from a file is never printed. When every dialect
    is accepted, the key line is a shell comment: exporting a key alone makes
    the client speak the api dialect, which a user who copies the banner did
    not ask for.
    """
    from .checks import SANDBOX_API_KEY

    accepts = "every dialect" if protocol == "any" else f"the {protocol} dialect"
    lines = [
        f"Koala sandbox listening on {url}",
        f"export {ENDPOINT_VARIABLE}={url}/api/gpt/",
        f"# it accepts {accepts} (--protocol)",
    ]
    key_line = f"export {API_KEY_VARIABLE}={SANDBOX_API_KEY}"
    if protocol in ("api", "any") and key_file:
        lines.append(f"# the api dialect takes the key in {key_file}")
    elif protocol == "api":
        lines.append(key_line)
    elif protocol == "any":
        lines.append(f"# for the api dialect: {key_line}")
    elif protocol == "messages":
        lines.append(f"export {PROTOCOL_VARIABLE}=messages")
    return "\n".join(lines) + "\n"


async def _serve(
    state: SandboxState, host: str, port: int, key_file: str | None
) -> None:
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
        sys.stdout.write(banner(url, state.protocol, key_file))
        if state.responder is not None:
            sys.stdout.write(state.responder.describe())
        sys.stdout.flush()
        await stop.wait()
    finally:
        if state.responder is not None:  # the last recordings' ends
            await state.responder.wait_recorded_async()
        state.close()
        await runner.cleanup()
