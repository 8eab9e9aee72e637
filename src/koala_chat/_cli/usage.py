"""`koala usage`: what each key of a `koala serve --keys` gateway used, per day."""

from __future__ import annotations

import argparse
import datetime
import sys

from .._args import HelpFormatter, Subparsers, add_debug

__all__ = ["add_parser", "run"]

EPILOG = """\
Requests counts every completion a key asked for; limited, those refused
with 429; errors, the other failures. Tokens are estimates (about four
characters each), the median time to first piece is within 5 %. A running
server writes its counts every second and when it stops.

examples:
  koala usage
  koala usage --state redis://127.0.0.1:6379/0 --since 2026-12-01
  koala usage --json | jq '.[] | select(.limited > 0)'
"""


def add_parser(subparsers: Subparsers) -> None:
    """Register `usage`."""
    parser = subparsers.add_parser(
        "usage",
        formatter_class=HelpFormatter,
        help="show the usage of each key of a koala serve --keys gateway",
        description="Show requests, limits met, errors, pieces and tokens per "
        "key and day.",
        epilog=EPILOG,
    )
    parser.add_argument(
        "--state",
        metavar="URL",
        help="the gateway's state, as koala serve --state takes it (default: "
        "$XDG_STATE_HOME/koala-chat/gateway.sqlite3)",
    )
    parser.add_argument(
        "--since",
        type=_date,
        metavar="DATE",
        help="only days from DATE on (YYYY-MM-DD, UTC)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print a JSON list of one object per row"
    )
    add_debug(parser)
    parser.set_defaults(handler=run)


def _date(text: str) -> str:
    """Parse a day as YYYY-MM-DD (an argparse `type`)."""
    try:
        return datetime.date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a date as YYYY-MM-DD, not {text!r}"
        ) from None


def run(args: argparse.Namespace) -> int:
    """Print the usage table (or its JSON); return 0.

    Raises:
        UsageError: no state there, or a Redis URL without the Redis client.
        StateUnavailableError: Redis cannot be reached.
    """
    import asyncio
    import json
    import os

    from ..errors import UsageError
    from ..server.gateway.backends import (
        Counts,
        default_state_path,
        is_redis,
        open_state,
    )
    from ..server.gateway.usage import summarise, table

    url = args.state or default_state_path()
    if not is_redis(url) and not os.path.exists(url):
        raise UsageError(
            f"there is no gateway state at {url}: give the --state of your "
            "koala serve --keys"
        )

    async def read() -> Counts:
        state = open_state(url)
        try:
            return await state.usage(args.since)
        finally:
            await state.close()

    rows = summarise(asyncio.run(read()))
    if args.json:
        sys.stdout.write(json.dumps([row.as_dict() for row in rows], indent=2) + "\n")
    elif rows:
        sys.stdout.write(table(rows) + "\n")
    else:
        sys.stderr.write("koala usage: no usage recorded yet\n")
    return 0
