"""`koala check`: does the configured endpoint work, and how fast is it?

This module only defines the command; the request is made in `probe.py`,
imported when the command runs.
"""

from __future__ import annotations

import argparse
import sys

from .options import ENDPOINT_VARIABLE, Connection, HelpFormatter, Parser, Subparsers

__all__ = ["add_parser", "run"]

DEFAULT_PROMPT = "Say hello in one word."

EPILOG = """\
Prints whether the endpoint works, the HTTP status, the time to the first byte
(the reply's headers) and to the first piece of text, the pieces per second,
and why it fails when it does: rate limit, cloudflare challenge, unreachable,
proxy failed, timeout, not an event stream, error status, protocol error.
The exit code is 0 when it works, else the code of the failure (below).

examples:
  koala check
  koala check --endpoint http://127.0.0.1:8000/api/gpt/
  KOALA_API_ENDPOINT=http://127.0.0.1:8000/api/gpt/ koala check --json
  koala check --proxy http://user:secret@proxy:3128 --timeout 20
"""


def add_parser(
    subparsers: Subparsers,
    connection: Parser,
) -> None:
    """Register `check`."""
    parser = subparsers.add_parser(
        "check",
        parents=[connection],
        formatter_class=HelpFormatter,
        help="make one real request and tell whether the endpoint works",
        description=f"Check the Koala endpoint (--endpoint, ${ENDPOINT_VARIABLE} "
        "or koala.sh) with one real request.",
        epilog=EPILOG,
    )
    parser.add_argument(
        "--prompt",
        default=DEFAULT_PROMPT,
        help=f"what to send (default: {DEFAULT_PROMPT!r})",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the result as one JSON object"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run `koala check`; return 0 when the endpoint works."""
    import asyncio
    import json
    from dataclasses import asdict

    from ..providers import Koala
    from .probe import probe, report

    result = asyncio.run(probe(Koala, Connection.from_args(args), args.prompt))
    if args.json:
        sys.stdout.write(json.dumps(asdict(result), ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(report(result))
    sys.stdout.flush()
    return result.exit_code
