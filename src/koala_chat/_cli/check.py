"""`koala check`: does the configured endpoint work, and how fast is it?

This module only defines the command; the request is made in `probe.py`,
imported when the command runs.
"""

from __future__ import annotations

import argparse
import sys

from .. import defaults
from .._args import HelpFormatter, Parser, Subparsers, add_sandbox
from .options import Connection, sandbox_wanted

__all__ = ["add_parser", "run"]

EPILOG = f"""\
Prints whether the endpoint works, the dialect used, the HTTP status, the time
to the first byte (the reply's headers) and to the first piece of text, the
pieces per second, and why it fails when it does: rate limit, cloudflare
challenge, unreachable, proxy failed, timeout, not an event stream, error
status, protocol error. The exit code is 0 when it works, else the code of the
failure (below).

--all tries every dialect, one request each: history, messages, and api when a
key is set (${defaults.API_KEY_VARIABLE} or --api-key-file; it costs a credit),
and prints a row for each with the setting that selects it. It exits 0 when
any works.

examples:
  koala check
  koala check --all
  koala check --all --sandbox                 # offline: every dialect works
  koala check --protocol messages --json
  koala check --endpoint http://127.0.0.1:{defaults.SANDBOX_PORT}/api/gpt/
  {defaults.ENDPOINT_VARIABLE}=http://127.0.0.1:{defaults.SANDBOX_PORT}/api/gpt/ \
    koala check --json
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
        description="Check the endpoint (--endpoint, "
        f"${defaults.ENDPOINT_VARIABLE} or the provider's) with one real request.",
        epilog=EPILOG,
    )
    parser.add_argument(
        "--prompt",
        default=defaults.CHECK_PROMPT,
        help=f"what to send (default: {defaults.CHECK_PROMPT!r})",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the result as one JSON object"
    )
    parser.add_argument(
        "--all",
        action="store_true",
        help="try every dialect and tell which one works (instead of --protocol; "
        f"${defaults.PROTOCOL_VARIABLE} is ignored)",
    )
    add_sandbox(parser, "check")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run `koala check`; return 0 when the endpoint works.

    With --json, stdout gets one JSON object whatever fails (`probe.as_json`).
    """
    if args.json:
        from .probe import as_json

        return as_json(args, _run)
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    import asyncio
    import json
    from dataclasses import asdict

    from .hints import Situation
    from .local import maybe_sandbox
    from .probe import probe, report

    sandbox = sandbox_wanted(args)
    connection = Connection.from_args(args, environment=not sandbox)
    # Under --all the sandbox's test key lets the api row be tried too.
    with maybe_sandbox(connection, sandbox, every_dialect=args.all) as connection:
        if args.all:
            return _run_all(args, connection)
        situation = Situation.from_args(args)
        result = asyncio.run(probe(args.provider, connection, args.prompt, situation))
    if args.json:
        sys.stdout.write(json.dumps(asdict(result), ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(report(result))
    sys.stdout.flush()
    return result.exit_code


def _run_all(args: argparse.Namespace, connection: Connection) -> int:
    """Run `koala check --all`; return 0 when any dialect works."""
    import asyncio
    import json

    from ..errors import UsageError
    from .survey import survey

    if args.protocol is not None:
        raise UsageError("--all tries every dialect: leave out --protocol")
    from .hints import Situation

    situation = Situation.from_args(args)
    result = asyncio.run(survey(args.provider, connection, args.prompt, situation))
    if args.json:
        sys.stdout.write(json.dumps(result.to_json(), ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(result.table())
    sys.stdout.flush()
    return result.exit_code
