"""`koala sandbox`: the local Koala-protocol server, in the foreground.

The server is `koala_chat.sandbox`; this runs its foreground entry point (the
one behind `python -m koala_chat.sandbox`), which prints the URL to export and
stops on Ctrl-C.
"""

from __future__ import annotations

import argparse

from .options import (
    ENDPOINT_VARIABLE,
    HelpFormatter,
    Subparsers,
    add_debug,
    count,
    positive_count,
    seconds,
)

__all__ = ["add_parser", "run"]

EPILOG = f"""\
The server answers POST /api/gpt/ as koala.sh does, with a reply that quotes
the input and counts the turns of history. It prints the line to export as
${ENDPOINT_VARIABLE}; Ctrl-C stops it (exit code 0).

examples:
  koala sandbox
  koala sandbox --port 0                      # any free port
  koala sandbox --pieces 200 --interval 0.05  # a long, slow reply
  export {ENDPOINT_VARIABLE}=http://127.0.0.1:8000/api/gpt/; koala chat
"""


def add_parser(subparsers: Subparsers) -> None:
    """Register `sandbox`."""
    parser = subparsers.add_parser(
        "sandbox",
        formatter_class=HelpFormatter,
        help="run the local Koala-protocol server (for offline use and tests)",
        description="Run a local server that speaks the Koala chat protocol.",
        epilog=EPILOG,
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="the address to listen on (127.0.0.1)"
    )
    parser.add_argument(
        "--port", type=count, default=8000, help="the port (8000); 0 picks a free one"
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
        default=0.0,
        metavar="SECONDS",
        help="wait this long between pieces (0)",
    )
    add_debug(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C; return the server's exit code."""
    from ..sandbox.__main__ import main

    argv = ["--host", args.host, "--port", str(args.port)]
    if args.pieces is not None:
        argv += ["--pieces", str(args.pieces)]
    argv += ["--interval", str(args.interval)]
    return main(argv)
