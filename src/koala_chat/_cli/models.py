"""`koala models`: the models the provider knows, the default marked."""

from __future__ import annotations

import argparse
import sys

from .._args import HelpFormatter, Subparsers, add_debug, add_sandbox
from .options import add_dialect_options

__all__ = ["add_parser", "run"]

EPILOG = """\
The models of the dialect in use (--protocol, else $KOALA_PROTOCOL, else api
when a key is set, else auto, which starts with history's). Koala passes names
it does not list through to the service, which decides (docs/protocol.md,
"Models"); `koala chat -m NAME` accepts any name. No request is made, so
--sandbox changes nothing here; it is accepted as the other commands take it.

examples:
  koala models
  koala models --protocol messages
  koala models --json | jq -r .default
"""


def add_parser(subparsers: Subparsers) -> None:
    """Register `models`."""
    parser = subparsers.add_parser(
        "models",
        formatter_class=HelpFormatter,
        help="list the known models, the default marked",
        description="List the models of the provider.",
        epilog=EPILOG,
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help='print {"protocol": ..., "default": ..., "models": [...], '
        '"accepts_unknown": ...}',
    )
    add_dialect_options(parser, web_search=False)
    # Nothing is sent: the list is the provider's. Taken all the same, so that
    # one set of options works for every command that talks to Koala.
    add_sandbox(
        parser,
        "",
        help="the models a --sandbox command would use: the same list, as "
        "none is asked of the endpoint",
    )
    add_debug(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print the models of the dialect in use; return 0.

    Raises:
        UsageError: a bad KOALA_PROTOCOL, or an unreadable key file.
    """
    from .options import configured_key, configured_protocol
    from .provider import models_of, speaks_dialects

    provider = args.provider
    protocol: str | None = None
    if speaks_dialects(provider):
        from ..providers.dialects import choose_protocol

        key = configured_key(args.api_key_file)
        protocol = choose_protocol(
            configured_protocol(args.protocol), has_key=key is not None
        )
    models, default = models_of(provider, protocol or "auto")
    if args.json:
        import json

        data = {
            "protocol": protocol,
            "default": default,
            "models": models,
            "accepts_unknown": provider.accept_unknown_models,
        }
        sys.stdout.write(json.dumps(data) + "\n")
    else:
        width = max(map(len, models), default=0)
        for model in models:
            mark = "  (default)" if model == default else ""
            sys.stdout.write(f"{model:<{width}}{mark}".rstrip() + "\n")
    sys.stdout.flush()
    return 0
