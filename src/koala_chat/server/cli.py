"""The command line of the server: `koala serve` and `python -m koala_chat.server`.

Both start the same way: `add_arguments` defines the options of either parser
and `run(args)` serves `args.provider` until Ctrl-C or SIGTERM. Only the
standard library and the light helpers are imported at module level; aiohttp is
imported inside `run`, so that `koala --help` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._args import (
    Parser,
    Subparsers,
    add_command,
    add_sandbox,
    count,
    port,
    positive_count,
    positive_seconds,
    seconds,
    standalone_parser,
)
from ..defaults import (
    API_ENDPOINT,
    ENDPOINT_VARIABLE,
    MAX_RETRIES,
    PROTOCOLS,
    SANDBOX_PORT,
    SERVER_API_KEY_VARIABLE,
    SERVER_BODY_TIMEOUT,
    SERVER_CLIENT_PROTOCOLS,
    SERVER_GRACE,
    SERVER_HEAD_TIMEOUT,
    SERVER_HOST,
    SERVER_MAX_BODY,
    SERVER_MAX_CONNECTIONS,
    SERVER_MAX_STREAMS,
    SERVER_PORT,
    SERVER_WORKERS,
    TOTAL_TIMEOUT,
)

if TYPE_CHECKING:
    from .config import ServerConfig

__all__ = [
    "ROUTES",
    "add_arguments",
    "add_parser",
    "build_parser",
    "config_from_args",
    "run",
]

DESCRIPTION = "Serve the OpenAI chat-completions API, answered by Koala."

#: Every route of the server, as `--help` lists them: method, path (ID and
#: NAME stand for a path parameter), what it serves. Written out, as `--help`
#: must not import aiohttp to read the router; tests/test_cli_serve.py checks
#: it against the app's router, the /v1 routes also without /v1.
ROUTES: tuple[tuple[str, str, str], ...] = (
    ("GET", "/", "the chat page"),
    ("GET", "/static/NAME", "the chat page's files"),
    ("POST", "/v1/chat/completions", "a chat completion, streamed or not"),
    ("POST", "/v1/responses", "the OpenAI Responses API (Codex, the Agents SDK)"),
    ("POST", "/v1/completions", "a legacy completion of a prompt"),
    ("POST", "/v1/messages", "the Anthropic Messages API (Claude Code)"),
    ("POST", "/v1/messages/count_tokens", "Anthropic's token count (an estimate)"),
    ("POST", "/v1/images/generations", "KoalaImages, in the OpenAI shape"),
    ("GET", "/v1/models", "the models"),
    ("GET", "/v1/models/ID", "one model"),
    ("GET", "/health", "is the server up? (no API key needed)"),
    ("GET", "/openapi.json", "the OpenAPI document of the routes"),
    ("GET", "/metrics", "Prometheus metrics (behind --api-key when set)"),
    ("POST", "/api/chat", "Ollama's chat (for Open WebUI and Ollama clients)"),
    ("POST", "/api/generate", "Ollama's completion of a prompt"),
    ("GET", "/api/tags", "Ollama's list of models"),
    ("POST", "/api/show", "Ollama's details of one model"),
    ("GET", "/api/ps", "Ollama's models in memory: none"),
    ("GET", "/api/version", "the Ollama API version spoken"),
)


def _routes_help() -> str:
    width = max(len(f"{method} {path}") for method, path, _ in ROUTES)
    rows = [f"  {f'{method} {path}':<{width}}  {what}" for method, path, what in ROUTES]
    return "\n".join(["routes (chat/completions and models also without /v1):", *rows])


EPILOG = f"""\
{_routes_help()}

Point any OpenAI client at http://HOST:PORT/v1, any Anthropic or Ollama
client (Claude Code, Open WebUI) at http://HOST:PORT (the API key is any
string unless --api-key is set). POST /v1/images/generations needs
KOALA_API_KEY. Unknown request parameters are ignored and named in the
X-Koala-Ignored-Params header unless --strict; JSON mode and tool calls are
emulated.

examples:
  koala serve                               # http://{SERVER_HOST}:{SERVER_PORT}/v1
  koala serve --sandbox                     # offline: a sandbox answers
  KOALA_API_KEY=... koala serve             # the official API, with your key
  koala serve --endpoint http://127.0.0.1:{SANDBOX_PORT}/api/gpt/   # a koala sandbox
  {SERVER_API_KEY_VARIABLE}=secret koala serve --host 0.0.0.0 --allowed-host chat.lan

