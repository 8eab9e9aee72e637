"""`koala keys add NAME`: a new key for a `koala serve --keys` gateway.

The key is printed once, on stdout; the file keeps only its SHA-256, appended
as a new `[keys.NAME]` entry, so its other entries and comments stay as they
were (`koala_chat.server.gateway.keys`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .._args import HelpFormatter, Subparsers, add_debug, positive_count

__all__ = ["add_parser", "default_keys_file", "run_add"]

EPILOG = """\
The key is printed once and never stored: give it to its user now. A name
already in the file is refused. Every limit is optional; a key without any is
unlimited. A running `koala serve --keys FILE` takes the new key on SIGHUP
(kill -HUP PID).

examples:
  koala keys add alice --rpm 60 --rpd 2000 --max-streams 4
  koala keys add ci --file /etc/koala/keys.toml
"""


def default_keys_file() -> str:
    """Return the default keys file: under XDG_CONFIG_HOME, else ~/.config."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return str(Path(base) / "koala-chat" / "keys.toml")


def add_parser(subparsers: Subparsers) -> None:
    """Register `keys` and its subcommand `add`."""
    parser = subparsers.add_parser(
        "keys",
        formatter_class=HelpFormatter,
        help="manage the keys of a koala serve --keys gateway",
        description="Manage the named keys of a gateway shared by a team.",
        epilog=EPILOG,
    )
    commands = parser.add_subparsers(
        dest="keys_command",
        metavar="COMMAND",
        title="commands",
        required=True,
        help="add: make a new key",
    )
    add = commands.add_parser(
        "add",
        formatter_class=HelpFormatter,
        help="make a new key, print it once, append its hash to the file",
        description="Make a new key NAME: print it once, keep only its hash.",
        epilog=EPILOG,
    )
    add.add_argument("name", metavar="NAME", help="the key's name (in logs, usage)")
    add.add_argument(
        "--rpm", type=positive_count, metavar="N", help="requests per minute at most"
    )
    add.add_argument(
        "--rpd", type=positive_count, metavar="N", help="requests per day at most"
    )
    add.add_argument(
        "--max-streams",
        type=positive_count,
        metavar="N",
        help="requests at once at most",
    )
    add.add_argument(
        "--file",
        metavar="FILE",
        help=f"the keys file (default: {_shown(default_keys_file())})",
    )
    add_debug(add)
    add.set_defaults(handler=run_add)


def _shown(path: str) -> str:
    home = str(Path.home())
    return "~" + path[len(home) :] if path.startswith(home + os.sep) else path


def run_add(args: argparse.Namespace) -> int:
    """Append a new key to the file and print it; return 0.

    Raises:
        UsageError: a bad or taken name, or a broken keys file.
    """
    from ..server.gateway.keys import Limits, add_key

    path = args.file or default_keys_file()
    if args.file is None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    limits = Limits(args.rpm, args.rpd, args.max_streams)
    key = add_key(path, args.name, limits)
    sys.stdout.write(key + "\n")
    sys.stdout.flush()
    sys.stderr.write(
        f"koala keys: added {args.name!r} to {path}; the key above is shown only once\n"
    )
    return 0
