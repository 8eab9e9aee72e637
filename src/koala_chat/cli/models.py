"""`koala models`: the models the provider knows, the default marked."""

from __future__ import annotations

import argparse
import sys

from .._args import HelpFormatter, Subparsers, add_debug

__all__ = ["add_parser", "run"]

EPILOG = """\
Koala passes names it does not list through to the service, which decides
(docs/protocol.md, "Models"); `koala chat -m NAME` accepts any name.

examples:
  koala models
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
        help='print {"default": ..., "models": [...], "accepts_unknown": ...}',
    )
    add_debug(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print the models; return 0."""
    provider = args.provider
    models = provider.get_models()
    default = provider.default_model
    if args.json:
        import json

        data = {
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