Listening on anything but loopback needs an API key ({SERVER_API_KEY_VARIABLE} or
--api-key; the environment keeps it out of `ps`) and --allowed-host for each
name clients use (* for any). That key is the server's own, for its clients;
the key of Koala's official API comes from KOALA_API_KEY only, is never taken
from a client and never logged, and a client may ask for its dialect (api)
only if --client-protocols lists it or it is the server's own --protocol.

Web pages cannot use the server behind your back: a request whose Host is not
loopback or an --allowed-host (DNS rebinding), whose Origin is neither the
server's own nor a --cors-origin, or whose Sec-Fetch-Site is cross-site or
same-site (from no --cors-origin), gets 403; a POST body not sent as application/json
gets 415. GET /health always answers. Ctrl-C or SIGTERM stops accepting and
lets open streams finish for --grace seconds; a second Ctrl-C stops at once.
"""


def add_parser(subparsers: Subparsers) -> None:
    """Register `serve` on the `koala` command's subparsers."""
    add_command(
        subparsers,
        "serve",
        summary="run an OpenAI-compatible HTTP server in front of Koala",
        description=DESCRIPTION,
        epilog=EPILOG,
        add_arguments=add_arguments,
        run=run,
    )


def build_parser(prog: str) -> Parser:
    """Return the parser of the command on its own (`python -m`).

    Its `provider` is None: `run` then serves `koala_chat.Koala`.
    """
    parser = standalone_parser(
        prog, description=DESCRIPTION, epilog=EPILOG, add_arguments=add_arguments
    )
    parser.set_defaults(provider=None)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of the serve command to `parser`."""
    listen = parser.add_argument_group("listening")
    listen.add_argument(
        "--host",
        default=SERVER_HOST,
        help=f"the address to listen on ({SERVER_HOST})",
    )
    listen.add_argument(
        "--port",
        type=port,
        default=SERVER_PORT,
        help=f"the port ({SERVER_PORT}); 0 picks a free one",
    )
    listen.add_argument(
        "--api-key",
        metavar="KEY",
        help="require `Authorization: Bearer KEY` on /v1 routes "
        f"(default: ${SERVER_API_KEY_VARIABLE})",
    )
    listen.add_argument(
        "--keys",
        metavar="FILE",
        help="a gateway for a team: take the named keys of this TOML file, "
        "each with its own limits (`koala keys add`; SIGHUP re-reads it; "
        "not with --api-key)",
    )
    listen.add_argument(
        "--state",
        metavar="URL",
        help="where --keys counts: an SQLite file (default: "
        "$XDG_STATE_HOME/koala-chat/gateway.sqlite3) or redis://HOST:PORT/DB "
        "shared by several servers",
    )
    listen.add_argument(
        "--workers",
        type=positive_count,
        default=SERVER_WORKERS,
        metavar="N",
        help=f"processes sharing one listening socket ({SERVER_WORKERS})",
    )
    listen.add_argument(
        "--max-streams",
        type=positive_count,
        default=SERVER_MAX_STREAMS,
        metavar="N",
        help=f"completions at once per process; more get 429 ({SERVER_MAX_STREAMS})",
    )
    listen.add_argument(
        "--max-body",
        type=positive_count,
        default=SERVER_MAX_BODY,
        metavar="BYTES",
        help=f"the largest request body; larger get 413 ({SERVER_MAX_BODY})",
    )
    listen.add_argument(
        "--grace",
        type=seconds,
        default=SERVER_GRACE,
        metavar="SECONDS",
        help="how long open streams may finish after Ctrl-C or SIGTERM "
        f"({SERVER_GRACE:g})",
    )
    listen.add_argument(
        "--head-timeout",
        type=positive_seconds,
        default=SERVER_HEAD_TIMEOUT,
        metavar="SECONDS",
        help="time to send a request's head; also the longest idle keep-alive "
        f"({SERVER_HEAD_TIMEOUT:g})",
    )
    listen.add_argument(
        "--body-timeout",
        type=positive_seconds,
        default=SERVER_BODY_TIMEOUT,
        metavar="SECONDS",
        help=f"time to send a request's body; slower get 408 ({SERVER_BODY_TIMEOUT:g})",
    )
    listen.add_argument(
        "--max-connections",
        type=positive_count,
        default=SERVER_MAX_CONNECTIONS,
        metavar="N",
        help=f"open connections per process; more get 503 ({SERVER_MAX_CONNECTIONS})",
    )
    listen.add_argument(
        "--strict",
        action="store_true",
        help="refuse unknown request parameters (400) instead of ignoring them",
    )
    listen.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="let web pages from ORIGIN call the server (repeatable; * for any)",
    )
    listen.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="also answer requests with Host: NAME, besides localhost and "
        "loopback addresses (repeatable; needed to listen beyond loopback; "
        "* for any, only with --api-key)",
    )
    listen.add_argument(
        "--quiet",
        action="store_true",
        help="no access log (start, stop and errors only)",
    )
    _add_upstream_arguments(parser)


def _add_upstream_arguments(parser: argparse.ArgumentParser) -> None:
    upstream = parser.add_argument_group("upstream (passed to the provider)")
    upstream.add_argument(
        "--endpoint",
        metavar="URL",
        help=f"the Koala API URL (default: ${ENDPOINT_VARIABLE}, else {API_ENDPOINT})",
    )
    add_sandbox(upstream, "answer from")
    upstream.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        help="the Koala dialect (default: $KOALA_PROTOCOL, else api with "
        "KOALA_API_KEY set, else auto: history, then messages)",
    )
    upstream.add_argument(
        "--client-protocols",
        type=_protocol_list,
        default=SERVER_CLIENT_PROTOCOLS,
        metavar="LIST",
        help="the dialects a client may ask for in the body's protocol, "
        f"comma-separated from {','.join(PROTOCOLS)} "
        f"(default: {','.join(SERVER_CLIENT_PROTOCOLS)}; api spends KOALA_API_KEY)",
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
        help=f"time limit of each upstream request (the provider's: {TOTAL_TIMEOUT:g})",
    )
    upstream.add_argument(
        "--retries",
        type=count,
        metavar="N",
        help="further upstream attempts before any text arrived "
        f"(the provider's: {MAX_RETRIES})",
    )


def _protocol_list(text: str) -> tuple[str, ...]:
    """Return the dialects of a comma-separated `--client-protocols` value.

    Raises:
        argparse.ArgumentTypeError: a name that is not a dialect, or none.
    """
    names = tuple(dict.fromkeys(name.strip() for name in text.split(",")))
    unknown = [name for name in names if name not in PROTOCOLS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"choose from {','.join(PROTOCOLS)}, not {','.join(unknown)!r}"
        )
    return names


def run(args: argparse.Namespace) -> int:
    """Serve `args.provider` (None: `koala_chat.Koala`) until Ctrl-C or SIGTERM.

    Returns the exit code.

    Raises:
        UsageError: a bad setting, or a non-loopback host without an API key
            or an allowed host.
        OSError: the address cannot be bound.
    """
    # Imported here, not at the top: `koala --help` loads this module, and
    # logging alone costs it about 13 ms (under 0.1 s).
    import logging

    from .app import ACCESS_LOGGER
    from .config import default_provider
    from .runner import serve
    from .sandboxed import upstream_sandbox

    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.quiet:
        logging.getLogger(ACCESS_LOGGER).setLevel(logging.WARNING)
    with upstream_sandbox(args) as upstream:
        config = config_from_args(args, upstream)
        return serve(config, args.provider or default_provider())


def config_from_args(
    args: argparse.Namespace, upstream: Mapping[str, Any] | None = None
) -> ServerConfig:
    """Return the settings that `args` and the environment ask for.

    The upstream key comes from `KOALA_API_KEY` only, the server's own from
    `--api-key` or `KOALA_SERVER_API_KEY`; `upstream` overrides the provider
    options (`--sandbox`'s endpoint and key).

    Raises:
        UsageError: a bad setting.
    """
    from .._contract.options import ProviderOptions
    from .config import ServerConfig, upstream_key

    options = {
        "protocol": args.protocol,
        # The upstream key, read once; never the server's own --api-key.
        "api_key": upstream_key(),
        "api_endpoint": args.endpoint or None,
        "proxy": args.proxy or None,
        "timeout": args.timeout,
        "max_retries": args.retries,
        **(upstream or {}),
    }
    return ServerConfig(
        host=args.host,
        port=args.port,
        api_key=args.api_key or os.environ.get(SERVER_API_KEY_VARIABLE) or None,
        max_body=args.max_body,
        max_streams=args.max_streams,
        grace=args.grace,
        workers=args.workers,
        head_timeout=args.head_timeout,
        body_timeout=args.body_timeout,
        max_connections=args.max_connections,
        provider_options=ProviderOptions.parse(options),
        strict=args.strict,
        cors_origins=tuple(args.cors_origin),
        allowed_hosts=tuple(args.allowed_host),
        client_protocols=args.client_protocols,
        keys_file=args.keys,
        state=args.state,
    )
