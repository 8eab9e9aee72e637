"""`koala serve`: the command-line entry of the OpenAI-compatible server.

`add_parser(subparsers)` registers the command and `run(args)` runs it (the
`koala` command finds both, see `koala_chat.cli.app`). Only the standard
library and the light CLI helpers are imported at module level; aiohttp is
imported inside `run`, so that `koala --help` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys

from .. import defaults
from ..cli.options import (
    ENDPOINT_VARIABLE,
    HelpFormatter,
    Subparsers,
    count,
    positive_count,
    positive_seconds,
    seconds,
)

__all__ = ["add_parser", "run"]

API_KEY_VARIABLE = defaults.SERVER_API_KEY_VARIABLE

EPILOG = f"""\
Routes: POST /v1/chat/completions (stream or not), GET /v1/models,
GET /v1/models/ID and GET /health. Point any OpenAI client at
http://HOST:PORT/v1 (the API key is any string unless --api-key is set).

examples:
  koala serve                                      # http://127.0.0.1:1337/v1
  koala serve --endpoint http://127.0.0.1:8000/api/gpt/   # a koala sandbox
  {API_KEY_VARIABLE}=secret koala serve --host 0.0.0.0 --workers 2

Listening on anything but loopback needs an API key ({API_KEY_VARIABLE} or
--api-key; the environment keeps it out of `ps`). Ctrl-C or SIGTERM stops
accepting and lets open streams finish for --grace seconds; a second Ctrl-C
stops at once.
"""


def add_parser(subparsers: Subparsers) -> None:
    """Register the `serve` command on the `koala` command's subparsers."""
    parser = subparsers.add_parser(
        "serve",
        formatter_class=HelpFormatter,
        help="run an OpenAI-compatible HTTP server in front of Koala",
        description="Serve the OpenAI chat-completions API, answered by Koala.",
        epilog=EPILOG,
    )
    add_arguments(parser)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of `koala serve` to `parser`."""
    listen = parser.add_argument_group("listening")
    listen.add_argument(
        "--host", default="127.0.0.1", help="the address to listen on (127.0.0.1)"
    )
    listen.add_argument(
        "--port", type=count, default=1337, help="the port (1337); 0 picks a free one"
    )
    listen.add_argument(
        "--api-key",
        metavar="KEY",
        help="require `Authorization: Bearer KEY` on /v1 routes "
        f"(default: ${API_KEY_VARIABLE})",
    )
    listen.add_argument(
        "--workers",
        type=positive_count,
        default=1,
        metavar="N",
        help="processes sharing one listening socket (1)",
    )
    listen.add_argument(
        "--max-streams",
        type=positive_count,
        default=1000,
        metavar="N",
        help="completions at once per process; more get 429 (1000)",
    )
    listen.add_argument(
        "--max-body",
        type=positive_count,
        default=1024 * 1024,
        metavar="BYTES",
        help="the largest request body; larger get 413 (1048576)",
    )
    listen.add_argument(
        "--grace",
        type=seconds,
        default=10.0,
        metavar="SECONDS",
        help="how long open streams may finish after Ctrl-C or SIGTERM (10)",
    )
    listen.add_argument(
        "--head-timeout",
        type=positive_seconds,
        default=10.0,
        metavar="SECONDS",
        help="time to send a request's head; also the longest idle keep-alive (10)",
    )
    listen.add_argument(
        "--body-timeout",
        type=positive_seconds,
        default=30.0,
        metavar="SECONDS",
        help="time to send a request's body; slower get 408 (30)",
    )
    listen.add_argument(
        "--max-connections",
        type=positive_count,
        default=1000,
        metavar="N",
        help="open connections per process; more get 503 (1000)",
    )
    listen.add_argument(
        "--quiet",
        action="store_true",
        help="no access log (start, stop and errors only)",
    )
    upstream = parser.add_argument_group("upstream (passed to the Koala provider)")
    upstream.add_argument(
        "--endpoint",
        metavar="URL",
        help=f"the Koala API URL (default: ${ENDPOINT_VARIABLE}, "
        "else https://koala.sh/api/gpt/)",
    )
    upstream.add_argument(
        "--proxy",
        metavar="URL",
        help="reach Koala through this proxy (http, https, socks4(a), socks5(h))",
    )
    upstream.add_argument(
        "--timeout",
        type=positive_seconds,
        metavar="SECONDS",
        help="time limit of each upstream request (the provider's: 300)",
    )
    upstream.add_argument(
        "--retries",
        type=count,
        metavar="N",
        help="further upstream attempts before any text arrived (the provider's: 2)",
    )


def run(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C or SIGTERM; return the exit code.

    Raises:
        UsageError: a bad setting, or a non-loopback host without an API key.
        OSError: the address cannot be bound.
    """
    # Imported here, not at the top: `koala --help` loads this module, and
    # logging alone costs it about 13 ms (under 0.1 s).
    import logging

    from .app import ACCESS_LOGGER
    from .config import ServerConfig
    from .runner import serve

    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.quiet:
        logging.getLogger(ACCESS_LOGGER).setLevel(logging.WARNING)
    options = {
        "api_endpoint": args.endpoint or None,
        "proxy": args.proxy or None,
        "timeout": args.timeout,
        "max_retries": args.retries,
    }
    config = ServerConfig(
        host=args.host,
        port=args.port,
        api_key=args.api_key or os.environ.get(API_KEY_VARIABLE) or None,
        max_body=args.max_body,
        max_streams=args.max_streams,
        grace=args.grace,
        workers=args.workers,
        head_timeout=args.head_timeout,
        body_timeout=args.body_timeout,
        max_connections=args.max_connections,
        provider_options={k: v for k, v in options.items() if v is not None},
    )
    return serve(config)
